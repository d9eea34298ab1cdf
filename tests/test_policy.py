"""core.policy: the adaptive draft length follows the measured costs and the drafter's confidence,
skipping the drafter keeps it in sync, and the output stays lossless (exact at T=0, the target's
distribution at T>0)."""

import pytest

from core import adapters, api
from core.costs import CostModel
from core.drafters import DraftSpec, ModelDrafter, NgramDrafter, make_drafter, spec_for
from core.engine import generate
from core.policy import AcceptanceStats, AutoPolicy
from core.sampling import SamplingConfig
from core.tree import DraftTree
from tests import test_sampling as ts
from tools.tiny import tiny_image, tiny_model_dir


def policy(target_s: dict, per_forward: float, rate_obs=()) -> AutoPolicy:
    p = AutoPolicy(CostModel(target_s, draft_per_forward=per_forward))
    p.exploring = False
    for q, ok in rate_obs:
        p.stats.observe(q, ok)
    return p


FLAT = {1: 0.10, 2: 0.10, 4: 0.10, 8: 0.10, 16: 0.10, 32: 0.10}  # a GPU: verify is free
STEEP = {1: 0.10, 2: 0.20, 4: 0.40, 8: 0.80, 16: 1.60, 32: 3.20}  # a CPU at its worst


def test_cheap_drafts_and_free_verify_draft_to_the_cap():
    p = policy(FLAT, 0.001, [(0.9, True)] * 50)
    assert p.plan([], 12) == 12


def test_expensive_drafts_or_verify_mean_plain_steps():
    assert policy(FLAT, 0.5, [(0.9, True)] * 50).plan([], 12) == 0  # drafting costs 5 target steps
    assert policy(STEEP, 0.001, [(0.9, True)] * 50).plan([], 12) == 0  # verify costs n target steps


def test_confidence_ends_a_chain():
    costs = {1: 0.10, 2: 0.11, 4: 0.13, 8: 0.17, 16: 0.25, 32: 0.41}
    p = policy(costs, 0.004, [(0.97, True)] * 30)
    assert p.plan([0.99, 0.99, 0.99], 12) > 3
    t = DraftTree()
    for tok, q in ((5, 0.99), (6, 0.99), (7, 0.01)):
        t.add(tok, len(t) - 1, q, 0.0)
    assert not p.keep_drafting(t, 12)  # an unsure draft: stop
    assert len(p.trim(t)) == 2  # ... and do not verify it


def test_calibration_learns_from_outcomes():
    s = AcceptanceStats()
    assert s.p(0.95) == pytest.approx(0.97, abs=0.02)  # prior: q itself
    for _ in range(200):
        s.observe(0.95, False)  # an over-confident drafter
    assert s.p(0.95) < 0.1 and s.rate() < 0.1


def test_a_drafter_that_never_pays_is_still_explored_rarely():
    p = AutoPolicy(CostModel(FLAT, draft_per_forward=0.5))
    assert p.should_draft(8)  # first step: explore
    t = DraftTree(forwards=2)
    t.add(1, -1, 0.5, 0.0)
    t.add(2, 0, 0.5, 0.0)
    p.observe(t, [], [0], 1.0, 0.1, 0.0, drafted=True)
    decisions = []
    for _ in range(400):
        d = p.should_draft(8)
        decisions.append(d)
        p.observe(DraftTree(), [], [], 0.0, 0.1, 0.0, drafted=d)
    assert 0 < sum(decisions) < 0.05 * len(decisions)


# ---- end to end ---------------------------------------------------------------------------
FAMILIES = ["llama", "llava", "qwen2_vl"]


@pytest.mark.parametrize("family", FAMILIES)
def test_adaptive_chain_is_lossless_at_t0(family):
    tgt = adapters.load(tiny_model_dir(family))
    small = adapters.load(tiny_model_dir(family, num_layers=1, seed=1), role="drafter")
    img = tiny_image() if family != "llama" else None
    spec = spec_for("auto")
    assert spec.adaptive and spec.strategy == "chain"
    for prompt in ("hello world hello world hello", "Describe the picture."):
        ref = generate(tgt, prompt, img, max_new_tokens=20).output
        for d in (ModelDrafter(tgt, "self"), ModelDrafter(small, "small"), NgramDrafter(tgt), make_drafter("layerskip:1", tgt)):
            pol = AutoPolicy(CostModel({1: 0.1, 2: 0.11, 4: 0.12, 8: 0.14, 16: 0.2, 32: 0.3}))
            for _ in range(2):  # the second run starts from what the first learned
                tr = generate(tgt, prompt, img, d, spec, max_new_tokens=20, policy=pol)
                assert tr.output == ref, (family, d.name)
            assert "policy" in tr.meta and tr.meta["spec"]["adaptive"]


class Alternating(AutoPolicy):
    """Draft every other step (3 tokens), skip the drafter in between: plain target steps."""

    def __init__(self):
        super().__init__(CostModel(FLAT, 0.001))
        self.n = 0

    def should_draft(self, cap):
        self.n += 1
        return self.n % 2 == 1

    def keep_drafting(self, tree, cap):
        return len(tree) < 3

    def trim(self, tree):
        return tree


@pytest.mark.parametrize("family", ["llama", "llava"])
def test_skipped_steps_keep_a_model_drafter_in_sync(family):
    """The target drafting for itself must have every drafted token accepted after plain steps:
    tokens committed while the drafter was skipped are fed to it before its next draft."""
    tgt = adapters.load(tiny_model_dir(family))
    img = tiny_image() if family != "llama" else None
    ref = generate(tgt, "Describe the picture.", img, max_new_tokens=25).output
    tr = generate(tgt, "Describe the picture.", img, ModelDrafter(tgt, "self"), spec_for("auto"), max_new_tokens=25, policy=Alternating())
    assert tr.output == ref
    drafted = [s for s in tr.steps if s.tokens]
    plain = [s for s in tr.steps if not s.tokens]
    assert drafted and plain
    assert all(len(s.accepted) == len(s.tokens) for s in drafted[:-1])


def test_skipped_steps_keep_the_msd_head_in_sync():
    """The shipped MSD head, skipped every other step, drafts as well as when it runs every step
    (a head that lost tokens or features while skipped would draft from the wrong context)."""
    pair = api.load_pair("default", "msd")
    from tools.scenes.generator import heldout_seeds
    from tools.scenes.tasks import make_sample

    s = make_sample(heldout_seeds(1, start=3000)[0], "describe")
    ref = generate(pair.target, s["prompt"], s["image"], max_new_tokens=48).output
    every = generate(pair.target, s["prompt"], s["image"], pair.drafter, DraftSpec("chain", gamma=3), max_new_tokens=48)
    alt = generate(pair.target, s["prompt"], s["image"], pair.drafter, spec_for("auto"), max_new_tokens=48, policy=Alternating())
    assert every.output == ref and alt.output == ref

    def acc(tr):
        steps = [x for x in tr.steps if x.tokens]
        return sum(len(x.accepted) for x in steps) / len(steps)

    assert acc(every) > 1.5
    assert acc(alt) >= 0.8 * acc(every), (acc(alt), acc(every))


class Confident(AutoPolicy):
    """A decision rule that depends on the drawn tokens' draft probabilities (a stopping time)."""

    def __init__(self):
        super().__init__(CostModel(FLAT, 0.001))
        self.exploring = False

    def should_draft(self, cap):  # deterministic: no decision from measured (noisy) times
        return True

    def keep_drafting(self, tree, cap):
        return len(tree) < cap and tree.q_tok[-1] > 0.333  # the drafter's q here: 0.31-0.36


class Peeking(Confident):
    """A biased rule (negative control): drop a sampled token for its own low draft probability."""

    def trim(self, tree):
        keep = [i for i in range(len(tree)) if all(q > 0.325 for q in tree.q_tok[: i + 1])]
        return tree.truncate(keep)


class Perturbed:
    """The target as its own drafter, its logits shifted by a fixed random vector: a drafter whose
    tokens are accepted often and rejected often (a random tiny drafter is almost never accepted)."""

    def __init__(self, adapter, scale=0.05):
        import torch

        self.a = adapter
        self.shift = scale * torch.randn(adapter.vocab_size, generator=torch.Generator().manual_seed(7))

    def __getattr__(self, name):
        return getattr(self.a, name)

    def prefill(self, enc, **kw):
        sess, logits, hidden = self.a.prefill(enc, **kw)
        return sess, logits + self.shift, hidden

    def forward(self, sess, ids, positions=None, attn=None, want_hidden=False, rows=None):
        logits, hidden = self.a.forward(sess, ids, positions, attn, want_hidden, rows)
        return logits + self.shift, hidden


@pytest.fixture(scope="module")
def sampled():
    tgt = adapters.load(tiny_model_dir("llama"))
    exact = ts.exact_distribution(tgt)
    return tgt, exact, ts.null_threshold(exact, ts.RUNS)


def _sample_runs(tgt, pol):
    d = ModelDrafter(Perturbed(tgt), "perturbed self")  # accepted often, rejected often
    counts, accepted, rejected, lengths = {}, 0, 0, set()
    for seed in range(ts.RUNS):
        tr = generate(
            tgt,
            ts.PROMPT,
            None,
            d,
            DraftSpec("chain", gamma=3, adaptive=True),
            SamplingConfig(seed=seed, rule="rejection", **ts.SAMPLING),  # the rule a trimmed draft can bias
            max_new_tokens=3,
            detail=False,
            policy=pol,
        )
        counts[tuple(tr.output)] = counts.get(tuple(tr.output), 0) + 1
        accepted += sum(len(s.accepted) for s in tr.steps)
        rejected += sum(len(s.rejected) for s in tr.steps)
        lengths |= {len(s.tokens) for s in tr.steps}
    return counts, accepted, rejected, lengths


def test_adaptive_sampling_keeps_the_target_distribution(sampled):
    tgt, exact, thr = sampled
    counts, accepted, rejected, lengths = _sample_runs(tgt, Confident())
    assert accepted >= 15 and rejected >= 15  # both branches of the rule ran
    assert len(lengths) > 1  # the stopping rule did stop
    assert ts.tv(counts, exact, ts.RUNS) < thr


def test_dropping_a_sampled_token_for_its_own_q_is_detected(sampled):
    tgt, exact, thr = sampled
    counts, *_ = _sample_runs(tgt, Peeking())
    assert ts.tv(counts, exact, ts.RUNS) > thr
