"""tools.tune: measures shapes on this machine, saves the fastest, and `--tuned` reads it back."""

from __future__ import annotations

import json

from core import machine
from core.drafters import DEFAULT_DYNAMIC, tuned_spec
from tools import tune
from tools.tiny import tiny_model_dir


def test_tune_saves_the_fastest_shape_and_cli_uses_it(tmp_path, monkeypatch, capsys):
    target = tiny_model_dir("llava")
    path = tmp_path / "tuning.json"
    monkeypatch.setenv("SPECSCOPE_TUNING", str(path))
    assert tuned_spec(target, "ngram", "dynamic") == DEFAULT_DYNAMIC  # nothing saved yet
    rc = tune.main(["--target", target, "--drafter", "ngram", "--gammas", "2,3", "--budgets", "4,9", "--n", "1", "--max-new-tokens", "8"])
    out = capsys.readouterr().out
    assert rc == 0 and "| chain gamma=3 |" in out and "budget=9" in out
    entry = json.loads(path.read_text())[machine.machine_key(target, "ngram")]
    assert entry["chain"]["gamma"] in (2, 3) and entry["dynamic"]["budget"] in (4, 9)
    assert sorted(map(int, entry["forward_ms"])) == [1, 2, 4, 8, 16, 32, 64]
    spec = tuned_spec(target, "ngram", "dynamic")
    assert spec.budget == entry["dynamic"]["budget"] and spec.top_k == 4

    from core.__main__ import main

    assert (
        main(
            [
                "run",
                "--target",
                target,
                "--drafter",
                "ngram",
                "--strategy",
                "chain",
                "--tuned",
                "--prompt",
                "a b a b a b",
                "--max-new-tokens",
                "6",
                "--json",
                "--trace",
                str(tmp_path / "t.json"),
            ]
        )
        == 0
    )
    meta = json.loads((tmp_path / "t.json").read_text())["meta"]
    assert meta["spec"]["gamma"] == entry["chain"]["gamma"]


def test_tune_bad_arguments_are_one_line_errors(capsys):
    assert tune.main(["--target", tiny_model_dir("llava"), "--drafter", "ngram", "--gammas", "x"]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_tuned_shape_is_dropped_when_the_weights_change(tmp_path, monkeypatch):
    """A shape tuned for one set of weights must not be applied to retrained ones (same path,
    same architecture): the key holds a hash of the weight files."""
    import shutil

    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir("llava"), target)
    path = tmp_path / "tuning.json"
    monkeypatch.setenv("SPECSCOPE_TUNING", str(path))
    key = machine.machine_key(str(target), "ngram")
    path.write_text(json.dumps({key: {"dynamic": {"depth": 3, "top_k": 2, "budget": 5}}}))
    assert tuned_spec(str(target), "ngram", "dynamic").budget == 5
    weights = next(target.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # "retrained": same file name and size, other bytes
    weights.write_bytes(bytes(data))
    assert machine.machine_key(str(target), "ngram") != key
    assert tuned_spec(str(target), "ngram", "dynamic") == DEFAULT_DYNAMIC
    # the shipped drafters and the default target are fingerprinted by their asset directories
    assert machine.weights_fingerprint("ngram", "drafter") == ""
    assert machine.weights_fingerprint("no/such-hub-id", "target") == ""
