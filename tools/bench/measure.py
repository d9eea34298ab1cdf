"""Measuring our engine: per sample, the plain and the speculative run back to back
(``api.compare``), the transformers baselines next to them, after ``api.warm``."""

from __future__ import annotations

import sys

from core import api
from core import visual as V
from core.divergence import explain
from core.trace import Trace
from .configs import Config
from .hf import HFRunner
from .suites import Sample


def depth_counts(trace: Trace) -> tuple[list[int], list[int]]:
    """Per draft depth d = 1, 2, ...: the steps that drafted to depth >= d and those that accepted
    >= d tokens; the counts behind ``Trace.summary()["acceptance_by_depth"]``, kept so that the
    aggregate pools runs by counts (the summary holds only the ratios)."""
    max_depth = max((max(s.depths, default=0) for s in trace.steps), default=0)
    accepted = [len(s.accepted) for s in trace.steps]
    tried = [sum(1 for s in trace.steps if max(s.depths, default=0) >= d) for d in range(1, max_depth + 1)]
    ok = [sum(1 for a in accepted if a >= d) for d in range(1, max_depth + 1)]
    return tried, ok


def run_record(trace: Trace) -> dict:
    """The numbers of one run that the aggregation needs, from ``trace.summary()`` (the trace itself
    is not kept): totals, so that runs add up."""
    summary = trace.summary()
    steps = max(0, summary["target_forwards"] - 1)
    split = summary["time_split"]
    tried, ok = depth_counts(trace)
    return {
        "tokens": list(trace.output),
        "margins": trace.margins(),
        "new_tokens": summary["new_tokens"],
        "prompt_tokens": trace.prompt_tokens,
        "steps": steps,
        "forwards": summary["target_forwards"],
        "accepted": summary["accepted_per_step"] * steps,
        "drafted": summary["drafted_per_step"] * steps,
        "depth_tried": tried,
        "depth_ok": ok,
        "wall_s": summary["wall_s"],
        "prefill_s": split["prefill"],
        "draft_s": split["draft"],
        "verify_s": split["verify"],
        "other_s": split["other"],
        "trace_s": summary["trace_overhead"] * summary["wall_s"],
        "text": trace.text,
        "stop_reason": summary["stop_reason"],
    }


VISUAL_CLASSES = (("image", True), ("other", False))


def visual_counts(trace: Trace, visual: dict) -> dict:
    """The counts behind ``visual.split_acceptance`` (which holds only the ratios), per class
    ("image" = image-dependent, "other"), so that runs pool by counts: ``positions`` output tokens,
    ``tried`` positions drafted, ``accepted`` positions where a draft was accepted, ``nodes`` drafted
    nodes tried there, ``from_draft`` tokens that came from accepted drafts."""
    flags = {r["index"]: r["image_dependent"] for r in visual["tokens"]}
    att = V.position_attempts(trace)
    out = {}
    for name, want in VISUAL_CLASSES:
        idx = [i for i in range(len(att)) if flags.get(i) is want]
        tried = [i for i in idx if att[i]["tried"]]
        out[name] = {
            "positions": len(idx),
            "tried": len(tried),
            "accepted": sum(att[i]["accepted"] for i in tried),
            "nodes": sum(att[i]["tried"] for i in tried),
            "from_draft": sum(1 for i in idx if att[i]["origin"] == "accepted"),
        }
    return out


def visual_meta(cache: api.VisualCache) -> dict:
    """The results' ``meta["visual"]`` of a ``--visual`` run: what the cache's computations cost
    and how often a record was reused."""
    return {
        "enabled": True,
        "seconds": round(cache.seconds, 3),
        "computed": cache.computed,
        "reused": cache.reused,
        "threshold_nats": api.KL_THRESHOLD,
        "baseline": "none",
    }


def log(args, msg: str) -> None:
    if not args.silent:
        print(msg, file=sys.stderr, flush=True)


def warm_up(pair, cfg: Config, smp: Sample, args, baseline_pair=None, hf: HFRunner | None = None) -> None:
    """``args.warmup`` rounds of one-off costs on the first sample, outside every timed run: our
    plain and speculative runs (``api.warm``), the other-dtype baseline, transformers'."""
    sampling = cfg.sampling(args.seed)
    for _ in range(args.warmup):
        api.warm(pair, smp.prompt, smp.image, cfg.spec, sampling, tokens=args.max_new_tokens, force=True)
        if baseline_pair is not None:
            api.warm(baseline_pair, smp.prompt, smp.image, cfg.spec, sampling, tokens=args.max_new_tokens, force=True)
        if hf is not None:
            hf.warmup(smp)


def run_config(
    pair, cfg: Config, samples: list[Sample], args, lookup_cache: dict | None = None, visual_cache: api.VisualCache | None = None
) -> list[dict]:
    """Per sample: AR, spec (and transformers' plain / assisted / prompt-lookup generate) back to
    back, ``repeats`` times, after warm-up, so drift hits all alike. One record per sample.
    With ``visual_cache`` (``--visual``), every speculative run of a sample with an image also gets
    its acceptance counts on image-dependent vs other tokens (``run["visual"]``), computed after
    the timed runs."""
    hf = HFRunner(pair, cfg, args, lookup_cache if lookup_cache is not None else {}) if args.hf != "none" else None
    baseline_pair = None  # --baseline-dtype: the same target's AR in another dtype, interleaved too
    if getattr(args, "baseline_dtype", None) and args.baseline_dtype != args.dtype:
        baseline_pair = api.load_pair(args.target, None, dtype=args.baseline_dtype, device=args.device)
    warm_up(pair, cfg, samples[0], args, baseline_pair, hf)
    records = []
    for i, smp in enumerate(samples):
        ar_runs, sp_runs, base_runs, spec_traces, refs = [], [], [], [], []
        hf_record = hf.new_record(smp) if hf is not None else None
        for r in range(args.repeats):
            seed = args.seed + 1000 * i + r
            sampling = cfg.sampling(seed)
            cmp = api.compare(
                pair, smp.prompt, smp.image, cfg.spec, sampling, args.max_new_tokens, warmup=False, repeats=1, detail=args.detail
            )
            ar_runs.append(run_record(cmp.plain_trace))
            refs.append(ar_runs[-1] if cmp.reference_trace is cmp.plain_trace else run_record(cmp.reference_trace))
            sp_runs.append(run_record(cmp.spec_trace))
            spec_traces.append(cmp.spec_trace)
            if baseline_pair is not None:
                base = api.run(
                    baseline_pair, smp.prompt, smp.image, cfg.spec, sampling, args.max_new_tokens, speculative=False, detail=args.detail
                )
                base_runs.append(run_record(base))
            if hf is not None:
                hf.run(hf_record, smp, seed)
        if visual_cache is not None and smp.image is not None:  # after the timed runs
            for run, tr in zip(sp_runs, spec_traces):
                run["visual"] = visual_counts(tr, visual_cache.get(pair, smp.prompt, smp.image, tr.output, key=smp.id))
        exact = None
        if cfg.temperature == 0:
            exact = all(a["tokens"] == s["tokens"] for a, s in zip(refs, sp_runs))  # the identity reference
        records.append(
            {"sample": smp, "ar": ar_runs, "spec": sp_runs, "ref": refs, "exact": exact, "hf": hf_record, "base": base_runs or None}
        )
    if hf is not None:
        hf.finish([r["hf"] for r in records])
    return records


def divergence(pair, smp: Sample, ar: dict, sp: dict) -> dict:
    """Where a T=0 speculative output first left the AR output, classified by the recorded margins
    of both runs (``core.divergence``: a rounding near-tie or a real disagreement)."""
    d = explain(ar["tokens"], sp["tokens"], ar.get("margins"), sp.get("margins"), str(pair.target.dtype))
    pos = d.position if d.position is not None else min(len(ar["tokens"]), len(sp["tokens"]))
    return {
        "sample": smp.id,
        "position": pos,
        "ar_token": ar["tokens"][pos] if pos < len(ar["tokens"]) else None,
        "spec_token": sp["tokens"][pos] if pos < len(sp["tokens"]) else None,
        "top2_margin": d.margins[0] if d.margins else None,
        "kind": d.kind,
        "text": d.text,
    }
