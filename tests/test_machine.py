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


def test_tuning_file_updates_from_many_writers_lose_nothing(monkeypatch, tmp_path):
    """The app, a bench and test workers measure at once and write the same tuning file: every
    writer's entries must survive (a read-modify-write without the lock loses some)."""
    import threading

    from core import machine

    monkeypatch.setenv("SPECSCOPE_TUNING", str(tmp_path / "tuning.json"))

    def writer(w):
        for i in range(25):
            assert machine.update_tuning(lambda d, k=f"{w}-{i}": d.setdefault("t", {}).__setitem__(k, i))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    import json

    assert len(json.loads((tmp_path / "tuning.json").read_text())["t"]) == 8 * 25
