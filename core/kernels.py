"""Matrix-product paths for CPU inference, chosen by measurement on the machine at hand.

A decode step multiplies one row (autoregressive step, chain drafting) or a few rows (verifying a
draft, a tree level) by every weight matrix of the model. Which library does that fastest depends
on the CPU, the thread count, the matrix and the number of rows, and the differences are large:
on a 2-core AVX2 EPYC MKL's float32 GEMM for 2-16 rows cost 3-5x its own one-row GEMV, while
oneDNN's inner product on the same (unchanged) weights did not. So nothing here is assumed:

    choice = accelerate(model, role="target")   # times each path on the model's own matrices

For every distinct weight shape of the model's linear layers it times each candidate path at
1, 2, 4, ... rows on that layer's real weights, then swaps each ``nn.Linear`` for a
``DispatchLinear`` that picks, by the number of rows of its input, the path measured fastest for
its shape. Weights are shared, not copied (the bf16 path, allowed for drafters only, keeps a bf16
copy of the matrices where it won). Measurements are cached per CPU, thread count, torch version,
dtype and shape (``tuning_path()``, beside the tuned draft shapes).

Paths:
    dense   ``F.linear`` (MKL on x86 CPUs: the stock path)
    onednn  ``torch.ops.mkldnn._linear_pointwise`` on the same dense weight
    packed  the same oneDNN product on a copy of the weight reordered once into oneDNN's blocked
            layout (no reorder per call; measured: docs/results.md). Costs a second copy of the
            matrices, so it is used only where the copies fit in free memory
    rowdot  the project's own kernel (core/rowdot.py, built from C at first use): each output one
            dot product in a fixed order, row i of any block equal to the one-row product, bit for
            bit; float32 or bfloat16 (float32 sums), where a C compiler is found
    bf16    weight and input rounded to bfloat16 (a drafter's precision cannot change the output:
            the target verifies every token; never used for a target)
    rowil   rowdot's bfloat16 kernel on a copy of the weight laid out as it reads it (``rowdot.pack``:
            one stream a block of 8 rows; AVX512-BF16 only): rowdot's numbers bit for bit, so the row
            probe counts it as rowdot (``SAME_NUMBERS``); read at up to a torch sum's rate
    rowbf16 the same roundings on rowdot's bfloat16 kernel, float32 sums kept (drafters only; the
            one-row product where the library's bfloat16 one is slow: a 1536x4608 matrix 4x)
    int8    weight quantized per output channel to int8, input quantized per call (fbgemm's
            dynamic quantized linear: a quarter of the memory traffic; drafters only, like bf16).
            One input scale per call: unfit for a matrix whose inputs are not normalised (an
            EAGLE-3 head's fc reads raw residual streams, where a few massive channels set the
            scale), so a linear marked ``raw_inputs`` never takes it (``fit_paths``)

A target keeps one dtype, so its AR steps and its verify steps are the same function of the
weights, and one path per matrix for every forward of 2 rows or more (``UNIFORM_FROM``), so its
verifies of any size run the same kernels and its row-invariant sets (``core.rows``) are not cut
where a path would switch; exactness of speculative output against AR output is tested on every
path it may take.
"""

from __future__ import annotations

import contextlib
import functools
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from . import rowdot
from .device import draft_weights_default
from .machine import cpu_name, tuned, update_tuning

ROWS = (1, 2, 4, 8, 16, 32, 64)  # row counts measured; inputs between two use the larger one
TABLE = ROWS[-1] + 2  # a path table's length: rows 0..ROWS[-1], then one path for every longer forward


def _onednn(x, w, b):
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


def _bf16(x, w, b):
    return F.linear(x.to(w.dtype), w, b).to(x.dtype)


def _rowbf16(x, w, b):
    if x.numel() > rowdot.MAX_ROWS * x.shape[-1]:  # a prompt's rows: rowdot's F.linear hand-over
        return _bf16(x, w, None if b is None else b.to(w.dtype))
    return rowdot.sums(x.to(w.dtype), w, b).to(x.dtype)


def _rowil(x, w, b):
    return rowdot.linear(x, w, b, interleaved=True)


def _int8(x, packed, _):
    return torch.ops.quantized.linear_dynamic(x, packed, True)


PATHS = {
    "dense": F.linear,
    "onednn": _onednn,
    "packed": _onednn,
    "rowdot": rowdot.linear,
    "rowil": _rowil,
    "bf16": _bf16,
    "rowbf16": _rowbf16,
    "int8": _int8,
}
ROLE_PATHS = {  # packed: on _pack(w)
    "target": ("dense", "onednn", "packed", "rowdot", "rowil"),
    "drafter": ("dense", "onednn", "packed", "rowdot", "rowil", "bf16", "rowbf16", "int8"),
}
SAME_NUMBERS = {"rowil": "rowdot"}  # paths computing another's numbers bit for bit (tests/test_rowdot.py)
ROWS_CAPPED = ("rowdot", "rowil")  # paths not for a prompt's rows (``_beyond``)
PACK_HINT = 4  # the row count oneDNN lays the packed weight out for (any row count runs on it)
LOSSY = ("bf16", "rowbf16", "int8")  # never for a target: its numbers are the output
PER_CALL_SCALE = ("int8",)  # one input scale per call: not for a linear marked ``raw_inputs``


def available(path: str, dtype: torch.dtype = torch.float32) -> bool:
    if path == "dense":
        return True
    if path == "onednn":
        return torch.backends.mkldnn.is_available() and _runs(_onednn, dtype)
    if path == "packed":
        return torch.backends.mkldnn.is_available() and _runs(_packed_probe, dtype)
    if path == "rowdot":
        return rowdot.available(dtype)
    if path == "rowil":
        return dtype == torch.bfloat16 and rowdot.available(dtype) and rowdot.dpbf16()
    if path == "int8":
        return dtype == torch.float32 and "fbgemm" in torch.backends.quantized.supported_engines
    if path == "rowbf16":
        return dtype == torch.float32 and rowdot.available(torch.bfloat16)
    return path == "bf16" and dtype == torch.float32


LIBRARY = ("dense", "onednn", "packed")  # the library's products: any row count, the weights' own numbers


def library_products(w: torch.Tensor) -> list[tuple[str, object, torch.Tensor]]:
    """(path, fn(x, weight, bias), the weight it reads) for each library product available for ``w``'s
    dtype: what a prompt's rows may run on (``tools.bench.bound.product_rate`` times them all)."""
    return [(p, PATHS[p], _pack(w) if p == "packed" else w) for p in LIBRARY if available(p, w.dtype)]


@functools.cache
def _runs(fn, dtype: torch.dtype) -> bool:
    """Does this CPU run ``fn`` in ``dtype``? (oneDNN has no bf16 inner product without AVX512.)"""
    try:
        fn(torch.ones(2, 4, dtype=dtype), torch.ones(3, 4, dtype=dtype), None)
        return True
    except RuntimeError:
        return False


def _packed_probe(x, w, b):
    return _onednn(x, _pack(w), b)


def _pack(w: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(w.detach(), PACK_HINT)


class DispatchLinear(nn.Linear):
    """An ``nn.Linear`` over the same parameters whose product path depends on the row count
    (``low``: the packed / bf16 / int8 copies of the weights for the paths that won)."""

    def __init__(self, lin: nn.Linear, table: list[str], low: dict | None = None):
        nn.Module.__init__(self)
        self.in_features, self.out_features = lin.in_features, lin.out_features
        self.weight, self.bias = lin.weight, lin.bias  # shared: tied weights stay tied
        self.table = table  # table[rows] -> path (last = more)
        self.low = low or {}  # path -> (weight, bias) copies
        self.__dict__["stock"] = lin  # the original module (unregistered)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // max(1, x.shape[-1])
        path = self.table[min(rows, len(self.table) - 1)]
        if _trail is not None:
            _trail.append(path)
        w, b = self.low.get(path, (self.weight, self.bias))
        return PATHS[path](x, w, b)


_trail: list[str] | None = None


@contextlib.contextmanager
def paths_taken():
    """The paths the ``DispatchLinear`` products inside the block take, in call order (a list
    filled as they run). ``core.rows`` compares them between forwards of different sizes: two
    paths are two algorithms, whose results may agree on a probe's tokens and differ on others."""
    global _trail
    outer, _trail = _trail, []
    try:
        yield _trail
    finally:
        _trail = outer


@contextlib.contextmanager
def stock(model: nn.Module):
    """The model exactly as transformers loaded it, for the duration of the block (the original
    ``nn.Linear`` modules put back; weights are shared, so this costs nothing): the baselines of
    transformers' own ``generate`` run on the stock model, as its users run it."""
    swapped = [(parent, name, m) for parent in model.modules() for name, m in parent._modules.items() if isinstance(m, DispatchLinear)]
    for parent, name, m in swapped:
        parent._modules[name] = m.stock
    try:
        yield model
    finally:
        for parent, name, m in swapped:
            parent._modules[name] = m


def _time(fn, reps: int) -> float:
    """The fastest of ``reps`` timed calls after one untimed: a busy machine only ever adds time,
    so the minimum is the product's own cost (the choice is cached, so a slow reading would stay)."""
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def _bf16_copy(lin: nn.Linear):
    return (lin.weight.detach().to(torch.bfloat16), None if lin.bias is None else lin.bias.detach().to(torch.bfloat16))


def _int8_copy(lin: nn.Linear):
    w = lin.weight.detach()
    scale = (w.abs().amax(1) / 127).clamp(min=1e-12).double()
    with warnings.catch_warnings():  # torch marks quantized tensors deprecated; fbgemm still runs them
        warnings.simplefilter("ignore")
        q = torch.quantize_per_channel(w, scale, torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8)
    b = None if lin.bias is None else lin.bias.detach()
    return torch.ops.quantized.linear_prepack(q, b), None


def _packed_copy(lin: nn.Linear):
    return _pack(lin.weight), None if lin.bias is None else lin.bias.detach()


def _rowbf16_copy(lin: nn.Linear):
    return lin.weight.detach().to(torch.bfloat16).contiguous(), None if lin.bias is None else lin.bias.detach().float()


def _rowil_copy(lin: nn.Linear):
    return rowdot.pack_linears([lin])


COPIES = {"packed": _packed_copy, "rowil": _rowil_copy, "bf16": _bf16_copy, "rowbf16": _rowbf16_copy, "int8": _int8_copy}
COPY_BYTES = {"packed": 1.0, "rowil": 1.0, "bf16": 0.5, "rowbf16": 0.5, "int8": 0.25}  # of the dense weight's bytes


_reserved = 0  # bytes promised to memory not taken yet (a compiled forward still to build: core.compiled)


def reserve(nbytes: int) -> None:
    """Keep ``nbytes`` out of what packed copies may take (negative: give it back)."""
    global _reserved
    _reserved = max(0, _reserved + int(nbytes))


def reserved() -> int:
    return _reserved


def mem_available() -> int | None:
    """Bytes the kernel says can still be allocated without swapping (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def _copy_bytes(linears, tables) -> int:
    out = 0
    for _, _, lin in linears:
        used = set(tables[_shape(lin)])
        out += int(sum(COPY_BYTES.get(p, 0) for p in used) * lin.weight.numel() * lin.weight.element_size())
    return out


def _copies(lin: nn.Linear, table) -> dict:
    return {p: COPIES[p](lin) for p in set(table) if p in COPIES}


@torch.inference_mode()
def measure_linear(lin: nn.Linear, paths, rows=ROWS, reps: int = 3) -> dict[str, dict[int, float]]:
    """Median seconds of each path on ``lin``'s own weights, per row count."""
    out: dict[str, dict[int, float]] = {}
    for path in paths:
        w, b = COPIES[path](lin) if path in COPIES else (lin.weight, lin.bias)
        fn = PATHS[path]
        out[path] = {}
        for n in rows:
            x = torch.randn(1, n, lin.in_features, dtype=lin.weight.dtype)
            out[path][n] = _time(lambda: fn(x, w, b), reps)
    return out


def _key(lin: nn.Linear, paths) -> str:
    return (
        f"{cpu_name()}|threads={torch.get_num_threads()}|torch={torch.__version__}|"
        f"{str(lin.weight.dtype).replace('torch.', '')}|{lin.out_features}x{lin.in_features}|"
        f"bias={lin.bias is not None}|{','.join(paths)}" + (f"|rowdot={rowdot.version()}" if set(paths) & set(ROWS_CAPPED) else "")
    )


def _cached(key: str):
    return tuned("kernels", key)


def _store(entries: dict) -> None:
    update_tuning(lambda data: data.setdefault("kernels", {}).update(entries))


def _table(times: dict[str, dict[int, float]], uniform_from: int | None = None) -> list[str]:
    """table[rows] for rows 0..max(ROWS): the fastest path at the smallest measured count >= rows.

    ``uniform_from``: one path for every row count from there on, the one fastest over those
    counts (each count's time relative to its best path, summed). A target needs that: its rows
    compute bit for bit alike across forwards of different sizes only when every size runs the
    same kernel (``core.rows``); a path switch at 8 rows would split every invariant set there.
    The path is judged on the counts up to ``UNIFORM_UPTO`` rows, the verifies of an automatic
    chain (the engine's usual step); larger ones (wide trees) run on it too."""
    rows = sorted(next(iter(times.values())))
    best = {n: min(times, key=lambda p: times[p][n]) for n in rows}
    big = [n for n in rows if uniform_from is not None and n >= uniform_from]
    if big:
        judged = [n for n in big if n <= UNIFORM_UPTO] or big
        lead = min(times, key=lambda p: sum(times[p][n] / max(1e-12, min(t[n] for t in times.values())) for n in judged))
        best.update({n: lead for n in big})
    table = [best[next((m for m in rows if m >= n), rows[-1])] for n in range(rows[-1] + 1)]
    return table + [_beyond(times, table[-1])]


def _beyond(times: dict[str, dict[int, float]], last: str) -> str:
    """The path of a forward of more rows than were measured (a prompt's prefill): the last measured
    count's, unless that is rowdot (or rowil), which hands such blocks to ``F.linear``, a path nobody measured
    for them: then the fastest other path there (on the AVX512-BF16 EPYC the two were alike at 150
    rows, 9.8 against 9.2 ms for the 1536x8960 matrix; not so where the stock product is slow). A
    prefill is shared by plain and speculative decoding, so it may run on another path than the
    verifies (none has that many rows: ``core.rows.CANDIDATES``)."""
    if last not in ROWS_CAPPED:
        return last
    n = max(next(iter(times.values())))
    others = {p: t[n] for p, t in times.items() if p not in ROWS_CAPPED}
    return min(others, key=others.get) if others else "dense"


PROBE_ROWS = (1, 4, 16)
UNIFORM_FROM = 2  # a target runs one path per matrix for every forward of 2 rows or more
UNIFORM_UPTO = 17  # judged on up to this many rows: an automatic chain's verify (core.rows.REACH)


def accelerate(model: nn.Module, role: str = "target", paths=None, force: str | None = None, probe=None) -> dict:
    """Swap the model's linear layers for ``DispatchLinear`` with measured paths (CPU only).

    Two measurements: each weight shape's paths in isolation (above), then, when ``probe`` is
    given (called once, only if needed, it returns ``run(n)``: one whole-model forward of n new
    tokens), the whole model with the chosen paths
    against the stock ``F.linear`` at 1, 4 and 16 rows: a matrix timed alone can win and the model
    still lose (small matrices, where a call's overhead dominates), so per row count the faster of
    the two is kept. ``force`` uses one path everywhere (tests, ``SPECSCOPE_KERNELS``). Returns a
    summary for traces and bench metadata: {"role", "paths": {shape: {rows: path}}, "measured_s"}."""
    dev = next(model.parameters()).device
    if dev.type != "cpu":
        return {"role": role, "paths": "stock (not a CPU)"}
    dtype = next(model.parameters()).dtype
    own = role == "target" or draft_weights_default() == "own"  # no copy that rounds the weights
    paths = [p for p in (paths or ROLE_PATHS[role]) if available(p, dtype) and not (own and p in LOSSY)]
    if force is not None:
        if force not in PATHS or not available(force, dtype) or (force in LOSSY and own):
            why = f" ({rowdot.why_not()})" if force == "rowdot" and rowdot.why_not() else ""
            if force in LOSSY and own and role != "target":
                why = " (SPECSCOPE_DRAFT_WEIGHTS=own keeps drafters on their own weights)"
            raise ValueError(f"kernel path {force!r} is not available here for a {role} in {dtype}{why}")
        paths = [force]
    linears = [(parent, name, m) for parent in model.modules() for name, m in parent._modules.items() if type(m) is nn.Linear]
    if not linears:
        return {"role": role, "paths": {}}
    t0 = time.perf_counter()
    uniform = UNIFORM_FROM if role == "target" else None
    tables: dict[str, list[str]] = {}
    measured: dict[str, dict] = {}  # shape -> {path: {rows: seconds}}
    fresh = {}
    for _, _, lin in linears:
        shape = _shape(lin)
        if shape in tables:
            continue
        mine = fit_paths(lin, paths)
        if len(mine) == 1:
            tables[shape] = [mine[0]] * TABLE
            continue
        key = _key(lin, mine)
        times = _cached(key)
        if times is None:
            times = measure_linear(lin, mine)
            fresh[key] = times
        measured[shape] = {p: {int(n): t for n, t in v.items()} for p, v in times.items()}
        tables[shape] = _table(measured[shape], uniform)
    if fresh:
        _store(fresh)
    free = mem_available()
    free = None if free is None else free - _reserved  # a compiled forward to come needs its share
    if free is not None and "packed" in paths and _copy_bytes(linears, tables) > 0.7 * free:
        for shape in [s for s, t in tables.items() if "packed" in t]:  # the copies would not fit: next best path
            rest = {p: t for p, t in measured.get(shape, {}).items() if p != "packed"}
            tables[shape] = _table(rest, uniform) if rest else ["dense"] * TABLE
    swapped = []
    for parent, name, lin in linears:
        table = tables[_shape(lin)]
        parent._modules[name] = DispatchLinear(lin, list(table), _copies(lin, table))
        swapped.append(parent._modules[name])
    model_check = None
    if probe is not None and force is None and any(p != "dense" for t in tables.values() for p in t):
        key = "model|" + _key(linears[0][2], paths) + f"|{sorted(tables.items())}|n={len(linears)}"
        model_check = _cached(key)
        if model_check is None:
            model_check = _whole_model(swapped, probe())
            _store({key: model_check})
        for n in range(ROWS[-1] + 1):
            buckets = [next((m for m in PROBE_ROWS if m >= n), PROBE_ROWS[-1])]
            if uniform is not None and n >= uniform:  # one verdict for every multi-row forward
                buckets = [m for m in PROBE_ROWS if m >= uniform]
            stock_s = sum(model_check[str(b)]["stock"] for b in buckets)
            if stock_s <= sum(model_check[str(b)]["measured"] for b in buckets):
                for m in swapped:
                    m.table[n] = "dense"
                for t in tables.values():
                    t[n] = "dense"
        for m in swapped:  # multi-row forwards lost to the stock product: longer ones too
            if m.table[ROWS[-1]] == "dense":
                m.table[-1] = "dense"
        for t in tables.values():
            if t[ROWS[-1]] == "dense":
                t[-1] = "dense"
    if all(p == "dense" for t in tables.values() for p in t):  # nothing won: the stock modules,
        for parent, name, lin in linears:  # without a dispatching frame
            parent._modules[name] = lin
    summary = {shape: {**{str(n): t[n] for n in ROWS}, f"{ROWS[-1] + 1}+": t[-1]} for shape, t in tables.items()}
    return {"role": role, "paths": summary, "whole_model_s": model_check, "measured_s": round(time.perf_counter() - t0, 2)}


def _shape(lin: nn.Linear) -> str:
    """A table's key: the weight's shape, and whether its inputs are raw (``fit_paths``)."""
    return f"{lin.out_features}x{lin.in_features}" + (" raw inputs" if getattr(lin, "raw_inputs", False) else "")


def fit_paths(lin: nn.Linear, paths) -> list[str]:
    """``paths`` for ``lin``: without the per-call input scale (int8) where its inputs are marked
    ``raw_inputs`` (not normalised: one massive channel sets the scale and the rest round to a few
    levels). Measured on the real coder head's fc (its input's largest entry 255x its rms): int8's
    relative error 11%, against 1.3-5% on the head's other matrices and 0.2% for bfloat16, and the
    decoding's mean accepted length 1.87 against 2.03 with only the fc off int8 (2.06 in float32)."""
    if not getattr(lin, "raw_inputs", False):
        return list(paths)
    return [p for p in paths if p not in PER_CALL_SCALE] or ["dense"]


def _whole_model(swapped: list[DispatchLinear], probe, reps: int = 3) -> dict:
    """Seconds of ``probe(n)`` with the measured tables and with every layer on ``dense``."""
    tables = [m.table for m in swapped]
    dense = ["dense"] * TABLE
    out = {}
    for n in PROBE_ROWS:
        res = {}
        for mode in ("stock", "measured", "stock", "measured"):  # alternated: drift hits both
            for m, t in zip(swapped, tables):
                m.table = dense if mode == "stock" else t
            res.setdefault(mode, []).append(_time(lambda: probe(n), reps))
        out[str(n)] = {k: min(v) for k, v in res.items()}
    for m, t in zip(swapped, tables):
        m.table = t
    return out


def describe(choice: dict | None) -> str:
    """One line: which path each row count mostly takes ("1 row onednn, 2-64 rows onednn")."""
    if not choice or not isinstance(choice.get("paths"), dict):
        return str((choice or {}).get("paths", "stock"))
    votes: dict[str, dict[str, int]] = {}
    for table in choice["paths"].values():
        for n, p in table.items():
            votes.setdefault(n, {}).setdefault(p, 0)
            votes[n][p] += 1
    return ", ".join(f"{n} rows: {max(v, key=v.get)}" for n, v in votes.items())
