"""``core/rowdot.c``'s kernels as torch operators, for graphs inductor compiles (``core/compiled.py``):

    register()   # torch.ops.specscope.rowdot_il(x, w, b, layout), .rowdot_amx(x, w, b), .rowdot_i8(x, w, s, b)
    native()     # True where they run as C++ (``core/rowdot_op.cpp``), else why they run as Python

Each is ``rowdot.linear`` (``linear_amx``, ``linear_i8``) on a packed weight: float32 sums from the
kernel, rounded once to the rows' dtype. A compiled step calls them through the dispatcher, 113 times
a step for the 1.5B target. Registered as Python each call passed through the interpreter (about 25
us, 3 ms of a 41 ms step on the Zen 5 EPYC: docs/results.md, thirty-first session), so where the
installed torch's headers and a C++ compiler build ``rowdot_op.cpp`` (once per machine and torch, a
few seconds, kept beside rowdot's kernel) the dispatcher runs them as C++, the same numbers bit for bit
(tests/test_rowdot_ops.py); elsewhere the Python kernels are registered under the same names.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import sys
from pathlib import Path

import torch

from . import rowdot

SOURCE = Path(__file__).with_name("rowdot_op.cpp")
SCHEMAS = {  # as rowdot_op.cpp defines them
    "rowdot_il": "rowdot_il(Tensor x, Tensor w, Tensor? b, int layout) -> Tensor",
    "rowdot_amx": "rowdot_amx(Tensor x, Tensor w, Tensor? b) -> Tensor",
    "rowdot_i8": "rowdot_i8(Tensor x, Tensor w, Tensor s, Tensor? b) -> Tensor",
}


def _compile_command() -> list[str] | str:
    """The C++ compiler's command for ``rowdot_op.cpp`` against this torch, or why there is none."""
    cxx = shutil.which(os.environ.get("CXX") or "c++") or shutil.which("g++")
    if cxx is None:
        return f"no C++ compiler ({os.environ.get('CXX') or 'c++ / g++'}) found"
    from torch.utils import cpp_extension

    include = cpp_extension.include_paths()
    if not (Path(include[0]) / "torch" / "library.h").exists():
        return f"torch's C++ headers are not installed ({include[0]})"
    abi = int(torch.compiled_with_cxx11_abi())
    libs = cpp_extension.library_paths()
    return [
        cxx,
        "-O2",
        "-std=c++20",
        "-fPIC",
        "-shared",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        *(f"-I{p}" for p in include),
        str(SOURCE),
        *(f"-L{p}" for p in libs),
        *(f"-Wl,-rpath,{p}" for p in libs),
        "-lc10",
        "-ltorch_cpu",
        "-ltorch",
    ]


@functools.cache
def _native() -> bool | str:
    """Build and load ``rowdot_op.cpp`` (its static initialisers define and register the operators)
    and hand it the kernels' addresses: True, or why not (then nothing was registered)."""
    lib = rowdot._lib()
    if isinstance(lib, str):
        return f"no rowdot kernel: {lib}"
    command = _compile_command()
    if isinstance(command, str):
        return command
    key = f"{SOURCE.read_bytes()!r}|{' '.join(command[1:])}|{torch.__version__}|{sys.version}"
    out = rowdot.tuning_path().parent / "kernels" / f"rowdot_op-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
    ops = rowdot.build(out, command)
    if isinstance(ops, str):
        return ops

    def addr(name: str, built: bool):
        return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value if built else None

    ops.specscope_rowdot_ops_init.argtypes = [ctypes.c_void_p] * 3
    ops.specscope_rowdot_ops_init(
        addr("rowdot_il", rowdot._dpbf16_built()), addr("rowdot_amx", rowdot._amx_ready()), addr("rowdot_i8", rowdot.i8())
    )
    _loaded.append(ops)
    return True


_loaded: list = []  # the operators' library, kept loaded


def native() -> bool | str:
    """Do the operators run as C++ here? True, or why not (they run as Python)."""
    return _native()


@functools.cache
def register() -> torch.library.Library:
    """The operators, registered once a process (C++ where ``native()``), with the shapes inductor
    traces them by."""
    lib = torch.library.Library("specscope", "FRAGMENT")  # kept alive by the cache
    if native() is not True:
        for schema in SCHEMAS.values():
            lib.define(schema)
        lib.impl("rowdot_il", lambda x, w, b, layout: rowdot.sums(x, w, b, interleaved=True, layout=layout).to(x.dtype), "CPU")
        lib.impl("rowdot_amx", rowdot.linear_amx, "CPU")
        lib.impl("rowdot_i8", rowdot.linear_i8, "CPU")
    torch.library.register_fake("specscope::rowdot_il", lambda x, w, b, layout: x.new_empty(*x.shape[:-1], w.shape[0]), lib=lib)
    torch.library.register_fake("specscope::rowdot_amx", lambda x, w, b: x.new_empty(*x.shape[:-1], w.shape[0]), lib=lib)
    torch.library.register_fake("specscope::rowdot_i8", lambda x, w, s, b: x.new_empty(*x.shape[:-1], s.shape[0]), lib=lib)
    return lib
