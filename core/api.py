"""High-level entry points shared by the CLI, the app and the benchmark.

pair = load_pair("default", "ngram")                    # cached target + drafter
trace = run(pair, prompt, image, spec, sampling, max_new_tokens)
warm(pair, prompt, image, spec, sampling)                # one-off costs, outside timings
result = compare(pair, prompt, image, spec, sampling, max_new_tokens, repeats=3)  # a Comparison

The facade: the app (``ui/``) imports nothing else from ``core``; the types and names it needs
are re-exported here.
"""

from __future__ import annotations

from . import costs
from .cli.shape import parse_branching
from .comparison import SLACK, Comparison, Timing, bound, median, speedup
from .device import resolve_dtype, threads_from_env
from .drafters import CHOICES, DraftSpec, parse_drafter, spec_for, tuned_spec
from .engine import generate
from .errors import InputError, ModelLoadError
from .images import load_image
from .pairs import Pair, default_device, load_pair, load_target, max_models, policy_for
from .pairs import release as release_models
from .paths import ASSETS, DEFAULT_TARGET, ROOT, SHIPPED_DRAFTERS
from .rows import row_set
from .sampling import SamplingConfig
from .streaming import follow
from .trace import Step, Trace, result_json
from .visual import KL_THRESHOLD, split_acceptance

# the facade: what the CLI, the app, the bench and the tuner call
__all__ = [
    "Pair",
    "load_pair",
    "load_target",
    "default_device",
    "max_models",
    "release_models",
    "policy_for",
    "warm",
    "run",
    "compare",
    "Comparison",
    "Timing",
    "speedup",
    "bound",
    "SLACK",
    "stream",
    "result_json",
    "threads_from_env",
    "visual_dependence",
    "VisualCache",
    "split_acceptance",
    "split_line",
    "replay_sweep",
    "predicted_speedups",
    # the types and names the app shows or checks
    "Trace",
    "Step",
    "DraftSpec",
    "SamplingConfig",
    "CHOICES",
    "spec_for",
    "tuned_spec",
    "parse_drafter",
    "parse_branching",
    "resolve_dtype",
    "InputError",
    "ModelLoadError",
    "load_image",
    "ASSETS",
    "ROOT",
    "DEFAULT_TARGET",
    "SHIPPED_DRAFTERS",
    "KL_THRESHOLD",
]


def run(
    pair: Pair,
    prompt: str,
    image=None,
    spec: DraftSpec = DraftSpec(),
    sampling: SamplingConfig = SamplingConfig(),
    max_new_tokens: int = 64,
    speculative: bool = True,
    **kw,
) -> Trace:
    drafter = pair.drafter if speculative else None
    if drafter is not None and spec.adaptive and "policy" not in kw:
        kw["policy"] = policy_for(pair, sampling)
    return generate(pair.target, prompt, image, drafter, spec, sampling, max_new_tokens, **kw)


def stream(
    pair: Pair,
    prompt: str,
    image=None,
    spec: DraftSpec = DraftSpec(),
    sampling: SamplingConfig = SamplingConfig(),
    max_new_tokens: int = 64,
    *,
    speculative: bool = True,
    should_stop=None,
    every: float = 0.25,
    **kw,
):
    """``run`` in a worker thread (``core/streaming.py``): yields snapshot traces while steps
    complete, then the finished trace. ``kw`` as for ``run`` (``meta=``, ``detail=`` ...)."""
    spec, sampling = spec or DraftSpec(), sampling or SamplingConfig()

    def decode(on_step, should_stop):
        return run(pair, prompt, image, spec, sampling, max_new_tokens, speculative, on_step=on_step, should_stop=should_stop, **kw)

    return follow(decode, pair.target, should_stop, every)


_warmed: set = set()


def warm(
    pair: Pair,
    prompt: str,
    image=None,
    spec: DraftSpec = DraftSpec(),
    sampling: SamplingConfig = SamplingConfig(),
    tokens: int = 8,
    force: bool = False,
    compile_wait: bool = True,
) -> bool:
    """Pay the one-off costs (allocator, kernels, the cost model's first measurement) of this pair
    in this process, outside any timed run: one short plain and one short speculative run. Done
    once per (target, drafter, strategy, sampling kind) unless ``force``; returns whether it ran.
    First the target's forward is settled (``HFAdapter.settle_path``: its compiled forward where
    eligible, measured exact and faster; compiled now, or in the background if not ``compile_wait``),
    then a model drafter's (its compiled forward where measured faster: ``HFAdapter._settle_draft``)."""
    path = pair.target.settle_path(wait=compile_wait)
    lm = getattr(pair.drafter, "lm", None)
    draft_path = lm.settle_path(wait=compile_wait) if lm is not None and lm is not pair.target and hasattr(lm, "settle_path") else None
    key = (id(pair.target), id(pair.drafter), spec.strategy, sampling.greedy, image is not None, path, draft_path)
    if key in _warmed and not force:
        return False
    run(pair, prompt, image, spec, sampling, tokens, speculative=False, detail=False)  # measures core.rows
    if row_set(pair.target).unpadded_faster:  # the unpadded speed baseline, too
        run(pair, prompt, image, spec, sampling, tokens, speculative=False, detail=False, exact=False)
    if pair.drafter is not None:
        run(pair, prompt, image, spec, sampling, tokens, detail=False)
    _warmed.add(key)
    return True


def compare(
    pair: Pair,
    prompt: str,
    image=None,
    spec: DraftSpec = DraftSpec(),
    sampling: SamplingConfig = SamplingConfig(),
    max_new_tokens: int = 64,
    warmup: bool = True,
    repeats: int = 1,
    baseline: list | None = None,
    reference: Trace | None = None,
    **kw,
) -> Comparison:
    """The same input decoded autoregressively and speculatively by the same target, ``repeats``
    times, alternating plain and speculative runs so that a slow moment of the machine hits both.

    Two plain decodings play two roles (``core/rows.py``): the **identity reference** is the exact
    plain decoding (every forward at a row-invariant row count); the **speed baseline** is the
    fastest plain decoding of this machine, which is the same runs unless padding a one-token step
    costs time here (then unpadded one-row steps are timed, and one exact run is made for identity).

    A round above its bound (``bound``) is measured again once; the verdict (speedups, the
    reported round, flagged rounds, identity, divergence) is ``Comparison.of``'s
    (core/comparison.py). ``baseline``: plain traces measured earlier on the same input,
    ``reference``: its identity reference (Compare rows share both); more plain runs are
    measured, interleaved, when there are fewer than ``repeats``. The reported speculative trace
    carries the result: ``result.spec_trace.comparison is result``."""
    repeats = max(1, int(repeats))
    if warmup:  # first calls pay one-off costs; keep them out of both timings
        warm(pair, prompt, image, spec, sampling, min(8, max_new_tokens))
    rows = row_set(pair.target)
    unpadded = rows.unpadded_faster
    ars = list(baseline or [])
    sps: list[Trace] = []
    for i in range(repeats):
        if i >= len(ars):
            ars.append(run(pair, prompt, image, spec, sampling, max_new_tokens, speculative=False, exact=not unpadded, **kw))
        sps.append(run(pair, prompt, image, spec, sampling, max_new_tokens, **kw))
    ars = ars[:repeats]
    for i in range(repeats):  # a round above its bound: measured again, once
        if speedup(ars[i], sps[i]) > bound(sps[i]) * SLACK:
            sps[i] = run(pair, prompt, image, spec, sampling, max_new_tokens, **kw)
    if reference is None:
        reference = ars[0] if not unpadded else run(pair, prompt, image, spec, sampling, max_new_tokens, speculative=False, **kw)
    steps = [(a.wall_s - a.t_prefill) / len(a.steps) for a in ars if a.steps]
    if steps:
        costs.observe_plain(pair.target, median(steps))  # prices replay and Teach's map alike
    result = Comparison.of(ars, sps, reference, "unpadded" if unpadded else "exact")
    result.spec_trace.comparison = result
    return result


def visual_dependence(
    pair: Pair, trace: Trace, prompt: str, image=None, baseline: str = "none", threshold: float | None = None, store: bool = True
) -> dict:
    """Per-token visual dependence of ``trace``'s output (core/visual.py): two teacher-forced
    target forwards, with and without the image; its cost in seconds is ``result["cost_s"]``.
    Stored in ``trace.visual`` unless ``store=False``."""
    from . import visual as V

    res = V.visual_dependence(
        pair.target, prompt, image, list(trace.output), baseline=baseline, threshold=V.KL_THRESHOLD if threshold is None else threshold
    )
    if store:
        trace.visual = res
        for r in res["tokens"]:  # the pieces a hover names ("argmax without the image: ...")
            k = str(r["argmax_noimg"])
            if k not in trace.vocab:
                try:
                    trace.vocab[k] = pair.target.decode_piece(int(k))
                except Exception:  # a piece the tokenizer cannot decode stays "<id>"
                    pass
    return res


class VisualCache:
    """``visual_dependence`` of an output, computed once per (input, output tokens) and reused: it
    depends only on the target's output, which at T=0 is the same for every drafter and shape.
    ``seconds`` is what the computations cost (target forwards), ``computed`` / ``reused`` count."""

    def __init__(self):
        self.records: dict = {}
        self.seconds = 0.0
        self.computed = 0
        self.reused = 0

    def get(self, pair: Pair, prompt: str, image, output: list[int], key=None) -> dict:
        """The record of ``output`` for this input; ``key`` names the input when one cache serves
        several (the bench's sample id)."""
        k = (key, tuple(output))
        if k in self.records:
            self.reused += 1
            return self.records[k]
        res = visual_dependence(pair, Trace(output=list(output)), prompt, image, store=False)
        self.seconds += res["cost_s"]
        self.computed += 1
        self.records[k] = res
        return res


def split_line(split: dict, counts: bool = False) -> str:
    """ "image-dependent tokens: 41% of drafts accepted; other tokens: 93%" from ``split_acceptance``
    (its ``accept_rate``: drafted positions with an accepted draft); ``counts`` (the CLI's line)
    adds how many positions of each class were drafted."""

    def pct(c):
        r = c["accept_rate"]
        return ("n/a (none drafted)" if counts else "n/a") if r is None else f"{100 * r:.0f}%"

    im, ot = split["image_dependent"], split["other"]
    line = f"image-dependent tokens: {pct(im)} of drafts accepted; other tokens: {pct(ot)}"
    if counts:
        line += f"  [drafted positions: {im['tried']} of {im['positions']} image-dependent, {ot['tried']} of {ot['positions']} other]"
    return line


def replay_sweep(pair: Pair, prompt: str, image, shapes: list[str], sampling: SamplingConfig, max_new_tokens: int) -> dict:
    """One recorded plain target run of the input (``core.replay.record``), then ``pair``'s drafter
    scored on every shape ("chain:8", "tree:3x2x1", "dynamic:8/4/20") without running the target
    again, priced with the measured cost curve (``costs.priced_curve``): predictions, not
    measurements. Returns {"rows" (``replay.rank``'s, best first), "tokens", "mismatches" (near-tie
    positions where teacher forcing differs from the run), "seconds" (the replay's own time)}."""
    import time

    from . import replay

    rec = replay.record(pair.target, prompt, image, max_new_tokens=max_new_tokens)
    curve = costs.priced_curve(pair.target)
    t0 = time.perf_counter()
    rows = replay.rank(rec, {"drafter": pair.drafter}, [replay.parse_shape(x) for x in shapes], curve, sampling)
    return {"rows": rows, "tokens": len(rec.output), "mismatches": len(rec.mismatches), "seconds": time.perf_counter() - t0}


def predicted_speedups(pair: Pair, trace: Trace) -> dict:
    """Where a run's speedup comes from (core/speedup_model.py): the predicted speedup over
    (alpha, gamma) for the target's measured cost curve and the run's own draft cost ratio
    ("grid"), the run's own point ("point") and the verify cost c(9)/c(1) ("verify_ratio")."""
    from . import speedup_model as M

    curve = costs.priced_curve(pair.target)  # the one cost model of measured runs and replay
    point = M.run_point(trace, curve)
    return {"grid": M.grid(curve, draft_ratio=point["draft_ratio"]), "point": point, "verify_ratio": M.verify_ratio(curve, 9)}
