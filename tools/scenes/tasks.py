"""Tasks over procedural scenes (+ text-only tasks), each with several prompt phrasings and ONE
canonical answer form, so answers are deterministic given (scene, task) and learnable.

``make_sample(seed, task=None)`` -> dict(image, prompt, answer, task, meta).
"""

from __future__ import annotations

import random

from .generator import (
    COLOR_NAMES,
    SHAPES,
    SIZES,
    WORDS,
    render,
    sample_scene,
)

IMAGE_TASKS = ("describe", "caption", "count", "attribute", "spatial", "reading")
TEXT_TASKS = ("text",)
TASKS = IMAGE_TASKS + TEXT_TASKS
# opt-in tasks: never drawn by the default mixture (so the held-out evaluation is unchanged), only
# when a training mixture names them (tools.train.target --task-weights ...,lookup=0.1)
EXTRA_TASKS = ("lookup",)
ALL_TASKS = TASKS + EXTRA_TASKS
# default mixture (also used by training): ~15% text-only
TASK_WEIGHTS = {
    "describe": 0.20,
    "caption": 0.08,
    "count": 0.16,
    "attribute": 0.17,
    "spatial": 0.13,
    "reading": 0.11,
    "text": 0.15,
}

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
BG_NAMES = {"plain": "plain", "stripes": "striped", "noise": "noisy", "checker": "checkered"}


def _plural(n: int, noun: str) -> str:
    if n == 1:
        return f"There is 1 {noun}."
    plural = noun[:-1] + "es" if noun.endswith("x") else noun + "s"
    return f"There are {n} {plural}."


def _obj_dict(o) -> dict:
    return {"shape": o.shape, "color": o.color, "size": o.size, "row": o.row, "col": o.col, "location": o.location}


def unique_ref(objects, obj, fields_options) -> str | None:
    """Shortest description (from ``fields_options``, tried in order) that matches only ``obj``."""
    for fields in fields_options:
        matches = [o for o in objects if all(getattr(o, f) == getattr(obj, f) for f in fields)]
        if len(matches) == 1:
            return " ".join(getattr(obj, f) for f in fields)
    return None


REF_ANY = (("shape",), ("color", "shape"), ("size", "shape"), ("size", "color", "shape"))

# ------------------------------------------------------------------ image tasks


DESCRIBE_PROMPTS = [
    "Describe the image in detail.",
    "Describe everything you see in this picture.",
    "List every object in the image.",
    "What is in this image? Give a detailed description.",
    "Give a detailed description of the scene.",
    "Tell me everything that is in the picture.",
]
CAPTION_PROMPTS = [
    "Write a short caption for this image.",
    "Caption this image.",
    "Give a one-sentence caption for the picture.",
    "Summarize the image in one sentence.",
]
COUNT_ALL_PROMPTS = [
    "How many shapes are there?",
    "How many shapes are in the image?",
    "Count the shapes in the image.",
    "How many objects can you see?",
    "How many objects are in the picture?",
]
COUNT_COLOR_PROMPTS = [
    "How many {c} shapes are there?",
    "How many {c} objects are in the image?",
    "Count the {c} shapes.",
    "How many {c} objects can you see?",
]
COUNT_SHAPE_PROMPTS = [
    "How many {p} are there?",
    "How many {p} are in the image?",
    "Count the {p}.",
    "How many {p} can you see?",
]
COUNT_SIZE_PROMPTS = [
    "How many {s} shapes are there?",
    "Count the {s} shapes in the image.",
]
COLOR_Q = [
    "What colour is the {r}?",
    "What color is the {r}?",
    "Which colour does the {r} have?",
    "Tell me the colour of the {r}.",
]
SHAPE_Q = [
    "What shape is the {r} object?",
    "Which shape is {r}?",
    "What is the shape of the {r} object?",
]
SIZE_Q = [
    "Is the {r} small or large?",
    "What size is the {r}?",
    "Is the {r} large or small?",
]
WHERE_Q = [
    "Where is the {r}?",
    "Where is the {r} in the image?",
    "In which part of the image is the {r}?",
]
REL_Q = {
    "left": ["What is to the left of the {r}?", "Which shape is left of the {r}?", "What is directly left of the {r}?"],
    "right": ["What is to the right of the {r}?", "Which shape is right of the {r}?", "What is directly right of the {r}?"],
    "above": ["What is above the {r}?", "Which shape is above the {r}?", "What is directly above the {r}?"],
    "below": ["What is below the {r}?", "Which shape is below the {r}?", "What is directly below the {r}?"],
}
REL_PHRASE = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
READ_PROMPTS = [
    "What word is written in the image?",
    "Read the text in the image.",
    "What does the text in the picture say?",
    "Is there a word in the image? What is it?",
]


def _sentence(o) -> str:
    """One object as a description states it, without the full stop: "A small red star at the top"."""
    return f"A {o.size} {o.color} {o.shape} {o.location}"


def _describe(scene):
    objs = scene.ordered()
    n = len(objs)
    parts = ["There is 1 shape." if n == 1 else f"There are {n} shapes."]
    for o in objs:
        parts.append(_sentence(o) + ".")
    if scene.word:
        parts.append(f'The word "{scene.word}" is written {scene.word_location}.')
    return " ".join(parts), {"count": n, "objects": [[o.color, o.shape] for o in objs], "word": scene.word}


def _caption(scene):
    objs = scene.ordered()
    n = len(objs)
    bg = BG_NAMES[scene.background]
    if n == 1:
        o = objs[0]
        head = f"A {o.size} {o.color} {o.shape}"
    else:
        head = f"{n} shapes"
    if scene.word:
        head += f' and the word "{scene.word}"'
    return f"{head} on a {bg} background.", {
        "count": n,
        "shapes": sorted({o.shape for o in objs}),
        "colors": sorted({o.color for o in objs}),
    }


ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"]


def _tally(objs, match, noun: str) -> tuple:
    """``objs`` (in reading order) as describe sentences; each one that ``match``es carries a
    running ordinal ("A large red star in the center, the second red shape."). The listing holds
    no number (ordinals are words the scorer does not read as numbers), so the answer's first
    number is the count that ends it. Returns (text, focus spans): the character span of each
    decision (", the second red shape." or the bare ".").
    """
    out, focus, k, pos = [], [], 0, 0
    for o in objs:
        s = _sentence(o)
        hit = match(o)
        tail = f", the {ORDINALS[k]} {noun}." if hit else "."
        k += hit
        focus.append((pos + len(s), pos + len(s) + len(tail)))
        out.append(s + tail + " ")
        pos += len(s) + len(tail) + 1
    return "".join(out), focus


def _count(scene, rng, style: str = "direct"):
    objs = scene.objects
    kind = rng.choices(["all", "color", "shape", "size"], weights=[3, 3, 3, 1])[0]
    if kind == "all":
        n = len(objs)
        return rng.choice(COUNT_ALL_PROMPTS), _plural(n, "shape"), {"kind": kind, "number": n}
    if kind == "color":
        # mostly ask about colours that are present
        present = [o.color for o in objs]
        c = rng.choice(present) if rng.random() < 0.75 else rng.choice(COLOR_NAMES)
        prompt, match, noun = (rng.choice(COUNT_COLOR_PROMPTS).format(c=c), (lambda o: o.color == c), f"{c} shape")
        meta = {"kind": kind, "color": c}
    elif kind == "shape":
        present = [o.shape for o in objs]
        s = rng.choice(present) if rng.random() < 0.75 else rng.choice(SHAPES)
        prompt, match, noun = rng.choice(COUNT_SHAPE_PROMPTS).format(p=s + "s"), (lambda o: o.shape == s), s
        meta = {"kind": kind, "shape": s}
    else:
        sz = rng.choice(SIZES)
        prompt, match, noun = (rng.choice(COUNT_SIZE_PROMPTS).format(s=sz), (lambda o: o.size == sz), f"{sz} shape")
        meta = {"kind": kind, "size": sz}
    n = sum(map(match, objs))
    meta["number"] = n
    if style == "tally":
        # a tally first: every object as in a description (right 98% of the time), the matching
        # ones numbered with a running ordinal, then the number (see _tally; the shipped
        # target's format since stage 12: assets/target/TRAINING.md)
        text, focus = _tally(scene.ordered(), match, noun)
        final = _plural(n, noun)
        meta["focus"] = focus + [(len(text), len(text) + len(final))]
        return prompt, text + final, meta
    return prompt, _plural(n, noun), meta


def _attribute(scene, rng):
    objs = scene.objects
    order = ["color", "shape", "size", "where"]
    rng.shuffle(order)
    targets = list(objs)
    rng.shuffle(targets)
    for kind in order:
        for o in targets:
            if kind == "color":
                r = unique_ref(objs, o, (("shape",), ("size", "shape")))
                if r:
                    return (rng.choice(COLOR_Q).format(r=r), f"The {r} is {o.color}.", {"kind": kind, "key": o.color, "ref": r})
            elif kind == "shape":
                r = unique_ref(objs, o, (("color",), ("size", "color")))
                if r:
                    return (rng.choice(SHAPE_Q).format(r=r), f"The {r} object is a {o.shape}.", {"kind": kind, "key": o.shape, "ref": r})
            elif kind == "size":
                r = unique_ref(objs, o, (("shape",), ("color", "shape")))
                if r:
                    return (rng.choice(SIZE_Q).format(r=r), f"The {r} is {o.size}.", {"kind": kind, "key": o.size, "ref": r})
            else:
                r = unique_ref(objs, o, REF_ANY)
                if r:
                    return (rng.choice(WHERE_Q).format(r=r), f"The {r} is {o.location}.", {"kind": kind, "key": o.location, "ref": r})
    return None


def _spatial(scene, rng, style: str = "direct"):
    objs = scene.objects
    cands = []
    for o in objs:
        r = unique_ref(objs, o, REF_ANY)
        if not r:
            continue
        for rel in REL_Q:
            if rel == "left":
                hits = [p for p in objs if p.row == o.row and p.col < o.col]
            elif rel == "right":
                hits = [p for p in objs if p.row == o.row and p.col > o.col]
            elif rel == "above":
                hits = [p for p in objs if p.col == o.col and p.row < o.row]
            else:
                hits = [p for p in objs if p.col == o.col and p.row > o.row]
            if len(hits) == 1:
                cands.append((o, r, rel, hits[0]))
    if not cands:
        return None
    o, r, rel, t = rng.choice(cands)
    ans_obj = f"{t.size} {t.color} {t.shape}"
    final = f"The {ans_obj} is {REL_PHRASE[rel]} the {r}."
    meta = {"kind": rel, "ref": r, "key": [t.size, t.color, t.shape]}
    if style == "tally":
        # every object in reading order first, then the reference's location: "left of" is the
        # object listed just before the reference (exactly one object of its row lies left of
        # it), "right of" the one just after, above / below the one in the same column
        text = "".join(_sentence(p) + ". " for p in scene.ordered())
        where = f"The {r} is {o.location}. "
        meta["focus"] = [(len(text), len(text) + len(where) + len(final))]
        return rng.choice(REL_Q[rel]).format(r=r), text + where + final, meta
    return rng.choice(REL_Q[rel]).format(r=r), final, meta


def _lookup(scene, rng, style: str = "direct"):
    """Text-only practice for the decisions of a tally answer: the scene is given as its
    description, then a counting or spatial question about it, answered as the image task would
    answer it. Looking things up in text the model just wrote is what tally answers need and no
    image task teaches directly (assets/target/TRAINING.md, stages 11-12)."""
    desc, _ = _describe(scene)
    out, asks = (_spatial(scene, rng, style), "spatial") if rng.random() < 0.5 else (None, "count")
    if out is None:
        out, asks = _count(scene, rng, style), "count"
    question, answer, meta = out
    return f"{desc} {question}", answer, dict(meta, asks=asks)


def _reading(scene, rng):
    prompt = rng.choice(READ_PROMPTS)
    if scene.word:
        return prompt, f'The word is "{scene.word}".', {"key": scene.word}
    return prompt, "There is no word in the image.", {"key": None}


# ------------------------------------------------------------------ text-only tasks

GREETINGS = {
    "Hello!": "Hello! How can I help you today?",
    "Hi!": "Hello! How can I help you today?",
    "Hi there.": "Hello! How can I help you today?",
    "Good morning!": "Good morning! How can I help you today?",
    "How are you?": "I am fine, thank you.",
    "What is your name?": "I am SpecScope, a small vision-language model.",
    "Who are you?": "I am SpecScope, a small vision-language model.",
    "Thank you!": "You are welcome!",
    "Thanks a lot.": "You are welcome!",
    "Goodbye!": "Goodbye! Have a nice day.",
    "What can you do?": "I can describe pictures of shapes, count them and read words.",
    "Name a colour.": "Red is a colour.",
    "Name a color.": "Red is a colour.",
    "Name a shape.": "A circle is a shape.",
    "Name an animal.": "A cat is an animal.",
    "What colour is the sky?": "The sky is blue.",
    "What colour is grass?": "Grass is green.",
}
OPPOSITES = {
    "big": "small",
    "small": "big",
    "hot": "cold",
    "cold": "hot",
    "up": "down",
    "down": "up",
    "left": "right",
    "right": "left",
    "day": "night",
    "night": "day",
    "old": "new",
    "new": "old",
    "fast": "slow",
    "slow": "fast",
    "open": "closed",
    "light": "dark",
    "dark": "light",
    "top": "bottom",
    "bottom": "top",
    "yes": "no",
}
SIDES = {"triangle": 3, "square": 4, "hexagon": 6, "pentagon": 5, "octagon": 8}
VOCAB = (
    list(WORDS)
    + list(COLOR_NAMES)
    + list(SHAPES)
    + [
        "the",
        "a",
        "big",
        "small",
        "red",
        "runs",
        "sleeps",
        "is",
        "on",
        "under",
        "and",
        "happy",
        "blue",
        "house",
        "green",
        "jumps",
        "over",
        "very",
        "my",
        "friend",
    ]
)
SPELL_WORDS = list(WORDS) + list(COLOR_NAMES) + list(SHAPES)


def _text_task(rng):
    kind = rng.choice(["add", "sub", "mul", "words", "letters", "spell", "repeat", "chat", "next", "prev", "countup", "opposite", "sides"])
    if kind == "add":
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        p = rng.choice(["What is {a} plus {b}?", "Compute {a} + {b}.", "How much is {a} plus {b}?", "What is {a} + {b}?"]).format(a=a, b=b)
        return p, f"{a} plus {b} is {a + b}.", {"kind": kind, "number": a + b}
    if kind == "sub":
        a = rng.randint(0, 20)
        b = rng.randint(0, a)
        p = rng.choice(["What is {a} minus {b}?", "Compute {a} - {b}.", "How much is {a} minus {b}?"]).format(a=a, b=b)
        return p, f"{a} minus {b} is {a - b}.", {"kind": kind, "number": a - b}
    if kind == "mul":
        a, b = rng.randint(0, 10), rng.randint(0, 10)
        p = rng.choice(["What is {a} times {b}?", "Compute {a} x {b}.", "How much is {a} times {b}?"]).format(a=a, b=b)
        return p, f"{a} times {b} is {a * b}.", {"kind": kind, "number": a * b}
    if kind == "words":
        n = rng.randint(1, 8)
        s = " ".join(rng.choice(VOCAB) for _ in range(n))
        p = rng.choice(["How many words are in this sentence: {s}", "Count the words: {s}", "How many words are there in \"{s}\"?"]).format(
            s=s
        )
        return p, _plural(n, "word"), {"kind": kind, "number": n}
    if kind == "letters":
        w = rng.choice(SPELL_WORDS)
        p = rng.choice(["How many letters are in the word {w}?", "How many letters does {w} have?"]).format(w=w)
        n = len(w)
        return p, f"The word {w} has {n} letter{'s' if n != 1 else ''}.", {"kind": kind, "number": n}
    if kind == "spell":
        w = rng.choice(SPELL_WORDS)
        p = rng.choice(["Spell the word {w}.", "How do you spell {w}?", "Spell {w}."]).format(w=w)
        return p, "-".join(w) + ".", {"kind": kind, "key": "-".join(w)}
    if kind == "repeat":
        s = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(1, 6)))
        p = rng.choice(["Repeat after me: {s}", "Say this back: {s}", "Repeat: {s}"]).format(s=s)
        return p, s, {"kind": kind, "key": s}
    if kind == "chat":
        p = rng.choice(sorted(GREETINGS))
        return p, GREETINGS[p], {"kind": kind, "key": GREETINGS[p]}
    if kind == "next":
        a = rng.randint(0, 98)
        p = rng.choice(["What number comes after {a}?", "What comes after {a}?"]).format(a=a)
        return p, f"{a + 1} comes after {a}.", {"kind": kind, "number": a + 1}
    if kind == "prev":
        a = rng.randint(1, 99)
        p = rng.choice(["What number comes before {a}?", "What comes before {a}?"]).format(a=a)
        return p, f"{a - 1} comes before {a}.", {"kind": kind, "number": a - 1}
    if kind == "countup":
        a = rng.randint(0, 15)
        b = a + rng.randint(1, 6)
        p = rng.choice(["Count from {a} to {b}.", "Please count from {a} to {b}."]).format(a=a, b=b)
        ans = ", ".join(str(i) for i in range(a, b + 1)) + "."
        return p, ans, {"kind": kind, "key": ans[:-1]}
    if kind == "opposite":
        w = rng.choice(sorted(OPPOSITES))
        p = rng.choice(["What is the opposite of {w}?", "Give the opposite of {w}."]).format(w=w)
        return p, f"The opposite of {w} is {OPPOSITES[w]}.", {"kind": kind, "key": OPPOSITES[w]}
    s = rng.choice(sorted(SIDES))
    p = rng.choice(["How many sides does a {s} have?", "How many corners does a {s} have?"]).format(s=s)
    return p, f"A {s} has {SIDES[s]} sides." if "sides" in p else f"A {s} has {SIDES[s]} corners.", {"kind": "sides", "number": SIDES[s]}


# ------------------------------------------------------------------ public API


def choose_task(rng: random.Random, weights: dict | None = None) -> str:
    w = weights or TASK_WEIGHTS
    names = list(w)
    return rng.choices(names, weights=[w[k] for k in names])[0]


ANSWER_STYLES = ("direct", "tally")


def make_sample(seed: int, task: str | None = None, weights: dict | None = None, render_image: bool = True, style: str = "direct") -> dict:
    """Deterministic sample for ``seed``; ``task`` in ALL_TASKS or None (drawn from the mixture).

    ``style``: "direct" (one-sentence answers: stages 1-10 of the default target) or "tally" (the
    shipped target's answers since stage 12: filtered counts and spatial questions answered after
    listing every object; ``meta["focus"]`` then holds the
    character spans of the answer's decisions, which training may weight up). The question, the
    scene and the scorer's key are the same in both styles."""
    if style not in ANSWER_STYLES:
        raise ValueError(f"unknown answer style {style!r}; one of {ANSWER_STYLES}")
    rng = random.Random(seed * 1_000_003 + 12345)
    if task is None:
        task = choose_task(rng, weights)
    if task not in ALL_TASKS:
        raise ValueError(f"unknown task {task!r}; one of {ALL_TASKS}")
    if task == "text":
        prompt, answer, meta = _text_task(rng)
        return {"image": None, "prompt": prompt, "answer": answer, "task": task, "meta": meta}

    with_word = None
    if task == "reading" and rng.random() < 0.8:
        with_word = True
    scene = sample_scene(seed, with_word=with_word)
    out = None
    if task == "lookup":  # text-only: the scene is in the prompt, not in an image
        prompt, answer, meta = _lookup(scene, rng, style)
        meta["scene"] = {"seed": seed, "objects": [_obj_dict(o) for o in scene.ordered()]}
        return {"image": None, "prompt": prompt, "answer": answer, "task": task, "meta": meta}
    if task == "describe":
        p = rng.choice(DESCRIBE_PROMPTS)
        a, meta = _describe(scene)
        out = (p, a, meta)
    elif task == "caption":
        p = rng.choice(CAPTION_PROMPTS)
        a, meta = _caption(scene)
        out = (p, a, meta)
    elif task == "count":
        out = _count(scene, rng, style)
    elif task == "attribute":
        out = _attribute(scene, rng)
    elif task == "spatial":
        out = _spatial(scene, rng, style)
        if out is None:  # no unambiguous relation in this scene: ask an attribute
            task = "attribute"
            out = _attribute(scene, rng)
    elif task == "reading":
        out = _reading(scene, rng)
    if out is None:  # every object ambiguous (rare): fall back to counting
        task = "count"
        out = _count(scene, rng, style)
    prompt, answer, meta = out
    meta = dict(meta)
    meta["scene"] = {
        "seed": seed,
        "background": scene.background,
        "word": scene.word,
        "word_location": scene.word_location,
        "objects": [_obj_dict(o) for o in scene.ordered()],
    }
    image = render(scene) if render_image else None
    return {"image": image, "prompt": prompt, "answer": answer, "task": task, "meta": meta}


def corpus(n: int, start: int = 0) -> list:
    """Text of ``n`` samples (prompt + answer), for tokenizer training."""
    out = []
    for s in range(start, start + n):
        smp = make_sample(s, render_image=False)
        out.append(smp["prompt"])
        out.append(smp["answer"])
    return out
