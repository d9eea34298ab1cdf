"""What a step costs on THIS machine: the measured cost model behind the automatic draft length.

Speculative decoding pays when the tokens a step commits are worth more than the step costs, and
what a step costs is a property of the machine, the threads, the dtype, the product paths
(``core.kernels``), the target and the drafter, not of the algorithm. On a GPU a 20-token verify
costs about one token; on a 2-core CPU a 1.5B target's 7-token verify cost 3.6 one-token steps with
MKL and 2.1 with oneDNN. So the costs are measured, never assumed:

    target(n)     seconds of one target forward of n new tokens, measured at first use for
                  n = 1, 2, 4, 8, 16, 32 after a short prompt (cached per machine and target),
                  interpolated between, and scaled online by what this run's verify steps took
                  (longer contexts, machine drift)
    draft(k)      seconds of drafting k tokens: learned online from the drafter's own steps
                  (per draft forward for model drafters, per step for model-free ones)
    other         the engine's own per-step overhead (acceptance, KV compaction), learned online
"""

from __future__ import annotations

import hashlib
import json
import time

import torch

from .machine import machine_key, update_tuning

SIZES = (1, 2, 4, 8, 16, 32)
EMA = 0.2  # weight of a new observation in the online estimates


def _interp(curve: dict[int, float], n: float) -> float:
    xs = sorted(curve)
    if n <= xs[0]:
        return curve[xs[0]]
    for a, b in zip(xs, xs[1:]):
        if n <= b:
            return curve[a] + (curve[b] - curve[a]) * (n - a) / (b - a)
    a, b = xs[-2], xs[-1]  # beyond the last point: linear
    return curve[b] + (curve[b] - curve[a]) * (n - b) / (b - a)


@torch.inference_mode()
def measure_target(adapter, sizes=SIZES, reps: int = 5, prefix: int = 48) -> dict[int, float]:
    """Seconds of one forward of n tokens after a ``prefix``-token prompt (KV cache warm): the
    fastest of ``reps`` rounds, the sizes taken in a mixed order (1, 4, 16, 32, 8, 2) each round, as
    ``core.rows`` times its sizes. The curve's shape is what the policy needs (what n rows cost
    against one); its level follows the run (``CostModel.observe``). A machine's noise only ever
    adds: with the median of three, on the 2-core Zen 5 EPYC a compiled 1.5B target's curve read 95
    ms at one row and 143 at two, where the engine's 4-row verifies took 93 ms in the same run, and
    the automatic length drafted shorter than it pays (twenty-ninth session)."""
    probe = adapter.probe(prefix, padded=True)  # as the engine's exact forwards run
    for _ in range(2):
        probe(1)
    order = sorted(sizes, key=lambda n: (sizes.index(n) % 2, n if sizes.index(n) % 2 == 0 else -n))
    out: dict[int, list[float]] = {n: [] for n in sizes}
    sync = torch.cuda.synchronize if torch.device(adapter.device).type == "cuda" else (lambda: None)
    for _ in range(reps):
        for n in order:
            sync()
            t0 = time.perf_counter()
            probe(n)
            sync()  # a GPU returns before the work is done
            out[n].append(time.perf_counter() - t0)
    curve = {n: min(v) for n, v in out.items()}
    # a forward of more tokens never costs less: keep the curve monotone against noise
    best = 0.0
    for n in sorted(curve):
        best = curve[n] = max(curve[n], best)
    return curve


def _key(adapter) -> str:
    """Per forward too (``adapter.path``: eager / compiled): a target that switched to its compiled
    forward between runs (the app compiles in the background) is priced by that forward's own curve."""
    kern = json.dumps(getattr(adapter, "kernels", {}).get("paths", "stock"), sort_keys=True)
    return (
        f"costs|{machine_key(adapter.name, '')}|{adapter.dtype}|{adapter.device}|kernels={hashlib.sha1(kern.encode()).hexdigest()[:10]}"
        f"|{getattr(adapter, 'path', 'eager')}"
    )


_curves: dict[str, dict[int, float]] = {}


def target_curve(adapter, refresh: bool = False) -> dict[int, float]:
    """The target's cost curve, measured at its first use in this process (about 1 s for the
    default target, 15 s for a 1.5B model on 2 cores) and kept in memory. Not kept on disk: a
    curve measured while something else loaded the machine would mislead every later run. It is
    also written to the tuning file (``tuning_path()``, key "costs") for the record."""
    key = _key(adapter)
    if key in _curves and not refresh:
        return dict(_curves[key])
    curve = _curves[key] = measure_target(adapter)
    update_tuning(lambda data: data.setdefault("costs", {}).__setitem__(key, {str(n): s for n, s in curve.items()}))
    return dict(curve)


_plain_step: dict[str, float] = {}


def observe_plain(adapter, seconds_per_step: float) -> None:
    """What a plain decoding step of ``adapter`` took in a measured run (``api.compare``'s speed
    baseline): the engine's own per-step work on top of the bare forward the curve measures."""
    if seconds_per_step > 0:
        _plain_step[_key(adapter)] = seconds_per_step


def priced_curve(adapter) -> dict[int, float]:
    """The cost curve every prediction uses (replay, Teach's map): the measured forwards plus the
    per-step overhead the last measured plain run showed, so that plain decoding is priced at the
    speed the page measured for it (the bare curve alone prices it 2-3x faster on a small target)."""
    curve = target_curve(adapter)
    step = _plain_step.get(_key(adapter))
    if step is None:
        return curve
    extra = max(0.0, step - curve[min(curve)])
    return {n: c + extra for n, c in curve.items()}


class CostModel:
    """Seconds per target forward, per drafted token, per step of overhead (see module docstring)."""

    def __init__(self, curve: dict[int, float], draft_per_forward: float | None = None):
        self.curve = dict(curve)
        self.scale = 1.0  # observed verify time / curve, EMA
        self.point_scale: dict[int, float] = {}  # the same per measured point (nearest above)
        self.seen: dict[int, float] = {}  # n -> seconds observed for exactly n tokens, EMA
        # until the drafter has been seen: a drafted token costs a quarter of a target token
        self.per_forward = draft_per_forward if draft_per_forward is not None else 0.25 * curve[min(curve)]
        self.per_step = 0.0  # model-free drafters: a fixed cost per step
        self.other = 0.0
        self.seen_draft = draft_per_forward is not None

    def target(self, n: int) -> float:
        """Seconds of a forward of n tokens: what forwards of exactly n tokens took in this run
        when there were some (kernels switch algorithms between measured points: a 9-token
        forward can cost far more than the line from 8 to 16 says), else the measured curve with
        each point rescaled by what forwards near it took (not observed yet: the overall ratio)."""
        if n in self.seen:
            return self.seen[n]
        return _interp({m: c * self.point_scale.get(m, self.scale) for m, c in self.curve.items()}, n)

    def _point(self, n: int) -> int:
        return next((m for m in sorted(self.curve) if m >= n), max(self.curve))

    def draft(self, forwards: int) -> float:
        return self.per_step + self.per_forward * forwards

    def observe(self, n_verify: int, t_verify: float, forwards: int | None, t_draft: float, t_other: float):
        ratio = t_verify / max(1e-9, _interp(self.curve, n_verify))
        self.scale += EMA * (ratio - self.scale)
        m = self._point(n_verify)
        old = self.point_scale.get(m)
        self.point_scale[m] = ratio if old is None else old + EMA * (ratio - old)
        old = self.seen.get(n_verify)
        self.seen[n_verify] = t_verify if old is None else old + EMA * (t_verify - old)
        self.other += EMA * (t_other - self.other)
        if forwards:  # a model drafter: cost per draft forward
            x = t_draft / forwards
            self.per_forward = x if not self.seen_draft else self.per_forward + EMA * (x - self.per_forward)
            self.seen_draft = True
        elif forwards == 0 and t_draft > 0:  # drafting without forwards (n-gram lookup)
            self.per_step += EMA * (t_draft - self.per_step)

    def to_json(self) -> dict:
        return {
            "target_s": {str(n): round(self.target(n), 6) for n in sorted(self.curve)},
            "curve_scale": round(self.scale, 4),
            "draft_s_per_forward": round(self.per_forward, 6),
            "draft_s_per_step": round(self.per_step, 6),
            "other_s": round(self.other, 6),
        }
