"""Sampling is lossless end to end: the distribution of the first generated tokens under speculative
decoding equals the target's exact distribution, for sampled chains, sampled static trees and
(deterministic-proposal) dynamic trees, with top-k and top-p, with EOS inside the support and with
the bonus token after a fully accepted chain reached.

The reference is independent of the code under test: the target's logits by teacher forcing (the
model called directly on each prefix) turned into probabilities by the plain softmax / top-k /
top-p written out below (not ``core.sampling.probs``, which has its own hand-computed unit test),
and every output sequence of up to ``n`` tokens (ending early at EOS) enumerated.

The drafters are perturbed copies of the target, so their drafts are accepted often but not
always: each acceptance rule (residual renormalised after a rejection, earlier-drawn siblings
removed from a later sibling's proposal, the bonus token drawn from the accepted leaf's row) is
exercised on both of its branches. A rule accepting every draft is detected (negative control)."""

import math
import os

import pytest
import torch

import core.engine as engine
from core import adapters
from core.acceptance import Verdict
from core.drafters import DraftSpec, ModelDrafter
from core.engine import generate
from core.sampling import SamplingConfig, probs
from tools.tiny import tiny_model_dir

pytestmark = pytest.mark.slow  # a minute or more: scheduled first (tests/conftest.py)

SAMPLING = dict(temperature=1.5, top_k=3)  # near-uniform over 3 tokens (also used by test_policy)
SHARP = dict(temperature=0.05, top_k=3)  # the same 3 tokens, far from uniform
NUCLEUS = dict(temperature=0.05, top_k=5, top_p=0.8)  # top-p cuts inside the top-k
PROMPT = "hello world"
# samples per case: as many as the negative controls below use to catch a biased rule (1.5x over
# the threshold); SPECSCOPE_SAMPLING_RUNS=600 (or more) tightens every threshold by sqrt(2)
RUNS = int(os.environ.get("SPECSCOPE_SAMPLING_RUNS", "300"))
CONTROL_RUNS = 300
EOS_BIAS = 0.2  # added to the EOS logit of the "eos" target: EOS among the top tokens early on


# ---- the independent reference ------------------------------------------------------------
def reference_row(logits, temperature, top_k=0, top_p=1.0):
    """One row of logits (a list of floats) -> {token: probability}, written out plainly."""
    scaled = [x / temperature for x in logits]
    order = sorted(range(len(scaled)), key=lambda i: scaled[i], reverse=True)
    if top_k:
        order = order[:top_k]
    m = scaled[order[0]]
    w = {i: math.exp(scaled[i] - m) for i in order}
    z = sum(w.values())
    p = {i: w[i] / z for i in order}
    if top_p < 1.0:
        kept, before = [], 0.0
        for i in order:  # most probable first; keep until the mass reaches top_p
            if before >= top_p:
                break
            kept.append(i)
            before += p[i]
        z = sum(p[i] for i in kept)
        p = {i: p[i] / z for i in kept}
    return p


def _model_of(tgt):
    """The target's HF model and the fixed logit shift a wrapper adds (zero for a plain adapter)."""
    shift = torch.zeros(tgt.vocab_size)
    while isinstance(tgt, Shifted):
        assert tgt.gain == 1.0
        shift = shift + tgt.shift
        tgt = tgt.a
    return tgt.model, shift


def exact_distribution(tgt, sampling=None, n=3, prompt=PROMPT):
    """{output tuple: probability} of the first ``n`` tokens the target samples (shorter where EOS
    comes first), by enumeration; each conditional from a direct call of the model on the prefix."""
    sampling = dict(SAMPLING if sampling is None else sampling)
    sampling.pop("seed", None)
    model, shift = _model_of(tgt)
    ids = tgt.encode(prompt).input_ids[0].tolist()
    eos = set(tgt.eos_ids)
    dist = {}

    @torch.inference_mode()
    def row(seq):
        logits = model(input_ids=torch.tensor([ids + seq])).logits[0, -1].float() + shift
        return reference_row(logits.tolist(), **sampling)

    def walk(seq, mass):
        for tok, p in row(seq).items():
            out = seq + [tok]
            if tok in eos or len(out) == n:
                dist[tuple(out)] = dist.get(tuple(out), 0.0) + mass * p
            else:
                walk(out, mass * p)

    walk([], 1.0)
    return dist


# ---- models -------------------------------------------------------------------------------
class Shifted:
    """An adapter whose logits are scaled by ``gain`` and shifted by a fixed vector: a perturbed
    copy of a model (a drafter accepted often, rejected often; sharper than the target with
    gain > 1) or a target with a bias (EOS made likely)."""

    def __init__(self, adapter, shift, gain=1.0):
        self.a = adapter
        self.shift = shift
        self.gain = gain

    def __getattr__(self, name):
        return getattr(self.a, name)

    def prefill(self, enc, **kw):
        sess, logits, hidden = self.a.prefill(enc, **kw)
        return sess, logits * self.gain + self.shift.to(logits.dtype), hidden

    def forward(self, sess, ids, positions=None, attn=None, want_hidden=False, rows=None):
        logits, hidden = self.a.forward(sess, ids, positions, attn, want_hidden, rows)
        return logits * self.gain + self.shift.to(logits.dtype), hidden


class Ranked(Shifted):
    """A drafter that keeps only the target's ranking: logit ``-step * rank``. Over the target's
    top 3 at temperature 1.5 its q is about (0.69, 0.23, 0.08) while the target's p is near
    uniform: the first draw is rejected about half the time, and a later sibling's proposal (q
    without the earlier draws) is far from q itself."""

    def __init__(self, adapter, step=1.5 * math.log(3)):
        super().__init__(adapter, torch.zeros(adapter.vocab_size))
        self.step = step

    def _ranks(self, logits):
        return -self.step * torch.argsort(torch.argsort(logits, dim=-1, descending=True), dim=-1).to(logits.dtype)

    def prefill(self, enc, **kw):
        sess, logits, hidden = self.a.prefill(enc, **kw)
        return sess, self._ranks(logits), hidden

    def forward(self, sess, ids, positions=None, attn=None, want_hidden=False, rows=None):
        logits, hidden = self.a.forward(sess, ids, positions, attn, want_hidden, rows)
        return self._ranks(logits), hidden


def perturbed(adapter, scale, gain=1.0, seed=7):
    noise = scale * torch.randn(adapter.vocab_size, generator=torch.Generator().manual_seed(seed))
    return ModelDrafter(Shifted(adapter, noise, gain), "perturbed")


@pytest.fixture(scope="module")
def models():
    tgt = adapters.load(tiny_model_dir("llama"))
    small = adapters.load(tiny_model_dir("llama", num_layers=1, seed=1))
    bias = torch.zeros(tgt.vocab_size)
    bias[sorted(tgt.eos_ids)] = EOS_BIAS
    return {"plain": tgt, "eos": Shifted(tgt, bias), "small": small}


# ---- statistics ---------------------------------------------------------------------------
def empirical(tgt, drafter, spec, runs=RUNS, sampling=None, n=3, stats=None):
    sampling = SAMPLING if sampling is None else sampling
    counts = {}
    for seed in range(runs):
        tr = generate(tgt, PROMPT, None, drafter, spec, SamplingConfig(seed=seed, **sampling), max_new_tokens=n, detail=False)
        key = tuple(tr.output)
        counts[key] = counts.get(key, 0) + 1
        if stats is not None:
            for s in tr.steps:
                stats["accepted"] += len(s.accepted)
                stats["rejected"] += len(s.rejected)
                # a bonus after a fully accepted draft, committed (not cut by the budget)
                stats["bonus"] += bool(s.tokens) and s.kind == "bonus" and len(s.committed) == len(s.accepted) + 1
    return counts


def tv(counts, exact, runs):
    keys = set(counts) | set(exact)
    return 0.5 * sum(abs(counts.get(k, 0) / runs - exact.get(k, 0.0)) for k in keys)


def null_threshold(exact, runs, q=0.999, trials=1000):
    """TV between the exact distribution and an empirical one of `runs` exact samples: its
    q-quantile is the threshold a correct sampler stays under with probability q."""
    keys = list(exact)
    p = torch.tensor([exact[k] for k in keys])
    gen = torch.Generator().manual_seed(123)
    draws = torch.multinomial(p, runs * trials, replacement=True, generator=gen).view(trials, runs)
    offsets = torch.arange(trials).view(-1, 1) * len(keys)
    freq = torch.bincount((draws + offsets).flatten(), minlength=trials * len(keys)).view(trials, -1) / runs
    tvs = 0.5 * (freq - p).abs().sum(1)
    return float(torch.quantile(tvs, q))


_refs = {}


def reference(tgt, target_name, sampling, n, runs):
    key = (target_name, tuple(sorted(sampling.items())), n, runs)
    if key not in _refs:
        exact = exact_distribution(tgt, sampling, n)
        assert abs(sum(exact.values()) - 1) < 1e-4
        _refs[key] = exact, null_threshold(exact, runs)
    return _refs[key]


# ---- probs() against a hand-computed example ----------------------------------------------
def test_probs_matches_a_hand_computed_example():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 3.0]])
    e = [math.exp(x) for x in (3.0, 2.0, 1.0, 0.0, -1.0)]  # tokens 4, 0, 1, 2, 3
    full = torch.tensor([e[1], e[2], e[3], e[4], e[0]]) / sum(e)
    torch.testing.assert_close(probs(logits, SamplingConfig(temperature=1.0))[0], full)
    # temperature 2: exp(x / 2)
    h = torch.exp(logits[0] / 2)
    torch.testing.assert_close(probs(logits, SamplingConfig(temperature=2.0))[0], h / h.sum())
    # top-k 2: tokens 4 and 0 only, e^3 : e^2
    k2 = torch.tensor([e[1], 0, 0, 0, e[0]]) / (e[0] + e[1])
    torch.testing.assert_close(probs(logits, SamplingConfig(temperature=1.0, top_k=2))[0], k2)
    # top-p: sorted full probs are 0.6364, 0.2341, 0.0861, 0.0317, 0.0117
    #   p=0.6  -> {4} (0.6364 already reaches it)
    #   p=0.7  -> {4, 0} (0.8705 reaches it)
    #   p=0.8705 boundary excluded: 0.87 keeps {4, 0}; 0.88 adds token 1
    top = lambda p, **kw: probs(logits, SamplingConfig(temperature=1.0, top_p=p, **kw))[0]
    torch.testing.assert_close(top(0.6), torch.tensor([0.0, 0, 0, 0, 1]))
    torch.testing.assert_close(top(0.7), k2)
    torch.testing.assert_close(top(0.87), k2)
    k3 = torch.tensor([e[1], e[2], 0, 0, e[0]]) / (e[0] + e[1] + e[2])
    torch.testing.assert_close(top(0.88), k3)
    # top-k first, then top-p on the renormalised top-k: k=2 gives 0.7311 / 0.2689; p=0.7 -> {4}
    torch.testing.assert_close(top(0.7, top_k=2), torch.tensor([0.0, 0, 0, 0, 1]))
    torch.testing.assert_close(top(0.75, top_k=2), k2)
    # greedy: a point mass on the argmax; rows independent
    two = torch.stack([logits[0], logits[0].flip(0)])
    g = probs(two, SamplingConfig(temperature=0.0))
    assert g.tolist() == [[0, 0, 0, 0, 1], [1, 0, 0, 0, 0]]


def test_reference_row_agrees_with_probs():
    """The test's own reference and the library agree on random rows (both are then trusted by
    the hand-computed example above and by the end-to-end checks below)."""
    gen = torch.Generator().manual_seed(0)
    for cfg in (SAMPLING, SHARP, NUCLEUS, dict(temperature=0.7, top_p=0.5)):
        for _ in range(5):
            x = torch.randn(50, generator=gen)
            ref = reference_row(x.tolist(), **cfg)
            got = probs(x, SamplingConfig(**cfg))
            want = torch.zeros(50)
            for i, p in ref.items():
                want[i] = p
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


# ---- end to end ---------------------------------------------------------------------------
CASES = [
    # id, target, drafter, spec, sampling, new tokens
    # gamma 1 over 3 tokens: the bonus after an accepted draft is committed; EOS in the support
    ("chain1-eos", "eos", ("perturbed", 0.05), DraftSpec("chain", gamma=1), SHARP, 3),
    ("chain2-nucleus", "plain", ("perturbed", 0.05), DraftSpec("chain", gamma=2), NUCLEUS, 3),
    # sampled siblings without replacement: proposals exclude earlier-drawn siblings; a drafter
    # sharper than a near-uniform target, so that its first draw is rejected often
    ("tree3-ranked", "plain", ("ranked",), DraftSpec("tree", branching=(3,)), SAMPLING, 2),
    # confidence pruning: whether a node is expanded depends on the drawn tokens (a stopping
    # time), which must not bias the output
    ("tree22-eos-minprob", "eos", ("perturbed", 0.05), DraftSpec("tree", branching=(2, 2), min_prob=0.4), SHARP, 3),
    # deterministic proposals: a rejected sibling is removed, the residual renormalised
    ("dynamic-nucleus-minprob", "plain", ("perturbed", 0.05), DraftSpec("dynamic", depth=2, top_k=2, budget=4, min_prob=0.3), NUCLEUS, 3),
    # the target's top 2 as deterministic siblings, a third token in the support: after the first
    # is rejected the second is tested against the renormalised residual
    ("dynamic-ranked", "plain", ("ranked",), DraftSpec("dynamic", depth=1, top_k=2, budget=2), SHARP, 2),
]


def _drafter(models, target, how):
    if how[0] == "perturbed":
        return perturbed(models[target], *how[1:])
    if how[0] == "ranked":
        return ModelDrafter(Ranked(models[target]), "ranked")
    return ModelDrafter(models["small"], "small")


COUPLED = ("chain1-eos", "tree22-eos-minprob", "dynamic-nucleus-minprob")  # one per strategy, EOS and pruning in
RULED = [(*c, "rejection") for c in CASES] + [(*c, "coupled") for c in CASES if c[0] in COUPLED]


@pytest.mark.parametrize("name,target,how,spec,sampling,n,rule", RULED, ids=[f"{c[0]}-{c[-1]}" for c in RULED])
def test_speculative_sampling_matches_target_distribution(models, name, target, how, spec, sampling, n, rule):
    tgt = models[target]
    exact, thr = reference(tgt, target, sampling, n, RUNS)
    sampling = dict(sampling, rule=rule)
    if target == "eos":  # EOS is inside the tested support, with real mass
        assert sum(p for k, p in exact.items() if k[-1] in tgt.eos_ids) > 0.1
    stats = {"accepted": 0, "rejected": 0, "bonus": 0}
    counts = empirical(tgt, _drafter(models, target, how), spec, sampling=sampling, n=n, stats=stats)
    assert sum(counts.values()) == RUNS
    if how[0] in ("perturbed", "ranked"):  # both branches of the rule ran, often
        assert stats["accepted"] > RUNS // 4 and stats["rejected"] > RUNS // 4, stats
    if name.startswith("chain1"):
        assert stats["bonus"] > RUNS // 4, stats
    assert tv(counts, exact, RUNS) < thr, (tv(counts, exact, RUNS), thr)


def test_biased_acceptance_is_detected(models, monkeypatch):
    """Negative control: a rule that accepts every draft token without rejection sampling."""
    tgt = models["plain"]
    runs = CONTROL_RUNS
    exact, thr = reference(tgt, "plain", SAMPLING, 3, runs)

    def accept_all(tree, target_probs, gen):
        path, node = [], -1
        kids = tree.children()
        while kids.get(node):
            node = kids[node][0]
            path.append(node)
        tok = int(torch.multinomial(target_probs[node + 1], 1, generator=gen))
        return Verdict(path, tok, [], False)

    monkeypatch.setattr(engine, "accept_sampling", accept_all)
    rejection = dict(SAMPLING, rule="rejection")
    counts = empirical(tgt, ModelDrafter(models["small"], "small"), DraftSpec("chain", gamma=2), runs=runs, sampling=rejection)
    assert tv(counts, exact, runs) > 1.5 * thr, (tv(counts, exact, runs), thr)


def test_biased_coupled_acceptance_is_detected(models, monkeypatch):
    """Negative control of the coupled rule: accept every drafted token whatever the target picks."""
    tgt = models["plain"]
    runs = CONTROL_RUNS
    exact, thr = reference(tgt, "plain", SAMPLING, 3, runs)

    def accept_first_path(tree, choice):
        path, node, kids = [], -1, tree.children()
        while kids.get(node):
            node = kids[node][0]
            path.append(node)
        return Verdict(path, choice[node + 1], [], False)

    monkeypatch.setattr(engine, "accept_greedy", accept_first_path)
    counts = empirical(
        tgt, ModelDrafter(models["small"], "small"), DraftSpec("chain", gamma=2), runs=runs, sampling=dict(SAMPLING, rule="coupled")
    )
    assert tv(counts, exact, runs) > 1.5 * thr, (tv(counts, exact, runs), thr)


def test_noise_is_keyed_by_seed_and_position_only():
    """The coupled rule's noise: the same for a (seed, position) whoever asks, in any order."""
    from core.sampling import Noise

    a, b = Noise(3), Noise(3)
    first = a.gumbel(5, 11).clone()
    b.gumbel(9, 11)  # another position asked first changes nothing
    assert torch.equal(b.gumbel(5, 11), first)
    assert not torch.equal(a.gumbel(6, 11), first) and not torch.equal(Noise(4).gumbel(5, 11), first)
    p = torch.softmax(torch.randn(2, 11), -1)
    assert a.choose(p, [5, 6]) == [int(torch.argmax(torch.log(p[i]) + a.gumbel(5 + i, 11))) for i in range(2)]
