"""The shipped default pair: the target in assets/target loads through the same adapter as a Hub
model, and every shipped drafter is lossless with it (greedy output identical to AR) on held-out
scenes. The pair is committed: a missing or unloadable one fails these tests, never skips them."""

from __future__ import annotations

import pytest
import torch

from core import api, paths
from core.drafters import DraftSpec
from core.sampling import SamplingConfig
from tools.scenes.generator import heldout_seeds
from tools.scenes.tasks import make_sample

pytestmark = pytest.mark.slow  # a minute or more: scheduled first (tests/conftest.py)

SPECS = [DraftSpec("chain", gamma=4), DraftSpec("tree", branching=(2, 2, 1)), DraftSpec("dynamic", depth=4, top_k=4, budget=12)]


def _samples():
    # one grounded question and one description, held-out seeds
    out = []
    for seed in heldout_seeds(40, start=500):
        s = make_sample(seed)
        if s["task"] in ("describe", "count", "attribute") and s["task"] not in [x["task"] for x in out]:
            out.append(s)
        if len(out) == 2:
            break
    return out


def test_the_default_pair_is_committed():
    missing = [str(d) for d in (paths.DEFAULT_TARGET, *paths.SHIPPED_DRAFTERS.values()) if not (d / "config.json").exists()]
    assert not missing, f"the committed default pair is incomplete, missing: {', '.join(missing)}"


def test_default_target_loads_like_a_hub_model():
    from transformers import LlavaForConditionalGeneration

    pair = api.load_pair("default")
    assert isinstance(pair.target.model, LlavaForConditionalGeneration)
    assert pair.target.is_multimodal
    n = sum(p.numel() for p in pair.target.model.parameters())
    assert 1e6 < n < 150e6


@pytest.mark.parametrize("drafter", ["ngram", "layerskip:2", *paths.SHIPPED_DRAFTERS])
def test_shipped_drafters_are_lossless_with_the_default_target(drafter):
    if drafter in paths.SHIPPED_DRAFTERS and not (paths.SHIPPED_DRAFTERS[drafter] / "config.json").exists():
        pytest.fail(f"shipped drafter {drafter} is missing from assets/")
    pair = api.load_pair("default", drafter)
    greedy = SamplingConfig()
    for s in _samples():
        ar = api.run(pair, s["prompt"], s["image"], max_new_tokens=40, speculative=False, detail=False)
        for spec in SPECS:
            sp = api.run(pair, s["prompt"], s["image"], spec, greedy, max_new_tokens=40, detail=False)
            assert sp.output == ar.output, (drafter, spec, s["prompt"])
            assert sp.summary()["target_forwards"] <= ar.summary()["target_forwards"]


@pytest.mark.parametrize("drafter", ["ngram", *paths.SHIPPED_DRAFTERS])
def test_shipped_drafters_are_lossless_in_bfloat16(drafter):
    """The CLI, the bench and the app default to bfloat16 where the CPU computes it natively
    ("auto"); losslessness is then against the target's own greedy decoding in bfloat16."""
    if drafter in paths.SHIPPED_DRAFTERS and not (paths.SHIPPED_DRAFTERS[drafter] / "config.json").exists():
        pytest.fail(f"shipped drafter {drafter} is missing from assets/")
    pair = api.load_pair("default", drafter, dtype="bfloat16")
    assert pair.target.dtype == torch.bfloat16
    greedy = SamplingConfig()
    for s in _samples():
        ar = api.run(pair, s["prompt"], s["image"], max_new_tokens=40, speculative=False, detail=False)
        for spec in (SPECS[0], SPECS[2]):
            sp = api.run(pair, s["prompt"], s["image"], spec, greedy, max_new_tokens=40, detail=False)
            assert sp.output == ar.output, (drafter, spec, s["prompt"])


def test_drafters_run_in_fp32_next_to_a_bf16_target_on_cpu():
    """One-row draft steps are faster in fp32 than in bf16 on a CPU; the head follows that, and
    it still drafts well from the bf16 target's features."""
    pair = api.load_pair("default", "msd", dtype="bfloat16")
    d = pair.drafter
    assert pair.target.dtype == torch.bfloat16
    assert d.dtype == torch.float32 and d.lm_w.dtype == torch.float32
    assert next(d.head.parameters()).dtype == torch.float32
    s = _samples()[0]
    sp = api.run(pair, s["prompt"], s["image"], DraftSpec("chain", gamma=4), SamplingConfig(), max_new_tokens=24, detail=False)
    assert sp.summary()["tau"] > 1.5  # the fp32 head drafts well from bf16 features
    small = api.load_pair("default", "text-lm", dtype="bfloat16").drafter
    assert small.lm.dtype == torch.float32  # separate draft models too
