"""Device selection (core.device.resolve_device, core.api, --device): CPU is the default, CUDA
is opt-in, and asking for CUDA on a machine without one is a one-line user error. CPU-only: the
CUDA path itself is not exercised here (no GPU), only how it is chosen and refused."""

import json
import os
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch

from core import api, pairs
from tools import bench
from core.device import resolve_device
from core.errors import InputError
from tools.tiny import tiny_model_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA behaviour")


def cli(*args, env=None, timeout=120):
    env = dict(os.environ, HF_HUB_OFFLINE="1", SPECSCOPE_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def one_line_error(stderr: str, needle: str) -> None:
    err = stderr.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    assert needle in err, err


# ---- resolve_device -------------------------------------------------------------------------
@no_cuda
def test_auto_is_cpu_without_cuda():
    assert resolve_device("auto") == "cpu"
    assert resolve_device(None) == "cpu"
    assert resolve_device() == "cpu"


def test_cpu_is_cpu():
    assert resolve_device("cpu") == "cpu"


def test_auto_picks_cuda_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cpu") == "cpu"


@no_cuda
@pytest.mark.parametrize("dev", ["cuda", "cuda:0", "CUDA"])
def test_cuda_without_a_gpu_is_a_clear_input_error(dev):
    with pytest.raises(InputError) as e:
        resolve_device(dev)
    assert "no CUDA GPU" in str(e.value) and "--device cpu" in str(e.value)


@pytest.mark.parametrize("dev", ["tpu", "", "gpu", "cuda:x", "mps"])
def test_unknown_devices_list_the_choices(dev):
    with pytest.raises(InputError) as e:
        resolve_device(dev)
    msg = str(e.value)
    assert "unknown device" in msg and all(c in msg for c in ("auto", "cpu", "cuda"))


# ---- core.api ---------------------------------------------------------------------------------
def test_default_stays_cpu_even_with_a_gpu(monkeypatch):
    """Nothing asked: CPU, even where a GPU exists; SPECSCOPE_DEVICE or device= opt in."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("SPECSCOPE_DEVICE", raising=False)
    assert api.default_device() == "cpu"
    monkeypatch.setenv("SPECSCOPE_DEVICE", "")
    assert api.default_device() == "cpu"
    monkeypatch.setenv("SPECSCOPE_DEVICE", "auto")
    assert api.default_device() == "cuda"
    assert api.default_device("cpu") == "cpu"  # an explicit device beats the environment


def test_load_target_on_cpu_and_env_honoured(monkeypatch):
    d = tiny_model_dir("llava")
    monkeypatch.delenv("SPECSCOPE_DEVICE", raising=False)
    tgt = api.load_target(d, device="cpu")
    assert tgt.device.type == "cpu" and next(tgt.model.parameters()).device.type == "cpu"
    monkeypatch.setenv("SPECSCOPE_DEVICE", "cpu")
    assert api.load_target(d) is tgt  # same device -> the cached target
    pair = api.load_pair(d, "ngram", device="cpu")
    assert pair.target is tgt
    tr = api.run(pair, "hello hello", max_new_tokens=4)
    assert len(tr.output) == 4


@no_cuda
def test_env_cuda_without_a_gpu_is_a_clear_input_error(monkeypatch):
    monkeypatch.setenv("SPECSCOPE_DEVICE", "cuda")
    with pytest.raises(InputError, match="no CUDA GPU"):
        api.load_target(tiny_model_dir("llava"))
    with pytest.raises(InputError, match="no CUDA GPU"):
        api.load_pair(tiny_model_dir("llava"), "ngram")
    monkeypatch.setenv("SPECSCOPE_DEVICE", "tpu")
    with pytest.raises(InputError, match="unknown device"):
        api.load_target(tiny_model_dir("llava"))


def test_cache_key_and_dtype_follow_the_device(monkeypatch):
    """The device reaches adapters.load and resolve_dtype, and targets are cached per device
    (a fake loader and a fake GPU: nothing is loaded)."""
    calls = []

    class Fake:
        def __init__(self, dtype, device):
            self.dtype, self.device = dtype, device

    def fake_load(name, dtype="float32", device="cpu", **kw):
        calls.append((name, dtype, device))
        return Fake(dtype, device)

    monkeypatch.setattr(pairs, "_cache", OrderedDict())
    monkeypatch.setattr(pairs.adapters, "load", fake_load)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(pairs.devices, "fast_bf16", lambda device="cpu": str(device).startswith("cuda"))
    cpu = api.load_target("some/model", "auto", device="cpu")
    gpu = api.load_target("some/model", "auto", device="cuda")
    assert cpu is not gpu
    assert calls == [("some/model", "float32", "cpu"), ("some/model", "bfloat16", "cuda")]
    assert api.load_target("some/model", "auto", device="auto") is gpu  # auto -> cuda, cached
    monkeypatch.setenv("SPECSCOPE_DEVICE", "cuda")
    assert api.load_pair("some/model", None, dtype="auto").target is gpu
    assert len(calls) == 2


# ---- CLI and bench ------------------------------------------------------------------------------
@no_cuda
def test_cli_device_cuda_without_a_gpu_exits_with_one_line():
    r = cli("run", "--target", tiny_model_dir("llava"), "--prompt", "hi", "--max-new-tokens", "2", "--device", "cuda")
    assert r.returncode == 2
    one_line_error(r.stderr, "no CUDA GPU")


def test_cli_device_cpu_overrides_the_environment(monkeypatch, capsys):
    from core.cli import main

    monkeypatch.setenv("SPECSCOPE_DEVICE", "cuda")
    capsys.readouterr()
    rc = main(
        [
            "run",
            "--target",
            tiny_model_dir("llava"),
            "--prompt",
            "hi",
            "--max-new-tokens",
            "3",
            "--device",
            "cpu",
            "--json",
        ]
    )  # in this process: a new one costs CI about ten seconds of imports
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert len(json.loads(out)["token_ids"]) == 3


def test_cli_rejects_an_unknown_device():
    r = cli("run", "--prompt", "hi", "--device", "tpu")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def _bench_argv(*extra):
    return [
        "--suite",
        "text",
        "--n",
        "1",
        "--target",
        tiny_model_dir("llava"),
        "--drafters",
        "ngram",
        "--strategies",
        "chain",
        "--max-new-tokens",
        "4",
        "--warmup",
        "0",
        "--hf",
        "none",
        "--silent",
        *extra,
    ]


def test_bench_records_the_device(tmp_path, monkeypatch):
    monkeypatch.delenv("SPECSCOPE_DEVICE", raising=False)
    out = tmp_path / "r.json"
    assert bench.main(_bench_argv("--device", "cpu", "--dtype", "auto", "--out", str(out))) == 0
    meta = json.loads(out.read_text())["meta"]
    assert meta["device"] == "cpu" and meta["dtype"] in ("float32", "bfloat16")


@no_cuda
def test_bench_device_cuda_without_a_gpu_is_one_line(capsys):
    assert bench.main(_bench_argv("--device", "cuda")) == 2
    one_line_error(capsys.readouterr().err, "no CUDA GPU")


def test_app_default_precision_follows_the_device_and_survives_a_bad_one(monkeypatch):
    from core.device import resolve_dtype
    from ui import presets

    monkeypatch.setenv("SPECSCOPE_DEVICE", "cuda")
    if not torch.cuda.is_available():  # the UI still builds; the load reports the bad device
        assert presets.auto_dtype() == resolve_dtype("auto", "cpu")
    monkeypatch.setenv("SPECSCOPE_DEVICE", "cpu")
    assert presets.auto_dtype() == resolve_dtype("auto", "cpu")
