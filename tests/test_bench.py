"""The benchmark CLI (the tools/bench/ package) on tiny random models: schema, exact-match counting, the
markdown table, the HTML report, profile mode and one-line errors. Timings are never asserted."""

import json
import math

import pytest

import core.acceptance
import core.engine
from core import api
from tools import bench
from tools.bench import hf as bench_hf
from tools.bench import profiling as bench_profile
from core.drafters import DraftSpec
from tools.tiny import tiny_image, tiny_model_dir

PROMPTS = [
    {"image": "a.png", "prompt": "Describe the picture."},
    {"image": "b.png", "prompt": "What color is the car?"},
    {"prompt": "hello world hello world hello"},
]  # a text-only line


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    imgs = d / "images"
    imgs.mkdir()
    tiny_image(seed=1).save(imgs / "a.png")
    tiny_image(40, 48, seed=2).save(imgs / "b.png")
    with open(d / "prompts.jsonl", "w") as f:
        for row in PROMPTS:
            f.write(json.dumps(row) + "\n")
    return d


@pytest.fixture(scope="module")
def models():
    return tiny_model_dir("llava"), tiny_model_dir("llava", num_layers=1, seed=1)


def _args(folder, models, *extra):
    target, small = models
    return [
        "--suite",
        "folder",
        "--images",
        str(folder / "images"),
        "--prompts",
        str(folder / "prompts.jsonl"),
        "--target",
        target,
        "--silent",
        *extra,
    ]


@pytest.fixture(scope="module")
def quick_run(folder, models, tmp_path_factory):
    """One --quick run: two drafters (a separate tiny model, n-gram), T=0 and T=1."""
    out = tmp_path_factory.mktemp("quick")
    argv = _args(
        folder,
        models,
        "--quick",
        "--n",
        "3",
        "--drafters",
        f"{models[1]},ngram",
        "--temperatures",
        "0,1",
        "--max-new-tokens",
        "12",
        "--depth",
        "3",
        "--top-k",
        "3",
        "--budget",
        "8",
        "--out",
        str(out / "r.json"),
        "--html",
        str(out / "r.html"),
    )
    cap = _Capture()
    with cap:
        rc = bench.main(argv)
    return rc, cap.out, out


class _Capture:
    """Capture stdout inside a module-scoped fixture (capsys is function-scoped)."""

    def __enter__(self):
        import io
        import sys

        self._old, self._buf = sys.stdout, io.StringIO()
        sys.stdout = self._buf
        return self

    def __exit__(self, *exc):
        import sys

        sys.stdout = self._old
        self.out = self._buf.getvalue()


def _numbers(x, path="$"):
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return
    if isinstance(x, (int, float)):
        yield path, x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _numbers(v, f"{path}[{i}]")


def test_quick_run_writes_json_with_schema(quick_run):
    rc, _, out = quick_run
    assert rc == 0
    res = json.loads((out / "r.json").read_text())
    assert res["schema"] == bench.SCHEMA
    assert {"meta", "suite", "configs"} <= res.keys()
    assert res["meta"]["quick"] and res["meta"]["max_new_tokens"] == 12 and res["meta"]["n_samples"] == 3
    assert res["suite"]["n"] == 3 and [s["image"] for s in res["suite"]["samples"]] == ["a.png", "b.png", None]
    # quick: one strategy per drafter (auto: the adaptive chain) x 2 temperatures
    assert [(c["strategy"], c["temperature"]) for c in res["configs"]] == [("auto", 0.0), ("auto", 1.0), ("auto", 0.0), ("auto", 1.0)]
    assert res["meta"]["env"]["cpu"]["model"] and isinstance(res["meta"]["env"]["cpu"]["flags"], list)
    assert res["meta"]["kernels"]["hf_baselines"] == "stock"
    keys = {
        "n",
        "tau",
        "accepted_per_step",
        "acceptance_by_depth",
        "tokens_per_s_ar",
        "tokens_per_s_spec",
        "speedup",
        "speedup_mean_of_ratios",
        "ideal_speedup",
        "step_cost_ar_ms",
        "step_cost_spec_ms",
        "time_split_spec_s",
        "time_per_step_spec_ms",
        "trace_overhead",
        "exact",
        "hf_plain_tokens_per_s",
        "ar_vs_hf_plain",
        "hf_assisted",
        "hf_prompt_lookup",
    }
    for c in res["configs"]:
        assert {"id", "drafter", "strategy", "temperature", "spec", "groups", "samples", "divergences"} <= c.keys()
        m = c["groups"]["folder"]
        assert keys <= m.keys(), keys - m.keys()
        assert m["n"] == 3 and len(c["samples"]) == 3
        for k in ("tau", "speedup", "ideal_speedup", "tokens_per_s_ar", "tokens_per_s_spec", "hf_plain_tokens_per_s"):
            assert m[k] is not None and m[k] > 0, (c["id"], k)
        assert m["tau"] >= 1.0 and set(m["time_split_spec_s"]) == {"prefill", "draft", "verify", "other"}
        assert all(0 <= a <= 1 for a in m["acceptance_by_depth"])
    for path, v in _numbers(res):
        assert math.isfinite(v), path


def test_exact_match_counted_at_t0_only(quick_run):
    _, table, out = quick_run
    res = json.loads((out / "r.json").read_text())
    for c in res["configs"]:
        m = c["groups"]["folder"]
        if c["temperature"] == 0:
            assert m["exact"] == {"matched": 3, "n": 3}  # the engine is lossless
            assert all(s["exact"] is True for s in c["samples"])
            assert m["hf_plain_matches_ar"] == {"matched": 3, "n": 3}
        else:
            assert m["exact"] is None and all(s["exact"] is None for s in c["samples"])
    rows = {ln.split(" | ")[0].lstrip("| "): ln for ln in table.split("\n\n")[0].splitlines()}
    assert " 3/3 " in rows[res["configs"][0]["id"]] and " n/a " in rows[res["configs"][1]["id"]]


def test_hf_baselines_reported(quick_run):
    _, table, out = quick_run
    res = json.loads((out / "r.json").read_text())
    model_cfg, ngram_cfg = res["configs"][0]["groups"]["folder"], res["configs"][2]["groups"]["folder"]
    assert model_cfg["hf_assisted"]["speedup"] > 0  # a separate HF model: assisted runs
    assert model_cfg["hf_assisted"]["exact"] == {"matched": 3, "n": 3}
    assert ngram_cfg["hf_assisted"]["speedup"] is None and "not a standalone" in ngram_cfg["hf_assisted"]["skipped"]
    look = model_cfg["hf_prompt_lookup"]
    # LLaVA + prompt lookup may fail on image inputs ("Image features and image tokens do not match"):
    # reported with its reason, never raised
    assert look["n"] == 3
    if look.get("failed"):
        assert look["error"] and f"HF prompt-lookup (T=0) failed: {look['error']}" in table
    else:
        assert look["speedup"] > 0


def test_markdown_table_has_every_config(quick_run):
    _, table, out = quick_run
    res = json.loads((out / "r.json").read_text())
    lines = table.split("\n\n")[0].splitlines()  # the first table
    assert lines[0].startswith("| config | tau | acc/step | tok/s AR | tok/s spec | speedup | ideal | exact")
    for c in res["configs"]:
        assert sum(1 for ln in lines if ln.startswith(f"| {c['id']} |")) == 1, c["id"]
    assert "tokens per speculative step (incl. bonus, excl. prefill)" in table


def test_html_report_written(quick_run):
    _, _, out = quick_run
    html = (out / "r.html").read_text()
    res = json.loads((out / "r.json").read_text())
    assert html.startswith("<!doctype html>") and "Plotly.newPlot" in html
    assert len(html) > 1_000_000  # plotly.js embedded (the inline default)
    for c in res["configs"]:
        assert c["id"] in html
    assert "Acceptance by depth" in html


def test_broken_acceptance_is_caught(folder, models, tmp_path, monkeypatch, capsys):
    """A wrong token in speculative steps only (AR steps draft nothing): exact < n, divergence located."""
    real = core.engine.accept_greedy

    def broken(tree, argmax):
        v = real(tree, argmax)
        if len(tree):
            v.token = (v.token + 1) % 300
        return v

    monkeypatch.setattr(core.engine, "accept_greedy", broken)
    out = tmp_path / "r.json"
    rc = bench.main(
        _args(
            folder,
            models,
            "--n",
            "2",
            "--drafters",
            models[1],
            "--strategies",
            "chain",
            "--max-new-tokens",
            "8",
            "--hf",
            "none",
            "--warmup",
            "0",
            "--out",
            str(out),
        )
    )
    assert rc == 0
    res = json.loads(out.read_text())
    m = res["configs"][0]["groups"]["folder"]
    assert m["exact"]["n"] == 2 and m["exact"]["matched"] < 2
    dv = res["configs"][0]["divergences"]
    assert dv and all(d["position"] >= 1 and d["ar_token"] != d["spec_token"] for d in dv)
    assert all(d["top2_margin"] is not None and d["top2_margin"] >= 0 for d in dv)
    table = capsys.readouterr().out
    assert f" {m['exact']['matched']}/2 " in table and "spec left AR" in table


def test_ideal_bound_from_step_costs():
    """ideal = tau * (AR verify time per step) / (spec draft+verify+other per step), on synthetic runs."""

    def rec(tokens, steps, verify, draft=0.0, other=0.0, wall=1.0):
        return {
            "tokens": [1] * tokens,
            "new_tokens": tokens,
            "steps": steps,
            "forwards": steps + 1,
            "accepted": tokens - steps - 1,
            "drafted": 4 * steps,
            "depth_tried": [steps],
            "depth_ok": [steps // 2],
            "wall_s": wall,
            "prefill_s": 0.0,
            "draft_s": draft,
            "verify_s": verify,
            "other_s": other,
            "trace_s": 0.0,
            "text": "",
            "stop_reason": "length",
        }

    smp = bench.Sample("s", "p")
    records = [
        {
            "sample": smp,
            "ar": [rec(20, 19, verify=1.9, wall=2.0)],
            "spec": [rec(20, 4, verify=0.4, draft=0.15, other=0.05, wall=0.8)],
            "exact": True,
            "hf": None,
        }
    ]
    m = bench.aggregate(records, None, 0.0)
    assert m["tau"] == 4.75  # 19 tokens after the prefill's / 4 steps
    assert m["step_cost_ar_ms"] == 100.0 and m["step_cost_spec_ms"] == 150.0
    assert m["ideal_speedup"] == pytest.approx(4.75 * 100 / 150, abs=1e-4)
    assert m["speedup"] == 2.5 and m["exact"] == {"matched": 1, "n": 1}
    assert m["accepted_per_step"] == pytest.approx(15 / 4) and m["acceptance_by_depth"] == [0.5]


def test_acceptance_by_position_is_counted_as_vllm_counts_it():
    """Per step that drafted (a model-free drafter may propose nothing): the share accepted at least
    to position d, and 1 + accepted draft tokens per such step; two runs pool by their counts."""

    def rec(accepted_per_step, max_depth):  # None: a step that drafted nothing
        drafted = [a for a in accepted_per_step if a is not None]
        return {
            "tokens": [], "new_tokens": len(accepted_per_step) + sum(drafted) + 1, "steps": len(accepted_per_step),
            "forwards": len(accepted_per_step) + 1, "accepted": sum(drafted), "drafted": max_depth * len(drafted),
            "depth_tried": [len(drafted)] * max_depth, "depth_ok": [sum(1 for a in drafted if a >= d) for d in range(1, max_depth + 1)],
            "wall_s": 1.0, "prefill_s": 0.0, "draft_s": 0.0, "verify_s": 0.5, "other_s": 0.0, "trace_s": 0.0,
            "text": "", "stop_reason": "length",
        }  # fmt: skip

    records = [
        {
            "sample": bench.Sample("s", "p"),
            "ar": [rec([0] * 4, 1)],
            "spec": [rec([3, None, 1, 0], 3), rec([1, None], 1)],
            "exact": True,
            "hf": None,
        }
    ]
    m = bench.aggregate(records, None, 0.0)
    # 4 steps drafted (two found nothing), one of them only to depth 1; accepted at least to
    # position 1: 3 of the 4, to 2: 1, to 3: 1 (of the 4, not of the 3 that drafted that deep)
    assert m["acceptance_by_position"] == [0.75, 0.25, 0.25]
    assert m["acceptance_by_depth"] == [0.75, 0.3333, 0.3333]
    assert m["mean_accepted_length"] == pytest.approx(1 + 5 / 4)
    assert m["tau"] == pytest.approx(11 / 6, abs=1e-4)  # ours counts every step, the empty ones too
    none = dict(records[0], spec=[rec([None, None], 3)])
    assert bench.aggregate([none], None, 0.0)["acceptance_by_position"] == []


def test_profile_mode(models, capsys):
    rc = bench.main(
        [
            "--profile",
            "--suite",
            "text",
            "--n",
            "1",
            "--target",
            models[0],
            "--drafters",
            "layerskip",
            "--strategies",
            "chain",
            "--max-new-tokens",
            "8",
            "--profile-top",
            "5",
            "--silent",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    for part in (
        "draft: propose",
        "verify (target forward)",
        "accept (acceptance rule)",
        "KV compaction (adapter.keep)",
        "trace recording",
        "cProfile",
        "torch.profiler",
    ):
        assert part in out, part
    # the wrappers were removed again
    assert core.engine.accept_greedy.__module__ == "core.acceptance"


def test_profile_times_phases_through_on_phase(models, monkeypatch):
    """The profiled run passes on_phase through api.run, and nothing is patched meanwhile: the
    engine's acceptance rule, the adapter's keep and the drafter's methods are the real ones
    while the engine reports each phase. Every phase becomes a row."""
    args = bench.parse_args(
        [
            "--suite",
            "text",
            "--n",
            "1",
            "--target",
            models[0],
            "--drafters",
            "layerskip",
            "--strategies",
            "chain",
            "--max-new-tokens",
            "8",
            "--warmup",
            "0",
            "--silent",
        ]
    )
    cfg = bench.build_configs(args)[0]
    pair = api.load_pair(args.target, cfg.drafter, dtype=args.dtype, device=args.device)
    seen, real_run = [], api.run

    def spy_run(*a, on_phase=None, **kw):
        if on_phase is None:
            return real_run(*a, **kw)

        def checked(name, seconds, **data):
            assert core.engine.accept_greedy is core.acceptance.accept_greedy
            assert not {"keep", "forward"} & set(vars(pair.target))
            assert not {"propose", "commit"} & set(vars(pair.drafter))
            seen.append(name)
            on_phase(name, seconds, **data)

        return real_run(*a, on_phase=checked, **kw)

    monkeypatch.setattr(bench_profile.api, "run", spy_run)
    result = bench.profile_config(pair, cfg, bench.text_samples(None)[0], args)
    assert seen and seen[:6] == ["propose", "verify", "accept", "keep", "commit", "record"]
    assert len(seen) == 6 * result["steps"]
    assert list(result["per_step_ms"]) == list(bench_profile.PHASE_ROWS.values()) + [bench_profile.OTHER_ROW]
    assert all(v >= 0 for v in result["per_step_ms"].values())
    assert result["per_step_ms"]["verify (target forward)"] > 0


def test_run_record_comes_from_the_trace_summary(models):
    pair = api.load_pair(models[0], "layerskip")
    tr = api.run(pair, "hello world hello world", None, DraftSpec("chain", gamma=3), max_new_tokens=10)
    rec = bench.run_record(tr)
    s = tr.summary()
    assert rec["tokens"] == tr.output and rec["new_tokens"] == s["new_tokens"] == len(tr.output)
    assert rec["steps"] == len(tr.steps) and rec["forwards"] == s["target_forwards"]
    assert rec["accepted"] == pytest.approx(sum(len(x.accepted) for x in tr.steps), abs=1e-3)
    assert rec["drafted"] == pytest.approx(sum(len(x.tokens) for x in tr.steps), abs=1e-3)
    assert rec["wall_s"] == s["wall_s"] and rec["verify_s"] == s["time_split"]["verify"]
    tried, ok = rec["depth_tried"], rec["depth_ok"]
    assert [round(o / t, 4) for o, t in zip(ok, tried)] == s["acceptance_by_depth"]


def test_assistant_is_what_the_drafter_declares(models):
    class Declares:
        name = "declares"

        def __init__(self, model):
            self.model = model

        def assistant_model(self):
            return self.model

    tgt = api.load_target(models[0])
    other = api.load_target(models[1])
    assert bench_hf.assistant_for(api.Pair(tgt, Declares(other.model), "t", "d")) == (other.model, None)
    model, why = bench_hf.assistant_for(api.Pair(tgt, Declares(tgt.model), "t", "d"))
    assert model is None and "target itself" in why
    model, why = bench_hf.assistant_for(api.Pair(tgt, Declares(None), "t", "d"))
    assert model is None and "not a standalone" in why


def test_scene_suite_split():
    samples = bench.scene_samples(4)
    assert {s.group for s in samples} == {"description", "grounded"}
    assert all(s.image is not None for s in samples)


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["--suite", "folder"], "--images"),
        (["--temperatures", "x"], "--temperatures"),
        (["--strategies", "chain,wide"], "unknown strategy"),
        (["--n", "0"], "--n"),
        (["--dtype", "int4"], "invalid choice"),
        (["--target", "/nonexistent/model"], "target not found"),
        (["--drafters", "./no/such/drafter"], "drafter not found"),
        (["--suite", "folder", "--images", "/nonexistent", "--prompts", "/nonexistent.jsonl"], "not found"),
    ],
)
def test_bad_arguments_one_line_exit_2(argv, msg, models, capsys):
    if "--target" not in argv:
        argv = argv + ["--target", models[0]]
    assert bench.main(argv + ["--silent"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and msg in err, err


def test_missing_default_target_is_one_line(monkeypatch, tmp_path, capsys):
    from core import paths

    monkeypatch.setattr(paths, "DEFAULT_TARGET", tmp_path / "missing")
    assert bench.main(["--quick", "--silent"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


def test_baseline_dtype_times_an_interleaved_ar_in_the_other_dtype(folder, models, tmp_path):
    out = tmp_path / "r.json"
    rc = bench.main(
        _args(
            folder,
            models,
            "--n",
            "2",
            "--drafters",
            "ngram",
            "--strategies",
            "chain",
            "--max-new-tokens",
            "8",
            "--warmup",
            "0",
            "--hf",
            "none",
            "--dtype",
            "bfloat16",
            "--baseline-dtype",
            "float32",
            "--out",
            str(out),
        )
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["meta"]["dtype"] == "bfloat16" and res["meta"]["baseline_dtype"] == "float32"
    groups = res["configs"][0]["groups"]
    m = groups.get("all") or next(iter(groups.values()))
    assert m["tokens_per_s_ar_baseline_dtype"] > 0 and m["speedup_vs_baseline_dtype"] > 0
    assert "AR in float32" in bench.markdown_table(res)
    # without the option, no baseline numbers
    rc = bench.main(
        _args(
            folder,
            models,
            "--n",
            "1",
            "--drafters",
            "ngram",
            "--strategies",
            "chain",
            "--max-new-tokens",
            "4",
            "--warmup",
            "0",
            "--hf",
            "none",
            "--out",
            str(out),
        )
    )
    assert rc == 0
    groups = json.loads(out.read_text())["configs"][0]["groups"]
    assert all("speedup_vs_baseline_dtype" not in g for g in groups.values())


# ---- --visual: acceptance on image-dependent vs other tokens ------------------------------------


def _visual_argv(folder, models, out, *extra):
    return _args(
        folder,
        models,
        "--drafters",
        f"ngram,{models[1]}",
        "--strategies",
        "chain",
        "--gamma",
        "3",
        "--max-new-tokens",
        "8",
        "--hf",
        "none",
        "--warmup",
        "0",
        "--out",
        str(out),
        *extra,
    )


def test_visual_split_pools_the_samples_counts(folder, models, tmp_path, capsys):
    from core import visual

    out = tmp_path / "r.json"
    argv = _visual_argv(folder, models, out, "--visual")
    assert bench.main(argv) == 0
    table = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert bench.VISUAL_TITLE in table
    vm = res["meta"]["visual"]
    # T=0: every drafter reproduces the target's output, so each image sample is computed once
    assert vm["enabled"] and vm["seconds"] >= 0 and vm["computed"] == 2 and vm["reused"] == 2
    args = bench.parse_args(argv)
    samples = bench.load_suite(args)
    for cfg, c in zip(bench.build_configs(args), res["configs"]):
        pair = api.load_pair(args.target, cfg.drafter, dtype=args.dtype)
        want = {k: {"positions": 0, "tried": 0, "accepted": 0} for k in ("image", "other")}
        for smp, srow in zip(samples, c["samples"]):
            if smp.image is None:
                assert "visual" not in srow  # the text-only line: no split
                continue
            tr = api.run(pair, smp.prompt, smp.image, cfg.spec, cfg.sampling(0), args.max_new_tokens)
            api.visual_dependence(pair, tr, smp.prompt, smp.image)
            split = visual.split_acceptance(tr)
            for k, name in (("image", "image_dependent"), ("other", "other")):
                s = split[name]
                acc = round((s["accept_rate"] or 0) * s["tried"])
                assert (srow["visual"][k]["positions"], srow["visual"][k]["tried"], srow["visual"][k]["accepted"]) == (
                    s["positions"],
                    s["tried"],
                    acc,
                ), (c["id"], smp.id, k)
                for key, v in (("positions", s["positions"]), ("tried", s["tried"]), ("accepted", acc)):
                    want[k][key] += v
        v = c["groups"]["folder"]["visual"]
        for k in ("image", "other"):
            assert {key: v[k][key] for key in want[k]} == want[k], (c["id"], k)
            if v[k]["tried"]:
                assert v[k]["accept_rate"] == round(v[k]["accepted"] / v[k]["tried"], 4)
        assert v["tokens"] == {"image": v["image"]["positions"], "other": v["other"]["positions"]}
        assert v["tokens"]["image"] > 0 and v["tokens"]["other"] > 0 and v["runs"] == 2
        assert sum(v["tokens"].values()) == sum(r["spec_new_tokens"] for r, s in zip(c["samples"], samples) if s.image is not None)
        assert f"| {c['id']} | {v['image']['positions']} |" in table
    for path, x in _numbers(res):
        assert math.isfinite(x), path


def test_visual_section_absent_without_the_flag(quick_run):
    _, table, out = quick_run
    res = json.loads((out / "r.json").read_text())
    assert bench.VISUAL_TITLE not in table and res["meta"]["visual"] == {"enabled": False}
    assert all("visual" not in m for c in res["configs"] for m in c["groups"].values())


def test_visual_is_a_noop_on_the_text_suite(models, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = bench.main(
        [
            "--suite",
            "text",
            "--n",
            "1",
            "--target",
            models[0],
            "--drafters",
            "ngram",
            "--strategies",
            "chain",
            "--max-new-tokens",
            "4",
            "--hf",
            "none",
            "--warmup",
            "0",
            "--silent",
            "--visual",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    cap = capsys.readouterr()
    assert [ln for ln in cap.err.splitlines() if "--visual" in ln] == ["--visual: no-op, the text suite has no images"]
    res = json.loads(out.read_text())
    assert res["meta"]["visual"]["enabled"] is False
    assert all("visual" not in m for c in res["configs"] for m in c["groups"].values())
