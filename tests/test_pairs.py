"""core/pairs.py: the model cache shared by every caller."""

from core import api, pairs
from tools.tiny import tiny_model_dir


def test_model_cache_keeps_at_most_max_models_targets(monkeypatch):
    monkeypatch.setenv("SPECSCOPE_MAX_MODELS", "1")
    a, b = tiny_model_dir("llava"), tiny_model_dir("llama")
    pa = api.load_pair(a, "ngram")
    assert api.load_pair(a, "ngram").target is pa.target  # cached
    api.load_pair(b, "ngram")
    keys = [k for k in pairs._cache if k[0] == "target"]
    assert [k[1] for k in keys] == [b]  # a and its drafter dropped
    assert not any(k[0] == "drafter" and k[1] == id(pa.target) for k in pairs._cache)
    assert api.load_pair(a).target is not pa.target  # reloaded on demand


def test_a_cached_pair_is_reused_and_the_shipped_names_resolve():
    a = tiny_model_dir("llava")
    p1, p2 = api.load_pair(a, "ngram"), api.load_pair(a, "ngram")
    assert p1.target is p2.target and p1.drafter is p2.drafter
    assert api.load_pair(a, None).drafter is None and api.load_pair(a, "none").drafter is None
