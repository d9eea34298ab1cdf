"""core/rowdot_ops.py: the rowdot kernels as operators, C++ where they build, the numbers of the
Python kernels bit for bit, and no Python on the way."""

import subprocess
import sys
import textwrap

import pytest
import torch

from core import rowdot, rowdot_ops

needs_native = pytest.mark.skipif(rowdot_ops.native() is not True, reason=f"rowdot ops: {rowdot_ops.native()}")


def _linears(O, K, bias):
    g = torch.Generator().manual_seed(O + K)
    w = torch.randn(O, K, generator=g).to(torch.bfloat16)
    b = torch.randn(O, generator=g) if bias else None
    return w, b


@pytest.mark.skipif(not (rowdot.available(torch.bfloat16) and rowdot.dpbf16()), reason="rowdot_il needs AVX512-BF16")
@pytest.mark.parametrize("bias", [False, True])
def test_rowdot_il_gives_rowdot_linears_numbers(bias):
    """The operator the compiled forward calls is ``rowdot.linear`` on a packed weight, bit for bit, at
    every row count a step or a verify runs, in each layout (red with the sums rounded otherwise, a
    bias dropped, or rows mixed up)."""
    rowdot_ops.register()
    w, b = _linears(40, 96, bias)
    for layout in rowdot.LAYOUTS:
        packed = rowdot.pack(w, layout)
        for n in range(0, 10):
            x = torch.randn(n, 96).to(torch.bfloat16)
            got = torch.ops.specscope.rowdot_il(x, packed, b, layout)
            want = rowdot.sums(x, packed, b, interleaved=True, layout=layout).to(torch.bfloat16)
            assert got.dtype == torch.bfloat16 and got.shape == (n, 40)
            assert torch.equal(got.view(torch.int16), want.view(torch.int16)), (layout, n)
    x3 = torch.randn(2, 3, 96).to(torch.bfloat16)  # leading dims kept
    packed = rowdot.pack(w)
    got = torch.ops.specscope.rowdot_il(x3, packed, b, rowdot.layout())
    assert got.shape == (2, 3, 40)
    assert torch.equal(got.reshape(6, 40), torch.ops.specscope.rowdot_il(x3.reshape(6, 96), packed, b, rowdot.layout()))


@pytest.mark.skipif(not rowdot.i8(), reason="rowdot_i8 needs AVX512F")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rowdot_i8_gives_linear_i8s_numbers(dtype):
    """The drafter's int8 operator is ``rowdot.linear_i8``, bit for bit, in either row dtype (red with
    the rows read in another dtype or the scales dropped)."""
    rowdot_ops.register()
    w, b = _linears(48, 128, True)
    q, s = rowdot.pack_i8(w.float())
    for n in (1, 2, 5):
        x = torch.randn(n, 128).to(dtype)
        got = torch.ops.specscope.rowdot_i8(x, q, s, b)
        want = rowdot.linear_i8(x, q, s, b)
        assert got.dtype == dtype and torch.equal(got, want), n


@pytest.mark.skipif(not rowdot.amx(), reason="rowdot_amx needs AMX-BF16")
def test_rowdot_amx_gives_linear_amxs_numbers():
    """The AMX operator is ``rowdot.linear_amx`` bit for bit, from one row to more than a tile's 16
    (red with the sums rounded otherwise or the bias dropped)."""
    rowdot_ops.register()
    w, b = _linears(48, 128, True)
    packed = rowdot.pack_amx(w)
    for n in (1, 3, 16, 17):
        x = torch.randn(n, 128).to(torch.bfloat16)
        got = torch.ops.specscope.rowdot_amx(x, packed, b)
        assert torch.equal(got.view(torch.int16), rowdot.linear_amx(x, packed, b).view(torch.int16)), n


@needs_native
def test_the_operators_run_without_python(monkeypatch):
    """Where ``rowdot_op.cpp`` builds, the dispatcher runs the kernels as C++: the Python kernels are
    never called (red with the Python ones registered: they go through ``rowdot.sums`` / ``linear_i8``)."""
    rowdot_ops.register()

    def refuse(*a, **k):
        raise AssertionError("a Python kernel ran")

    monkeypatch.setattr(rowdot, "sums", refuse)
    monkeypatch.setattr(rowdot, "linear_i8", refuse)
    monkeypatch.setattr(rowdot, "linear_amx", refuse)
    w, b = _linears(16, 64, True)
    if rowdot.dpbf16():
        packed = rowdot.pack(w)
        torch.ops.specscope.rowdot_il(torch.randn(1, 64).to(torch.bfloat16), packed, b, rowdot.layout())
    if rowdot.i8():
        q, s = rowdot.pack_i8(w.float())
        torch.ops.specscope.rowdot_i8(torch.randn(1, 64), q, s, b)


@needs_native
def test_a_bad_call_is_a_clear_error_not_a_crash():
    """Wrong dtypes or shapes raise (RuntimeError with the operator's name), never read out of bounds."""
    rowdot_ops.register()
    w, _ = _linears(16, 64, False)
    if rowdot.dpbf16():
        packed = rowdot.pack(w)
        with pytest.raises(RuntimeError, match="rowdot_il"):
            torch.ops.specscope.rowdot_il(torch.randn(1, 64), packed, None, rowdot.layout())  # float32 rows
        with pytest.raises(RuntimeError, match="rowdot_il"):
            torch.ops.specscope.rowdot_il(torch.randn(1, 32).to(torch.bfloat16), packed, None, rowdot.layout())
        with pytest.raises(RuntimeError, match="bias"):
            torch.ops.specscope.rowdot_il(torch.randn(1, 64).to(torch.bfloat16), packed, torch.zeros(8), rowdot.layout())


def test_without_a_cpp_compiler_the_reason_is_given(monkeypatch):
    """No C++ compiler: ``_compile_command`` says so (and the Python kernels would be registered)."""
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setattr(rowdot_ops.shutil, "which", lambda name: None)
    assert "no C++ compiler" in rowdot_ops._compile_command()


@pytest.mark.skipif(not (rowdot.available(torch.bfloat16) and rowdot.dpbf16()), reason="rowdot_il needs AVX512-BF16")
def test_where_the_cpp_build_fails_the_python_operators_give_the_same_numbers():
    """No C++ compiler or headers: the same operators are registered as Python (in a fresh process, as
    a machine without them starts), with the numbers of the C++ ones (red with the fallback's layout
    ignored or its rounding left out)."""
    script = textwrap.dedent(
        """
        import torch
        from core import rowdot, rowdot_ops
        rowdot_ops._native = lambda: "no C++ compiler (test)"
        rowdot_ops.register()
        assert rowdot_ops.native() != True
        g = torch.Generator().manual_seed(3)
        w, b = torch.randn(40, 96, generator=g).to(torch.bfloat16), torch.randn(40, generator=g)
        for layout in rowdot.LAYOUTS:
            packed = rowdot.pack(w, layout)
            for n in (1, 3, 6):
                x = torch.randn(n, 96, generator=g).to(torch.bfloat16)
                got = torch.ops.specscope.rowdot_il(x, packed, b, layout)
                want = rowdot.sums(x, packed, b, interleaved=True, layout=layout).to(torch.bfloat16)
                assert got.dtype == torch.bfloat16 and torch.equal(got, want), (layout, n)
        print("python operators ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "python operators ok" in r.stdout, r.stderr[-2000:]
