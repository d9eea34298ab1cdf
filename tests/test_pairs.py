"""core/pairs.py: the model cache shared by every caller."""

import pytest

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


def test_one_parser_reads_every_drafter_name():
    """core.drafters.parse_drafter: the CLI, the bench, the cache and make_drafter read names through it."""
    from core.drafters import parse_drafter
    from core.errors import InputError
    from core.paths import SHIPPED_DRAFTERS

    for none in (None, "", " none ", "AR", "ar"):
        assert parse_drafter(none) is None
    assert parse_drafter("prompt-lookup").kind == parse_drafter("ngram").kind == "ngram"
    assert parse_drafter("layerskip").layers is None and parse_drafter("layerskip:2").layers == 2
    shipped = parse_drafter("msd")
    assert shipped.kind == "model" and shipped.shipped == "msd" and shipped.ref == str(SHIPPED_DRAFTERS["msd"])
    assert (parse_drafter("msd:owner/head").kind, parse_drafter("msd:owner/head").ref) == ("msd", "owner/head")
    assert (parse_drafter("eagle3:./h").kind, parse_drafter("eagle3:./h").ref) == ("eagle3", "./h")
    assert parse_drafter("pkg.mod:Cls").kind == "plugin"
    assert parse_drafter("owner/name").kind == parse_drafter("./dir").kind == "model"
    for bad in ("layerskip:x", "layerskip:0", "msd:"):
        with pytest.raises(InputError):
            parse_drafter(bad)
    assert parse_drafter("ngram").key == parse_drafter("prompt-lookup").key  # one cached drafter


def test_a_folder_given_from_home_is_loaded_from_there(monkeypatch, tmp_path):
    """``--drafters a,~/b``: the shell leaves that ``~`` alone, and transformers would take
    ``~/b`` for a Hub id (the seventeenth session's bench failed so after its first drafter)."""
    from core.drafters import parse_drafter
    from core.paths import resolve_target

    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_drafter("~/pair/small").ref == str(tmp_path / "pair" / "small")
    assert parse_drafter("eagle3:~/heads/h").ref == str(tmp_path / "heads" / "h")
    assert resolve_target("~/pair/big") == str(tmp_path / "pair" / "big")
    assert parse_drafter("owner/name").ref == "owner/name" and resolve_target("owner/name") == "owner/name"
    (tmp_path / "models").symlink_to(tiny_model_dir("qwen2"))
    pair = api.load_pair("~/models", "~/models", mode="text-only")  # a small model drafting for itself
    assert pair.drafter is not None and pair.target is pairs.load_target(str(tmp_path / "models"))


def test_an_untrained_shipped_drafter_is_a_load_error(monkeypatch, tmp_path):
    from core import paths
    from core.errors import ModelLoadError

    monkeypatch.setitem(paths.SHIPPED_DRAFTERS, "msd", tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="'msd' is not trained yet"):
        api.load_pair(tiny_model_dir("llama"), "msd")
