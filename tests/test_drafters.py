"""core/drafters: every shipped drafter kind implements the Drafter protocol (incl. the
assistant_model capability the benchmark reads), the n-gram drafter, and third-party
``module:Class`` drafters (with or without subclassing Drafter)."""

import sys
import textwrap

import pytest

from core import errors
from core.drafters import DraftSpec, Drafter, ModelDrafter, MSDHead, NgramDrafter, assistant_model, make_drafter
from core.drafters.base import DraftContext
from core.drafters.msd import MSDDrafter
from core.engine import generate
from core.tree import DraftTree
from tools.tiny import adapter_cache, tiny_image, tiny_model_dir

PROMPT = "hello world hello world hello"
load = adapter_cache()  # tiny models loaded once per module


def target():
    return load("llava")


def shipped(kind):
    """One drafter of every kind the registry builds."""
    tgt = target()
    if kind == "ngram":
        return make_drafter("ngram", tgt)
    if kind == "layerskip":
        return make_drafter("layerskip:1", tgt)
    if kind == "small-mm":
        return make_drafter(tiny_model_dir("llava", num_layers=1, seed=1), tgt, mode="multimodal")
    if kind == "small-text":
        return make_drafter(tiny_model_dir("llava", num_layers=1, seed=1), tgt, mode="text-only")
    if kind == "msd":
        head = MSDHead(MSDHead.make_config(tgt.model.config.text_config))
        return MSDDrafter(tgt, head=head, name="msd (random)")
    raise KeyError(kind)


KINDS = ["ngram", "layerskip", "small-mm", "small-text", "msd"]
# the transformers model generate(assistant_model=...) gets: a separate model that drafts as
# transformers would run it; the layer-skip view is one; n-gram, MSD heads and a text-only
# drafter over a multimodal model (transformers would show it the image) are not
HAS_ASSISTANT = {"ngram": False, "layerskip": True, "small-mm": True, "small-text": False, "msd": False}


@pytest.mark.parametrize("kind", KINDS)
def test_shipped_drafters_implement_the_protocol(kind):
    d = shipped(kind)
    assert isinstance(d, Drafter)  # runtime-checked: every member present
    assert isinstance(d.name, str) and d.name
    assert isinstance(d.needs_hidden, bool) and isinstance(d.can_skip, bool)
    for method in ("begin", "propose", "commit", "assistant_model"):
        assert callable(getattr(d, method)), method
    model = d.assistant_model()
    assert (model is not None) == HAS_ASSISTANT[kind], kind
    if model is not None:
        assert hasattr(model, "generate") and model is not target().model
    assert assistant_model(d) is model


@pytest.mark.parametrize("kind", KINDS)
def test_shipped_drafters_are_lossless_at_t0(kind):
    """Whatever each drafter proposes, the greedy output is the target's own."""
    tgt, d = target(), shipped(kind)
    img = tiny_image()
    ar = generate(tgt, "Describe the picture.", img, max_new_tokens=12)
    for spec in (DraftSpec("chain", gamma=3), DraftSpec("tree", branching=(2, 2))):
        sp = generate(tgt, "Describe the picture.", img, d, spec, max_new_tokens=12)
        assert sp.output == ar.output, (kind, spec.strategy)


def test_ngram_drafts_the_continuation_of_the_last_ngram():
    d = NgramDrafter(max_ngram=2)
    # ... 5 6 7 8 ... 5 6 | root 6: the bigram (5, 6) was followed by 7 8 9
    d.begin(DraftContext(target=None, prompt_ids=[1, 5, 6, 7, 8, 9, 2, 5], tokens=[6]))
    tree = d.propose(6, DraftSpec("chain", gamma=3), None, None)
    assert tree.tokens == [7, 8, 9] and tree.parents == [-1, 0, 1] and tree.forwards == 0
    assert tree.q_tok == [1.0, 1.0, 1.0]
    # nothing seen before: an empty tree (a plain target step)
    d.begin(DraftContext(target=None, prompt_ids=[1, 2, 3], tokens=[4]))
    assert len(d.propose(4, DraftSpec("chain", gamma=3), None, None)) == 0


def test_ngram_tree_branches_over_different_continuations():
    d = NgramDrafter(max_ngram=1)
    # token 5 was followed by 7 twice and by 8 once
    d.begin(DraftContext(target=None, prompt_ids=[5, 7, 1, 5, 8, 2, 5, 7, 3], tokens=[5]))
    tree = d.propose(5, DraftSpec("tree", branching=(2, 1)), None, None)
    roots = [tree.tokens[i] for i, p in enumerate(tree.parents) if p == -1]
    assert roots == [7, 8]  # most frequent first
    assert tree.q_tok[tree.tokens.index(7)] == pytest.approx(2 / 3)


THIRD_PARTY = '''
from core.tree import DraftTree


class Repeat:
    """A third-party drafter that does not subclass Drafter: no can_skip, no assistant_model."""
    needs_hidden = False

    def __init__(self, target, token=3):
        self.name, self.token = "repeat", token

    def begin(self, ctx):
        self.begun = True

    def propose(self, root, spec, sampling, gen):
        t = DraftTree(forwards=0)
        p = -1
        for _ in range(spec.gamma):
            p = t.add(self.token, p, 1.0, 0.0)
        return t

    def commit(self, tree, accepted, new_tokens, target_hidden):
        pass
'''


def test_third_party_module_class_drafter(tmp_path, monkeypatch):
    (tmp_path / "my_drafters.py").write_text(textwrap.dedent(THIRD_PARTY))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_drafters", None)
    tgt = target()
    d = make_drafter("my_drafters:Repeat", tgt, token=5)
    assert type(d).__name__ == "Repeat" and d.token == 5
    assert assistant_model(d) is None  # no method: no transformers assistant
    ar = generate(tgt, PROMPT, max_new_tokens=10)
    sp = generate(tgt, PROMPT, None, d, DraftSpec("chain", gamma=2), max_new_tokens=10)
    assert d.begun and sp.output == ar.output and len(sp.steps) >= 1
    with pytest.raises(errors.InputError, match="cannot import drafter"):
        make_drafter("my_drafters:Missing", tgt)


def test_a_subclass_gets_the_optional_members():
    class Minimal(Drafter):
        name, needs_hidden = "minimal", False

        def begin(self, ctx):
            pass

        def propose(self, root, spec, sampling, gen):
            return DraftTree()

        def commit(self, tree, accepted, new_tokens, target_hidden):
            pass

    d = Minimal()
    assert d.can_skip is False and d.assistant_model() is None and isinstance(d, Drafter)
    assert isinstance(shipped("small-mm"), ModelDrafter)
