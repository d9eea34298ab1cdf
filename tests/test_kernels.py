"""core.kernels: measured product paths compute the same products, keep weights shared and tied,
and speculative output stays identical to AR output on every path a target may take."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core import adapters, errors, kernels
from core.drafters import DraftSpec, ModelDrafter, NgramDrafter
from core.engine import generate
from tools.tiny import tiny_image, tiny_model_dir


@pytest.mark.parametrize("path", ["dense", "onednn", "packed", "rowdot", "bf16", "rowbf16", "int8"])
@pytest.mark.parametrize("rows", [1, 3, 17, 70])
def test_every_path_computes_the_linear(path, rows):
    if not kernels.available(path):
        pytest.skip(f"{path} not available here")
    torch.manual_seed(0)
    lin = nn.Linear(24, 40)
    d = kernels.DispatchLinear(lin, [path] * 65, kernels._copies(lin, [path]))
    x = torch.randn(1, rows, 24)
    tol = 5e-2 if path in kernels.LOSSY else 1e-5
    assert torch.allclose(d(x), lin(x), atol=tol, rtol=tol)
    assert d.weight is lin.weight and d.bias is lin.bias


def test_rowil_computes_rowdots_numbers_and_leaves_a_prompt_to_another_path():
    """rowil (the interleaved copy) gives rowdot's products bit for bit on a bfloat16 linear, keeps
    the weights shared, and, like rowdot, never takes a prompt's rows (``_beyond``)."""
    if not kernels.available("rowil", torch.bfloat16):
        pytest.skip("rowil: no AVX512-BF16 rowdot_dpbf16 here")
    torch.manual_seed(0)
    lin = nn.Linear(40, 37).bfloat16()
    il = kernels.DispatchLinear(lin, ["rowil"] * 65, kernels._copies(lin, ["rowil"]))
    rd = kernels.DispatchLinear(lin, ["rowdot"] * 65)
    for rows in (1, 3, 17):
        x = torch.randn(1, rows, 40).bfloat16()
        assert torch.equal(il(x), rd(x)), rows
    assert il.weight is lin.weight and not kernels.available("rowil", torch.float32)
    times = {"rowil": {1: 1.0, 64: 1.0}, "rowdot": {1: 2.0, 64: 2.0}, "packed": {1: 3.0, 64: 3.0}}
    assert kernels._table(times, kernels.UNIFORM_FROM)[-1] == "packed"
    assert kernels.SAME_NUMBERS["rowil"] == "rowdot"  # the row probe groups them (core.rows)


def test_a_linear_with_raw_inputs_never_takes_the_per_call_input_scale(monkeypatch, tmp_path):
    """int8 quantizes each call's input with one scale: a linear marked ``raw_inputs`` (an EAGLE-3
    head's fc, fed the target's residual streams) keeps to the other paths even where int8 is
    measured fastest, and a forced int8 leaves it on the stock product; unmarked linears take int8."""
    if not kernels.available("int8"):
        pytest.skip("no fbgemm here")

    def int8_fastest(lin, paths, rows=kernels.ROWS, reps=3):
        return {p: {n: (1.0 if p == "int8" else 2.0 + (p != "bf16")) for n in rows} for p in paths}

    monkeypatch.setattr(kernels, "measure_linear", int8_fastest)
    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))
    for force in (None, "int8"):
        model = nn.ModuleDict({"raw": nn.Linear(24, 40), "normed": nn.Linear(24, 40)})
        model["raw"].raw_inputs = True
        choice = kernels.accelerate(model, "drafter", force=force)
        assert set(choice["paths"]["40x24"].values()) == {"int8"}
        assert set(choice["paths"]["40x24 raw inputs"].values()) == {"dense" if force else "bf16"}, choice
        assert model["raw"].table[1] != "int8" and model["normed"].table[1] == "int8"


def test_one_massive_channel_spoils_int8_and_not_bfloat16():
    """Why the mark above: with one input channel 250x the others (a residual stream's massive
    activation), int8's per-call scale leaves the other channels a few levels and the product is off
    by tens of percent, while bfloat16 rounds each entry on its own."""
    if not (kernels.available("int8") and kernels.available("rowbf16")):
        pytest.skip("int8 or rowbf16 not available here")
    torch.manual_seed(0)
    lin = nn.Linear(512, 256).requires_grad_(False)
    x = torch.randn(1, 4, 512)
    x[..., 7] = 250.0
    ref = lin(x) - lin.weight[:, 7] * 250.0  # the error is judged on what the other channels add
    err = {}
    for path in ("int8", "rowbf16"):
        y = kernels.DispatchLinear(lin, [path] * 66, kernels._copies(lin, [path]))(x) - lin.weight[:, 7] * 250.0
        err[path] = float((y - ref).norm() / ref.norm())
    assert err["rowbf16"] < 0.05 < err["int8"], err


def test_table_uses_the_fastest_path_of_the_next_measured_row_count():
    times = {"dense": {1: 1.0, 2: 5.0, 4: 5.0}, "onednn": {1: 2.0, 2: 3.0, 4: 6.0}}
    t = kernels._table(times)
    assert t[1] == "dense" and t[2] == "onednn" and t[3] == "dense" and t[4] == "dense"
    assert len(t) == 6 and t[5] == "dense"  # past the counts measured: the last one's path


def test_a_target_runs_one_path_for_every_multi_row_forward():
    """A path switch between verify sizes would split the target's row-invariant sets (core.rows):
    for a target every count from 2 rows on takes the one path fastest over those counts."""
    times = {"dense": {1: 1.0, 2: 4.0, 4: 2.0, 8: 2.0}, "onednn": {1: 2.0, 2: 3.0, 4: 2.5, 8: 2.5}}
    mixed = kernels._table(times)
    assert len(set(mixed[2:])) == 2  # the drafter's table: fastest per count
    one = kernels._table(times, uniform_from=2)
    assert one[1] == "dense" and set(one[2:]) == {"dense"}  # 4/3 + 1 + 1 < 1 + 1.25 + 1.25
    tgt = adapters.load(tiny_model_dir("llama"), kernels="stock")
    choice = kernels.accelerate(tgt.model, "target", paths=("dense", "onednn"))
    for shape, table in choice["paths"].items():
        assert len({p for n, p in table.items() if not n.endswith("+") and int(n) >= kernels.UNIFORM_FROM}) == 1, (shape, table)


def test_a_target_judges_its_multi_row_path_on_the_verifies_it_makes():
    """The engine verifies up to an automatic chain's rows (core.rows.REACH) per step: a path that
    wins there is the target's, though another wins by far at 32 and 64 rows (measured so on the
    AVX2 EPYC: rowdot against oneDNN's packed products)."""
    from core import rows

    assert kernels.UNIFORM_UPTO == rows.REACH
    small = {2: 1.0, 4: 1.5, 8: 2.6, 16: 5.0, 32: 10.0, 64: 20.0}
    times = {"rowdot": small, "packed": {n: (1.4 * t if n <= 8 else 0.55 * t) for n, t in small.items()}}
    times = {p: {1: 1.0, **t} for p, t in times.items()}
    table = kernels._table(times, uniform_from=2)
    assert set(table[2:-1]) == {"rowdot"}
    # a prompt's prefill (more rows than measured): rowdot would hand it to the stock F.linear,
    # an unmeasured path, so it takes the fastest other path at the last count
    assert table[-1] == "packed"


def test_a_forward_past_the_measured_rows_runs_on_the_prefill_path(monkeypatch):
    calls = []
    for path in ("rowdot", "onednn"):
        monkeypatch.setitem(kernels.PATHS, path, lambda x, w, b, path=path: calls.append(path) or F.linear(x, w, b))
    lin = nn.Linear(8, 4)
    d = kernels.DispatchLinear(lin, ["rowdot"] * (kernels.ROWS[-1] + 1) + ["onednn"])
    for rows in (1, kernels.ROWS[-1], kernels.ROWS[-1] + 1, 300):
        d(torch.randn(rows, 8))
    assert calls == ["rowdot", "rowdot", "onednn", "onednn"]


def test_accelerate_swaps_linears_and_keeps_tied_weights():
    tgt = adapters.load(tiny_model_dir("llama"), kernels="stock")
    m = tgt.model
    tied = m.get_output_embeddings().weight is m.get_input_embeddings().weight
    x = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        before = m(input_ids=x).logits
    choice = kernels.accelerate(m, "target", force="onednn")
    assert not any(type(mod) is nn.Linear for mod in m.modules())
    assert (m.get_output_embeddings().weight is m.get_input_embeddings().weight) == tied
    with torch.inference_mode():
        after = m(input_ids=x).logits
    assert torch.allclose(before, after, atol=1e-4)
    assert set(choice["paths"][next(iter(choice["paths"]))].values()) == {"onednn"}


@pytest.mark.parametrize("path", kernels.LOSSY)
def test_lossy_paths_are_never_forced_on_a_target(path):
    with pytest.raises(errors.InputError, match="not available"):
        adapters.load(tiny_model_dir("llama"), kernels=path)


def test_measured_choice_is_cached(monkeypatch):
    tgt = adapters.load(tiny_model_dir("llama"))  # measures (or finds the cache)
    calls = []
    real = kernels.measure_linear
    monkeypatch.setattr(kernels, "measure_linear", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = adapters.load(tiny_model_dir("llama"))
    assert calls == [] and again.kernels["paths"] == tgt.kernels["paths"]


@pytest.mark.parametrize("path", ["dense", "onednn", "packed", "rowdot", "rowil", "auto"])
@pytest.mark.parametrize("family", ["llama", "llava", "qwen2_vl"])
def test_speculative_equals_ar_on_each_path(family, path):
    dtype = {}
    if path == "rowil":  # a bfloat16 kernel (AVX512-BF16)
        if not kernels.available("rowil", torch.bfloat16):
            pytest.skip("rowil: no AVX512-BF16 rowdot_dpbf16 here")
        dtype = {"dtype": "bfloat16"}
    tgt = adapters.load(tiny_model_dir(family), kernels=path, **dtype)
    small = adapters.load(tiny_model_dir(family, num_layers=1, seed=1), kernels=path, role="drafter", **dtype)
    img = tiny_image() if family != "llama" else None
    prompt = "hello world hello world"
    ref = generate(tgt, prompt, img, max_new_tokens=16).output
    for d in (ModelDrafter(tgt, "self"), ModelDrafter(small, "small"), NgramDrafter(tgt)):
        for spec in (
            DraftSpec("chain", gamma=4),
            DraftSpec("dynamic", depth=4, top_k=3, budget=10),
            DraftSpec("chain", gamma=8, adaptive=True),
        ):
            assert generate(tgt, prompt, img, d, spec, max_new_tokens=16).output == ref, (d.name, spec)


def test_stock_puts_the_original_modules_back_for_the_block():
    tgt = adapters.load(tiny_model_dir("llama"), kernels="onednn")
    m = tgt.model
    with kernels.stock(m):
        assert not any(isinstance(x, kernels.DispatchLinear) for x in m.modules())
        assert any(type(x) is nn.Linear for x in m.modules())
    assert not any(type(x) is nn.Linear for x in m.modules())


@pytest.mark.parametrize(
    "name, value, named",
    [("SPECSCOPE_KERNELS", "fastest", "onednn"), ("SPECSCOPE_DRAFT_WEIGHTS", "exact", "own"), ("SPECSCOPE_HEAD_SCREEN", "yes", "auto")],
)
def test_a_bad_kernels_setting_is_a_one_line_error(name, value, named):
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, HF_HUB_OFFLINE="1", **{name: value})
    r = subprocess.run(
        [sys.executable, "-m", "core", "run", "--target", tiny_model_dir("llama"), "--prompt", "hi"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    err = r.stderr.strip()
    assert r.returncode == 2 and err.startswith("error:") and "\n" not in err, err
    assert name in err and named in err


def test_packed_copies_are_made_only_where_they_fit_in_memory(monkeypatch, tmp_path):
    """The packed path keeps a second copy of each matrix it serves: where free memory would not
    hold the copies, the next best path is used instead (a large target must not run out of memory
    for a faster product)."""
    if not kernels.available("packed"):
        pytest.skip("no oneDNN packed product here")

    def packed_fastest(lin, paths, rows=kernels.ROWS, reps=3):
        return {p: {n: (1.0 if p == "packed" else 2.0 + (p == "onednn")) for n in rows} for p in paths}

    monkeypatch.setattr(kernels, "measure_linear", packed_fastest)
    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))
    for free, want in ((10**12, {"packed"}), (1, {"dense"})):
        monkeypatch.setattr(kernels, "mem_available", lambda free=free: free)
        tgt = adapters.load(tiny_model_dir("llama"), dtype="float32", kernels="stock")
        choice = kernels.accelerate(tgt.model, "target")
        used = {p for table in choice["paths"].values() for p in table.values()}
        assert used == want, (free, choice["paths"])


def test_a_compiled_forward_to_come_keeps_its_memory_from_the_packed_copies(monkeypatch, tmp_path):
    """A target with a compiled forward takes a further copy of its weights when it compiles
    (inductor's frozen, packed constants): its loader reserves that memory first, so the product
    paths' packed copies are made only where both fit (on a 24 GiB machine a float32 1.5B target
    with both ran out of memory), and the reservation ends once the compile has taken its memory."""
    if not kernels.available("packed"):
        pytest.skip("no oneDNN packed product here")
    from core import compiled

    def packed_fastest(lin, paths, rows=kernels.ROWS, reps=3):
        return {p: {n: (1.0 if p == "packed" else 2.0 + (p == "onednn")) for n in rows} for p in paths}

    monkeypatch.setattr(kernels, "measure_linear", packed_fastest)
    monkeypatch.setattr(
        kernels, "_whole_model", lambda swapped, probe, reps=3: {str(n): {"stock": 1.0, "measured": 0.5} for n in kernels.PROBE_ROWS}
    )
    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))
    monkeypatch.setenv("SPECSCOPE_COMPILE", "auto")
    before = kernels.reserved()  # compiles still to come of this worker's earlier targets
    weights = sum(
        p.numel() * p.element_size() for p in adapters.load(tiny_model_dir("llama"), dtype="float32", kernels="stock").model.parameters()
    )
    # room for the packed copies alone, not for them and a compile's share as well
    monkeypatch.setattr(kernels, "mem_available", lambda: before + 3 * weights)
    tgt = adapters.load(tiny_model_dir("llama"), dtype="float32", kernels="auto")
    assert tgt.compiled is not None and kernels.reserved() == before + compiled.RESERVE * weights
    used = {p for table in tgt.kernels["paths"].values() for p in table.values()}
    assert "packed" not in used, tgt.kernels["paths"]
    monkeypatch.setattr(tgt.compiled, "forward", lambda *a, **k: (None, None, None))  # the compile, stood in for
    assert tgt.compiled.warm() and kernels.reserved() == before
    monkeypatch.setenv("SPECSCOPE_COMPILE", "off")  # no compile to come: the copies fit
    tgt = adapters.load(tiny_model_dir("llama"), dtype="float32", kernels="auto")
    used = {p for table in tgt.kernels["paths"].values() for p in table.values()}
    assert tgt.compiled is None and "packed" in used, tgt.kernels["paths"]
