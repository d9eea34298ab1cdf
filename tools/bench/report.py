"""Reporting: the markdown table printed after a run and the self-contained HTML report."""

from __future__ import annotations

import html as H
import os
import platform

import torch
import transformers

from core.machine import cpu_name
from .peers import markdown as peers_markdown


COLUMNS = [
    "config",
    "tau",
    "acc/step",
    "tok/s AR",
    "tok/s spec",
    "speedup",
    "ideal",
    "exact",
    "HF plain tok/s",
    "HF assisted speedup",
    "HF prompt-lookup speedup",
]


def _f(x, fmt="{:.2f}", none="-"):
    return none if x is None else fmt.format(x)


def _hf_cell(d: dict | None) -> str:
    if not d:
        return "-"
    if d.get("speedup") is None:
        return "failed" if d.get("error") else "skipped"
    cell = f"{d['speedup']:.2f}x"
    if d.get("failed"):
        cell += f" ({d['failed']}/{d['n']} failed)"
    return cell


def table_rows(results: dict) -> list[tuple[str, list[str]]]:
    rows = []
    for c in results["configs"]:
        for g, m in c["groups"].items():
            label = c["id"] if len(c["groups"]) == 1 else f"{c['id']} [{g}]"
            ex = m["exact"]
            speed = _f(m["speedup"], "{:.2f}x")
            if m["new_tokens_ar"] != m["new_tokens_spec"] and m["speedup"] is not None:
                speed += "*"
            hf_plain = "-"
            if m.get("hf_plain_tokens_per_s") is not None:
                hf_plain = f"{m['hf_plain_tokens_per_s']:.1f}"
                if m.get("ar_vs_hf_plain") is not None:
                    hf_plain += f" (AR {m['ar_vs_hf_plain']:.2f}x)"
            elif m.get("hf_plain_error"):
                hf_plain = "failed"
            rows.append(
                (
                    label,
                    [
                        label,
                        _f(m["tau"]),
                        _f(m["accepted_per_step"]),
                        _f(m["tokens_per_s_ar"], "{:.1f}"),
                        _f(m["tokens_per_s_spec"], "{:.1f}"),
                        speed,
                        _f(m["ideal_speedup"], "{:.2f}x"),
                        f"{ex['matched']}/{ex['n']}" if ex else "n/a",
                        hf_plain,
                        _hf_cell(m.get("hf_assisted")),
                        _hf_cell(m.get("hf_prompt_lookup")),
                    ],
                )
            )
    return rows


def markdown_table(results: dict) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|"]
    for _, cells in table_rows(results):
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    notes = [
        "tau = tokens per speculative step (incl. bonus, excl. prefill); acc/step = accepted draft tokens per step "
        "(excl. bonus); speedup = total AR wall / total spec wall (* = AR and spec produced different "
        "token counts; see throughput_ratio); ideal = tau x AR step cost / spec step cost; "
        "HF plain: (AR n.nnx) = our AR tok/s / transformers generate() tok/s."
    ]
    meta = results.get("meta", {})
    if meta.get("env"):
        cpu = meta["env"].get("cpu") or {}
        notes.insert(
            0,
            f"machine: {cpu.get('model', '?')} ({' '.join(cpu.get('flags', [])) or 'no flags read'}), "
            f"{meta['env'].get('torch_threads')} torch threads, dtype {meta.get('dtype')}, "
            f"device {meta.get('device', 'cpu')}; our kernels: {(meta.get('kernels') or {}).get('target')}; "
            f"target forward: {_forward(meta)}; "
            f"transformers baselines on the {(meta.get('kernels') or {}).get('hf_baselines', 'stock')} model",
        )
    bd = meta.get("baseline_dtype")
    if bd and bd != meta.get("dtype"):
        notes.append(
            f"AR in {bd} (same target, interleaved), speculative tok/s over it: "
            + ", ".join(
                f"{c['id']} {_f(m.get('tokens_per_s_ar_baseline_dtype'), '{:.1f}')} tok/s -> "
                f"{_f(m.get('speedup_vs_baseline_dtype'), '{:.2f}x')}"
                for c in results["configs"]
                for m in [c["groups"].get("all") or next(iter(c["groups"].values()))]
            )
        )
    drafters = {c["drafter_label"]: _drafter_forward(c["drafter_forward"]) for c in results["configs"] if c.get("drafter_forward")}
    if drafters:
        notes.append("drafters' products: " + "; ".join(f"{k}: {v}" for k, v in drafters.items()))
    seen = set()
    for c in results["configs"]:
        m = c["groups"].get("all") or next(iter(c["groups"].values()))
        for kind, label in (("hf_assisted", "HF assisted"), ("hf_prompt_lookup", "HF prompt-lookup")):
            d = m.get(kind) or {}
            msg = d.get("error") or d.get("skipped")
            if msg and (label, msg) not in seen:
                seen.add((label, msg))
                who = c["drafter_label"] if kind == "hf_assisted" else f"T={c['temperature']:g}"
                notes.append(f"{label} ({who}) {'failed' if d.get('error') else 'skipped'}: {msg}")
        for dv in c["divergences"][:3]:
            notes.append(f"{c['id']}: spec left AR on {dv['sample']}: {dv.get('text') or dv['position']}")
    split = [
        "| config | draft ms/step | verify ms/step | other ms/step | spec step ms | AR step ms | prefill s (spec) | trace overhead |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in results["configs"]:
        m = c["groups"].get("all") or next(iter(c["groups"].values()))
        t = m["time_per_step_spec_ms"]
        split.append(
            f"| {c['id']} | {_f(t['draft'])} | {_f(t['verify'])} | {_f(t['other'])} | "
            f"{_f(m['step_cost_spec_ms'])} | {_f(m['step_cost_ar_ms'])} | "
            f"{_f(m['time_split_spec_s']['prefill'], '{:.3f}')} | {_f(m['trace_overhead'], '{:.2%}')} |"
        )
    return (
        "\n".join(lines)
        + "\n\n"
        + "\n".join("- " + n for n in notes)
        + "\n\n"
        + "Time per speculative step (all samples):\n\n"
        + "\n".join(split)
        + "\n"
        + visual_section(results)
        + bound_section(results)
    )


def bound_section(results: dict) -> str:
    """Plain decoding against the bandwidth bound, with the peers (``--peers``) beside ours."""
    b = results.get("bound")
    if not b and not results.get("peers"):
        return ""
    first = {}
    ours: dict = {"spec": {}}
    for c in results["configs"]:
        m = c["groups"].get("all") or next(iter(c["groups"].values()))
        first = first or m
        ours["spec"][c["id"]] = m
    ours["plain"] = first.get("tokens_per_s_ar")
    head = "\nPlain decoding against its bound"
    if b:
        head += (
            f": a plain step reads {b['bytes_per_step'] / 1e9:.2f} GB of weights, this machine reads "
            f"{b['bandwidth_gbs']} GB/s (torch sum over 512 MiB{_reads(b)}), so no decoder exceeds {b['bound_tok_s']} tok/s"
        )
    return head + ":\n\n" + peers_markdown(results.get("peers") or [], ours, b) + "\n" + past_prompt(first, b)


def past_prompt(m: dict, b: dict | None) -> str:
    """Our plain decoding without its prompt: tok/s include the prefill, which reads the weights once
    for many tokens and is bound by the arithmetic, not by the bandwidth (a long prompt on a CPU
    costs seconds). The bound is one of decoding steps: this line is ours against it alone."""
    step = m.get("step_cost_ar_ms")
    if not (b and step):
        return ""
    tps = 1e3 / step
    prefill = (m.get("time_split_ar_s") or {}).get("prefill")
    wall = m.get("wall_s_ar")
    part = f" (the prompts took {prefill / wall:.0%} of its time)" if prefill and wall else ""
    screened = b.get("bytes_per_step_screened")
    reads = f" Its step reads {screened / 1e9:.2f} GB: the lm_head's int8 copy in place of the head (core/screen.py)." if screened else ""
    return (
        f"\nPast the prompt our plain step costs {step:.1f} ms: {tps:.2f} tok/s, {tps / b['bound_tok_s']:.0%} of the bound{part}.{reads}\n"
        + with_prompts(m, b)
    )


def with_prompts(m: dict, b: dict) -> str:
    """Our plain decoding, prompts included, against the bound of whole runs (``bound.run_bound``): each
    prompt's multiply-adds at the fastest product rate measured here, then a read of the weights a token."""
    r = b.get("run") or {}
    tps = m.get("tokens_per_s_ar")
    if not (r.get("tok_s") and tps):
        return ""
    return (
        f"With their prompts ({r['prompt_tokens']} tokens at {r['macs_per_token'] / 1e9:.2f} G multiply-adds each; the "
        f"target's products reach {r['product_rate_gmacs']:g} G/s here, so the prefills take at least "
        f"{r['prefill_floor_s']:.2f} s and the {r['new_tokens']} tokens' steps {r['steps_floor_s']:.2f} s), these runs cannot "
        f"exceed {r['tok_s']:.2f} tok/s: our plain decoding reached {tps / r['tok_s']:.0%} of that.\n"
    )


VISUAL_TITLE = "Acceptance on image-dependent vs other tokens"


def _share(c: dict) -> str:
    if not c["tried"]:
        return "-"
    return f"{c['accepted']}/{c['tried']} = {100 * c['accepted'] / c['tried']:.0f}%"


def visual_section(results: dict) -> str:
    """``--visual``: per configuration, acceptance of drafted positions on image-dependent vs other
    output tokens (counts pooled over samples and repeats); empty without ``--visual``."""
    vmeta = (results.get("meta") or {}).get("visual") or {}
    if vmeta.get("note"):
        return "\n" + vmeta["note"] + "\n"
    rows = []
    for c in results["configs"]:
        m = c["groups"].get("all") or next(iter(c["groups"].values()))
        v = m.get("visual")
        if not v:
            continue
        im, ot = v["image"], v["other"]
        rows.append(
            f"| {c['id']} | {im['positions']} | {_share(im)} | {_f(im['node_rate'], '{:.2f}')} | "
            f"{_f(im['tau_like'])} | {ot['positions']} | {_share(ot)} | {_f(ot['node_rate'], '{:.2f}')} | "
            f"{_f(ot['tau_like'])} |"
        )
    if not rows:
        return ""
    head = [
        "| config | image-dep. tokens | drafted positions accepted | per node | tau-like "
        "| other tokens | drafted positions accepted | per node | tau-like |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    note = (
        f"Image-dependent = the argmax changes without the image or KL(with || without) > "
        f"{vmeta.get('threshold_nats', 1.0):g} nat (core/visual.py); counts pooled over samples with an image "
        f"and repeats; tau-like = 1 / (1 - share of the class's tokens that came from drafts). "
        f"Cost: {vmeta.get('seconds', 0):.2f} s of target forwards ({vmeta.get('computed', 0)} outputs computed, "
        f"{vmeta.get('reused', 0)} reused)."
    )
    return f"\n{VISUAL_TITLE} (all samples):\n\n" + "\n".join(head + rows) + "\n\n" + note + "\n"


def write_html(results: dict, path: str, plotlyjs: str = "inline") -> None:
    import plotly.graph_objects as go  # optional: only the HTML report needs plotly

    rows = table_rows(results)
    labels = [label for label, _ in rows]
    metrics = [m for c in results["configs"] for m in c["groups"].values()]
    figs = []
    f1 = go.Figure()
    f1.add_bar(name="achieved", x=labels, y=[m["speedup"] for m in metrics])
    f1.add_bar(name="ideal (from step costs)", x=labels, y=[m["ideal_speedup"] for m in metrics])
    f1.add_bar(name="HF assisted", x=labels, y=[(m.get("hf_assisted") or {}).get("speedup") for m in metrics])
    f1.add_bar(name="HF prompt lookup", x=labels, y=[(m.get("hf_prompt_lookup") or {}).get("speedup") for m in metrics])
    f1.add_hline(y=1.0, line_dash="dot", line_color="gray")
    f1.update_layout(title="Speedup over autoregressive decoding (same target)", barmode="group", yaxis_title="speedup (x)")
    figs.append(f1)
    f2 = go.Figure()
    f2.add_bar(name="tau: tokens per speculative step (incl. bonus, excl. prefill)", x=labels, y=[m["tau"] for m in metrics])
    f2.add_bar(name="accepted draft tokens per step (excl. bonus)", x=labels, y=[m["accepted_per_step"] for m in metrics])
    f2.update_layout(title="Acceptance", barmode="group")
    figs.append(f2)
    f3 = go.Figure()
    for label, m in zip(labels, metrics):
        acc = m["acceptance_by_depth"]
        if acc:
            f3.add_scatter(name=label, x=list(range(1, len(acc) + 1)), y=acc, mode="lines+markers")
    f3.update_layout(
        title="Acceptance by depth: P(accepted >= d | drafted to depth >= d)",
        xaxis_title="draft depth d",
        yaxis_title="acceptance",
        yaxis_range=[0, 1.05],
    )
    figs.append(f3)
    f4 = go.Figure()
    for part in ("draft", "verify", "other"):
        f4.add_bar(name=part, x=labels, y=[m["time_per_step_spec_ms"][part] for m in metrics])
    f4.add_scatter(
        name="AR step (verify)",
        x=labels,
        y=[m["step_cost_ar_ms"] for m in metrics],
        mode="markers",
        marker=dict(symbol="line-ew-open", size=36, color="black", line=dict(width=3)),
    )
    f4.update_layout(title="Time per speculative step (ms)", barmode="stack", yaxis_title="ms")
    figs.append(f4)
    parts = []
    for i, f in enumerate(figs):
        inc = (True if plotlyjs == "inline" else "cdn") if i == 0 else False
        parts.append(f.to_html(full_html=False, include_plotlyjs=inc))
    head = "".join(f"<th>{H.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{H.escape(x)}</td>" for x in cells) + "</tr>" for _, cells in rows)
    meta = results["meta"]
    info = (
        f"target <code>{H.escape(str(meta['target']))}</code>, dtype {H.escape(meta['dtype'])}, "
        f"device {H.escape(meta.get('device', 'cpu'))}, "
        f"suite {H.escape(meta['suite'])} ({meta['n_samples']} samples), "
        f"max_new_tokens {meta['max_new_tokens']}, repeats {meta['repeats']}, warm-up {meta['warmup']}, "
        f"torch threads {meta['env']['torch_threads']}, {H.escape(meta['created'])}"
    )
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>SpecScope benchmark</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}} td:first-child{{text-align:left}}</style>
</head><body><h1>SpecScope benchmark</h1><p>{info}</p>
<table><tr>{head}</tr>{body}</table>
<p>tau = tokens per speculative step (incl. bonus, excl. prefill). acc/step = accepted draft tokens per step (excl. bonus).
speedup = total AR wall time / total speculative wall time, AR and speculative runs interleaved per sample.
ideal = tau &times; (AR step cost) / (speculative step cost), from the measured per-step times.</p>
{''.join(parts)}</body></html>"""
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc)


def environment() -> dict:
    """What the numbers were measured on: versions, threads, the CPU."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
    }


def cpu_info() -> dict:
    """The CPU's model name and the instruction-set flags that decide which kernels are fast."""
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo") as f:
            line = next((ln for ln in f if ln.startswith("flags")), "")
        have = set(line.split(":", 1)[-1].split())
        flags = [f for f in ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile") if f in have]
    except OSError:
        pass
    return {"model": cpu_name(), "flags": flags}


# =========================================================================================


def _reads(b: dict) -> str:
    """How the bandwidth was read: the fastest of the samples taken between the runs, where there are several."""
    r = b.get("bandwidth_samples_gbs") or []
    return f"; the fastest of {len(r)} reads between the runs: {', '.join(f'{x:g}' for x in r)}" if len(r) > 1 else ""


def _drafter_forward(f: dict) -> str:
    """How a drafter ran: its forward, its products, and whether they ran on rounded copies of its
    weights (``core.drafters.base.rounded_copies``: its acceptance may be lower than its own)."""
    how = (
        f"compiled forward, {f.get('products')} products"
        if f.get("path") == "compiled"
        else f"eager forward ({f.get('kernels') or 'stock'})"
    )
    if f.get("rounded"):
        return f"{how}: {' and '.join(f['rounded'])} copies of its weights (--draft-weights own: its own)"
    return f"{how}: its own weights" + (" (--draft-weights own)" if f.get("weights") == "own" else "")


def _head(f: dict) -> str:
    """The lm_head's screen (core/screen.py) as the compiled forward settled it."""
    h = f.get("head")
    if not h:
        return ""
    if not h.get("screen_rows"):
        return f"; the full lm_head ({h.get('why_not') or 'not screened'})"
    return f"; greedy steps of {', '.join(map(str, h['screen_rows']))} rows screen the lm_head (int8 copy, exact first and second: core/screen.py)"


def _forward(meta: dict) -> str:
    f = meta.get("forward") or {}
    if f.get("target") == "compiled":
        ps = f.get("prefill_seconds") or {}
        timed = f"; {ps['eager']:.2f} s eager, {ps['compiled']:.2f} s compiled" if "eager" in ps and "compiled" in ps else ""
        return f"compiled (core/compiled.py, {f.get('compile_s') or 0:.0f} s to compile; prompt on the {f.get('prefill', 'eager')} forward{timed}{_head(f)})"
    why = f" (compiled forward failed: {f['compile_failed']})" if f.get("compile_failed") else ""
    return f"{f.get('target', 'eager')}{why}"
