"""Integration audit: does the target compute the same thing inside a speculative verify as in
plain decoding?

Lossless speculative decoding rests on one property: the target's logits for a verify row equal
its logits for the same token at the same absolute position in plain decoding (same prefix).
Wrong positions (a lost M-RoPE offset, an off-by-one depth), a wrong tree mask or a stale KV
slot break it silently: outputs often stay identical for a while, because greedy acceptance
only needs the argmax to survive. The audit measures the property directly.

For every input it runs plain decoding and speculative decoding (each shape) with
``engine.generate(on_phase=...)``, collecting the "verify" events (tokens fed, logical positions,
logits of every row). A row feeds a token at absolute position ``pos``; its output index is
``j = pos - prompt_length`` (the step's base = the root's position, plus the row's tree depth).
A speculative row is *comparable* when the tokens on its tree path equal the plain output at
those indices (its context is then exactly the plain run's); it is compared with the plain
run's row that fed output token ``j``. Reported per input and shape:

    max_abs_diff        largest |logit difference| over comparable rows (float32: ~1e-5)
    rows_compared       comparable rows (multi-token rows included: every accepted node)
    argmax_flips        comparable rows whose argmax differs
    first_divergence    first output index where the outputs differ (None: identical), with the
                        plain target's top-2 margin there: a tiny margin is a float near-tie
                        (benign in bf16), a large one is a bug

    rel_diff            max_abs_diff / the largest |logit| of the compared plain rows: logits of
                        random tiny models are ~0.5, a 7B model's ~30, so the scale is divided out

``ok`` = outputs identical and ``rel_diff <= TOLERANCE[dtype]`` (float32 1e-4, float16 1e-2,
bfloat16 5e-2). The tolerances are gauges, not proofs: float32 verify batches differ from one-token
forwards only by summation order (measured: tiny models rel_diff < 1e-6, the default pair 3e-7),
bf16 rounding moves them more (the default pair with the MSD head: rel_diff 3e-3 to 5e-3, so the
bf16 tolerance is 10x what was measured, to be recalibrated on other models). A position bug moves them by far
more (a +1 shift of multi-token rows on the tiny llava / qwen2_vl / llama: rel_diff 1.2e-3 to
2.3e-3, over 1000x the engine's).
"""

from __future__ import annotations

import json

import torch

from .divergence import explain_traces
from .drafters.base import DraftSpec
from .engine import generate

TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}  # on rel_diff (see the docstring)


def default_inputs(n: int = 2) -> list[tuple[str, object]]:
    """The app's held-out example scenes (assets/examples), image ones first."""
    from .images import load_image
    from .paths import ROOT

    folder = ROOT / "assets" / "examples"
    examples = json.loads((folder / "examples.json").read_text())["examples"]
    return [(e["prompt"], load_image(str(folder / e["file"]))) for e in examples[:n]]


def _collect(target, prompt, image, drafter, spec, max_new_tokens):
    events = []

    def on_phase(name, seconds, **data):
        if name == "verify":
            events.append((list(data["tokens"]), data["positions"].tolist(), data["logits"].detach().float().cpu()))

    tr = generate(target, prompt, image, drafter, spec, max_new_tokens=max_new_tokens, on_phase=on_phase)
    return tr, events


def _margin(row: torch.Tensor) -> float:
    top = torch.topk(row, 2).values
    return float(top[0] - top[1])


@torch.inference_mode()
def audit_one(target, drafter, prompt: str, image, spec: DraftSpec, max_new_tokens: int = 32, plain=None) -> dict:
    """One input, one shape. ``plain``: a (trace, events) pair from an earlier plain run."""
    plain_tr, plain_ev = plain or _collect(target, prompt, image, None, DraftSpec(), max_new_tokens)
    T = plain_tr.prompt_tokens
    ref: dict[int, torch.Tensor] = {}
    for _, pos, logits in plain_ev:
        ref[pos[0] - T] = logits[0]
    po = plain_tr.output
    spec_tr, spec_ev = _collect(target, prompt, image, drafter, spec, max_new_tokens)
    so = spec_tr.output
    max_diff, compared, flips, multi, scale = 0.0, 0, 0, 0, 0.0
    for step, (tokens, pos, logits) in zip(spec_tr.steps, spec_ev):
        k1 = pos[0] - T  # output index of the root
        if so[: k1 + 1] != po[: k1 + 1]:
            break  # the contexts differ from here on
        for r in range(len(tokens)):
            j = pos[r] - T
            if r:
                path = _path(step.parents, r - 1)
                if [step.tokens[x] for x in path] != po[k1 + 1 : k1 + 1 + len(path)]:
                    continue
            if j not in ref:
                continue
            d = float((logits[r] - ref[j]).abs().max())
            max_diff = max(max_diff, d)
            scale = max(scale, float(ref[j].abs().max()))
            compared += 1
            multi += len(tokens) > 1
            flips += int(logits[r].argmax() != ref[j].argmax())
    dtype = str(target.dtype).replace("torch.", "")
    why = explain_traces(plain_tr, spec_tr)  # the page's and the bench's classifier
    div = why.position
    margin = None
    if div is not None and div - 1 in ref:
        margin = round(_margin(ref[div - 1]), 6)
    tol = TOLERANCE.get(dtype, 1e-4)
    rel = max_diff / scale if scale > 0 else 0.0
    return {
        "shape": _label(spec),
        "tokens": len(so),
        "rows_compared": compared,
        "multi_token_rows": multi,
        "max_abs_diff": max_diff,
        "rel_diff": rel,
        "argmax_flips": flips,
        "identical": div is None,
        "first_divergence": div,
        "margin_at_divergence": margin,
        "tolerance": tol,
        "divergence": why.kind,
        "divergence_text": why.text,
        "ok": div is None and rel <= tol,
    }


def _path(parents: list[int], node: int) -> list[int]:
    out = []
    while node >= 0:
        out.append(node)
        node = parents[node]
    return out[::-1]


def _label(spec: DraftSpec) -> str:
    from .replay import shape_label

    return shape_label(spec)


def audit(target, drafter, inputs: list[tuple[str, object]], shapes: list[DraftSpec], max_new_tokens: int = 32) -> dict:
    """Every input x shape (one plain run per input). Returns {"ok", "max_abs_diff", "rows": [...]}."""
    rows = []
    for i, (prompt, image) in enumerate(inputs):
        plain = _collect(target, prompt, image, None, DraftSpec(), max_new_tokens)
        for spec in shapes:
            r = audit_one(target, drafter, prompt, image, spec, max_new_tokens, plain=plain)
            rows.append({"input": i, "prompt": prompt[:60], **r})
    return {
        "target": getattr(target, "name", ""),
        "drafter": getattr(drafter, "name", None),
        "dtype": str(target.dtype).replace("torch.", ""),
        "ok": all(r["ok"] for r in rows),
        "max_abs_diff": max((r["max_abs_diff"] for r in rows), default=0.0),
        "rel_diff": max((r["rel_diff"] for r in rows), default=0.0),
        "rows": rows,
    }


def format_report(rep: dict) -> str:
    lines = [
        f"audit: target {rep['target']}, drafter {rep['drafter']}, {rep['dtype']}: "
        f"{'OK' if rep['ok'] else 'FLAGGED'} (max |logit diff| {rep['max_abs_diff']:.3g}, "
        f"relative {rep['rel_diff']:.3g})"
    ]
    for r in rep["rows"]:
        div = "identical" if r["identical"] else r["divergence_text"]
        lines.append(
            f"  input {r['input']} {r['shape']:<16s} rows {r['rows_compared']:>4d} "
            f"(multi-token {r['multi_token_rows']:>4d})  max diff {r['max_abs_diff']:.3g} (rel {r['rel_diff']:.2g})  "
            f"argmax flips {r['argmax_flips']}  {div}  {'ok' if r['ok'] else 'FLAG'}"
        )
    return "\n".join(lines)
