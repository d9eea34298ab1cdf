"""core.rowdot: row i of an n-row product is the one-row product of row i, bit for bit, at any
thread count; so the row-set probe (core.rows) finds one group from a single row up and plain
steps need no padding; a machine without a C compiler gets a reason, never an error."""

import pytest
import torch
import torch.nn.functional as F

from core import adapters, kernels, rowdot
from core import rows as R
from tools.tiny import tiny_model_dir

needs_kernel = pytest.mark.skipif(not rowdot.available(), reason=f"rowdot: {rowdot.why_not()}")


DTYPES = [torch.float32, torch.bfloat16]
# the kernels: float32; bfloat16 widened to float32 (any x86-64); bfloat16 on VDPBF16PS (where built)
KERNELS = [(torch.float32, "any"), (torch.bfloat16, "widened"), (torch.bfloat16, "dpbf16")]


@pytest.fixture(params=KERNELS, ids=lambda k: k[1] if k[0] == torch.bfloat16 else "float32")
def dtype(request, monkeypatch):
    dtype, kernel = request.param
    if kernel == "dpbf16" and not (rowdot.available() and rowdot.dpbf16()):
        pytest.skip("rowdot_dpbf16: not built here (no AVX512-BF16, or no compiler)")
    monkeypatch.setenv("SPECSCOPE_ROWDOT_DPBF16", "0" if kernel == "widened" else "1")
    return dtype


def test_the_bfloat16_kernel_is_the_one_named(monkeypatch):
    if not rowdot.available():
        pytest.skip(f"rowdot: {rowdot.why_not()}")
    monkeypatch.setenv("SPECSCOPE_ROWDOT_DPBF16", "0")
    assert not rowdot.dpbf16() and not rowdot.version().endswith("-dpbf16")  # tuning keyed apart
    monkeypatch.setenv("SPECSCOPE_ROWDOT_DPBF16", "1")
    assert rowdot.dpbf16() == bool(rowdot._lib().rowdot_dpbf16_built())


@needs_kernel
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("out_features,in_features", [(40, 24), (257, 100), (1536, 256), (3, 9), (21, 1536)])
def test_every_row_is_the_one_row_product(out_features, in_features, bias, dtype):
    g = torch.Generator().manual_seed(out_features * in_features)
    w = torch.randn(out_features, in_features, generator=g).to(dtype)
    b = torch.randn(out_features, generator=g).to(dtype) if bias else None
    x = torch.randn(48, in_features, generator=g).to(dtype)
    sums = rowdot.sums(x, w, b)  # float32 (bfloat16: before the rounding, which would hide an order change)
    for i in range(48):
        assert torch.equal(rowdot.sums(x[i : i + 1], w, b)[0], sums[i]), i
    for n in (2, 3, 5, 17):
        assert torch.equal(rowdot.sums(x[:n], w, b), sums[:n]), n
    assert torch.equal(rowdot.sums(x.view(2, 24, in_features), w, b).view(48, -1), sums)  # leading dims
    full = rowdot.linear(x, w, b)
    assert full.dtype == dtype and torch.equal(full, sums.to(dtype))
    if dtype == torch.float32:
        assert torch.allclose(full, F.linear(x, w, b), rtol=1e-5, atol=1e-4)
    else:  # float32 sums rounded once: the float32 product of the same (exactly widened) numbers, rounded
        exact = F.linear(x.double(), w.double(), None if b is None else b.double())
        assert torch.allclose(full.double(), exact, rtol=2**-8, atol=1e-3)


@pytest.mark.parametrize("out_features,in_features", [(8, 32), (13, 32), (16, 40), (37, 100), (264, 1536), (9, 8960)])
def test_the_interleaved_layout_gives_rowdot_dpbf16s_numbers(out_features, in_features):
    """``pack`` + ``interleaved=True`` (the compiled forward's products): the same sums as
    rowdot_dpbf16 on the plain weight, bit for bit, at every row count and in every layout, rows past
    the last block and columns past the last chunk of 32 included (red with a block's rows or a
    row's tail laid out one place off, or the tail summed before the chunks)."""
    if not (rowdot.available() and rowdot.dpbf16()):
        pytest.skip("rowdot_dpbf16: not built here (no AVX512-BF16, or no compiler)")
    g = torch.Generator().manual_seed(out_features + in_features)
    w = torch.randn(out_features, in_features, generator=g).bfloat16()
    b = torch.randn(out_features, generator=g)
    x = torch.randn(9, in_features, generator=g).bfloat16()
    for layout in rowdot.LAYOUTS:  # 8 or 4 weight rows a block, two or three rows padded to four or not
        packed = rowdot.pack(w, layout)
        assert packed.shape == w.shape
        for bias in (None, b):
            for n in (1, 2, 3, 4, 5, 6, 7, 8, 9):
                got = rowdot.sums(x[:n], packed, bias, interleaved=True, layout=layout)
                assert torch.equal(got, rowdot.sums(x[:n], w, bias)), (layout, n, bias is None)
    packed = rowdot.pack(w)  # the layout this machine measured fastest
    assert torch.equal(rowdot.linear(x, packed, b, interleaved=True), rowdot.linear(x, w, b))
    with pytest.raises(TypeError):
        rowdot.sums(x.float(), packed, None, interleaved=True)


def test_the_layout_is_the_one_measured_fastest_and_kept_per_machine(monkeypatch, tmp_path):
    """``layout()`` keeps the layout whose timed products cost least (red if it kept the first, or a
    fixed one), measures once per machine (the tuning file), and takes a forced one from the
    environment, refusing one that is not a layout."""
    if not (rowdot.available() and rowdot.dpbf16()):
        pytest.skip("rowdot_dpbf16: not built here (no AVX512-BF16, or no compiler)")
    from core.errors import InputError

    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))
    monkeypatch.delenv("SPECSCOPE_ROWDOT_LAYOUT", raising=False)
    calls = []
    for fastest in (4 | 16, 8, 4):
        times = {lay: {"1": 1.0 + 0.1 * i, "8": 2.0} for i, lay in enumerate(rowdot.LAYOUTS)}
        times[fastest] = {"1": 0.5, "8": 2.0}
        monkeypatch.setattr(rowdot, "time_layouts", lambda t=times: calls.append(1) or dict(t))
        monkeypatch.setattr(rowdot, "_source", lambda f=fastest: f"src{f}")  # another kernel: measured anew
        rowdot._measured_layout.cache_clear()
        assert rowdot.layout() == fastest
        rowdot._measured_layout.cache_clear()
        assert rowdot.layout() == fastest  # read back from the tuning file
    assert len(calls) == 3
    monkeypatch.setenv("SPECSCOPE_ROWDOT_LAYOUT", "4")
    assert rowdot.layout() == 4
    monkeypatch.setenv("SPECSCOPE_ROWDOT_LAYOUT", "5")
    with pytest.raises(InputError):
        rowdot.layout()
    with pytest.raises(ValueError, match="layout 5"):  # packed in a layout the kernel cannot read
        rowdot.pack(torch.zeros(8, 32, dtype=torch.bfloat16), 5)
    rowdot._measured_layout.cache_clear()


@pytest.mark.parametrize("out_features,in_features", [(16, 32), (64, 64), (400, 64), (2048, 1536), (8960 + 48, 96)])
def test_rowdot_amx_computes_every_row_as_alone(out_features, in_features):
    """``rowdot_amx`` (AMX-BF16 CPUs): every row's float32 sums the same at every row count and on one
    or two threads, groups of 64 outputs and tiles of 16 past them, blocks of 16 rows and a padded last
    block; close to the exact product (red with a tile past the last group read one place off, or the
    single row's sums begun with an extra product)."""
    if not (rowdot.available() and rowdot.amx()):
        pytest.skip("rowdot_amx: not built here (no AMX-BF16, or no compiler)")
    g = torch.Generator().manual_seed(out_features + in_features)
    w = torch.randn(out_features, in_features, generator=g).bfloat16()
    b = torch.randn(out_features, generator=g)
    packed = rowdot.pack_amx(w)
    x = torch.randn(35, in_features, generator=g).bfloat16()
    full = rowdot.sums(x, packed, b, amx=True)
    for n in (1, 2, 3, 4, 8, 15, 16, 17, 33):
        assert torch.equal(rowdot.sums(x[:n], packed, b, amx=True), full[:n]), n
    for i in (0, 7, 16, 34):
        assert torch.equal(rowdot.sums(x[i : i + 1], packed, b, amx=True)[0], full[i]), i
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(rowdot.sums(x, packed, b, amx=True), full)
    finally:
        torch.set_num_threads(before)
    exact = F.linear(x.double(), w.double(), b.double())
    assert torch.allclose(full.double(), exact, rtol=1e-5, atol=1e-3 * in_features**0.5)
    assert torch.equal(rowdot.linear_amx(x, packed, b), full.bfloat16())
    with pytest.raises(TypeError):
        rowdot.pack_amx(torch.randn(24, 64).bfloat16())  # 24 outputs: not a tile of 16


@pytest.mark.parametrize("out_features,in_features", [(8, 64), (1152, 896), (136, 192)])
def test_rowdot_i8_computes_every_row_as_alone_near_the_rounded_weights(out_features, in_features):
    """``rowdot_i8`` (drafters only): the weights rounded to int8 per output channel; every row's
    result the same at every row count (blocks of four, the rest alone) and on one or two threads;
    close to the product with the rounded weights, and within the rounding of the true product
    (red with a block's chunks read one place off, the scale or the bias dropped, or a row's sums
    taken from the row before)."""
    if not (rowdot.available() and rowdot.i8()):
        pytest.skip("rowdot_i8: not built here (no AVX512F, or no compiler)")
    g = torch.Generator().manual_seed(out_features + in_features)
    w = torch.randn(out_features, in_features, generator=g) / 8
    b = torch.randn(out_features, generator=g)
    q, s = rowdot.pack_i8(w)
    x = torch.randn(11, in_features, generator=g)
    full = rowdot.linear_i8(x, q, s, b)
    for n in (1, 2, 3, 4, 5, 8, 9):
        assert torch.equal(rowdot.linear_i8(x[:n], q, s, b), full[:n]), n
    for i in (0, 5, 10):
        assert torch.equal(rowdot.linear_i8(x[i : i + 1], q, s, b)[0], full[i]), i
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(rowdot.linear_i8(x, q, s, b), full)
    finally:
        torch.set_num_threads(before)
    scale = w.abs().amax(1, keepdim=True) / 127
    rounded = (w / scale).round().clamp(-127, 127) * scale
    assert torch.allclose(full.double(), F.linear(x.double(), rounded.double(), b.double()), rtol=1e-5, atol=1e-4)
    err = (full.double() - F.linear(x.double(), w.double(), b.double())).abs().max()
    assert err < 0.02 * F.linear(x.double(), w.double()).abs().max()  # a rounding, not another product
    assert rowdot.linear_i8(x.bfloat16(), q, s, b).dtype == torch.bfloat16  # the rows' dtype back
    with pytest.raises(TypeError):
        rowdot.pack_i8(torch.randn(12, 64))  # 12 outputs: not a block of 8


@needs_kernel
def test_the_thread_count_changes_no_bit(dtype):
    g = torch.Generator().manual_seed(1)
    w, x = torch.randn(999, 300, generator=g).to(dtype), torch.randn(5, 300, generator=g).to(dtype)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = rowdot.sums(x, w)
        torch.set_num_threads(max(2, before))
        assert torch.equal(rowdot.sums(x, w), one)
    finally:
        torch.set_num_threads(before)


@needs_kernel
def test_a_prefill_past_the_row_cap_is_the_library_product():
    w, x = torch.randn(64, 32), torch.randn(rowdot.MAX_ROWS + 5, 32)
    assert torch.equal(rowdot.linear(x, w), F.linear(x, w))


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_target_on_rowdot_is_exact_from_a_single_row(monkeypatch, tmp_path, dtype):
    """The probe measured afresh: one group holding every candidate size, 1 included (on the AVX2
    EPYC the library paths split 1 | 2-3 | 4+ in float32, so plain steps were padded to 4 rows)."""
    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))
    tgt = adapters.load(tiny_model_dir("llama"), dtype=dtype, kernels="rowdot")
    assert {p for t in tgt.kernels["paths"].values() for p in t.values()} == {"rowdot"}
    rs = R.row_set(tgt, refresh=True)
    assert rs.sizes == R.CANDIDATES and rs.groups == (R.CANDIDATES,), rs
    assert not rs.unpadded_faster  # 1 is in the group: plain decoding's own speed is the baseline


def test_a_build_without_avx512_bf16_loads_with_the_widening_kernel(monkeypatch, tmp_path):
    """An AVX2-only CPU's build has no rowdot_dpbf16 (red when the loader asks for it anyway)."""
    if not rowdot.available():
        pytest.skip(f"rowdot: {rowdot.why_not()}")
    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))
    monkeypatch.setattr(rowdot, "FLAGS", [*rowdot.FLAGS, "-mno-avx512bf16"])
    lib = rowdot._lib.__wrapped__()
    assert not isinstance(lib, str), lib
    assert lib.rowdot_dpbf16_built() == 0 and not hasattr(lib, "rowdot_dpbf16")


def test_without_a_compiler_it_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert "no C compiler" in rowdot._lib.__wrapped__()
    monkeypatch.setenv("CC", "false")  # a compiler that fails
    assert "failed" in rowdot._lib.__wrapped__()
    monkeypatch.setattr(rowdot, "_lib", lambda: "no C compiler (cc) found")
    assert not rowdot.available() and not kernels.available("rowdot")
    with pytest.raises(RuntimeError, match="no C compiler"):
        rowdot.linear(torch.ones(1, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="not available here.*no C compiler"):  # SPECSCOPE_KERNELS=rowdot
        kernels.accelerate(torch.nn.Sequential(torch.nn.Linear(4, 2)), "target", force="rowdot")
