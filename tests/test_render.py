"""ui/render/ and ui/synthetic.py: pure rendering of decoding traces, no model.

Checks what the figures *show* (node / edge counts, colours, positions, labels),
not only that they build; every figure is also re-validated by plotly.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re

import plotly.graph_objects as go
import pytest

from core.api import Comparison
from core.trace import SCHEMA, Step, Trace
from ui import render as R
from ui.synthetic import STRATEGIES, synthetic_trace, timed


# ---------------------------------------------------------------- helpers
def _valid(fig: go.Figure) -> go.Figure:
    """Re-build with plotly's full validation (render.py builds unvalidated for speed)."""
    return go.Figure(json.loads(fig.to_json()))


def _traces(fig, meta):
    return [t for t in fig.data if t.meta == meta]


def _nodes(fig) -> dict[str, list[tuple[int, float, float]]]:
    """status -> [(node id, x, y)] from the hover markers (node id -1 = root, n = added)."""
    out = {}
    for t in _traces(fig, "nodes"):
        out[t.name] = list(zip(t.customdata, t.x, t.y))
    return out


def _col(fig) -> dict[float, int]:
    """x position -> column index (= depth): every depth 0..max has a node."""
    xs = sorted({x for v in _nodes(fig).values() for _, x, _ in v})
    return {x: i for i, x in enumerate(xs)}


def _chips(fig) -> list:
    """The node chips of a tree figure (its annotations but the key of shortened labels)."""
    return [a for a in fig.layout.annotations if a.name != R.TREE_KEY]


def _edge_count(fig) -> int:
    return sum(list(t.x).count(None) for t in _traces(fig, "edges"))


def _step(tokens, parents, accepted, rejected, token, kind, q=None, p=None, committed=None):
    depths = []
    for par in parents:
        depths.append(1 if par < 0 else depths[par] + 1)
    return Step(
        tokens=tokens,
        parents=parents,
        depths=depths,
        q=q or [0.5] * len(tokens),
        p=p,
        accepted=accepted,
        rejected=rejected,
        token=token,
        kind=kind,
        committed=committed if committed is not None else [tokens[i] for i in accepted] + [token],
        t_draft=0.001,
        t_verify=0.01,
        t_other=0.0,
    )


def _manual_trace(steps, first=0, vocab=None) -> Trace:
    out = [first] + [t for s in steps for t in s.committed]
    vocab = vocab or {}
    return Trace(
        first_token=first,
        steps=steps,
        output=out,
        t_prefill=0.02,
        wall_s=0.1,
        vocab={str(k): v for k, v in vocab.items()},
        text="".join(vocab.get(t, "") for t in out),
    )


TRACES = {s: synthetic_trace(24, seed=3, strategy=s) for s in STRATEGIES}
BIG = synthetic_trace(6, seed=5, strategy="dynamic", budget=60, top_k=10)


# ---------------------------------------------------------------- synthetic traces are valid
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_synthetic_trace_is_consistent(strategy):
    tr = synthetic_trace(40, seed=1, strategy=strategy)
    assert len(tr.steps) == 40 and tr.schema == SCHEMA
    flat = [tr.first_token]
    for s in tr.steps:
        n = len(s.tokens)
        assert len(s.parents) == len(s.depths) == len(s.q) == len(s.p) == n
        for i, par in enumerate(s.parents):
            assert -1 <= par < i
            assert s.depths[i] == (1 if par < 0 else s.depths[par] + 1)
        # accepted = a real root-to-node path
        for j, i in enumerate(s.accepted):
            assert s.parents[i] == (-1 if j == 0 else s.accepted[j - 1])
        # rejected = children of the root or of accepted nodes, never accepted themselves
        assert not set(s.rejected) & set(s.accepted)
        assert all(s.parents[i] in {-1, *s.accepted} for i in s.rejected)
        last = s.accepted[-1] if s.accepted else -1
        has_kids = any(par == last for par in s.parents)
        assert s.kind == ("correction" if has_kids else "bonus")
        assert s.token not in [s.tokens[i] for i in range(n) if s.parents[i] == last]
        assert s.committed == [s.tokens[i] for i in s.accepted] + [s.token]
        flat += s.committed
        if strategy == "ar":
            assert n == 0 and s.kind == "bonus"
        if strategy == "chain":
            assert s.parents == list(range(-1, n - 1))
    assert tr.output == flat
    assert all(str(t) in tr.vocab for t in tr.output)
    assert tr.text == "".join(tr.vocab[str(t)] for t in tr.output)
    assert tr.wall_s >= tr.t_prefill + sum(s.t_verify for s in tr.steps)


def test_synthetic_same_seed_same_output_and_rich_vocab():
    a = synthetic_trace(seed=7, strategy="ar", max_new_tokens=60)
    for strat in ("dynamic", "chain"):
        b = synthetic_trace(seed=7, strategy=strat, max_new_tokens=60)
        assert b.output == a.output and len(b.output) == 60
        assert len(b.steps) < len(a.steps)  # speculation needs fewer forwards
        assert b.stop_reason == "length"
    pieces = set(a.vocab.values())
    assert {"\n", " ", ""} <= pieces
    assert any(any(ord(c) > 0x3000 for c in p) for p in pieces)
    with pytest.raises(ValueError):
        synthetic_trace(strategy="medusa")


def test_synthetic_budget_60():
    assert all(len(s.tokens) == 60 for s in BIG.steps)


# ---------------------------------------------------------------- tree figure
@pytest.mark.parametrize("strategy", ["dynamic", "chain"])
def test_tree_figure_nodes_edges_colours(strategy):
    tr = TRACES[strategy]
    for k in (0, 5, len(tr.steps) - 1):
        s = tr.steps[k]
        fig = _valid(R.tree_figure(tr, k))
        n = len(s.tokens)
        nodes = _nodes(fig)
        assert sum(len(v) for v in nodes.values()) == n + 2  # + root + added token
        assert len(_chips(fig)) == n + 2  # one chip per node
        assert _edge_count(fig) == n + 1  # a tree: one edge per non-root node
        assert sorted(i for i, _, _ in nodes.get("accepted", [])) == sorted(s.accepted)
        assert sorted(i for i, _, _ in nodes.get("rejected", [])) == sorted(s.rejected)
        assert len(nodes.get("unreached", [])) == n - len(s.accepted) - len(s.rejected)
        for name, color in [("accepted", R.GREEN), ("rejected", R.RED), ("unreached", R.GREY)]:
            for t in _traces(fig, "nodes"):
                if t.name == name:
                    assert t.marker.color == color
        col = _col(fig)
        added = nodes[s.kind]
        assert len(added) == 1 and col[added[0][1]] == len(s.accepted) + 1  # drawn after the last accepted node
        assert [t.marker.color for t in _traces(fig, "nodes") if t.name == s.kind] == [R.BLUE if s.kind == "bonus" else R.ORANGE]
        # one column per depth, left to right; the root leftmost
        for status in ("accepted", "rejected", "unreached"):
            for i, x, _ in nodes.get(status, []):
                assert col[x] == s.depths[i]
        assert col[nodes["root"][0][1]] == 0
        assert f"Step {k + 1}: accepted {len(s.accepted)} of {n} drafted" in fig.layout.title.text
        # chips carry the status colour too
        chip_colors = {a.bgcolor for a in _chips(fig)}
        assert R.SLATE in chip_colors and (R.GREEN in chip_colors or not s.accepted)
        assert fig.layout.height >= R.TREE_HEIGHT
        assert not fig.layout.xaxis.visible and not fig.layout.yaxis.visible


def test_tree_root_label_is_last_committed_token():
    tr = TRACES["dynamic"]
    for k in (0, 1, 9):
        prev = tr.first_token if k == 0 else tr.steps[k - 1].committed[-1]
        fig = R.tree_figure(tr, k)
        root_chip = [a for a in _chips(fig) if a.bgcolor == R.SLATE]
        assert len(root_chip) == 1
        assert R.esc(R.visible(tr.vocab[str(prev)], fig.layout.meta["maxlen"])) in root_chip[0].text


def test_tree_tidy_layout():
    """Leaves evenly spaced (distinct integer slots); parents centred on their children."""
    for tr, k in [(TRACES["dynamic"], 4), (BIG, 2)]:
        s = tr.steps[k]
        fig = R.tree_figure(tr, k)
        pos = {i: (x, y) for v in _nodes(fig).values() for i, x, y in v}
        n = len(s.tokens)
        last = s.accepted[-1] if s.accepted else -1
        kids = {}
        for i, par in enumerate(s.parents):
            kids.setdefault(par, []).append(i)
        kids.setdefault(last, []).append(n)
        leaves = sorted(-pos[i][1] for i in pos if i not in kids)
        assert leaves == list(range(len(leaves)))  # 0, 1, 2, ... (y grows downward)
        for par, ch in kids.items():
            ys = sorted(pos[c][1] for c in ch)
            assert pos[par][1] == pytest.approx((ys[0] + ys[-1]) / 2)
        # the committed path (accepted ... added) sits on the first child of each node
        for par, ch in kids.items():
            if par == -1 or par in s.accepted:
                first = max(ch, key=lambda c: pos[c][1])
                assert first == n or first in s.accepted


def test_tree_60_nodes_readable():
    s = BIG.steps[1]
    fig = _valid(R.tree_figure(BIG, 1))
    nodes = _nodes(fig)
    assert sum(len(v) for v in nodes.values()) == 62 and _edge_count(fig) == 61
    leaves = -min(y for v in nodes.values() for _, _, y in v) + 1
    height = fig.layout.height
    assert height >= R.TREE_HEIGHT
    assert (height - 120) / leaves >= 18  # >= 18 px per row of chips
    assert min(a.font.size for a in _chips(fig)) >= 9
    # no two chips of the same column overlap
    cols = {}
    for v in nodes.values():
        for _, x, y in v:
            cols.setdefault(x, []).append(y)
    for ys in cols.values():
        ys.sort()
        assert all(b - a >= 1 for a, b in zip(ys, ys[1:]))
    # explicit height wins
    assert R.tree_figure(BIG, 1, height=420).layout.height == 420
    assert len(s.tokens) == 60


def test_tree_ar_step_and_one_node_chain():
    ar = TRACES["ar"]
    fig = _valid(R.tree_figure(ar, 3))
    nodes = _nodes(fig)
    assert set(nodes) == {"root", "bonus"} and _edge_count(fig) == 1
    assert _col(fig)[nodes["bonus"][0][1]] == 1
    assert "no draft" in fig.layout.title.text
    # one drafted node, accepted, then a bonus
    tr = _manual_trace([_step([5], [-1], [0], [], 6, "bonus")], first=4, vocab={4: "A", 5: " b", 6: "c"})
    fig = _valid(R.tree_figure(tr, 0))
    nodes = _nodes(fig)
    assert [i for i, _, _ in nodes["accepted"]] == [0] and _col(fig)[nodes["bonus"][0][1]] == 2
    assert "accepted 1 of 1 drafted" in fig.layout.title.text
    # one drafted node, rejected, then a correction at depth 1
    tr = _manual_trace([_step([5], [-1], [], [0], 6, "correction")], first=4)
    fig = R.tree_figure(tr, 0)
    nodes = _nodes(fig)
    assert _col(fig)[nodes["correction"][0][1]] == 1 and [i for i, _, _ in nodes["rejected"]] == [0]
    texts = [a.text for a in _chips(R.tree_figure(tr, 0))]
    assert "<5>" in " ".join(texts).replace("&lt;", "<").replace("&gt;", ">")  # unknown id: shown as <id>


def test_tree_unicode_and_whitespace_tokens():
    vocab = {1: "\n", 2: " ", 3: "", 4: "<b>", 5: " 猫", 6: "\t🐈", 7: "x" * 40, 9: "root"}
    s = _step(
        [1, 2, 3, 4, 5, 6, 7],
        [-1, -1, 0, 0, 2, 2, 4],
        [0, 2],
        [1, 3],
        7,
        "correction",
        q=[0.9, 0.05, 0.8, 0.1, 0.3, 0.2, 0.5],
        p=[0.95, 0.0, 0.9, 0.01, 0.2, 0.1, 0.0],
    )
    tr = _manual_trace([s], first=9, vocab=vocab)
    fig = _valid(R.tree_figure(tr, 0))
    texts = " ".join(a.text for a in _chips(fig))
    for want in ("↵", "␣", "∅", "&lt;b&gt;", "␣猫", "⇥🐈", "…"):
        assert want in texts
    assert "<b>&lt;" not in texts.replace("<b>&lt;b&gt;</b>", "")  # token "<b>" is escaped, not markup
    hover = " ".join(h for t in _traces(fig, "nodes") for h in t.hovertext)
    assert "'\\n'" in hover and "' '" in hover and "&lt;b&gt;" in hover
    assert "draft q = 0.900" in hover and "target p = 0.950" in hover


def test_tree_index_clamped_and_empty_trace():
    tr = TRACES["chain"]
    last = len(tr.steps)
    assert f"Step {last}:" in R.tree_figure(tr, 10_000).layout.title.text
    assert "Step 1:" in R.tree_figure(tr, -5).layout.title.text
    for empty in (synthetic_trace(0, seed=1), Trace()):
        fig = _valid(R.tree_figure(empty, 0))
        assert not _traces(fig, "nodes")
        assert "No decoding steps" in fig.layout.annotations[0].text


def test_dict_and_json_round_trip_render_identically():
    tr = TRACES["dynamic"]
    d = tr.to_dict()
    back = Trace.from_json(tr.to_json())
    ref = R.tree_figure(tr, 6).to_json()
    assert R.tree_figure(d, 6).to_json() == ref
    assert R.tree_figure(back, 6).to_json() == ref
    assert R.tree_figure(tr.to_json(), 6).to_json() == ref
    assert R.highlighted_tokens(back) == R.highlighted_tokens(tr)
    assert R.rejected_html(d) == R.rejected_html(tr)
    assert R.summary_markdown(back) == R.summary_markdown(tr)
    with pytest.raises(ValueError):
        R.as_trace({"schema": "other"})
    with pytest.raises(TypeError):
        R.as_trace(42)


# ---------------------------------------------------------------- text views
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_highlighted_tokens(strategy):
    tr = TRACES[strategy]
    ht = R.highlighted_tokens(tr)
    assert len(ht) == len(tr.output)
    assert "".join(t for t, _ in ht) == tr.text
    assert ht[0][1] == "prefill"
    labels = [lb for _, lb in ht]
    assert set(labels) <= set(R.COLOR_MAP)
    assert labels.count("accepted draft") == sum(len(s.accepted) for s in tr.steps)
    assert labels.count("bonus") == sum(s.kind == "bonus" for s in tr.steps)
    assert labels.count("correction") == sum(s.kind == "correction" for s in tr.steps)
    if strategy == "ar":
        assert set(labels) == {"prefill", "bonus"}


def test_highlighted_tokens_length_cut_and_empty():
    tr = synthetic_trace(seed=2, strategy="dynamic", max_new_tokens=37)
    assert len(R.highlighted_tokens(tr)) == len(tr.output) == 37
    assert R.highlighted_tokens(Trace()) == []
    assert R.highlighted_tokens(synthetic_trace(0)) == [(TRACES["ar"].vocab[str(synthetic_trace(0).first_token)], "prefill")]


def test_rejected_html():
    tr = TRACES["dynamic"]
    h = R.rejected_html(tr)
    body = h.split("<tbody>")[1]
    assert body.count("<tr>") == len(tr.steps)
    assert body.count('class="ss-t ss-r"') == sum(len(s.rejected) for s in tr.steps)
    assert body.count('class="ss-t ss-a"') == sum(len(s.accepted) for s in tr.steps)
    assert body.count("ss-correction") == sum(s.kind == "correction" for s in tr.steps)
    assert "<s>" not in body.replace("</s", "")  # the "<s>" piece is escaped
    short = R.rejected_html(tr, max_rows=5)
    assert short.split("<tbody>")[1].count("<tr>") == 5 and f"5 of {len(tr.steps)} rows" in short
    only = R.rejected_html(tr, only_rejections=True)
    assert only.split("<tbody>")[1].count("<tr>") == sum(bool(s.rejected) for s in tr.steps)
    assert "No decoding steps" in R.rejected_html(Trace())
    assert "No rejected drafts" in R.rejected_html(TRACES["ar"], only_rejections=True)


# ---------------------------------------------------------------- charts
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_accept_length_figure(strategy):
    tr = TRACES[strategy]
    fig = _valid(R.accept_length_figure(tr))
    drafted, acc = fig.data
    assert list(acc.y) == [len(s.accepted) for s in tr.steps]
    assert list(drafted.y) == [max(s.depths, default=0) for s in tr.steps]
    assert all(a <= d for a, d in zip(acc.y, drafted.y))
    assert fig.layout.barmode == "overlay" and acc.marker.color == R.GREEN
    assert fig.layout.shapes[0].y0 == pytest.approx(tr.summary()["accepted_per_step"], abs=1e-3)


def test_depth_figure():
    tr = TRACES["chain"]
    fig = _valid(R.depth_figure(tr))
    bars, line = fig.data
    reach = tr.summary()["acceptance_by_depth"]
    assert list(bars.y) == reach[: len(bars.y)]
    assert list(bars.x) == list(range(1, len(bars.y) + 1))
    deepest = max(d for d, r in enumerate(reach, 1) if r)  # one empty depth at most, past the deepest
    assert len(bars.y) == min(len(reach), deepest + 1)
    assert all(0 <= v <= 1 for v in line.y) and line.y[0] == pytest.approx(bars.y[0])
    assert list(bars.y) == sorted(bars.y, reverse=True)  # reaching deeper is rarer
    ar = _valid(R.depth_figure(TRACES["ar"]))
    assert not ar.data and "autoregressive" in ar.layout.annotations[0].text


def test_time_figure():
    tr = TRACES["dynamic"]
    fig = _valid(R.time_figure(tr))
    pie = fig.data[0]
    split = tr.summary()["time_split"]
    assert list(pie.labels)[:4] == ["prefill", "draft", "verify", "other"]
    assert list(pie.values)[:4] == [split[k] for k in ("prefill", "draft", "verify", "other")]
    assert sum(pie.values) == pytest.approx(tr.wall_s, rel=0.011)  # untracked < 1% is folded away
    slow = Trace.from_dict({**tr.to_dict(), "wall_s": tr.wall_s * 1.5})
    pie = _valid(R.time_figure(slow)).data[0]
    assert list(pie.labels)[-1] == "untracked" and sum(pie.values) == pytest.approx(slow.wall_s)
    assert f"{tr.wall_s:.2f} s" in fig.layout.annotations[0].text
    assert not _valid(R.time_figure(Trace())).data
    # a thin slice is named in the hole, not beside the ring (two stacked there over the title
    # on a phone): no outside text under R.SMALL, every label still named on the figure
    thin = Trace.from_dict({**tr.to_dict(), "wall_s": tr.wall_s * 1.02})
    f = _valid(R.time_figure(thin))
    shares = dict(zip(f.data[0].labels, (v / sum(f.data[0].values) for v in f.data[0].values)))
    assert 0 < shares["untracked"] < R.SMALL
    for lb, txt in zip(f.data[0].labels, f.data[0].text):
        assert (txt == "") == (shares[lb] < R.SMALL), (lb, txt)
    assert "untracked" in " ".join(a.text for a in f.layout.annotations)


def compared(spec: Trace, plain: Trace, **recorded) -> Comparison:
    """One round of ``plain`` against ``spec`` (``plain`` also the identity reference); ``recorded``
    overrides what a real comparison would have measured (its speedups)."""
    return dataclasses.replace(Comparison.of([plain], [spec], plain), **recorded)


def test_summary_markdown():
    spec = synthetic_trace(seed=4, strategy="dynamic", max_new_tokens=80)
    ar = synthetic_trace(seed=4, strategy="ar", max_new_tokens=80)
    sm = spec.summary()
    md = R.summary_markdown(spec)
    assert "tokens per speculative step (incl. bonus, excl. prefill)" in md and f"{sm['tau']:.2f}" in md
    assert "accepted draft tokens per step (excl. bonus)" in md and f"{sm['accepted_per_step']:.2f}" in md
    assert str(sm["target_forwards"]) in md and "speedup" not in md
    c = compared(spec, ar)
    md = R.summary_markdown(spec, c)
    assert "identical output" in md and "differ" not in md
    assert f"{c.speedup:.2f}× (1 run)" in md and c.speedup == pytest.approx(ar.wall_s / spec.wall_s, rel=1e-3)  # equal lengths
    assert f"| autoregressive tokens / s | {ar.summary()['tokens_per_s']:.1f} |" in md
    assert R.summary_markdown(timed(synthetic_trace(seed=4, strategy="dynamic", max_new_tokens=80), seed=4)) == md  # from the trace's own
    other = synthetic_trace(seed=5, strategy="ar", max_new_tokens=80)
    md = R.summary_markdown(spec, compared(spec, other))
    assert "outputs differ" in md and "differs from token" in md
    sampled = Trace.from_dict({**spec.to_dict(), "meta": {"temperature": 0.7}})
    assert "expected when sampling" in R.summary_markdown(sampled, compared(sampled, other))
    assert "| new tokens | 0 |" in R.summary_markdown(Trace())
    assert "drafter's weights" not in R.summary_markdown(spec)  # its own weights: nothing to say
    rounded = Trace.from_dict({**spec.to_dict(), "meta": {**spec.meta, "drafter_rounding": ["int8"]}})
    assert "| drafter's weights | int8 copies" in R.summary_markdown(rounded)  # read back from a saved trace too


def test_compare_figure():
    rows = [
        dict(config="AR", tau=1.0, speedup=1.0, tokens_per_s=40.0, identical=True),
        dict(config="n-gram · chain 5", tau=2.6, speedup=1.7, tokens_per_s=68.0, identical=True),
        dict(config="tree 60 bf16", tau=3.4, speedup=2.0, tokens_per_s=80.0, identical=False),
    ]
    fig = _valid(R.compare_figure(rows))
    tau, spd = fig.data
    # horizontal bars, the names on the y axis (two short lines each), first row on top
    assert tau.orientation == "h" and list(tau.x) == [1.0, 2.6, 3.4] and list(spd.x) == [1.0, 1.7, 2.0]
    assert list(tau.y) == ["AR", "n-gram<br>chain 5", "⚠ tree 60 bf16"]
    assert fig.layout.yaxis.autorange == "reversed"
    # separate axes: τ (tokens) in the upper panel, the speedup (×) with its 1.0 line below it
    assert tau.yaxis == "y" and spd.yaxis == "y2" and spd.xaxis == "x2"
    assert fig.layout.shapes[0].x0 == 1.0 and fig.layout.shapes[0].xref == "x2"
    assert fig.layout.yaxis2.domain[1] < fig.layout.yaxis.domain[0]
    assert "2.00×" in spd.text
    # the axes run far enough past the longest bar for its number
    assert fig.layout.xaxis2.range[1] >= 2 * 2.0 and fig.layout.xaxis.range[1] > 3.4
    # a slowdown is amber, and the per-round range is written after the median
    slow = _valid(R.compare_figure([dict(config="x", tau=2.0, speedup=0.8, speedups=[0.7, 0.8, 0.95], tokens_per_s=1.0, identical=True)]))
    assert slow.data[1].marker.color[0] != R.BLUE
    # ... right of the dashed 1× line, which would cross it as bar text (the bar ends before the line)
    (label,) = [a for a in slow.layout.annotations if a.name == "slowdown"]
    assert "0.80×" in label.text and "0.70–0.95" in label.text and not slow.data[1].text[0]
    assert label.x == 1.0 and label.xref == "x2" and label.xanchor == "left" and label.xshift > 0 and label.y == "x"
    assert not [a for a in fig.layout.annotations if a.name == "slowdown"]  # no slowdown: bar text only
    assert not _valid(R.compare_figure([])).data
    # the figure grows with the rows: 40 px a row per panel
    assert R.compare_figure(rows * 3).layout.height > fig.layout.height


# ---------------------------------------------------------------- empty traces, speed
@pytest.mark.parametrize("empty", [Trace(), synthetic_trace(0, seed=2)], ids=["blank", "prefill-only"])
def test_every_function_on_empty_traces(empty):
    for fig in (R.tree_figure(empty, 0), R.accept_length_figure(empty), R.depth_figure(empty)):
        fig = _valid(fig)
        assert not [t for t in fig.data if t.type == "bar" or t.meta == "nodes"]
        assert fig.layout.annotations  # a message instead of a blank plot
    tf = _valid(R.time_figure(empty))
    if empty.wall_s > 0:  # prefill only: no draft / verify slices
        assert "prefill" in tf.data[0].labels and "verify" not in tf.data[0].labels
    else:
        assert not tf.data and "No timing" in tf.layout.annotations[0].text
    assert len(R.highlighted_tokens(empty)) == len(empty.output)
    assert "No decoding steps" in R.rejected_html(empty)
    assert "| target forwards (incl. prefill) |" in R.summary_markdown(empty, compared(empty, empty))


def test_every_view_of_a_200_step_trace_builds():
    tr = synthetic_trace(200, seed=9, strategy="dynamic", budget=60, top_k=10)
    ar = synthetic_trace(200, seed=9, strategy="ar")
    for f in (lambda: R.tree_figure(tr, 100), lambda: R.accept_length_figure(tr), lambda: R.depth_figure(tr), lambda: R.time_figure(tr)):
        _valid(f())
    assert len(R.highlighted_tokens(tr)) == len(tr.output)
    assert "<table" in R.rejected_html(tr) and "speedup" in R.summary_markdown(tr, compared(tr, ar))


def test_tree_subtitle_when_the_output_ends_inside_the_accepted_path():
    tr = synthetic_trace(12, seed=3, strategy="chain")
    k = next(i for i, s in enumerate(tr.steps) if len(s.accepted) >= 2)
    s = tr.steps[k]
    full = R.tree_figure(tr, k).layout.title.subtitle.text
    assert "as a <b>" in full and "discarded" not in full
    # EOS was the first accepted token: the rest of the accepted path is discarded (trace schema 2)
    s.accepted, s.discarded, s.committed = s.accepted[:1], s.accepted[1:], list(s.committed[:1])
    cut = R.tree_figure(tr, k).layout.title.subtitle.text
    assert "ended after 1 accepted token" in cut and "discarded" in cut and "as a <b>" not in cut


# ---------------------------------------------------------------- discarded nodes, the step to open, label layout
def _discarding_trace():
    """Step 1: 3 drafted, the target agrees with all 3, but EOS after the first: 1 accepted, 2 discarded."""
    s0 = _step([5, 6], [-1, 0], [0], [1], 7, "correction", committed=[5, 7])
    s1 = _step([8, 9, 10], [-1, 0, 1], [0], [], 11, "bonus", committed=[8])
    s1.discarded = [1, 2]
    s2 = _step([12, 13], [-1, 0], [0], [1], 14, "correction", committed=[12, 14])
    return _manual_trace([s0, s1, s2], first=4, vocab={i: f" t{i}" for i in range(4, 15)})


def test_discarded_nodes_are_drawn_as_discarded_not_accepted():
    tr = _discarding_trace()
    s = tr.steps[1]
    assert R.node_status(s) == ["accepted", "discarded", "discarded"]
    fig = _valid(R.tree_figure(tr, 1))
    nodes = _nodes(fig)
    assert sorted(i for i, _, _ in nodes["accepted"]) == [0]
    assert sorted(i for i, _, _ in nodes["discarded"]) == [1, 2, 3]  # + the bonus, not kept either
    assert s.kind not in nodes  # no blue bonus: it was not committed
    for t in _traces(fig, "nodes"):
        if t.name == "discarded":
            assert t.marker.color == R.DISCARDED != R.GREEN
    struck = [a for a in _chips(fig) if a.bgcolor == R.DISCARDED]
    assert len(struck) == 3 and all(a.text.startswith("<s>") for a in struck)
    legend = [t.name for t in fig.data if t.meta == "legend"]
    assert any(n.startswith("discarded") for n in legend)
    assert "Step 2: accepted 1 of 3 drafted" in fig.layout.title.text
    assert "discarded" in fig.layout.title.subtitle.text
    col = _col(fig)
    assert [col[x] for _, x, _ in sorted(nodes["discarded"])] == [2, 3, 4]  # along the path, then the added token


def test_most_informative_step_is_the_longest_accepted_path_earliest_on_ties():
    mk = lambda acc: _step(
        [1, 2, 3],
        [-1, 0, 1],
        list(range(acc)),
        [acc] if acc < 3 else [],
        9,
        "bonus" if acc == 3 else "correction",
    )
    assert R.most_informative_step(_manual_trace([mk(1), mk(2), mk(0), mk(2), mk(1)])) == 1
    assert R.most_informative_step(_manual_trace([mk(0), mk(3)])) == 1
    assert R.most_informative_step(Trace()) == 0
    # discarded tokens do not count: the committed path decides
    assert R.most_informative_step(_discarding_trace()) == 0


def _chip_boxes(fig):
    """(x0, x1, y0, y1) in px of every chip, from the figure's own layout (its assumed plot width)."""
    lay = fig.layout
    height, top, bottom = lay.height, lay.margin.t, lay.margin.b
    y0, y1 = lay.yaxis.range
    px_y = (height - top - bottom) / (y1 - y0)
    px_x = (
        lay.meta["width"] / (lay.xaxis.range[1] - lay.xaxis.range[0])
        if lay.xaxis.range[1] - lay.xaxis.range[0] < lay.meta["width"]
        else 1.0
    )
    boxes = []
    for a in _chips(fig):
        text = html.unescape(re.sub(r"<[^>]+>", "", a.text))
        w, h = R.chip_size(text, a.font.size)
        if a.textangle == -90:  # a label stood on end
            w, h = h, w
        cx, cy = a.x * px_x, a.y * px_y
        boxes.append((cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2, text))
    return boxes


def _overlaps(boxes):
    return [
        (a[4], b[4]) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]
    ]


@pytest.mark.parametrize("compact", [False, True], ids=["desktop", "phone"])
@pytest.mark.parametrize("budget", [30, 40, 50])
def test_tree_labels_never_overlap_at_30_to_50_nodes(budget, compact):
    tr = synthetic_trace(4, seed=11, strategy="dynamic", budget=budget, top_k=6, depth=7)
    for k in range(len(tr.steps)):
        fig = _valid(R.tree_figure(tr, k, compact=compact))
        assert len(_chips(fig)) == len(tr.steps[k].tokens) + 2
        assert not _overlaps(_chip_boxes(fig)), (budget, k)
        assert min(a.font.size for a in _chips(fig)) >= 9


def test_long_tokens_are_shortened_and_the_full_token_is_in_the_hover():
    long = " " + "triangle" * 3
    s = _step([5, 6, 7], [-1, 0, 1], [0, 1], [2], 8, "correction")
    tr = _manual_trace([s], first=4, vocab={4: "A", 5: long, 6: " yellow", 7: long, 8: " x"})
    fig = _valid(R.tree_figure(tr, 0, compact=True))
    texts = [html.unescape(re.sub(r"<[^>]+>", "", a.text)) for a in _chips(fig)]
    assert any(t.endswith("…") for t in texts)
    assert not _overlaps(_chip_boxes(fig))
    hover = " ".join(h for t in _traces(fig, "nodes") for h in t.hovertext)
    assert repr(long) in hover


@pytest.mark.parametrize("compact", [False, True], ids=["desktop", "phone"])
def test_shortened_labels_are_spelled_out_under_the_tree(compact):
    """A touch screen has no hover: every label drawn shortened ("␣tr…") is written in full in a
    key under the tree (once per token, in reading order), inside the figure and above the legend;
    a tree whose labels are whole has no key."""
    long = " " + "triangle" * 3
    s = _step([5, 6, 7, 9], [-1, 0, 1, 1], [0, 1], [2, 3], 8, "correction")
    tr = _manual_trace([s], first=4, vocab={4: "A", 5: long, 6: " yellow", 7: long, 8: " x", 9: "\n" + "hexagon" * 2})
    fig = _valid(R.tree_figure(tr, 0, compact=compact))
    key = [a for a in fig.layout.annotations if a.name == R.TREE_KEY]
    assert len(key) == 1 and fig.layout.meta["key"] >= 2
    text = html.unescape(re.sub(r"<[^>]+>", "", key[0].text.replace("<br>", " ")))
    assert text.startswith("In full:")
    shortened = [html.unescape(re.sub(r"<[^>]+>", "", a.text)) for a in _chips(fig)]
    shortened = [t for t in shortened if t.endswith("…")]
    assert shortened
    for t in shortened:
        assert f"{t} = " in text  # the label as drawn, then the token
    assert text.count("␣" + "triangle" * 3) == 1 and "↵" + "hexagon" * 2 in text  # each token once, whole
    width = fig.layout.meta["width"]
    for line in key[0].text.split("<br>"):  # the key fits the plot's width
        assert len(html.unescape(re.sub(r"<[^>]+>", "", line))) * 0.62 * key[0].font.size <= width, line
    # under the plot, in the bottom margin; the legend below it
    assert key[0].yref == "paper" and key[0].y == 0 and key[0].yanchor == "top"
    lines = key[0].text.count("<br>") + 1
    assert fig.layout.margin.b >= lines * 1.3 * key[0].font.size + 40
    plot_h = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    assert -fig.layout.legend.y * plot_h >= lines * 1.3 * key[0].font.size
    # whole labels: no key
    short = _manual_trace([_step([5, 6], [-1, 0], [0], [1], 8, "correction")], first=4, vocab={4: "A", 5: " a", 6: " b", 8: " c"})
    fig = R.tree_figure(short, 0, compact=compact)
    assert not [a for a in fig.layout.annotations if a.name == R.TREE_KEY] and fig.layout.meta["key"] == 0


def test_tree_layout_fits_columns_side_by_side():
    cols = [["root"], [" triangle", " yellow"], [" a" * 10], ["x"]]
    maxlen, fs, widths, centres = R.tree_layout(cols, 240, 13)
    for (w0, c0), (w1, c1) in zip(zip(widths, centres), zip(widths[1:], centres[1:])):
        assert c0 + w0 / 2 + R.GAP_PX <= c1 - w1 / 2 + 1e-6
    assert centres[-1] + widths[-1] / 2 <= 240 + 1e-6 and maxlen < 14


def test_hover_labels_are_dark_on_light():
    fig = R.tree_figure(TRACES["dynamic"], 3)
    for t in _traces(fig, "nodes"):
        assert t.hoverlabel.bgcolor == "#ffffff" and t.hoverlabel.font.color == "#0f172a"


def test_summary_reports_median_and_range():
    spec = synthetic_trace(seed=4, strategy="dynamic", max_new_tokens=40)
    ar = synthetic_trace(seed=4, strategy="ar", max_new_tokens=40)
    md = R.summary_markdown(spec, compared(spec, ar, speedup=1.9, speedups=[1.7, 1.9, 2.2]))
    assert "1.90× (1.70–2.20 over 3 runs)" in md and "slower" not in md
    md = R.summary_markdown(spec, compared(spec, ar, speedup=0.8, speedups=[0.7, 0.8, 0.9]))
    assert "slower than plain decoding" in md


@pytest.mark.parametrize("compact", [False, True], ids=["desktop", "phone"])
def test_a_long_chain_keeps_its_words_readable(compact):
    """An auto chain of 16 tokens: labels stand on end rather than being cut to two letters."""
    words = [
        " There",
        " are",
        " 8",
        " shapes",
        ".",
        " A",
        " large",
        " purple",
        " circle",
        " at",
        " the",
        " top",
        " left",
        ".",
        " A",
        " large",
        " red",
    ]
    vocab = {i: w for i, w in enumerate(words)}
    s = _step(list(range(1, 16)), [-1] + list(range(15)), list(range(15)), [], 16, "bonus")
    tr = _manual_trace([s], first=0, vocab=vocab)
    fig = _valid(R.tree_figure(tr, 0, compact=compact))
    assert fig.layout.meta["rotated"] and fig.layout.meta["maxlen"] >= 10
    texts = [html.unescape(re.sub(r"<[^>]+>", "", a.text)) for a in _chips(fig)]
    assert "␣purple" in texts and "␣circle" in texts
    assert not _overlaps(_chip_boxes(fig))
    # a short chain stays upright
    short = _manual_trace([_step([1, 2, 3], [-1, 0, 1], [0, 1, 2], [], 4, "bonus")], first=0, vocab=vocab)
    assert not R.tree_figure(short, 0).layout.meta["rotated"]


def test_a_speedup_range_fits_the_tables_range_column_however_noisy():
    """The compare table's range column holds eleven characters ("(0.73–9.99)"): a noisy run's range
    past 10x ("(0.73–11.24)") broke over two lines there (the desktop screen test, on a busy machine).
    Speedups are written with three significant digits."""
    spec = synthetic_trace(seed=4, strategy="dynamic", max_new_tokens=40)
    ar = synthetic_trace(seed=4, strategy="ar", max_new_tokens=40)
    for rounds in ([0.73, 1.9, 11.24], [9.996, 10.4, 12.0], [1.5, 150.2, 99.96], [0.5, 0.9]):
        cell = R.speed_cell(compared(spec, ar, speedups=rounds, speedup=sorted(rounds)[len(rounds) // 2]))
        assert re.fullmatch(r"[\d.]+× \([\d.]+–[\d.]+\)", cell), cell
        assert all(len(word) <= 11 for word in cell.split()), cell
    assert R.speed_cell(compared(spec, ar, speedups=[0.73, 11.24], speedup=1.9)) == "1.90× (0.73–11.2)"
    assert "1.90× (1.70–2.20 over 3 runs)" == R.speedup_text(1.9, [1.7, 1.9, 2.2])
