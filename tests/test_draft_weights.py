"""SPECSCOPE_DRAFT_WEIGHTS: a drafter's products may run on rounded copies of its weights where they
measure faster (fastest, the default), or only on its own weights (own), so a researcher measures the
drafter's own acceptance; the bench says which ran. A bad setting: tests/test_kernels.py (a one-line error, as for SPECSCOPE_KERNELS)."""

import pytest

from core import adapters, kernels
from core.drafters import DraftSpec, ModelDrafter
from core.drafters.base import rounded_copies
from core.engine import generate
from core.errors import InputError
from tools.bench.report import _drafter_forward
from tools.tiny import tiny_model_dir


def _lossy_fastest(monkeypatch, tmp_path):
    """Every linear measures fastest on a rounded copy (int8 first), nothing cached."""
    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))
    monkeypatch.setenv("SPECSCOPE_COMPILE", "off")
    rank = {"int8": 1e-6, "bf16": 2e-6, "rowbf16": 3e-6}
    monkeypatch.setattr(
        kernels, "measure_linear", lambda lin, paths, *a, **k: {p: {n: rank.get(p, 1e-3) for n in kernels.ROWS} for p in paths}
    )
    monkeypatch.setattr(
        kernels, "_whole_model", lambda swapped, run, reps=3: {str(n): {"stock": 1.0, "measured": 0.5} for n in kernels.PROBE_ROWS}
    )


def _paths(adapter) -> set[str]:
    return {p for table in adapter.kernels["paths"].values() for p in table.values()}


def test_own_keeps_a_drafter_off_every_rounded_copy(monkeypatch, tmp_path):
    _lossy_fastest(monkeypatch, tmp_path)
    fastest = adapters.load(tiny_model_dir("llama"), role="drafter")
    assert _paths(fastest) & set(kernels.LOSSY)  # where rounded copies win, a drafter takes them by default
    monkeypatch.setenv("SPECSCOPE_DRAFT_WEIGHTS", "own")
    own = adapters.load(tiny_model_dir("llama"), role="drafter")
    assert _paths(own) and not _paths(own) & set(kernels.LOSSY)
    target = adapters.load(tiny_model_dir("llama"))  # a target never takes them, either way
    assert not _paths(target) & set(kernels.LOSSY)


def test_own_keeps_a_drafters_compiled_forward_on_its_weights(monkeypatch):
    monkeypatch.setenv("SPECSCOPE_COMPILE", "auto")  # built (compiled later, on first use: not here)
    assert adapters.load(tiny_model_dir("llama"), role="drafter", kernels="dense").compiled.lossy
    monkeypatch.setenv("SPECSCOPE_DRAFT_WEIGHTS", "own")
    lm = adapters.load(tiny_model_dir("llama"), role="drafter", kernels="dense")
    assert lm.compiled is not None and not lm.compiled.lossy  # so i8 products are never among its choices


def test_a_rounded_path_forced_on_a_drafter_with_own_weights_is_a_clear_error(monkeypatch):
    assert _paths(adapters.load(tiny_model_dir("llama"), role="drafter", kernels="int8")) == {"int8"}
    monkeypatch.setenv("SPECSCOPE_DRAFT_WEIGHTS", "own")
    with pytest.raises(InputError, match="SPECSCOPE_DRAFT_WEIGHTS=own"):
        adapters.load(tiny_model_dir("llama"), role="drafter", kernels="int8")


def test_a_trace_and_the_bench_say_when_a_drafter_ran_on_rounded_copies(monkeypatch):
    monkeypatch.setenv("SPECSCOPE_COMPILE", "off")
    tgt = adapters.load(tiny_model_dir("llama"), kernels="dense")
    for path, rounded in (("int8", ["int8"]), ("bf16", ["bfloat16"]), ("dense", [])):
        drafter = ModelDrafter(adapters.load(tiny_model_dir("llama", num_layers=1, seed=1), role="drafter", kernels=path), path)
        assert rounded_copies(drafter) == rounded, path
        trace = generate(tgt, "hello world", None, drafter, DraftSpec("chain", gamma=3), max_new_tokens=4)
        assert trace.meta["drafter_rounding"] == rounded, path
        note = _drafter_forward({"path": "eager", "kernels": path, "weights": "fastest", "rounded": rounded})
        assert ("copies of its weights" in note) == bool(rounded) and all(r in note for r in rounded), note
    own = {"path": "compiled", "products": "library", "kernels": "1 rows: packed", "weights": "own", "rounded": []}
    assert _drafter_forward(own).endswith("its own weights (--draft-weights own)")
