"""Profile mode: where a speculative step's time goes. One run timed phase by phase through
the engine's ``on_phase`` hook (nothing is patched), then cProfile and torch.profiler views of
the same run."""

from __future__ import annotations

import cProfile
import io
import pstats
import sys

from torch.profiler import ProfilerActivity, profile as torch_profile

from core import api, paths
from core.errors import first_line
from .configs import Config, build_configs, check_ref
from .suites import Sample, load_suite

# the engine's phases (core/engine.py step) -> the rows of the profile table
PHASE_ROWS = {
    "propose": "draft: propose",
    "commit": "draft: commit (drafter cache update)",
    "verify": "verify (target forward)",
    "accept": "accept (acceptance rule)",
    "keep": "KV compaction (adapter.keep)",
    "record": "trace recording",
}
OTHER_ROW = "other (bookkeeping)"


class PhaseTimes:
    """An ``on_phase`` callback that adds up the seconds of each phase and keeps their order."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.order: list[str] = []

    def __call__(self, name: str, seconds: float, **data) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.order.append(name)


def profile_config(pair, cfg: Config, smp: Sample, args) -> dict:
    """One speculative run with every phase of a step timed separately (``on_phase``), then
    cProfile and torch.profiler views of the same run."""
    sampling = cfg.sampling(args.seed)

    def run(speculative: bool = True, **kw):
        return api.run(
            pair, smp.prompt, smp.image, cfg.spec, sampling, args.max_new_tokens, speculative=speculative, detail=args.detail, **kw
        )

    for _ in range(max(1, args.warmup)):
        api.warm(pair, smp.prompt, smp.image, cfg.spec, sampling, tokens=args.max_new_tokens, force=True)
    ar = run(speculative=False)
    phases = PhaseTimes()
    tr = run(on_phase=phases)
    summary = tr.summary()
    steps = max(1, len(tr.steps))
    parts = {row: phases.seconds.get(name, 0.0) for name, row in PHASE_ROWS.items()}
    # the rest of the decoding after the prefill: the loop around the steps, decoding the text
    parts[OTHER_ROW] = max(0.0, tr.wall_s - tr.t_prefill - sum(parts.values()))
    step_total = sum(parts.values())
    ar_summary = ar.summary()
    ar_steps = max(1, len(ar.steps))

    prof = cProfile.Profile()
    prof.enable()
    run()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(args.profile_top)

    try:
        with torch_profile(activities=[ProfilerActivity.CPU]) as tprof:
            run()
        torch_table = tprof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_top)
    except Exception as e:  # the profiler is optional
        torch_table = f"(torch.profiler unavailable: {first_line(e)})"

    return {
        "config": cfg.id,
        "sample": smp.id,
        "steps": len(tr.steps),
        "new_tokens": summary["new_tokens"],
        "tau": summary["tau"],
        "wall_s": round(tr.wall_s, 6),
        "prefill_s": round(tr.t_prefill, 6),
        "per_step_ms": {k: round(v / steps * 1e3, 4) for k, v in parts.items()},
        "share": {k: round(v / step_total, 4) if step_total else None for k, v in parts.items()},
        "ar": {
            "steps": len(ar.steps),
            "verify_ms_per_step": round(ar_summary["time_split"]["verify"] / ar_steps * 1e3, 4),
            "other_ms_per_step": round(ar_summary["time_split"]["other"] / ar_steps * 1e3, 4),
            "wall_s": round(ar.wall_s, 6),
        },
        "cprofile": buf.getvalue(),
        "torch_profiler": torch_table,
    }


def print_profile(result: dict, out=None) -> None:
    out = out or sys.stdout
    print(f"\n## profile: {result['config']} on {result['sample']}", file=out)
    print(
        f"{result['new_tokens']} tokens in {result['steps']} steps (tau {result['tau']}), wall "
        f"{result['wall_s'] * 1e3:.1f} ms, prefill {result['prefill_s'] * 1e3:.1f} ms",
        file=out,
    )
    print("\n| part of a step | ms/step | share |\n|---|---:|---:|", file=out)
    for row, ms in result["per_step_ms"].items():
        share = result["share"][row]
        print(f"| {row} | {ms:.3f} | {'-' if share is None else f'{share:.1%}'} |", file=out)
    print(f"| **step total** | {sum(result['per_step_ms'].values()):.3f} | |", file=out)
    print(
        f"\nAR step for comparison: verify {result['ar']['verify_ms_per_step']:.3f} ms + other "
        f"{result['ar']['other_ms_per_step']:.3f} ms ({result['ar']['steps']} steps)",
        file=out,
    )
    print("\n### cProfile (top functions by own time)\n```", file=out)
    print("\n".join(ln for ln in result["cprofile"].splitlines() if ln.strip())[:6000], file=out)
    print("```\n\n### torch.profiler (top ops by self CPU time)\n```", file=out)
    print(result["torch_profiler"], file=out)
    print("```", file=out)


def profile(args) -> list[dict]:
    """``--profile``: one profiled run per configuration, on the suite's first sample."""
    configs = build_configs(args)
    paths.resolve_target(check_ref(args.target, "target"))
    samples = load_suite(args)
    out = []
    for cfg in configs:
        pair = api.load_pair(args.target, cfg.drafter, dtype=args.dtype, mode=args.drafter_mode, device=args.device, kernels=args.kernels)
        result = profile_config(pair, cfg, samples[0], args)
        print_profile(result)
        out.append(result)
    return out
