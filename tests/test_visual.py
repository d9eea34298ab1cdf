"""Visual dependence (core/visual.py): KL / argmax change with vs without the image, and the
acceptance split by class. Tiny random models: a VLM's distributions differ with and without the
image for sure; a text-only family, or the same input twice, gives KL 0 and nothing flagged."""

import math

import pytest

from core import adapters, api, visual
from core.drafters import ModelDrafter
from core.engine import generate
from core.trace import Step, Trace
from tools.tiny import adapter_cache, tiny_image, tiny_model_dir

target = adapter_cache()  # tiny models loaded once per module


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_image_changes_the_distributions(family):
    tgt = target(family)
    img = tiny_image()
    tr = generate(tgt, "Describe the picture.", img, max_new_tokens=12)
    res = visual.visual_dependence(tgt, "Describe the picture.", img, tr.output)
    toks = res["tokens"]
    assert [r["token"] for r in toks] == tr.output
    # teacher forcing with the image reproduces the run: its argmax IS the greedy output
    assert [r["argmax_img"] for r in toks] == tr.output
    assert all(r["kl"] > 1e-4 for r in toks)  # the image is in the context of every token
    # the flag is exactly the documented rule
    for r in toks:
        assert r["image_dependent"] == (r["changed"] or r["kl"] > visual.KL_THRESHOLD)
        assert r["changed"] == (r["argmax_img"] != r["argmax_noimg"])
    # a zero threshold flags everything; an infinite one only argmax changes
    assert visual.visual_dependence(tgt, "Describe the picture.", img, tr.output, threshold=0.0)["n_dependent"] == 12
    inf = visual.visual_dependence(tgt, "Describe the picture.", img, tr.output, threshold=math.inf)
    assert inf["n_dependent"] == sum(r["changed"] for r in toks)
    assert res["cost_s"] > 0 and res["baseline"] == "none"


def test_grey_baseline_differs_from_no_image():
    tgt = target("llava")
    img = tiny_image()
    tr = generate(tgt, "What is in the image?", img, max_new_tokens=8)
    none = visual.visual_dependence(tgt, "What is in the image?", img, tr.output)
    grey = visual.visual_dependence(tgt, "What is in the image?", img, tr.output, baseline="grey")
    assert grey["baseline"] == "grey"
    assert [r["kl"] for r in none["tokens"]] != [r["kl"] for r in grey["tokens"]]
    with pytest.raises(ValueError):
        visual.visual_dependence(tgt, "x", img, tr.output, baseline="blue")


@pytest.mark.parametrize("family", ["llama", "llava"])
def test_control_nothing_to_remove(family):
    """A text-only model drops the image (both encodes equal); a VLM run without an image has
    nothing to remove either: KL exactly 0, no argmax change, nothing flagged."""
    tgt = target(family)
    img = tiny_image() if family == "llama" else None
    tr = generate(tgt, "hello world hello world hello", img, max_new_tokens=10)
    res = visual.visual_dependence(tgt, "hello world hello world hello", img, tr.output)
    assert res["n_dependent"] == 0 and res["baseline"] == "same-input"
    assert all(r["kl"] == 0.0 and not r["changed"] for r in res["tokens"])


def test_api_stores_in_trace_and_round_trips():
    tgt = target("llava")
    pair = api.Pair(tgt, None, "tiny", None)
    img = tiny_image()
    tr = generate(tgt, "Describe the picture.", img, max_new_tokens=6)
    res = api.visual_dependence(pair, tr, "Describe the picture.", img)
    assert tr.visual is res
    back = Trace.from_json(tr.to_json())
    assert back.visual == res
    old = tr.to_dict()
    old.pop("visual")  # a trace written before the field existed
    assert Trace.from_dict(old).visual is None


def _hand_trace():
    """Output a b c d e f: a from prefill; step 1 drafts chain [b, x] (b accepted, x rejected,
    correction c); step 2 drafts a tree: two children at depth 1 ([y, d]) d accepted, then e as a
    bonus at a leaf; step 3 plain step: f."""
    a, b, c, d, e, f, x, y = range(10, 18)
    s1 = Step(
        tokens=[b, x],
        parents=[-1, 0],
        depths=[1, 2],
        q=[1, 1],
        p=None,
        accepted=[0],
        rejected=[1],
        token=c,
        kind="correction",
        committed=[b, c],
        t_draft=0,
        t_verify=0,
        t_other=0,
    )
    s2 = Step(
        tokens=[y, d],
        parents=[-1, -1],
        depths=[1, 1],
        q=[1, 1],
        p=None,
        accepted=[1],
        rejected=[0],
        token=e,
        kind="bonus",
        committed=[d, e],
        t_draft=0,
        t_verify=0,
        t_other=0,
    )
    s3 = Step(
        tokens=[],
        parents=[],
        depths=[],
        q=[],
        p=None,
        accepted=[],
        rejected=[],
        token=f,
        kind="bonus",
        committed=[f],
        t_draft=0,
        t_verify=0,
        t_other=0,
    )
    return Trace(first_token=a, output=[a, b, c, d, e, f], steps=[s1, s2, s3])


def test_split_acceptance_counts_by_hand():
    tr = _hand_trace()
    att = visual.position_attempts(tr)
    assert [r["tried"] for r in att] == [0, 1, 1, 2, 0, 0]
    assert [r["accepted"] for r in att] == [0, 1, 0, 1, 0, 0]
    # image-dependent: c (index 2, draft rejected) and d (index 3, accepted after a sibling failed)
    vis = {"tokens": [{"index": i, "image_dependent": i in (2, 3)} for i in range(6)]}
    sp = visual.split_acceptance(tr, vis)
    assert sp["image_dependent"] == {
        "positions": 2,
        "tried": 2,
        "accept_rate": 0.5,
        "node_rate": 0.3333,
        "from_draft": 0.5,
        "tau_like": 2.0,
    }
    assert sp["other"]["positions"] == 4 and sp["other"]["tried"] == 1 and sp["other"]["accept_rate"] == 1.0
    assert sp["other"]["from_draft"] == 0.25
    assert "image-dependent tokens: 50%" in visual.describe(sp)
    with pytest.raises(ValueError):
        visual.split_acceptance(tr)  # nothing computed yet


def test_split_on_a_real_speculative_run():
    tgt = target("llava")
    small = adapters.load(tiny_model_dir("llava", num_layers=1, seed=1))
    img = tiny_image()
    tr = generate(tgt, "Describe the picture.", img, ModelDrafter(small, "small"), max_new_tokens=16)
    tr.visual = visual.visual_dependence(tgt, "Describe the picture.", img, tr.output)
    sp = visual.split_acceptance(tr)
    assert sp["image_dependent"]["positions"] + sp["other"]["positions"] == len(tr.output)
    acc = sum(len(s.accepted) for s in tr.steps)
    got = sum(round(c["from_draft"] * c["positions"]) for c in sp.values())
    assert got == acc
