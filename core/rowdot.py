"""A row-invariant matrix product for a few rows on CPUs, built from ``core/rowdot.c`` at first use.

Two facts measured on a 2-core AVX2 EPYC (float32, docs/results.md) make it worth its C:

* every library path loses speed on a few rows: one row of an 8960x1536 product read the weights
  at 14-22 GB/s (MKL, oneDNN, OpenBLAS) against the 24-27 GB/s of a plain sum, and two rows
  collapsed to 6-9 GB/s on MKL and OpenBLAS (their GEMM for small M). A decode step is 197 such
  products: they are the step.
* the libraries compute a row differently depending on how many rows come with it (GEMV for one,
  blocked GEMM for more), so a speculative verify of n rows and a plain step of one disagree in the
  last bits, and the engine pads plain steps to keep them exact (``core.rows``).

``rowdot.c`` computes each output as one dot product in one fixed order, two rows against four
weight rows at a time: the weights are read once per pair of rows (21-22 GB/s for one row, 20 for
two, there), and row i of an n-row product is the one-row product of row i, bit for bit. It is one
more path in ``core.kernels``, chosen only where it measures fastest.

Where the compiler targets AVX512-BF16 (``-march=native`` on such a CPU), bfloat16 weights go through
``rowdot_dpbf16`` instead: VDPBF16PS multiplies 32 bfloat16 pairs of the row and the weights straight
from memory into 16 float32 lanes (no widening; the rows stay bfloat16), with the same fixed order per
dot product. On the 2-core AVX512-BF16 EPYC a one-row product of the 151936-row lm_head read 37 GB/s
on two threads where oneDNN's packed product read 33-34 and the widening kernel 28 (a torch sum of the
same bytes: 47-54; docs/results.md). ``SPECSCOPE_ROWDOT_DPBF16=0`` takes the widening kernel (tests).

    linear(x, w, b)      # F.linear for float32 or bfloat16 CPU tensors (x: (..., K), w: (O, K), b: (O,) or None)
    linear(x, pack(w), b, interleaved=True)  # the same numbers (rowdot_dpbf16 only), read faster:
                         # the weights laid out as the kernel reads them (rowdot_il; core/compiled.py)
    linear_amx(x, pack_amx(w), b)  # AMX-BF16 CPUs: its own numbers, every row alike at any row count,
                         # 16 rows for the price of one (rowdot_amx; core/compiled.py)
    linear_i8(x, *pack_i8(w), b)  # drafters only (AVX512F CPUs): the weights rounded to int8 per output
                         # channel, a quarter of float32's bytes; every row alike (rowdot_i8; core/compiled.py)
    available()          # False where no C compiler builds it (the reason: ``why_not()``)

The shared object is built once per machine with ``cc -O3 -march=native -fopenmp`` (under a
second; it shares torch's OpenMP runtime and thread count) and kept beside the tuning cache,
named by the hash of the source, the flags and the CPU's feature flags.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from .machine import tuning_path

SOURCE = Path(__file__).with_name("rowdot.c")
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared"]  # never -ffast-math: the order is the point
MAX_ROWS = 64  # more rows (a prompt's prefill) go to F.linear: the kernel is bound by its arithmetic there


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln for ln in f if ln.startswith(("flags", "Features"))), "")
    except OSError:
        return ""


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc) or (shutil.which("gcc") if "CC" not in os.environ else None)


@functools.cache
def _lib() -> ctypes.CDLL | str:
    """The loaded kernel, or why there is none."""
    cc = _compiler()
    if cc is None:
        return f"no C compiler ({os.environ.get('CC') or 'cc / gcc'}) found"
    key = f"{_source()}|{' '.join(FLAGS)}|{_cpu_flags()}|{torch.__version__}"
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    out = tuning_path().parent / "kernels" / f"rowdot-{tag}.so"
    lib = build(out, [cc, *FLAGS, str(SOURCE)])
    if isinstance(lib, str):
        return lib
    lib.rowdot_dpbf16_built.restype = ctypes.c_int
    built = [lib.rowdot_f32, lib.rowdot_bf16] + ([lib.rowdot_dpbf16] if lib.rowdot_dpbf16_built() else [])
    for fn in built:  # (rowdot_dpbf16 exists only where the compiler targets AVX512-BF16)
        fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 3 + [ctypes.c_int]
        fn.restype = None
    if lib.rowdot_dpbf16_built():
        lib.rowdot_il.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 3 + [ctypes.c_int] * 2
        lib.rowdot_il.restype = None
        lib.rowdot_il_pack.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_long] * 2 + [ctypes.c_int]
        lib.rowdot_il_pack.restype = None
    lib.rowdot_amx_built.restype = ctypes.c_int
    if lib.rowdot_amx_built():
        lib.rowdot_amx_init.restype = ctypes.c_int
        lib.rowdot_amx.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 3 + [ctypes.c_int]
        lib.rowdot_amx.restype = None
        lib.rowdot_amx_pack.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_long] * 2
        lib.rowdot_amx_pack.restype = None
    lib.rowdot_i8_built.restype = ctypes.c_int
    if lib.rowdot_i8_built():
        lib.rowdot_i8.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_long] * 3 + [ctypes.c_int]
        lib.rowdot_i8.restype = None
        lib.rowdot_i8_pack.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_long] * 2
        lib.rowdot_i8_pack.restype = None
    return lib


def build(out: Path, command: list[str]) -> ctypes.CDLL | str:
    """``out`` loaded, built first by ``command`` (+ ``-o`` a path) unless it exists; or why not."""
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:  # built aside, renamed into place:
            part = Path(tmp) / out.name  # concurrent builders never load a half-written file
            r = subprocess.run([*command, "-o", str(part)], capture_output=True, text=True)
            if r.returncode != 0:
                said = [ln for ln in (r.stderr or r.stdout).strip().splitlines() if "error" in ln] or (
                    r.stderr or r.stdout
                ).strip().splitlines()
                return f"{Path(command[0]).name} failed ({said[-1][:200] if said else f'exit {r.returncode}'})"
            os.replace(part, out)
    try:
        return ctypes.CDLL(str(out))
    except OSError as e:
        return f"cannot load {out.name}: {e}"


@functools.cache
def _dpbf16_built() -> bool:
    lib = _lib()
    return not isinstance(lib, str) and bool(lib.rowdot_dpbf16_built())


def dpbf16() -> bool:
    """Do bfloat16 weights go through ``rowdot_dpbf16`` (built here, not turned off)? Asked on every
    bfloat16 product: the build is asked once, the switch read each time (tests turn it)."""
    return _dpbf16_built() and os.environ.get("SPECSCOPE_ROWDOT_DPBF16", "1") != "0"


@functools.cache
def _source() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:8]


@functools.cache
def _amx_ready() -> bool:
    lib = _lib()
    return not isinstance(lib, str) and bool(lib.rowdot_amx_built()) and bool(lib.rowdot_amx_init())


def amx() -> bool:
    """Does ``rowdot_amx`` run here (built for AMX-BF16, the tile state granted by the kernel, not
    turned off by ``SPECSCOPE_ROWDOT_AMX=0``)?"""
    return _amx_ready() and os.environ.get("SPECSCOPE_ROWDOT_AMX", "1") != "0"


_amx_runs = amx  # for the functions whose keyword ``amx`` hides it


def amx_fits(shape) -> bool:
    """Can ``rowdot_amx`` take a weight of this (O, K) shape (its tiles: K % 32, O % 16)?"""
    return shape[1] % 32 == 0 and shape[0] % 16 == 0


def i8() -> bool:
    """Does ``rowdot_i8`` (int8 weights, drafters only) run here (built for AVX512F)?"""
    lib = _lib()
    return not isinstance(lib, str) and bool(lib.rowdot_i8_built())


def i8_fits(shape) -> bool:
    """Can ``rowdot_i8`` take a weight of this (O, K) shape (K % 64, O % 8)?"""
    return shape[1] % 64 == 0 and shape[0] % 8 == 0


def pack_i8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight ``w`` (O, K) rounded to int8 per output channel (scale: the row's largest magnitude
    over 127) and laid out as ``rowdot_i8`` reads it: (packed int8, scales float32 (O,)). Lossy: for
    drafters only. Only where ``i8()`` and ``i8_fits(w.shape)``."""
    lib = _lib()
    if isinstance(lib, str) or not i8():
        raise RuntimeError("rowdot_i8 needs AVX512F (built with -march=native on such a CPU)")
    if w.dim() != 2 or w.device.type != "cpu" or not i8_fits(w.shape):
        raise TypeError(f"pack_i8 takes a 2-D CPU weight with K % 64 == O % 8 == 0, not {tuple(w.shape)}")
    q, s = quantize_i8(w)
    out = torch.empty_like(q)
    lib.rowdot_i8_pack(q.data_ptr(), out.data_ptr(), w.shape[1], w.shape[0])
    return out, s


def quantize_i8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``w`` (O, K) rounded to int8 per output channel (scale: the row's largest magnitude over 127),
    row by row alike (a slice of rows rounds as in the whole): (q (O, K) int8, scales float32 (O,))."""
    w = w.detach().float()
    s = (w.abs().amax(1) / 127).clamp(min=1e-12)
    return (w / s[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous(), s.contiguous()


def linear_i8(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` on a weight from ``pack_i8`` (``w`` int8, ``s`` its scales, ``b`` float32 or None) for
    rows of any float dtype (summed in float32, returned in ``x``'s dtype); every row computes alike."""
    lib = _lib()
    if isinstance(lib, str) or not i8():
        raise RuntimeError("rowdot_i8 needs AVX512F (built with -march=native on such a CPU)")
    if w.dtype != torch.int8 or x.device.type != "cpu":
        raise TypeError(f"linear_i8 takes CPU rows and a weight from pack_i8, not {w.dtype} on {x.device}")
    O, K = s.shape[0], x.shape[-1]
    x2 = x.reshape(-1, K).float().contiguous()
    b = None if b is None else b.float().contiguous()
    y = torch.empty(x2.shape[0], O, dtype=torch.float32)
    if x2.shape[0]:
        lib.rowdot_i8(
            x2.data_ptr(),
            w.data_ptr(),
            s.data_ptr(),
            None if b is None else b.data_ptr(),
            y.data_ptr(),
            x2.shape[0],
            K,
            O,
            torch.get_num_threads(),
        )
    return y.view(*x.shape[:-1], O).to(x.dtype)


def version() -> str:
    """The kernel's source, hashed, and which bfloat16 kernel runs: measurements of it
    (core.kernels) are keyed by it."""
    return _source() + (f"-dpbf16-il{layout()}" if dpbf16() else "") + ("-amx" if amx() else "")


def why_not() -> str | None:
    """Why the kernel is not available here (None: it is)."""
    lib = _lib()
    return lib if isinstance(lib, str) else None


DTYPES = (torch.float32, torch.bfloat16)


def available(dtype: torch.dtype = torch.float32) -> bool:
    return dtype in DTYPES and why_not() is None


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, interleaved: bool = False) -> torch.Tensor:
    """``F.linear(x, w, b)`` for float32 or bfloat16 CPU tensors, every row computed alike (module
    docstring) for up to ``MAX_ROWS`` rows; more are a prompt's prefill (plain and speculative
    decoding share it). bfloat16: the products and the bias summed in float32 (``sums``), rounded
    once to bfloat16 at the end, as the library's bfloat16 product does."""
    if x.numel() > MAX_ROWS * x.shape[-1] and x.dtype in DTYPES and w.dtype == x.dtype and not interleaved:
        return torch.nn.functional.linear(x, w, b)
    return sums(x, w, b, interleaved).to(x.dtype)


LAYOUTS = (8 | 16, 8, 4 | 16, 4)  # rowdot_il's ways to read: weight rows a block (8 or 4), + 16: 2-3 rows padded to 4
LAYOUT_ROWS = (1, 2, 3, 4, 8)  # the row counts the layouts are timed at (plain steps, verifies)
LAYOUT_SHAPES = ((4096, 1536, 6), (1536, 8960, 3))  # (out, in, count): 157 MB of weights, past the caches


def layout() -> int:
    """How ``rowdot_il`` reads on this machine (``LAYOUTS``): measured once per machine and kernel
    source (the tuning file, key "rowdot_layout"), the fastest summed over ``LAYOUT_ROWS`` kept. Every
    layout computes the same sums bit for bit (core/rowdot.c), so only the speed is chosen:
    ``SPECSCOPE_ROWDOT_LAYOUT`` (a number of ``LAYOUTS``) forces one."""
    want = os.environ.get("SPECSCOPE_ROWDOT_LAYOUT", "").strip()
    if want:
        if not want.isdigit() or int(want) not in LAYOUTS:
            from .errors import InputError

            raise InputError(f"SPECSCOPE_ROWDOT_LAYOUT={want!r}: use one of {', '.join(map(str, LAYOUTS))}")
        return int(want)
    return _measured_layout()


@functools.cache
def _measured_layout() -> int:
    from .machine import cpu_name, cheapest_per_token, tuned, update_tuning

    key = f"{cpu_name()}|threads={torch.get_num_threads()}|{_source()}|rows={LAYOUT_ROWS}|per-rows"
    hit = tuned("rowdot_layout", key)
    if hit is None:
        hit = {str(k): v for k, v in time_layouts().items()}
        update_tuning(lambda d: d.setdefault("rowdot_layout", {}).__setitem__(key, hit))
    return int(cheapest_per_token(hit))


@torch.inference_mode()
def time_layouts(rounds: int = 3, shapes=LAYOUT_SHAPES) -> dict:
    """Seconds of the products over ``shapes`` of random bfloat16 weights at each of ``LAYOUT_ROWS``,
    on each of ``LAYOUTS``; the fastest of ``rounds`` alternated: {layout: {rows: s}} (the choice:
    ``machine.cheapest_per_token``)."""
    import time

    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(o, k, generator=g).to(torch.bfloat16) for o, k, c in shapes for _ in range(c)]
    packs = {il: [pack(w, il) for w in ws] for il in sorted({lay & 15 for lay in LAYOUTS})}
    xs = {n: {k: torch.randn(n, k, generator=g).to(torch.bfloat16) for k in {w.shape[1] for w in ws}} for n in LAYOUT_ROWS}
    best = {lay: {n: float("inf") for n in LAYOUT_ROWS} for lay in LAYOUTS}
    for r in range(rounds + 1):  # the first round untimed
        for lay in LAYOUTS:
            for n in LAYOUT_ROWS:
                t0 = time.perf_counter()
                for w in packs[lay & 15]:
                    sums(xs[n][w.shape[1]], w, interleaved=True, layout=lay)
                if r:
                    best[lay][n] = min(best[lay][n], time.perf_counter() - t0)
    return {lay: {str(n): round(t, 6) for n, t in per.items()} for lay, per in best.items()}


def pack(w: torch.Tensor, layout_: int | None = None) -> torch.Tensor:
    """A copy of the bfloat16 weight ``w`` (O, K) laid out as ``rowdot_il`` reads it (blocks of 8 or 4
    rows by ``layout()``, each one sequential stream: ``core/rowdot.c``), for ``linear(x, packed, b,
    interleaved=True)``: the same numbers as ``linear(x, w, b)``, read faster. Only where ``dpbf16()``."""
    lib = _lib()
    if isinstance(lib, str) or not dpbf16():
        raise RuntimeError("the interleaved bfloat16 kernel needs rowdot_dpbf16 (AVX512-BF16)")
    if w.dtype != torch.bfloat16 or w.dim() != 2 or w.device.type != "cpu":
        raise TypeError(f"pack takes a 2-D bfloat16 CPU weight, not {w.dtype} {tuple(w.shape)} on {w.device}")
    w = w.detach().contiguous()
    out = torch.empty_like(w)
    lib.rowdot_il_pack(w.data_ptr(), out.data_ptr(), w.shape[1], w.shape[0], _layout_of(layout_) & 15)
    return out


def pack_amx(w: torch.Tensor) -> torch.Tensor:
    """A copy of the bfloat16 weight ``w`` (O, K) laid out as ``rowdot_amx``'s tiles load it, for
    ``linear_amx(x, packed, b)``. Only where ``amx()`` and ``amx_fits(w.shape)``."""
    lib = _lib()
    if isinstance(lib, str) or not amx():
        raise RuntimeError("rowdot_amx needs AMX-BF16 (built with -march=native on such a CPU)")
    if w.dtype != torch.bfloat16 or w.dim() != 2 or w.device.type != "cpu" or not amx_fits(w.shape):
        raise TypeError(f"pack_amx takes a 2-D bfloat16 CPU weight with O % 16 == K % 32 == 0, not {w.dtype} {tuple(w.shape)}")
    w = w.detach().contiguous()
    out = torch.empty_like(w)
    lib.rowdot_amx_pack(w.data_ptr(), out.data_ptr(), w.shape[1], w.shape[0])
    return out


def linear_amx(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` on a weight from ``pack_amx`` (bfloat16 rows, float32 bias or None): the float32
    sums of ``rowdot_amx`` (``sums(..., amx=True)``), rounded once to bfloat16. Any row count; a row
    computes alike in all."""
    return sums(x, w, b, amx=True).to(x.dtype)


def pack_linears(lins, amx: bool = False, i8: bool = False) -> tuple:
    """``pack`` (``pack_amx`` with ``amx``) of the linears' weights stacked (their outputs side by
    side: one call computes them all, each output the same dot product as alone), and their biases in
    float32 (zeros for one without), None if none has one: (weight, bias). With ``i8``, ``pack_i8``'s
    copy: (int8 weight, scales, bias)."""
    w = torch.cat([m.weight.detach() for m in lins]) if len(lins) > 1 else lins[0].weight
    w = pack_i8(w) if i8 else (pack_amx(w) if amx else pack(w),)
    if all(m.bias is None for m in lins):
        return (*w, None)
    b = [m.bias.detach().float() if m.bias is not None else torch.zeros(m.out_features) for m in lins]
    return (*w, torch.cat(b).contiguous())


def sums(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, interleaved: bool = False, amx: bool = False, layout: int | None = None
) -> torch.Tensor:
    """The float32 sums behind ``linear`` (for bfloat16, before the one rounding: what the row
    invariance is about; a rounding to 8 bits would hide a changed order in the tests); with ``amx``,
    ``rowdot_amx``'s on a weight from ``pack_amx``; ``interleaved``: on a weight from ``pack`` in
    ``layout`` (default ``layout()``, as ``pack``'s)."""
    lib = _lib()
    if isinstance(lib, str):
        raise RuntimeError(f"rowdot kernel unavailable: {lib}")
    if x.dtype not in DTYPES or w.dtype != x.dtype or x.device.type != "cpu":
        raise TypeError(f"rowdot takes float32 or bfloat16 CPU tensors of one dtype, not {x.dtype} / {w.dtype} on {x.device}")
    O, K = w.shape
    lead = x.shape[:-1]
    w = w.contiguous()
    b = None if b is None else b.float().contiguous()
    extra = ()
    if amx:  # a weight from ``pack_amx``
        if not (w.dtype == x.dtype == torch.bfloat16 and _amx_runs()):
            raise TypeError("rowdot_amx takes bfloat16 rows and a weight from pack_amx, on a CPU with AMX-BF16")
        x2, fn = x.reshape(-1, K).contiguous(), lib.rowdot_amx
    elif interleaved:  # a weight from ``pack``
        if not (w.dtype == x.dtype == torch.bfloat16 and dpbf16()):
            raise TypeError("an interleaved weight takes bfloat16 rows, on rowdot_dpbf16")
        x2, fn = x.reshape(-1, K).contiguous(), lib.rowdot_il
        extra = (_layout_of(layout),)  # as the weight was packed
    elif w.dtype == torch.bfloat16 and dpbf16():  # the rows as the model holds them
        x2, fn = x.reshape(-1, K).contiguous(), lib.rowdot_dpbf16
    else:
        x2 = x.reshape(-1, K).float().contiguous()  # bfloat16 -> float32 is exact
        if w.dtype == torch.bfloat16:
            x2 = _even_odd(x2)
        fn = lib.rowdot_f32 if w.dtype == torch.float32 else lib.rowdot_bf16
    y = torch.empty(x2.shape[0], O, dtype=torch.float32)
    if x2.shape[0]:
        fn(
            x2.data_ptr(),
            w.data_ptr(),
            None if b is None else b.data_ptr(),
            y.data_ptr(),
            x2.shape[0],
            K,
            O,
            torch.get_num_threads(),
            *extra,
        )
    return y.view(*lead, O)


def _layout_of(given: int | None) -> int:
    """``given`` (one of ``LAYOUTS``), or this machine's ``layout()`` when None."""
    if given is None:
        return layout()
    if given not in LAYOUTS:
        raise ValueError(f"rowdot_il layout {given!r}: use one of {', '.join(map(str, LAYOUTS))}")
    return given


def _even_odd(x: torch.Tensor) -> torch.Tensor:
    """x laid out as rowdot_bf16 reads it: each chunk of 16 columns as its 8 even then its 8 odd
    columns (the kernel widens 16 bfloat16 weights into those two vectors), the tail in order."""
    n, K = x.shape
    KC = K - K % 16
    chunks = x[:, :KC].reshape(n, KC // 16, 8, 2).transpose(2, 3).reshape(n, KC)
    return torch.cat([chunks, x[:, KC:]], 1) if KC < K else chunks.contiguous()
