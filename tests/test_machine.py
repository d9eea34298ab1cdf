"""core/machine.py: what identifies a measurement, and where measured results are kept."""

import torch

from core import machine


def test_tuning_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "t.json"))
    assert machine.tuning_path() == tmp_path / "t.json"


def test_the_key_names_the_cpu_threads_models_and_weights(monkeypatch):
    key = machine.machine_key("no/such-hub-id", "ngram")
    assert key.startswith(machine.cpu_name() + "|threads=") and "|no/such-hub-id|ngram|" in key
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(n + 1)
        assert machine.machine_key("no/such-hub-id", "ngram") != key  # another thread count: another entry
    finally:
        torch.set_num_threads(n)
