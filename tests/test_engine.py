"""Losslessness of the engine at T=0 on tiny random models of every family.

Speculative output == the project's AR output == transformers' generate(do_sample=False),
for every family x drafter x chain / static tree / dynamic tree, and the edge cases:
EOS inside a draft, max_new_tokens reached mid-draft, nothing accepted, everything accepted,
a prompt containing the literal image-token string.
"""

import pytest
import torch

from core import adapters
from core.drafters import DraftSpec, ModelDrafter, NgramDrafter, make_drafter
from core.engine import generate
from tools.tiny import VISION_FAMILIES, adapter_cache, tiny_image

FAMILIES = ["llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "llama", "qwen2"]
SPECS = [
    DraftSpec("chain", gamma=1),
    DraftSpec("chain", gamma=4),
    DraftSpec("tree", branching=(3, 2, 1)),
    DraftSpec("dynamic", depth=5, top_k=4, budget=20),
]
PROMPTS = ["Describe the picture.", "hello world hello world hello"]
DRAFTERS = ["self", "small-mm", "small-text", "layerskip", "ngram"]
load = adapter_cache()  # tiny models loaded once per module


def target(family):
    return load(family)


def small(family):  # a 1-layer random model of the same family
    return load(family, num_layers=1, seed=1)


def image_for(family):
    return tiny_image() if family in VISION_FAMILIES else None


def hf_greedy(tgt, prompt, image, n, eos=None):
    """transformers' own greedy decoding of exactly the inputs the adapter prefills
    (``adapter.generate_inputs``: Qwen2-VL's generate needs the image-token types)."""
    enc = tgt.encode(prompt, image)
    gen_kw = dict(do_sample=False, max_new_tokens=n, min_new_tokens=0)
    if eos is not None:
        gen_kw["eos_token_id"] = eos
    out = tgt.model.generate(**tgt.generate_inputs(enc), **gen_kw)
    return out[0, enc.length :].tolist()


def drafter(family, name):
    tgt = target(family)
    if name == "self":  # the target drafting for itself: everything accepted
        return ModelDrafter(tgt, "self")
    if name == "small-mm":  # a 1-layer random model: mostly rejected
        return ModelDrafter(small(family), "small")
    if name == "small-text":  # the same, image dropped (Gagrani et al.)
        return ModelDrafter(small(family), "small-text", use_image=False)
    if name == "layerskip":
        return make_drafter("layerskip:1", tgt)
    return NgramDrafter(tgt)


@pytest.mark.parametrize("family", FAMILIES)
def test_ar_matches_transformers_generate(family):
    tgt = target(family)
    for prompt in PROMPTS[:2]:
        ours = generate(tgt, prompt, image_for(family), max_new_tokens=24)
        assert ours.output == hf_greedy(tgt, prompt, image_for(family), 24)
        assert ours.summary()["tau"] == 1.0


_refs: dict = {}


@pytest.mark.parametrize("dname", DRAFTERS)
@pytest.mark.parametrize("family", FAMILIES)
def test_speculative_equals_ar(family, dname):
    tgt = target(family)
    img = image_for(family)
    d = drafter(family, dname)
    accepted = []
    for p in PROMPTS:
        if (family, p) not in _refs:
            _refs[family, p] = generate(tgt, p, img, max_new_tokens=16).output
        for spec in SPECS:
            tr = generate(tgt, p, img, d, spec, max_new_tokens=16)
            assert tr.output == _refs[family, p], (family, dname, spec, p)
            accepted.append(sum(len(s.accepted) for s in tr.steps))
    if dname == "self":
        assert min(accepted) > 0


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "llama"])
def test_self_drafting_accepts_every_chain_token(family):
    tgt = target(family)
    tr = generate(tgt, PROMPTS[0], image_for(family), ModelDrafter(tgt, "self"), DraftSpec("chain", gamma=4), max_new_tokens=21)
    # 1 token from prefill, then 4 accepted + 1 bonus per step
    assert [len(s.accepted) for s in tr.steps] == [4, 4, 4, 4]
    assert tr.summary()["tau"] == 5.0  # per speculative step: 4 accepted + the bonus (prefill excluded)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "idefics3", "llama"])
def test_eos_inside_a_draft(family):
    tgt = target(family)
    img = image_for(family)
    ref = generate(tgt, PROMPTS[0], img, max_new_tokens=30).output
    eos_tok = ref[7]  # pretend this token is EOS: every run must stop right after it
    first = ref.index(eos_tok)
    saved = tgt.eos_ids
    try:
        tgt.eos_ids = {eos_tok}
        for drafter in (ModelDrafter(tgt, "self"), make_drafter("layerskip:1", tgt)):
            for spec in SPECS:
                tr = generate(tgt, PROMPTS[0], img, drafter, spec, max_new_tokens=30)
                assert tr.output == ref[: first + 1] and tr.stop_reason == "eos"
                _accepted_are_committed(tr)
            # the self drafter drafts past EOS and the target agrees: those tokens are discarded
            tr = generate(tgt, PROMPTS[0], img, ModelDrafter(tgt, "self"), DraftSpec("chain", gamma=6), max_new_tokens=30)
            assert tr.steps[-1].discarded or len(tr.steps[-1].accepted) + 1 == len(tr.steps[-1].committed)
        assert ref[: first + 1] == hf_greedy(tgt, PROMPTS[0], img, 30, eos=eos_tok)
    finally:
        tgt.eos_ids = saved


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_max_new_tokens_reached_mid_draft(family):
    tgt = target(family)
    img = image_for(family)
    ref = generate(tgt, PROMPTS[0], img, max_new_tokens=12).output
    for n in range(1, 12):
        for spec in (DraftSpec("chain", gamma=5), DraftSpec("tree", branching=(2, 2, 2))):
            tr = generate(tgt, PROMPTS[0], img, ModelDrafter(tgt, "self"), spec, max_new_tokens=n)
            assert tr.output == ref[:n] and tr.stop_reason == "length"
            _accepted_are_committed(tr)


def _accepted_are_committed(tr):
    """Accepted draft tokens are the committed ones: never more than the tokens kept."""
    s = tr.summary()
    assert sum(len(st.accepted) for st in tr.steps) <= s["new_tokens"] - 1
    assert s["accepted_per_step"] * len(tr.steps) <= s["new_tokens"] - 1 + 1e-6
    for st in tr.steps:
        assert [st.tokens[a] for a in st.accepted] == st.committed[: len(st.accepted)]
        assert len(st.accepted) <= len(st.committed)


@pytest.mark.parametrize("family", VISION_FAMILIES)
def test_prompt_with_literal_special_strings(family):
    """Special-token text typed by a user stays text: the image-token count is unchanged."""
    tgt = target(family)
    img = image_for(family)
    specials = "<image> <|image_pad|> <|vision_start|> </s> <|im_end|> <|eos|> <fake_token_around_image>"
    plain = tgt.encode("look", img)
    tricky = tgt.encode("look " + specials, img)
    specials_ids = {tgt.tokenizer.convert_tokens_to_ids(t) for t in tgt.tokenizer.all_special_tokens}
    plain_counts = {i: int((plain.input_ids == i).sum()) for i in specials_ids}
    tricky_counts = {i: int((tricky.input_ids == i).sum()) for i in specials_ids}
    assert plain_counts == tricky_counts
    ref = generate(tgt, "look " + specials, img, max_new_tokens=16).output
    tr = generate(tgt, "look " + specials, img, make_drafter("layerskip:1", tgt), DraftSpec("dynamic"), max_new_tokens=16)
    assert tr.output == ref


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "idefics3", "llama"])
def test_kv_compaction_matches_fresh_forward(family):
    """After keeping a non-contiguous path of a verified tree, the next logits equal a forward
    of the same tokens from scratch without cache."""
    tgt = target(family)
    img = image_for(family)
    enc = tgt.encode(PROMPTS[0], img)
    sess, logits, _ = tgt.prefill(enc)
    # a tree: root r, children a, b; b has child c. Keep path r -> b -> c (rows 0, 2, 3).
    toks = [11, 23, 37, 41]
    base = sess.length
    anc = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 1, 1]], dtype=torch.bool)
    depths = torch.tensor([0, 1, 1, 2])
    attn = torch.cat([torch.ones(4, base, dtype=torch.bool), anc], 1)
    tgt.forward(sess, toks, base + depths, attn)
    tgt.keep(sess, base, [0, 2, 3])
    nxt, _ = tgt.forward(sess, [55])
    seq = enc.input_ids[0].tolist() + [11, 37, 41, 55]
    fresh_enc = adapters.Encoded(torch.tensor([seq]), enc.extra, enc.has_image)
    _, fresh, _ = tgt.prefill(fresh_enc)
    assert torch.allclose(nxt[-1], fresh, atol=1e-4), (nxt[-1] - fresh).abs().max()


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_confidence_pruning_stays_lossless_and_drafts_less(family):
    tgt = target(family)
    img = tiny_image()
    d = ModelDrafter(small(family), "small")
    ref = generate(tgt, PROMPTS[0], img, max_new_tokens=20).output
    for spec in (
        DraftSpec("chain", gamma=5, min_prob=0.2),
        DraftSpec("tree", branching=(3, 2, 2), min_prob=0.05),
        DraftSpec("dynamic", depth=4, top_k=4, budget=16, min_prob=0.05),
    ):
        full = generate(
            tgt,
            PROMPTS[0],
            img,
            d,
            DraftSpec(spec.strategy, spec.gamma, spec.branching, spec.depth, spec.top_k, spec.budget),
            max_new_tokens=20,
        )
        pruned = generate(tgt, PROMPTS[0], img, d, spec, max_new_tokens=20)
        assert pruned.output == ref == full.output
        assert sum(len(s.tokens) for s in pruned.steps) < sum(len(s.tokens) for s in full.steps)
    with pytest.raises(ValueError, match="min_prob"):
        DraftSpec("chain", min_prob=1.5)


def test_bench_records_the_resolved_dtype(monkeypatch):
    from core import device
    from tools import bench

    monkeypatch.setattr(device, "fast_bf16", lambda device="cpu": False)
    assert bench.parse_args(["--quick"]).dtype == "float32"
    monkeypatch.setattr(device, "fast_bf16", lambda device="cpu": True)
    assert bench.parse_args(["--quick"]).dtype == "bfloat16"
    assert bench.parse_args(["--quick", "--dtype", "float32"]).dtype == "float32"


def test_schema1_trace_upgrades_accepted_after_eos():
    """An old trace (schema 1) counted tokens drafted after EOS as accepted; reading it keeps only
    the committed ones and records the rest as discarded."""
    from core.trace import SCHEMA, Trace

    step = dict(
        tokens=[5, 6, 7],
        parents=[-1, 0, 1],
        depths=[1, 2, 3],
        q=[0.9, 0.9, 0.9],
        p=None,
        accepted=[0, 1, 2],
        rejected=[],
        token=8,
        kind="bonus",
        committed=[5],
        t_draft=0.0,
        t_verify=0.0,
        t_other=0.0,
    )
    tr = Trace.from_dict({"schema": "specscope.trace/1", "output": [4, 5], "first_token": 4, "steps": [step]})
    assert tr.schema == SCHEMA and tr.steps[0].accepted == [0] and tr.steps[0].discarded == [1, 2]
    assert tr.summary()["accepted_per_step"] == 1.0


PHASES = ["propose", "verify", "accept", "keep", "commit", "record"]


@pytest.mark.parametrize("speculative", [True, False])
def test_on_phase_reports_every_phase_of_every_step_in_order(speculative):
    """The engine reports each step's phases through on_phase (profilers and the audit read it);
    the verify event carries the tokens fed, their positions and one logits row per token."""
    tgt = target("llava")
    d = ModelDrafter(tgt, "self") if speculative else None
    events = []

    def on_phase(name, seconds, **data):
        events.append((name, seconds, data))

    tr = generate(tgt, PROMPTS[0], tiny_image(), d, DraftSpec("chain", gamma=4), max_new_tokens=21, on_phase=on_phase)
    assert [e[0] for e in events] == PHASES * len(tr.steps) and len(tr.steps) >= 1
    assert all(e[1] >= 0 for e in events)
    plain = generate(tgt, PROMPTS[0], tiny_image(), d, DraftSpec("chain", gamma=4), max_new_tokens=21)
    assert tr.output == plain.output and len(tr.steps) == len(plain.steps)
    verifies = [e[2] for e in events if e[0] == "verify"]
    base = tr.prompt_tokens
    for step, v in zip(tr.steps, verifies):
        assert v["tokens"] == [v["tokens"][0]] + step.tokens
        assert v["positions"].tolist() == [base + x for x in [0] + step.depths]
        assert v["logits"].shape[0] == len(v["tokens"])
        base += len(step.committed)
    assert {k for e in events if e[0] != "verify" for k in e[2]} == set()
