"""Greedy decoding's logits from an int8 copy of the lm_head, exact where they are read.

At temperature 0 a step reads two numbers of each row of the target's logits: the largest (its token)
and the second (the trace's margin). The lm_head is the largest single weight of a small model: a
sixth of the 1.5B Qwen2.5-Coder's bytes a step (151936 x 1536 bfloat16, 467 of 3087 MB). The screen
reads an int8 copy of it instead (half the bytes: ``rowdot_i8``), bounds each logit's error, and
computes exactly only the tokens that could be first or second: on the real target's answers about 5
a row (docs/results.md, thirty-third session). Every other logit keeps its int8 value, below both.

    screen = Screen(lm_head.weight)     # only where ``available()``
    logits = screen.logits(x)           # (n, V) float32: each row's two largest exactly the full head's
                                        # (None where a row could not be screened: compute it in full)

Exact means the full head's numbers bit for bit: ``rowdot.linear(x, w)`` (for bfloat16 on AVX512-BF16
``rowdot_dpbf16``, the same sums as ``rowdot_il`` whatever the layout, rounded to bfloat16; for float32
``rowdot_f32``), which the compiled forward computes the full head with where it may screen. So the
argmax (the first on a tie), the margin and every token equal the full head's, and a row depends only on
its own x: the row invariance the engine's exactness rests on holds as for the full head.

The bound, per token j with weight row w (K values), int8 row q, scale s, x one row (bfloat16):
  * the int8 head's sum a = s * sum(q x) misses the true sum T = sum(w x) by at most
    max|w - s q| * |x|_1, plus the float32 rounding of its sums, at most gamma_K * (max|w| + max|w - s q|) * |x|_1
    (gamma_K = K u / (1 - K u), u = 2^-24: any order of summation);
  * the full head's float32 sum F misses T by at most gamma_K * max|w| * |x|_1;
  * so |a - F| <= c * |x|_1 with c = max|w - s q| + 2 gamma_K (max|w| + max|w - s q|), per row of the
    weight, computed here in float64 from the weight and its int8 copy (``rowdot.quantize_i8``);
  * bfloat16 rounds F to a neighbour at most 2^-8 |F| away, monotonically: two logits whose F differ by
    more than 2^-8 (|F_i| + |F_j|) keep their order. ``core/screen.c`` widens each bound by 2^-7 (|a| +
    c |x|_1), twice that, the rest covering its own float32 arithmetic.
With lo = a - e and hi = a + e, the exact first and second are at least L2, the second largest lo; a
token with hi < L2 can be neither, and its int8 value a <= hi stays below both. Measured on the real
target the largest error was 0.15 of its bound (docs/results.md).

The int8 logits come from ``rowdot_i8`` on CPUs with AVX512F and from ``core/screen.c``'s own kernel
(8 lanes) on the AVX2 kind, where a float32 head is 934 MB of the 1.5B target's 6.2 GB step and its int8
copy a quarter of that. Only heads without a bias, bfloat16 or float32, on CPUs with AVX2 and FMA at
least; the compiled forward (core/compiled.py) times the screen against the full head and takes it at
the row counts where it measures cheaper. ``SPECSCOPE_SCREEN_AVX2=1`` builds the AVX2 code on an
AVX512 CPU (tests).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib

import torch

from . import rowdot
from .machine import tuning_path

SOURCE = rowdot.SOURCE.with_name("screen.c")
CAP = 4096  # tokens a row may keep for the exact products; past it the row is computed in full
GROUP = 4  # weight rows rowdot's kernels take together: the exact tokens are computed in these groups
CHUNK = 8192  # weight rows at a time while the bound's factors are computed (float64 copies)
U = 2.0**-24  # float32's unit roundoff


def _avx2() -> bool:
    """The AVX2 code (``SPECSCOPE_SCREEN_AVX2=1``: built without AVX512 even where the CPU has it)."""
    import os

    return os.environ.get("SPECSCOPE_SCREEN_AVX2", "") == "1"


def _lib() -> ctypes.CDLL | str:
    return _built(_avx2())


@functools.cache
def _built(avx2: bool) -> ctypes.CDLL | str:
    """``core/screen.c`` loaded (built first with rowdot's compiler and flags), or why not."""
    cc = rowdot._compiler()
    if cc is None:
        return "no C compiler found"
    flags = [*rowdot.FLAGS, *(["-mno-avx512f"] if avx2 else [])]
    key = f"{SOURCE.read_text()}|{' '.join(flags)}|{rowdot._cpu_flags()}"
    out = tuning_path().parent / "kernels" / f"screen-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
    lib = rowdot.build(out, [cc, *flags, str(SOURCE)])
    if isinstance(lib, str):
        return lib
    lib.screen_built.restype = ctypes.c_int
    lib.screen_i8_built.restype = ctypes.c_int
    if lib.screen_built():
        lib.screen_row.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float, ctypes.c_long, ctypes.c_void_p, ctypes.c_long]
        lib.screen_row.restype = ctypes.c_long
    if lib.screen_i8_built():
        lib.screen_i8.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 3 + [ctypes.c_int]
        lib.screen_i8.restype = None
        lib.screen_i8_pack.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_long] * 2
        lib.screen_i8_pack.restype = None
    return lib


def _own_i8() -> bool:
    """Do the int8 logits come from ``core/screen.c`` (the AVX2 code) rather than ``rowdot_i8``?"""
    return _avx2() or not rowdot.i8()


def available(weight: torch.Tensor, bias: torch.Tensor | None = None) -> str | None:
    """Why this head cannot be screened here (None: it can)."""
    if bias is not None:
        return "the head has a bias"
    if weight.dtype not in (torch.bfloat16, torch.float32) or weight.device.type != "cpu" or weight.dim() != 2:
        return f"a {weight.dtype} head on {weight.device} (bfloat16 or float32 CPU heads only)"
    if not rowdot.available(weight.dtype):
        return f"no rowdot kernel for the exact logits ({rowdot.why_not()})"
    if not rowdot.i8_fits(weight.shape):
        return f"the int8 products do not take a {tuple(weight.shape)} weight (K % 64, V % 8)"
    lib = _lib()
    if isinstance(lib, str):
        return lib
    if not lib.screen_built() or (_own_i8() and not lib.screen_i8_built()):
        return "core/screen.c built without AVX2 and FMA"
    return None


def factors(weight: torch.Tensor) -> torch.Tensor:
    """c per weight row (module docstring): the bound of |int8 logit - exact logit| per unit of |x|_1,
    for the int8 copy ``rowdot.quantize_i8`` makes (as ``pack_i8``). Float64, rounded up to float32."""
    K = weight.shape[1]
    gamma = K * U / (1 - K * U)
    out = torch.empty(weight.shape[0], dtype=torch.float64)
    for i in range(0, weight.shape[0], CHUNK):
        w = weight[i : i + CHUNK].double()
        q, sc = rowdot.quantize_i8(weight[i : i + CHUNK])
        miss = (w - q.double() * sc.double()[:, None]).abs().amax(1)
        out[i : i + CHUNK] = miss + 2 * gamma * (w.abs().amax(1) + miss)
    c = out.float()
    return torch.where(c.double() < out, torch.nextafter(c, torch.tensor(float("inf"))), c).contiguous()


class Screen:
    """An lm_head's int8 copy and bound factors (``available`` first)."""

    def __init__(self, weight: torch.Tensor):
        self.weight = weight.detach()
        self.lib = _lib()  # the build this screen was made with (its int8 layout), read once
        self.own = _own_i8()  # the int8 logits from core/screen.c (AVX2) rather than rowdot_i8
        if self.own:
            q, self.s = rowdot.quantize_i8(self.weight)
            self.q = torch.empty_like(q)
            self.lib.screen_i8_pack(q.data_ptr(), self.q.data_ptr(), q.shape[1], q.shape[0])
        else:
            self.q, self.s = rowdot.pack_i8(self.weight)
        self.c = factors(self.weight)
        self.kept: list[int] = []  # tokens computed exactly in the last call, per row (for the bench)

    @property
    def nbytes(self) -> int:
        return self.q.numel() + 4 * (self.s.numel() + self.c.numel())

    @torch.inference_mode()
    def logits(self, x: torch.Tensor) -> torch.Tensor | None:
        """(n, V) float32 for rows x (n, K) of the head's dtype: the int8 head's logits, each row's
        possible first and second replaced by the full head's (bfloat16, widened). None where a row's
        logits are not finite or more than ``CAP`` tokens could be first or second."""
        n, V = x.shape[0], self.weight.shape[0]
        a = self.approx(x)
        # |x|_1 summed in float64 and rounded up past float32's rounding of it
        l1 = (x.double().abs().sum(-1) * (1 + 2.0**-20)).tolist()
        idx = torch.empty(n, CAP + 16, dtype=torch.int32)
        kept = []
        for r in range(n):
            k = self.lib.screen_row(a[r].data_ptr(), self.c.data_ptr(), l1[r], V, idx[r].data_ptr(), CAP)
            if k < 0:
                return None
            kept.append(idx[r, :k].long())
        self.kept = [len(k) for k in kept]
        # the kept tokens' weight rows in the full head's groups (rowdot's float32 / widening kernels take
        # weight rows four at a time, the rest alone, and a row's sums differ between the two)
        groups = torch.unique(torch.cat(kept) // GROUP) * GROUP
        union = (groups[:, None] + torch.arange(GROUP)).flatten()
        union = union[union < V]  # ascending
        exact = rowdot.linear(x, self.weight.index_select(0, union)).float()  # (n, |union|), the full head's numbers
        for r, toks in enumerate(kept):
            a[r, toks] = exact[r, torch.searchsorted(union, toks)]
        return a

    def approx(self, x: torch.Tensor) -> torch.Tensor:
        """The int8 head's logits, float32 (n, V), for rows x: within c |x|_1 of the full head's sums."""
        if not self.own:
            return rowdot.linear_i8(x.float(), self.q, self.s)
        xf = x.float().contiguous()
        a = torch.empty(xf.shape[0], self.weight.shape[0], dtype=torch.float32)
        self.lib.screen_i8(
            xf.data_ptr(), self.q.data_ptr(), self.s.data_ptr(), a.data_ptr(), xf.shape[0], xf.shape[1], a.shape[1], torch.get_num_threads()
        )
        return a
