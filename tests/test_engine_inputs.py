"""core.engine.generate refuses bad inputs with a clear InputError before any decoding: a prompt
beyond the model's context (the CLI path has no character limit), a bad token budget, and bad
sampling settings (core.sampling.SamplingConfig). The app's side: tests/test_ui_limits.py."""

import pytest

from core import adapters
from core.drafters import DraftSpec, NgramDrafter
from core.engine import context_limit, generate
from core.errors import InputError
from core.sampling import SamplingConfig
from tools.tiny import tiny_model_dir


@pytest.fixture(scope="module")
def target():
    return adapters.load(tiny_model_dir("llava"))


def test_a_prompt_longer_than_the_context_is_refused_before_any_forward(target, monkeypatch):
    def no_prefill(*a, **kw):
        raise AssertionError("the target ran on a prompt longer than its context")

    monkeypatch.setattr(target, "prefill", no_prefill)
    with pytest.raises(InputError, match="prompt too long"):
        generate(target, "Describe the image. " * 5000, None, max_new_tokens=4)


def test_the_budget_shrinks_to_the_context_left(target):
    """A prompt just inside the context gets the tokens that still fit, drafted nodes reserved."""
    limit = context_limit(target)
    spec = DraftSpec("chain", gamma=2)
    per_word = (target.encode("hello " * 20).length - target.encode("hello " * 10).length) / 10
    words = "hello " * int((limit - 40) / per_word)
    n = limit - target.encode(words).length - 1 - spec.max_nodes
    assert 1 <= n < 40
    tr = generate(target, words, None, NgramDrafter(target), spec, max_new_tokens=10 * limit)
    assert 1 <= len(tr.output) <= n


@pytest.mark.parametrize("bad", [0, -1, 2.5, "8", None])
def test_a_bad_token_budget_is_refused(target, bad):
    with pytest.raises(InputError, match="max_new_tokens"):
        generate(target, "hi", None, max_new_tokens=bad)


@pytest.mark.parametrize(
    "kw,needle",
    [
        (dict(temperature=-1), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_p=0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(top_k=1.5), "top_k"),
    ],
)
def test_bad_sampling_settings_are_refused(kw, needle):
    with pytest.raises(ValueError, match=needle):
        SamplingConfig(**kw)
