"""Counterfactual replay (core/replay.py): at T=0 the tau a replay predicts from ONE recorded
target run equals the tau of a real speculative run, for every drafter and shape; the target is
never run during a replay."""

import pytest
import torch

from core import replay
from core.drafters import DraftSpec, ModelDrafter, NgramDrafter, make_drafter
from core.engine import generate
from core.sampling import SamplingConfig
from tools.tiny import VISION_FAMILIES, adapter_cache, tiny_image, tiny_model_dir

pytestmark = pytest.mark.slow  # a minute or more: scheduled first (tests/conftest.py)

SHAPES = ["chain:1", "chain:4", "tree:3x2x1", "dynamic:5/4/20"]
DRAFTERS = ["self", "small", "small-text", "layerskip", "ngram"]
PROMPTS = {"describe": "Describe the picture.", "repeat": "hello world hello world hello"}
load = adapter_cache()  # tiny models loaded once per module


def drafter(family, name):
    tgt = load(family)
    if name == "self":
        return ModelDrafter(tgt, "self")
    if name == "small":
        return ModelDrafter(load(family, num_layers=1, seed=1), "small")
    if name == "small-text":
        return ModelDrafter(load(family, num_layers=1, seed=1), "small-text", use_image=False)
    if name == "layerskip":
        return make_drafter("layerskip:1", tgt)
    return NgramDrafter(tgt)


def test_parse_shapes():
    assert replay.parse_shape("chain:4") == DraftSpec("chain", gamma=4)
    assert replay.parse_shape("tree:3x2x1").branching == (3, 2, 1)
    s = replay.parse_shape("dynamic:5/4/20")
    assert (s.depth, s.top_k, s.budget) == (5, 4, 20)
    for bad in ("auto", "chain:x", "star:3", "dynamic:5/4"):
        with pytest.raises(ValueError):
            replay.parse_shape(bad)
    assert replay.shape_label(s) == "dynamic:5/4/20"


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "llama"])
@pytest.mark.parametrize("pkey", ["describe", "repeat"])
def test_replay_tau_equals_real_tau(family, pkey):
    tgt = load(family)
    img = tiny_image() if family in VISION_FAMILIES else None
    prompt = PROMPTS[pkey]
    rec = replay.record(tgt, prompt, img, max_new_tokens=20)
    assert rec.mismatches == []  # float32: teacher forcing == the greedy run
    for name in DRAFTERS:
        d = drafter(family, name)
        for shape in SHAPES:
            spec = replay.parse_shape(shape)
            real = generate(tgt, prompt, img, d, spec, max_new_tokens=20)
            assert real.output == rec.output
            r = replay.replay(rec, d, spec)
            s = real.summary()
            assert r["output"] == real.output, (name, shape)
            assert r["tau"] == s["tau"] and r["steps"] == len(real.steps), (name, shape)
            assert r["acceptance_by_depth"] == s["acceptance_by_depth"], (name, shape)
            assert r["verify_sizes"] == [1 + len(st.tokens) for st in real.steps]


def test_replay_never_runs_the_target_verify():
    tgt = load("llava")
    rec = replay.record(tgt, PROMPTS["describe"], tiny_image(), max_new_tokens=12)
    d = ModelDrafter(load("llava", num_layers=1, seed=1), "small")

    def boom(*a, **k):
        raise AssertionError("the target was run during a replay")

    tgt.forward, tgt.prefill = boom, boom
    try:
        r = replay.replay(rec, d, replay.parse_shape("tree:3x2x1"))
    finally:
        del tgt.forward, tgt.prefill
    assert r["tokens"] == len(rec.output)


def test_replay_from_a_trace_output_and_budget():
    tgt = load("qwen2_vl")
    img = tiny_image()
    d = ModelDrafter(load("qwen2_vl", num_layers=1, seed=1), "small")
    spec = DraftSpec("chain", gamma=3)
    real = generate(tgt, PROMPTS["repeat"], img, d, spec, max_new_tokens=9)
    rec = replay.record(tgt, PROMPTS["repeat"], img, output=real.output, stop_reason=real.stop_reason)
    r = replay.replay(rec, d, spec)
    assert r["tau"] == real.summary()["tau"] and r["stop_reason"] == "length"


def test_msd_style_hidden_slicing():
    """A drafter that needs hidden states gets exactly the engine's hidden[kept] rows."""
    tgt = load("llama")
    seen_real, seen_replay = [], []

    class Spy(NgramDrafter):
        needs_hidden = True

        def __init__(self, sink):
            super().__init__(tgt)
            self.sink = sink

        def begin(self, ctx):
            super().begin(ctx)
            self.sink.append(("begin", ctx.target_hidden.clone(), len(ctx.prompt_ids)))

        def commit(self, tree, accepted, new, hidden):
            self.sink.append(("commit", hidden.clone(), list(new)))

    spec = DraftSpec("chain", gamma=3)
    real = generate(tgt, PROMPTS["repeat"], None, Spy(seen_real), spec, max_new_tokens=16)
    rec = replay.record(tgt, PROMPTS["repeat"], None, output=real.output)
    replay.replay(rec, Spy(seen_replay), spec)
    assert len(seen_real) == len(seen_replay) > 2
    for (ka, ha, xa), (kb, hb, xb) in zip(seen_real, seen_replay):
        assert ka == kb and xa == xb and ha.shape == hb.shape
        assert torch.allclose(ha, hb, atol=1e-4)


def test_near_ties_and_mismatches_reported():
    tgt = load("llama")
    rec = replay.record(tgt, PROMPTS["describe"], None, max_new_tokens=10)
    assert all(m >= 0 for m in rec.margin)
    assert rec.near_ties(tol=float("inf")) and len(rec.near_ties(tol=float("inf"))) == len(rec.output)
    forged = replay.Recording(**{**rec.__dict__, "output": [rec.output[0], (rec.output[1] + 1) % 300] + rec.output[2:]})
    assert forged.mismatches[0]["index"] == 1


def test_sampling_estimate_and_pricing():
    tgt = load("llava")
    rec = replay.record(tgt, PROMPTS["describe"], tiny_image(), max_new_tokens=12)
    d = ModelDrafter(tgt, "self")
    r = replay.replay(rec, d, DraftSpec("chain", gamma=3), SamplingConfig(temperature=1.0, seed=0))
    est = r["expected_accept"]
    assert 0.0 <= est["per_step"] <= 3.0 and "estimate" in est["note"]
    # pricing: a free drafter with a flat curve gives tau as the speedup (prefill 0)
    g = replay.replay(rec, d, DraftSpec("chain", gamma=3))
    g["draft_s_total"] = 0.0
    p = replay.price(g, {1: 1.0, 2: 1.0, 4: 1.0, 8: 1.0}, 0.0)
    assert abs(p["predicted_speedup"] - (len(rec.output) - 1) / g["steps"]) < 1e-3
    with pytest.raises(ValueError):
        replay.replay(rec, d, DraftSpec("chain", gamma=3, adaptive=True))


def test_msd_on_the_default_pair():
    """The shipped MSD head (needs_hidden: commit gets recorded hidden states, begin the prefill's
    hidden states and merged embeddings) on a held-out scene: replay tau == real tau."""
    from core import api
    from tools.bench import scene_samples

    pair = api.load_pair("default", "msd", dtype="float32", kernels="stock")  # committed: must load
    s = scene_samples(1)[0]
    rec = replay.record(pair.target, s.prompt, s.image, max_new_tokens=24)
    for shape in ("chain:4", "tree:3x2x1", "dynamic:5/4/20"):
        spec = replay.parse_shape(shape)
        real = generate(pair.target, s.prompt, s.image, pair.drafter, spec, max_new_tokens=24)
        r = replay.replay(rec, pair.drafter, spec)
        assert real.output == rec.output and r["tau"] == real.summary()["tau"], shape
        assert r["tau"] > 1.5  # the trained head really drafts


def test_cli_run_then_replay(tmp_path, monkeypatch, capsys):
    import json

    from core.__main__ import main

    monkeypatch.setenv("SPECSCOPE_KERNELS", "stock")
    d = tiny_model_dir("llava")
    img = tmp_path / "img.png"
    tiny_image().save(img)
    tr = tmp_path / "run.json"
    assert (
        main(
            [
                "run",
                "--target",
                d,
                "--prompt",
                "Describe the picture.",
                "--image",
                str(img),
                "--max-new-tokens",
                "12",
                "--dtype",
                "float32",
                "--trace",
                str(tr),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "replay",
                "--trace",
                str(tr),
                "--drafters",
                "ngram,layerskip:1",
                "--shapes",
                "chain:2,tree:2x2",
                "--no-costs",
                "--check",
                "--repeats",
                "1",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert len(out["rows"]) == 4 and out["recording"]["tokens"] == 12
    assert all(r["tau"] == r["real_tau"] and r["real_speedup"] > 0 for r in out["rows"])
    assert [r["tau"] for r in out["rows"]] == sorted((r["tau"] for r in out["rows"]), reverse=True)
    assert main(["replay", "--trace", str(tr), "--shapes", "auto"]) == 2  # a user error, not a crash


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["replay", "--trace", "/no/such/run.json", "--drafters", "ngram"], "cannot read trace"),
        (["replay", "--trace", "README.md", "--drafters", "ngram"], "not a SpecScope trace"),
        (["replay", "--prompt", "hi", "--drafters", "ngram", "--shapes", "chain:x"], "bad shape"),
        (["audit", "--drafter", "ngram", "--shapes", "bogus"], "bad shape"),
    ],
)
def test_cli_bad_input_is_a_one_line_error(argv, needle, capsys):
    from core.__main__ import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and err.count("\n") == 0 and "Traceback" not in err, err
