"""Aggregation: the runs of a configuration pooled into its metrics (per sample group), and
transformers' baselines next to them. Per-run numbers come from ``measure.run_record``."""

from __future__ import annotations

import math

from .configs import Config
from .suites import groups_of


def total(runs: list[dict], key: str) -> float:
    """The sum of one number over run records."""
    return sum(x[key] for x in runs)


def _r(x, nd=4):
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return round(float(x), nd)


def _ratio(a, b):
    return a / b if b else None


def by_position(tried: list[int], ok: list[int]) -> dict:
    """vLLM's two acceptance numbers, from our counts, so that the peers' table compares like with
    like: per speculative step that drafted (``tried[0]``: a model-free drafter may find nothing to
    propose), ``mean_accepted_length`` = 1 + accepted draft tokens per such step, and
    ``acceptance_by_position`` = the share of those steps whose draft was accepted at least to
    position d (vLLM's ``num_accepted_tokens_per_pos / num_drafts``). ``acceptance_by_depth`` is the
    conditional one (per step that drafted to depth d). ``sum(ok)`` is every accepted draft token
    (a step that accepted a tokens counts at depths 1..a)."""
    drafts = tried[0] if tried else 0
    if not drafts:
        return {"mean_accepted_length": None, "acceptance_by_position": []}
    return {"mean_accepted_length": _r(1 + sum(ok) / drafts), "acceptance_by_position": [_r(o / drafts) for o in ok]}


def aggregate(records: list[dict], hf: list[dict] | None, temperature: float) -> dict:
    ar = [x for r in records for x in r["ar"]]
    sp = [x for r in records for x in r["spec"]]
    ar_wall, sp_wall = total(ar, "wall_s"), total(sp, "wall_s")
    ar_tok, sp_tok = total(ar, "new_tokens"), total(sp, "new_tokens")
    steps = total(sp, "steps")
    depth = max((len(x["depth_tried"]) for x in sp), default=0)
    tried = [sum(x["depth_tried"][d] for x in sp if d < len(x["depth_tried"])) for d in range(depth)]
    ok = [sum(x["depth_ok"][d] for x in sp if d < len(x["depth_ok"])) for d in range(depth)]
    tau = _ratio(sp_tok - sum(1 for x in sp if x["new_tokens"]), steps)  # core.trace.tau, pooled
    c_ar = _ratio(total(ar, "verify_s"), total(ar, "steps"))
    c_sp = _ratio(total(sp, "draft_s") + total(sp, "verify_s") + total(sp, "other_s"), steps)
    ideal = tau * c_ar / c_sp if (tau and c_ar and c_sp) else None
    per_sample = [_ratio(sum(a["wall_s"] for a in r["ar"]), sum(s["wall_s"] for s in r["spec"])) for r in records]
    per_sample = [x for x in per_sample if x]
    metrics = {
        "n": len(records),
        "runs": len(sp),
        "tau": _r(tau),
        "accepted_per_step": _r(_ratio(total(sp, "accepted"), steps)),
        "drafted_per_step": _r(_ratio(total(sp, "drafted"), steps)),
        "acceptance_by_depth": [_r(_ratio(o, t)) for o, t in zip(ok, tried)],
        **by_position(tried, ok),
        "new_tokens_ar": ar_tok,
        "new_tokens_spec": sp_tok,
        "wall_s_ar": _r(ar_wall, 6),
        "wall_s_spec": _r(sp_wall, 6),
        "tokens_per_s_ar": _r(_ratio(ar_tok, ar_wall), 3),
        "tokens_per_s_spec": _r(_ratio(sp_tok, sp_wall), 3),
        "speedup": _r(_ratio(ar_wall, sp_wall)),
        "speedup_mean_of_ratios": _r(sum(per_sample) / len(per_sample)) if per_sample else None,
        "throughput_ratio": _r(_ratio(_ratio(sp_tok, sp_wall), _ratio(ar_tok, ar_wall))),
        "ideal_speedup": _r(ideal),
        "step_cost_ar_ms": _r(c_ar * 1e3 if c_ar else None),
        "step_cost_spec_ms": _r(c_sp * 1e3 if c_sp else None),
        "steps_spec": steps,
        "steps_ar": total(ar, "steps"),
        "time_split_spec_s": {k: _r(total(sp, k + "_s"), 6) for k in ("prefill", "draft", "verify", "other")},
        "time_split_ar_s": {k: _r(total(ar, k + "_s"), 6) for k in ("prefill", "draft", "verify", "other")},
        "time_per_step_spec_ms": {k: _r(_ratio(total(sp, k + "_s"), steps) * 1e3 if steps else None) for k in ("draft", "verify", "other")},
        "trace_overhead": _r(_ratio(total(sp, "trace_s"), sp_wall), 5),
        "exact": None,
    }
    if temperature == 0:
        metrics["exact"] = {"matched": sum(1 for r in records if r["exact"]), "n": len(records)}
    if all(r.get("base") for r in records):
        # the same target's AR in --baseline-dtype (e.g. float32 AR vs bfloat16 speculative):
        # what a user switching both gains; its outputs may differ from the spec run's dtype
        base_runs = [x for r in records for x in r["base"]]
        metrics["tokens_per_s_ar_baseline_dtype"] = _r(_ratio(total(base_runs, "new_tokens"), total(base_runs, "wall_s")), 3)
        metrics["speedup_vs_baseline_dtype"] = _r(
            _ratio(_ratio(sp_tok, sp_wall), _ratio(total(base_runs, "new_tokens"), total(base_runs, "wall_s")))
        )
    vis = aggregate_visual(sp)
    if vis is not None:
        metrics["visual"] = vis
    if hf is not None:
        metrics.update(aggregate_hf(hf, records, temperature))
    return metrics


VISUAL_KEYS = ("positions", "tried", "accepted", "nodes", "from_draft")


def pool_visual(counts: list[dict]) -> dict:
    """Per-class counts (``measure.visual_counts``) summed, and the ratios of the sums:
    ``accept_rate`` = accepted / tried positions, ``node_rate`` = accepted / drafted nodes,
    ``from_draft_share`` = tokens from drafts / positions, ``tau_like`` = 1 / (1 - that share)
    (None when every token of the class came from drafts)."""
    out = {}
    for name in ("image", "other"):
        c = {k: sum(x[name][k] for x in counts) for k in VISUAL_KEYS}
        share = _ratio(c["from_draft"], c["positions"])
        c.update(
            {
                "accept_rate": _r(_ratio(c["accepted"], c["tried"])),
                "node_rate": _r(_ratio(c["accepted"], c["nodes"])),
                "from_draft_share": _r(share),
                "tau_like": _r(1 / (1 - share)) if share is not None and share < 1 else None,
            }
        )
        out[name] = c
    out["tokens"] = {"image": out["image"]["positions"], "other": out["other"]["positions"]}
    return out


def aggregate_visual(sp: list[dict]) -> dict | None:
    """Acceptance on image-dependent vs other tokens, pooled by counts over the speculative runs
    that have them (``--visual``: runs of samples with an image); None when none has."""
    counts = [x["visual"] for x in sp if x.get("visual")]
    if not counts:
        return None
    res = pool_visual(counts)
    res["runs"] = len(counts)
    return res


def aggregate_hf(hf: list[dict], records: list[dict], temperature: float) -> dict:
    """transformers baselines over the same samples as ``records`` (aligned by index)."""
    plain = [x for h in hf for x in h["plain"]]
    errors: dict = {}
    for h in hf:
        errors.update(h["errors"])
    p_tps = _ratio(sum(len(x["tokens"]) for x in plain), sum(x["wall_s"] for x in plain))
    ar_runs = [x for r in records for x in r["ar"]]
    ar_tps = _ratio(sum(x["new_tokens"] for x in ar_runs), sum(x["wall_s"] for x in ar_runs))

    def speedup(kind, base_key):
        ok = [h for h in hf if h[kind] and (h.get(base_key) or h["plain"])]
        if not ok:
            if errors.get(kind):
                return {"speedup": None, "error": errors[kind], "failed": len(hf), "n": len(hf)}
            return {"speedup": None, "skipped": errors.get(kind + "_skipped") or "not run", "n": len(hf)}
        base = [x for h in ok for x in (h.get(base_key) or h["plain"])]
        runs = [x for h in ok for x in h[kind]]
        wall = sum(x["wall_s"] for x in runs)
        res = {
            "speedup": _r(_ratio(sum(x["wall_s"] for x in base), wall)),
            "failed": len(hf) - len(ok),
            "n": len(hf),
            "tokens_per_s": _r(_ratio(sum(len(x["tokens"]) for x in runs), wall), 3),
        }
        if temperature == 0:  # does transformers' own speculative output equal its plain output?
            res["exact"] = {
                "matched": sum(1 for h in ok if h[kind][0]["tokens"] == (h.get(base_key) or h["plain"])[0]["tokens"]),
                "n": len(ok),
            }
        if errors.get(kind):
            res["error"] = errors[kind]
        return res

    out = {
        "hf_plain_tokens_per_s": _r(p_tps, 3),
        "ar_vs_hf_plain": _r(_ratio(ar_tps, p_tps)),  # >= 1: our AR loop is at least as fast
        "hf_plain_error": errors.get("plain"),
        "hf_plain_matches_ar": None,
        "hf_assisted": speedup("assisted", "plain"),
        "hf_prompt_lookup": speedup("lookup", "lookup_plain"),
    }
    if temperature == 0:
        pairs = [(h["plain"][0]["tokens"], r["ar"][0]["tokens"]) for h, r in zip(hf, records) if h["plain"]]
        if pairs:
            out["hf_plain_matches_ar"] = {"matched": sum(1 for a, b in pairs if a == b), "n": len(pairs)}
    out["hf_assisted_speedup"] = out["hf_assisted"]["speedup"]
    out["hf_prompt_lookup_speedup"] = out["hf_prompt_lookup"]["speedup"]
    return out


def summarize(cfg: Config, records: list[dict]) -> dict:
    samples = [r["sample"] for r in records]
    hf = [r["hf"] for r in records] if all(r.get("hf") for r in records) else None
    res = {
        "id": cfg.id,
        "drafter": cfg.drafter,
        "strategy": cfg.strategy,
        "temperature": cfg.temperature,
        "spec": {
            "gamma": cfg.spec.gamma,
            "branching": list(cfg.spec.branching),
            "depth": cfg.spec.depth,
            "top_k": cfg.spec.top_k,
            "budget": cfg.spec.budget,
        },
        "groups": {},
        "samples": [],
        "divergences": [],
    }
    for g in groups_of(samples):
        idx = [i for i, s in enumerate(samples) if g == "all" or s.group == g]
        res["groups"][g] = aggregate([records[i] for i in idx], [hf[i] for i in idx] if hf else None, cfg.temperature)
    for r in records:
        a, s = r["ar"], r["spec"]
        res["samples"].append(
            {
                "id": r["sample"].id,
                "group": r["sample"].group,
                "task": r["sample"].task,
                "exact": r["exact"],
                "ar_wall_s": _r(sum(x["wall_s"] for x in a), 6),
                "spec_wall_s": _r(sum(x["wall_s"] for x in s), 6),
                "ar_new_tokens": a[0]["new_tokens"],
                "spec_new_tokens": s[0]["new_tokens"],
                "tau": _r(_ratio(sum(x["new_tokens"] - 1 for x in s if x["new_tokens"]), sum(x["steps"] for x in s))),
                "spec_text": s[0]["text"][:300],
                "stop_reason": s[0]["stop_reason"],
            }
        )
        if any(x.get("visual") for x in s):
            res["samples"][-1]["visual"] = pool_visual([x["visual"] for x in s if x.get("visual")])
    return res


# =========================================================================================
