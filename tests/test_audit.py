"""Integration audit (core/audit.py): the real engine passes on tiny models (float32: the
verify rows' logits equal plain decoding's at the same positions); a deliberately wrong position
offset, injected by the test only, is flagged."""

import pytest
import torch

from core import audit
from core.drafters import DraftSpec, ModelDrafter, NgramDrafter
from tools.tiny import VISION_FAMILIES, adapter_cache, tiny_image, tiny_model_dir

SHAPES = [DraftSpec("chain", gamma=4), DraftSpec("tree", branching=(3, 2, 1)), DraftSpec("dynamic", depth=5, top_k=4, budget=20)]
load = adapter_cache()  # tiny models loaded once per module


def inputs(family):
    img = tiny_image() if family in VISION_FAMILIES else None
    return [("hello world hello world hello", img), ("Describe the picture.", img)]


def drafters(family):
    return {"ngram": NgramDrafter(load(family)), "small": ModelDrafter(load(family, num_layers=1, seed=1), "small")}


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "llama"])
def test_real_engine_passes(family):
    tgt = load(family)
    for name, d in drafters(family).items():
        rep = audit.audit(tgt, d, inputs(family), SHAPES, max_new_tokens=16)
        assert rep["ok"], audit.format_report(rep)
        assert rep["rel_diff"] < 1e-5 and rep["max_abs_diff"] < 1e-5
        for r in rep["rows"]:
            assert r["identical"] and r["argmax_flips"] == 0
            assert r["rows_compared"] >= r["tokens"] - 1  # every fed output token compared once at least
        assert sum(r["multi_token_rows"] for r in rep["rows"]) > 0, name  # real tree/chain rows compared


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "llama"])
def test_wrong_position_offset_is_flagged(family, monkeypatch):
    tgt = load(family)
    real = tgt.forward

    def shifted(sess, ids, positions=None, attn=None, want_hidden=False, rows=None):
        n = len(ids) if not torch.is_tensor(ids) else ids.numel()
        if positions is not None and n > 1:  # only multi-token verify rows: +1
            positions = positions + 1
        return real(sess, ids, positions, attn, want_hidden=want_hidden, rows=rows)

    monkeypatch.setattr(tgt, "forward", shifted)
    rep = audit.audit(tgt, drafters(family)["small"], inputs(family)[:1], SHAPES[:2], max_new_tokens=16)
    assert not rep["ok"]
    assert rep["rel_diff"] > 5e-4, audit.format_report(rep)  # the engine's own: < 1e-6 (measured 1.2e-3..2.3e-3)
    assert "FLAGGED" in audit.format_report(rep)


def test_divergence_reports_margin():
    """A drafter-independent check of the divergence bookkeeping: a corrupted plain run."""
    tgt = load("llama")
    prompt, img = inputs("llama")[0]
    plain = audit._collect(tgt, prompt, img, None, DraftSpec(), 12)
    plain[0].output[5] = (plain[0].output[5] + 1) % 300
    r = audit.audit_one(tgt, NgramDrafter(tgt), prompt, img, SHAPES[0], 12, plain=plain)
    assert r["first_divergence"] == 5 and not r["ok"] and r["margin_at_divergence"] >= 0


def test_cli_audit(monkeypatch, capsys):
    from core.__main__ import main

    monkeypatch.setenv("SPECSCOPE_KERNELS", "stock")
    rc = main(
        [
            "audit",
            "--target",
            tiny_model_dir("llama"),
            "--drafter",
            "ngram",
            "--prompts",
            "hello world hello world hello",
            "--shapes",
            "chain:3",
            "--max-new-tokens",
            "10",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "OK" in out
