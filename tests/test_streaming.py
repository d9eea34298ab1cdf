"""core/streaming.py (api.stream): a decode in a worker thread, watched step by step."""

import threading

import pytest

from core import api, streaming
from core.drafters import DraftSpec
from tools.tiny import tiny_model_dir


@pytest.fixture(scope="module")
def pair():
    return api.load_pair(tiny_model_dir("llava"), "ngram")


def test_stream_yields_snapshots_then_the_finished_trace(pair):
    items = list(api.stream(pair, "Describe.", None, DraftSpec("chain", gamma=3), None, 24, every=0.0))
    assert items and items[-1].stop_reason and len(items[-1].output) == 24
    assert items[-1].output == api.run(pair, "Describe.", None, DraftSpec("chain", gamma=3), max_new_tokens=24).output
    for snap in items[:-1]:
        assert snap.stop_reason == "" and len(snap.output) <= 24
        assert all(str(t) in snap.vocab for t in snap.output)  # pieces resolved for what it holds


def test_a_stop_request_ends_the_decode(pair):
    ev = threading.Event()
    ev.set()
    items = list(api.stream(pair, "Describe.", None, DraftSpec("chain", gamma=3), None, 64, should_stop=ev.is_set))
    assert items[-1].stop_reason == "cancelled"


def test_an_error_in_the_decoder_reaches_the_consumer():
    def decode(on_step, should_stop):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        list(streaming.follow(decode, api.load_target(tiny_model_dir("llava"))))


def test_a_consumer_that_leaves_stops_the_decoder(pair):
    seen = {}

    def decode(on_step, should_stop):
        tr = api.run(pair, "Describe.", None, DraftSpec("chain", gamma=2), max_new_tokens=400, on_step=on_step, should_stop=should_stop)
        seen["stop"] = tr.stop_reason
        return tr

    gen = streaming.follow(decode, pair.target, every=0.0)
    next(gen)  # the first snapshot: decoding is under way
    gen.close()
    for th in threading.enumerate():
        if th.name == "specscope-decode":
            th.join(10)
    assert seen["stop"] == "cancelled"
