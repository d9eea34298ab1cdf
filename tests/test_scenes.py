"""Fast tests of the procedural scenes, tasks, scorer and tokenizer (+ the trained target, if
assets/target exists)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tools.scenes.generator import HELDOUT, HELDOUT_START, TRAIN, heldout_seeds, is_heldout, render, sample_scene, train_seeds
from tools.scenes.scorer import score
from tools.scenes.tasks import TASKS, make_sample

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "assets" / "target"


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("seed", [0, 5, 123, HELDOUT_START + 7])
def test_determinism(seed):
    for task in (None,) + TASKS:
        a, b = make_sample(seed, task), make_sample(seed, task)
        assert (a["prompt"], a["answer"], a["task"]) == (b["prompt"], b["answer"], b["task"])
        if a["image"] is not None:
            assert a["image"].size == (128, 128) and a["image"].mode == "RGB"
            assert a["image"].tobytes() == b["image"].tobytes()
            assert _png(a["image"]) == _png(b["image"])
    assert render(sample_scene(seed)).tobytes() == render(sample_scene(seed)).tobytes()


def test_different_seeds_differ():
    imgs = {make_sample(s, "describe")["image"].tobytes() for s in range(20)}
    assert len(imgs) == 20


def test_heldout_disjoint():
    assert TRAIN.stop <= HELDOUT.start
    hs = heldout_seeds(100)
    assert all(is_heldout(s) for s in hs) and len(set(hs)) == 100
    assert not any(is_heldout(s) for s in train_seeds(100))
    assert set(hs).isdisjoint(train_seeds(10_000))


def test_scene_constraints():
    for s in range(300):
        sc = sample_scene(s)
        assert 1 <= len(sc.objects) <= 8
        cells = [(o.row, o.col) for o in sc.objects]
        if sc.word:
            cells.append((sc.word_row, sc.word_col))
        assert len(cells) == len(set(cells))  # one thing per grid cell


def test_tasks_all_produced_and_text_only_has_no_image():
    seen = set()
    for s in range(400):
        smp = make_sample(s)
        seen.add(smp["task"])
        assert smp["prompt"] and smp["answer"]
        assert (smp["image"] is None) == (smp["task"] == "text")
    assert seen == set(TASKS)


def _first(task, pred=None, n=200, style="direct"):
    for s in range(n):
        smp = make_sample(s, task, style=style)
        if smp["task"] == task and (pred is None or pred(smp)):
            return smp
    raise AssertionError(f"no {task} sample")


def test_scorer_accepts_canonical_answers():
    for s in range(300):
        smp = make_sample(s)
        assert score(smp, smp["answer"]), (smp["task"], smp["prompt"], smp["answer"])
    for task in TASKS:
        for s in range(40):
            smp = make_sample(HELDOUT_START + s, task)
            assert score(smp, smp["answer"]), (smp["task"], smp["prompt"], smp["answer"])


def test_scorer_count():
    smp = _first("count", lambda x: x["meta"]["number"] == 3)
    assert score(smp, "There are 3 shapes.")
    assert score(smp, "three")
    assert not score(smp, "There are 4 shapes.")
    assert not score(smp, "")
    z = _first("count", lambda x: x["meta"]["number"] == 0)
    assert score(z, "There are 0 red shapes.") and score(z, "There are no such shapes.")
    assert not score(z, "There is 1 shape.")


def test_tally_style_counts_list_every_object_with_running_ordinals():
    """Answer style "tally" (an experiment, not the shipped target's): a filtered count lists
    every object in reading order, numbers the matching ones with a running ordinal and ends with
    the number; the scorer reads only that number; the question and key equal the direct style's."""
    smp = _first(
        "count",
        lambda x: x["meta"]["kind"] == "color" and x["meta"]["number"] == 2 and len(x["meta"]["scene"]["objects"]) > 3,
        style="tally",
    )
    direct = make_sample(smp["meta"]["scene"]["seed"], "count")
    assert direct["prompt"] == smp["prompt"] and direct["answer"] == f"There are 2 {smp['meta']['color']} shapes."
    c, objs = smp["meta"]["color"], smp["meta"]["scene"]["objects"]
    ans = smp["answer"]
    assert ans.count(". A ") == len(objs) - 1 and ans.endswith(f"There are 2 {c} shapes.")
    assert f", the first {c} shape." in ans and f", the second {c} shape." in ans
    assert ", the third" not in ans
    # each numbered sentence names an object of the asked colour, in reading order
    numbered = [s for s in ans.split(". ") if ", the " in s]
    assert [s.split()[2] for s in numbered] == [c, c]
    # focus spans: one decision per object (", the first red shape." or "."), then the number
    focus = [ans[i:j] for i, j in smp["meta"]["focus"]]
    assert len(focus) == len(objs) + 1 and focus[-1] == f"There are 2 {c} shapes."
    assert sorted(f for f in focus[:-1] if f != ".") == [f", the first {c} shape.", f", the second {c} shape."]
    tally = ans.rsplit("There are", 1)[0]
    assert score(smp, ans) and score(smp, f"There are 2 {c} shapes.")
    assert not score(smp, tally + f"There are 3 {c} shapes.")
    assert not score(smp, tally + f"There is 1 {c} shape.")
    z = _first("count", lambda x: x["meta"]["kind"] == "shape" and x["meta"]["number"] == 0, style="tally")
    assert ", the first" not in z["answer"] and score(z, z["answer"])
    everything = _first("count", lambda x: x["meta"]["kind"] == "all", style="tally")
    assert everything["answer"].startswith("There ")  # unfiltered counts stay one sentence
    with pytest.raises(ValueError, match="answer style"):
        make_sample(1, "count", style="essay")


def test_tally_style_spatial_answers_and_the_scorer_reads_the_last_sentence():
    sp = _first("spatial", lambda x: x["meta"]["kind"] == "left", style="tally")
    size, color, shape = sp["meta"]["key"]
    ref = sp["meta"]["ref"]
    sentences = sp["answer"].split(". ")
    objs = sp["meta"]["scene"]["objects"]
    assert len(sentences) == len(objs) + 2 and sentences[-2].startswith(f"The {ref} is ")
    # "left of" is the object listed just before the reference
    where = sentences[-2].split(" is ", 1)[1]
    listed = sentences[: len(objs)]
    i = next(k for k, s in enumerate(listed) if s.endswith(where) and ref.split()[-1] in s)
    assert listed[i - 1].startswith(f"A {size} {color} {shape} ")
    assert score(sp, sp["answer"])
    wrong = "green" if color != "green" else "red"
    head = ". ".join(sentences[:-1]) + ". "
    assert not score(sp, head + f"The {size} {wrong} {shape} is to the left of the {ref}.")
    assert not score(sp, head)  # the listing alone names objects but answers nothing
    assert score(sp, f"The {size} {color} {shape} is to the left of the {ref}.")
    # the direct style (the shipped target's) answers in one sentence, scored the same way
    direct = make_sample(sp["meta"]["scene"]["seed"], "spatial")
    assert direct["answer"] == sentences[-1] and score(direct, direct["answer"])


def test_scorer_accepts_canonical_tally_answers():
    for s in range(300):
        smp = make_sample(s, style="tally")
        assert score(smp, smp["answer"]), (smp["task"], smp["prompt"], smp["answer"])


def test_lookup_task_is_text_only_opt_in_and_scored_like_its_question():
    """'lookup' (opt-in): the scene as its description in the prompt, then a count / spatial
    question; never drawn by the default mixture, so the held-out evaluation is unchanged."""
    from tools.scenes.tasks import EXTRA_TASKS, TASK_WEIGHTS

    assert "lookup" in EXTRA_TASKS and "lookup" not in TASKS and "lookup" not in TASK_WEIGHTS
    asks = set()
    for seed in range(60):
        for style in ("direct", "tally"):
            smp = make_sample(seed, task="lookup", style=style)
            assert smp["image"] is None and smp["task"] == "lookup"
            assert smp == make_sample(seed, task="lookup", style=style)  # deterministic
            desc = make_sample(seed, task="describe")["answer"]
            assert smp["prompt"].startswith(desc + " ")
            assert score(smp, smp["answer"])
            asks.add(smp["meta"]["asks"])
            if smp["meta"]["asks"] == "count":
                assert not score(smp, f"There are {smp['meta']['number'] + 1} shapes.")
            else:
                assert not score(smp, "There is nothing there.")
            if style == "tally" and "focus" in smp["meta"]:
                for a, b in smp["meta"]["focus"]:
                    assert 0 <= a < b <= len(smp["answer"])
    assert asks == {"count", "spatial"}


def test_scorer_attribute():
    smp = _first("attribute", lambda x: x["meta"]["kind"] == "color")
    key, ref = smp["meta"]["key"], smp["meta"]["ref"]
    wrong = "blue" if key != "blue" else "red"
    assert score(smp, f"The {ref} is {key}.")
    assert not score(smp, f"The {ref} is {wrong}.")
    smp = _first("attribute", lambda x: x["meta"]["kind"] == "where")
    ref, key = smp["meta"]["ref"], smp["meta"]["key"]
    assert score(smp, f"The {ref} is {key}.")
    other = "in the center" if key != "in the center" else "at the top left"
    assert not score(smp, f"The {ref} is {other}.")
    smp = _first("attribute", lambda x: x["meta"]["kind"] == "shape")
    ref, key = smp["meta"]["ref"], smp["meta"]["key"]
    assert score(smp, f"The {ref} object is a {key}.")
    assert not score(smp, f"The {ref} object is a {'star' if key != 'star' else 'circle'}.")


def test_scorer_spatial():
    smp = _first("spatial")
    size, color, shape = smp["meta"]["key"]
    assert score(smp, smp["answer"])
    assert score(smp, f"A {color} {shape}.")
    wrong_color = "green" if color != "green" else "red"
    assert not score(smp, f"The {size} {wrong_color} {shape} is there.")
    assert not score(smp, "I don't know.")


def test_scorer_reading():
    smp = _first("reading", lambda x: x["meta"]["key"] is not None)
    w = smp["meta"]["key"]
    assert score(smp, f'The word is "{w}".') and score(smp, w)
    other = "cat" if w != "cat" else "dog"
    assert not score(smp, f'The word is "{other}".')
    assert not score(smp, "There is no word in the image.")
    none = _first("reading", lambda x: x["meta"]["key"] is None, n=400)
    assert score(none, "There is no word in the image.")
    assert not score(none, 'The word is "cat".')


def test_scorer_describe_and_caption():
    smp = _first("describe", lambda x: x["meta"]["count"] >= 3)
    assert score(smp, smp["answer"])
    # drop one object -> wrong; wrong count -> wrong
    sentences = smp["answer"].split(". ")
    assert not score(smp, ". ".join(sentences[:1] + sentences[2:]))
    n = smp["meta"]["count"]
    assert not score(smp, smp["answer"].replace(f"There are {n}", f"There are {n + 1}", 1))
    cap = _first("caption", lambda x: x["meta"]["count"] > 1)
    n = cap["meta"]["count"]
    assert score(cap, f"{n} shapes on a background.")
    assert not score(cap, f"{n + 1} shapes on a background.")


def test_scorer_text():
    smp = _first("text", lambda x: x["meta"]["kind"] == "add", n=2000)
    assert score(smp, smp["answer"])
    assert not score(smp, smp["answer"].rsplit(" ", 1)[0] + f" {smp['meta']['number'] + 1}.")
    smp = _first("text", lambda x: x["meta"]["kind"] == "spell", n=2000)
    assert score(smp, smp["answer"]) and not score(smp, "x-y-z.")


def test_tokenizer_round_trip_and_template():
    from tools.scenes.tasks import corpus
    from tools.train.tokenizer import IMAGE, SPECIAL_TOKENS, build_tokenizer

    tok = build_tokenizer(corpus(300), vocab_size=600)
    for t in SPECIAL_TOKENS:
        assert t in tok.all_special_tokens
    text = 'There are 3 shapes. The word "cat" is written at the top. 12 + 7 = 19!'
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    msgs = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi?"}]},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]
    out = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert out == ("<|bos|><|user|>\n<image>\nHi?\n<|assistant|>\nHello!<|eos|>\n<|user|>\nBye\n<|assistant|>\n")
    # special tokens are single ids; NOTE: literal special-token text typed by a user IS mapped
    # to the special id (HF added-token matching), so the engine must sanitise user text.
    img_id = tok.convert_tokens_to_ids(IMAGE)
    assert tok("a <image> b", add_special_tokens=False)["input_ids"].count(img_id) == 1


EVAL_FILE = TARGET / "EVAL.json"  # python -m tools.scenes eval --n 200 --threads 2 --json > assets/target/EVAL.json


@pytest.fixture(scope="module")
def shipped_eval():
    """The shipped target, decoded greedily, on the first 200 held-out scenes (the README's number;
    batched, each task kind in one batch, the fastest here (61 s against 82 s in batches of 25 on
    2 cores): EVAL.json was decoded one at a time, and the two agree within the test's tolerance)."""
    from tools.scenes.__main__ import evaluate

    return evaluate(str(TARGET), n=200, batch=200)


@pytest.mark.slow
@pytest.mark.skipif(not (TARGET / "config.json").exists(), reason="assets/target not trained yet")
def test_trained_target_reproduces_its_documented_accuracy(shipped_eval):
    """The shipped target scores what its EVAL.json (the number quoted in the README) says on the
    same 200 held-out scenes: a regression test of model + scorer. 200, not fewer: the first 40
    held-out scenes score 0.95 with a model that scores 0.87 on 200."""
    import json

    doc = json.loads(EVAL_FILE.read_text())
    res = shipped_eval
    assert res["n"] == doc["n"] == 200
    # greedy fp32 decoding is deterministic on one machine; other CPUs' kernels may flip a near-tie
    assert abs(res["accuracy"] - doc["accuracy"]) <= 0.03 + 1e-9, (res["accuracy"], doc)
    assert res["accuracy"] > 0.1  # far above a blind guess on counts/colours


@pytest.mark.skipif(not (TARGET / "config.json").exists(), reason="assets/target not trained yet")
def test_trained_target_reaches_the_accuracy_bar(shipped_eval):
    """Issue 3: answers right >= 90% of the time on held-out scenes, measured here (not read from
    a file), and documented in EVAL.json."""
    import json

    assert shipped_eval["accuracy"] >= 0.9, shipped_eval["by_task"]
    assert json.loads(EVAL_FILE.read_text())["accuracy"] >= 0.9
