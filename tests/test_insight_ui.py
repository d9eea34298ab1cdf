"""The Insight wiring of the app (issue 19): which tokens need the image (Run, Compare), the offline
shape sweep by replay (Compare) and the speedup map (Teach). Handlers are called directly, on the
embedded default pair (target + MSD head), with short answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core import api
from core import visual as V
from core.paths import ASSETS, DEFAULT_TARGET, SHIPPED_DRAFTERS


@pytest.fixture(autouse=True, scope="module")
def default_pair_committed():
    """The embedded default pair is committed: missing, or failing to load, fails these tests
    (a skip would hide it)."""
    missing = [str(p) for p in (DEFAULT_TARGET / "config.json", SHIPPED_DRAFTERS["msd"]) if not p.exists()]
    if missing:
        pytest.fail(f"the committed default pair (assets/target, assets/drafters/msd) is missing: {missing}", pytrace=False)


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a request

IMAGE = str(ASSETS / "examples" / "scene_describe_1.png")
PROMPT = "Describe the image."
RUN = dict(
    image=IMAGE,
    prompt=PROMPT,
    target="default",
    drafter="msd",
    custom_drafter="",
    mode="multimodal",
    dtype="float32",
    strategy="chain",
    gamma=4,
    branching="2,2",
    depth=3,
    top_k=3,
    budget=12,
    temperature=0,
    top_p=1,
    max_new_tokens=20,
    seed=0,
    ar_baseline=True,
    repeats=1,
)


@pytest.fixture
def calls(monkeypatch):
    """Records, in order, every timed comparison and every visual-dependence computation."""
    log: list[tuple[str, object]] = []
    real_vd, real_cmp = api.visual_dependence, api.compare

    def vd(*a, **kw):
        res = real_vd(*a, **kw)
        log.append(("visual", res))
        return res

    def cmp(*a, **kw):
        res = real_cmp(*a, **kw)
        log.append(("compare", res))
        return res

    monkeypatch.setattr(api, "visual_dependence", vd)
    monkeypatch.setattr(api, "compare", cmp)
    return log


def run_last(**kw):
    from ui.tabs import run as run_tab

    return list(run_tab.run_decoding(**dict(RUN, **kw)))[-1]


def _value(x):
    return x.get("value") if isinstance(x, dict) and x.get("__type__") == "update" else x


def saved_trace(out):
    from core.trace import Trace

    return Trace.from_json(Path(out["download"]).read_text())


# ====================================================================== Run tab
def test_toggle_off_computes_nothing(calls):
    out = run_last(visual=False)
    assert "Done" in out["status"]
    assert [k for k, _ in calls] == ["compare"]  # no visual-dependence forwards
    assert out["visual"]["visible"] is False and _value(out["visual"]) == ""
    assert isinstance(out["answer"], list) and out["answer"]  # the plain coloured answer
    assert "visual" not in out["result"] and saved_trace(out).visual is None


def test_toggle_on_marks_exactly_the_image_dependent_tokens(calls):
    out = run_last(visual=True)
    assert "Done" in out["status"]
    # computed once, after the timed runs (never inside a timed region)
    assert [k for k, _ in calls] == ["compare", "visual"]
    tr = saved_trace(out)
    assert tr.visual is not None and tr.visual == calls[-1][1]  # stored in the downloaded trace
    html = _value(out["visual"])
    assert out["visual"]["visible"] is True and out["answer"]["visible"] is False
    marked = [int(i) for i in re.findall(r'class="ss-tok ss-vis" data-i="(\d+)"', html)]
    dependent = [r["index"] for r in tr.visual["tokens"] if r["image_dependent"]]
    assert dependent and marked == dependent  # exactly those, in order
    assert len(re.findall(r'data-i="\d+"', html)) == len(tr.output)  # every token shown once
    assert html.count('class="ss-eye"') == len(dependent) + 1  # one eye per marked token (+ the legend's)
    assert re.findall(r'data-i="(\d+)"[^>]*>[^<]*<span class="ss-eye"', html) == [str(i) for i in dependent]
    for r in tr.visual["tokens"]:  # KL and argmax change on hover
        if r["image_dependent"]:
            span = re.search(rf'data-i="{r["index"]}"[^>]*title="([^"]*)"', html).group(1)
            assert f"{r['kl']:.2f} nats" in span
            assert ("argmax changes without the image" in span) == r["changed"]
    # the split line is split_acceptance's
    split = V.split_acceptance(tr)
    pct = lambda c: "n/a" if c["accept_rate"] is None else f"{100 * c['accept_rate']:.0f}%"
    line = f"image-dependent tokens: {pct(split['image_dependent'])} of drafts accepted; other tokens: {pct(split['other'])}"
    assert f'<div class="ss-split">{line}</div>' in html
    assert out["result"]["visual"]["split"] == split
    assert f"{tr.visual['cost_s']:.2f} s" in html  # the measured seconds are shown


def test_toggle_on_without_an_image_is_a_note(calls):
    out = run_last(image=None, visual=True, ar_baseline=False, max_new_tokens=8)
    assert "Done" in out["status"]
    assert not any(k == "visual" for k, _ in calls)
    assert out["visual"]["visible"] is True and "no image" in _value(out["visual"])
    assert "ss-vis" not in _value(out["visual"]).replace("ss-vis-note", "")
    assert saved_trace(out).visual is None


# ====================================================================== Compare tab
@pytest.mark.parametrize("flagged", [False, True], ids=["quiet", "a-round-flagged"])
def test_compare_columns_are_split_acceptance_per_row(calls, monkeypatch, flagged):
    from ui.tabs import compare as C

    if flagged:  # as when machine noise puts a round above its bound: the "note" column follows
        monkeypatch.setattr(C.render, "bound_note", lambda cmp: "a round above its bound")

    labels = [c.label for c in C.compare_configs() if c.drafter in ("ngram", "msd")][:3]
    out = list(C.run_compare(IMAGE, PROMPT, "default", "float32", labels, 20, 0, 1, True))[-1]
    assert "Done" in out["status"]
    table = _value(out["table"])
    # the two columns sit side by side; a "note" column may follow them when a round was
    # flagged above its bound (machine noise), so they are found by name
    heads = table["headers"]
    i = heads.index("acc. image-dep.")
    assert heads[i : i + 2] == ["acc. image-dep.", "acc. other"] and heads[i + 2 :] in ([], ["note"])
    compares = [r for k, r in calls if k == "compare"]
    visuals = [r for k, r in calls if k == "visual"]
    assert len(compares) == len(labels) == len(table["data"])
    base = compares[0].plain_traces[0]
    assert all(r.spec_trace.output == base.output for r in compares)  # T=0: every row reproduces it
    assert len(visuals) == 1  # so: classified once per input
    # the classification is the baseline output's own (recomputed independently here)
    from core.images import load_image

    pair = api.load_pair("default", None, dtype="float32")
    again = V.visual_dependence(pair.target, PROMPT, load_image(IMAGE), base.output)
    assert [r["image_dependent"] for r in again["tokens"]] == [r["image_dependent"] for r in visuals[0]["tokens"]]
    for row, res in zip(table["data"], compares):
        split = V.split_acceptance(res.spec_trace, visuals[0])
        assert row[i : i + 2] == [C.rate_cell(split["image_dependent"]), C.rate_cell(split["other"])], row
        for cell, c in zip(row[i : i + 2], (split["image_dependent"], split["other"])):
            if c["accept_rate"] is not None:
                assert cell.startswith(f"{100 * c['accept_rate']:.0f}% (") and cell.endswith(f"/{c['tried']})")


def test_compare_without_the_toggle_has_no_extra_columns(calls):
    from ui.tabs import compare as C

    out = list(C.run_compare(IMAGE, PROMPT, "default", "float32", [C.compare_configs()[0].label], 8, 0, 1))[-1]
    assert "acc. other" not in _value(out["table"])["headers"]
    assert not any(k == "visual" for k, _ in calls)


def test_replay_sweep_is_ranked_and_its_chain_tau_is_a_real_runs():
    from core.drafters import DraftSpec
    from core.images import load_image
    from core.sampling import SamplingConfig
    from ui.tabs import compare_replay as C

    out = list(C.run_replay(IMAGE, PROMPT, "default", "float32", "msd", 16, 0))[-1]
    assert "Replayed" in out["status"] and "predicted (replay + measured cost model)" in out["status"]
    table = out["table"]
    assert "predicted (replay + measured cost model)" in table["label"] and "estimate" not in table["label"]
    data = table["value"]["data"]
    assert [r[0] for r in data] == list(range(1, len(C.SWEEP_SHAPES) + 1))
    assert sorted(r[1] for r in data) == sorted(C.shape_name(x) for x in C.SWEEP_SHAPES)
    assert not any(":" in r[1] and "dynamic" not in r[1] for r in data)  # the page's names, not "chain:8"
    speedups = [float(r[4].rstrip("×")) for r in data]
    assert speedups == sorted(speedups, reverse=True)  # ranked, best first
    pair = api.load_pair("default", "msd", dtype="float32")
    img = load_image(IMAGE)
    for g in (2, 4):
        real = api.run(pair, PROMPT, img, DraftSpec("chain", gamma=g), SamplingConfig(), 16)
        row = next(r for r in data if r[1] == f"chain γ={g}")
        assert row[2] == round(real.summary()["tau"], 2), (g, row, real.summary()["tau"])


def test_replay_sweep_at_a_temperature_is_labelled_an_estimate():
    from ui.tabs import compare_replay as C

    out = list(C.run_replay(IMAGE, PROMPT, "default", "float32", "ngram", 8, 0.8))[-1]
    assert "estimate" in out["table"]["label"] and "Estimate" in out["status"]
    assert out["table"]["value"]["headers"][-1] == "τ estimate (T>0)"


# ====================================================================== Teach tab
def test_teach_map_marks_the_runs_own_point():
    from core import costs, speedup_model as M
    from ui.tabs import teach

    out = teach.teach_start(IMAGE, PROMPT, "msd", "chain")
    assert "Decoded" in out["status"]
    fig, tr = out["map"], out["state"]
    star = next(t for t in fig.data if t.name == "this run")
    point = M.run_point(tr, costs.target_curve(api.load_pair("default", "msd").target))
    assert list(star.x) == [point["gamma"]] and list(star.y) == pytest.approx([point["alpha"]])
    failed = teach.teach_start(IMAGE, "", "msd", "chain")  # an empty prompt: an error leaves no map
    assert "⚠" in failed["status"] and failed["map"] is None and failed["state"] is None


def test_marking_follows_the_dependence_rule_not_one_of_its_halves():
    """A token is marked when its argmax changes OR its KL is above the threshold (core/visual.py),
    exactly as its record says; hover texts escape quotes."""
    from ui import render
    from ui.synthetic import synthetic_trace

    tr = synthetic_trace(6, seed=1, strategy="chain")
    n = len(tr.output)
    recs = []
    for i in range(n):
        kind = i % 3  # 0: KL only, 1: argmax only, 2: neither
        recs.append(
            {
                "index": i,
                "token": tr.output[i],
                "kl": 2.5 if kind == 0 else 0.1,
                "argmax_img": tr.output[i],
                "argmax_noimg": tr.output[0] if kind == 1 else tr.output[i],
                "changed": kind == 1,
                "image_dependent": kind in (0, 1),
            }
        )
    tr.visual = {"tokens": recs, "n_dependent": sum(r["image_dependent"] for r in recs), "cost_s": 0.5, "threshold_nats": 1.0}
    html = render.visual_panel_html(tr, V.split_acceptance(tr))
    marked = [int(i) for i in re.findall(r'class="ss-tok ss-vis" data-i="(\d+)"', html)]
    assert marked == [i for i in range(n) if i % 3 in (0, 1)]
    assert f'data-dependent="{len(marked)}"' in html and "0.50 s" in html
    assert api.split_line(V.split_acceptance(tr)) in html
    tr.vocab[str(tr.output[0])] = 'say "hi"'
    out = render.visual_answer_html(tr)  # "argmax without the image: say "hi"" in a title
    assert "&quot;hi&quot;" in out and re.search(r'title="[^"]*"hi', out) is None
