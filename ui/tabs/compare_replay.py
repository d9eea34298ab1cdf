"""The Compare tab's offline shape sweep: one recorded plain target run, then the chosen drafter
scored on every shape of ``SWEEP_SHAPES`` by replay, priced with the measured cost curve
(``core.api.replay_sweep``): predictions, not measurements. Public API: /replay_sweep."""

from __future__ import annotations

import gradio as gr

from core import api
from core.api import InputError, SamplingConfig

from .. import render
from ..inputs import checked_inputs, read_image, resolve_drafter
from ..messages import esc, guarded, status_html
from ..session import gpu, stop_scope
from ..views import cleared

OUTPUTS = ("status", "table")
SWEEP_SHAPES = ("chain:2", "chain:4", "chain:6", "chain:8", "tree:3x2x1", "tree:2x2x2", "dynamic:5/4/20", "dynamic:8/4/20")
COLUMNS = ["#", "shape", "replay τ", "predicted tok/s", "predicted speedup"]
WIDTHS = ["36px", "190px", "70px", "86px", "90px"]
LABEL = "predicted (replay + measured cost model)"


def shape_name(shape: str) -> str:
    """A replay shape (``core.replay``'s "chain:8", "tree:3x2x1", "dynamic:8/4/20") named as the
    rest of the page names shapes: "chain γ=8", "static tree 3,2,1", "dynamic tree: depth 8,
    top-4, 20 nodes"."""
    kind, _, arg = str(shape).partition(":")
    if kind == "chain":
        return f"chain γ={arg}"
    if kind == "tree":
        return "static tree " + arg.replace("x", ",")
    if kind == "dynamic" and arg.count("/") == 2:
        d, k, b = arg.split("/")
        return f"dynamic tree: depth {d}, top-{k}, {b} nodes"
    return str(shape)


def replay_table(rows: list[dict], sampling: bool = False):
    """The ranked sweep (``core.replay.rank`` rows, best first). At T > 0 the τ estimate along the
    recorded path is added and every number is labelled an estimate."""
    cols = COLUMNS + (["τ estimate (T>0)"] if sampling else [])
    data = []
    for i, r in enumerate(rows, 1):
        tok_s = r.get("predicted_tok_s")
        row = [
            i,
            shape_name(r["shape"]),
            round(r["tau"], 2),
            round(tok_s, 1) if tok_s is not None else None,
            f"{r['predicted_speedup']:.2f}×" if r.get("predicted_speedup") is not None else None,
        ]
        if sampling:
            row.append(round(r["tau_estimate"], 2) if r.get("tau_estimate") is not None else None)
        data.append(row)
    label = f"Shapes ranked by speedup, {LABEL}" + (": an estimate at T > 0" if sampling else "")
    widths = WIDTHS + (["96px"] if sampling else [])
    shown = render.table_value(cols, data, {2: 2, 3: 1, 5: 2})  # replay τ, predicted tok/s, τ estimate
    return gr.update(value=shown, label=label, visible=bool(data), column_widths=widths)


@gpu
@guarded("replay sweep", lambda: cleared(OUTPUTS, table=replay_table([])))
def run_replay(image, prompt, target, dtype, drafter, max_new_tokens, temperature, request: gr.Request = None):
    """Record one plain target run of the input, then score the chosen drafter on every shape of
    ``SWEEP_SHAPES`` without running the target again, priced with the measured cost curve.
    Predictions, not measurements."""
    with stop_scope(request):
        prompt, target, max_new, _, temp = checked_inputs(prompt, target, dtype, max_new_tokens, temperature)
        name = resolve_drafter(drafter, None) if drafter != "custom" else None
        if name is None:
            raise InputError("pick a drafter to sweep (n-gram, LayerSkip or a trained drafter)")
        img = read_image(image)
        sampling = SamplingConfig(temperature=temp, seed=0)
        yield {
            "status": status_html(f"Recording one plain target run, then replaying {len(SWEEP_SHAPES)} shapes…", "busy"),
            "table": replay_table([]),
        }
        pair = api.load_pair(target, name, dtype=dtype)
        sweep = api.replay_sweep(pair, prompt, img, list(SWEEP_SHAPES), sampling, max_new)
        rows = sweep["rows"]
        best = rows[0]
        plain_tok_s = sweep["tokens"] / best["ar_s"] if best.get("ar_s") else 0.0
        msg = (
            f"Replayed {len(rows)} shapes for <b>{esc(name)}</b> against one recorded run of "
            f"{sweep['tokens']} tokens in {sweep['seconds']:.1f} s (the target was not run again). Best: "
            f"<b>{esc(shape_name(best['shape']))}</b>, τ {best['tau']:.2f}, {best['predicted_speedup']:.2f}× "
            f"{LABEL}; plain decoding priced at {plain_tok_s:.1f} tok/s from the cost curve the page's "
            "measured runs calibrate."
        )
        if not sampling.greedy:
            msg += (
                " <b>Estimate:</b> at T > 0 the recorded greedy output is one path; "
                "τ estimate = 1 + expected accepted tokens per step along it."
            )
        if sweep["mismatches"]:
            msg += f" {sweep['mismatches']} near-tie position(s) where teacher forcing differs from the run."
        yield {"status": status_html(msg, "ok" if sampling.greedy else "warn"), "table": replay_table(rows, not sampling.greedy)}
