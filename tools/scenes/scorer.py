"""Task-aware, lenient-where-sensible scoring of a model's answer to a scene sample.

    score(sample, prediction_text) -> bool

- count / numeric text tasks: the first number (digits or number word) equals the answer (a
  filtered count's tally before the number numbers its objects with ordinals, which are not
  read as numbers)
- attribute: the first colour / shape / size / location phrase of the right kind outside the
  referring expression equals the answer
- spatial: in the answer's final sentence (the answer first lists the objects and locates the
  reference), the first object phrase outside the reference is the answer object (colour +
  shape, + size when given)
- reading: the quoted / mentioned word (or "no word" when there is none)
- describe: the object count is right and every object's "colour shape" is mentioned (with
  multiplicity)
- caption: lenient: mentions the right count, or (single object) its shape
- other text tasks: the key phrase appears (case/punctuation-insensitive)
"""

from __future__ import annotations

import re
from collections import Counter

from .generator import COLOR_NAMES, LOCATIONS, SHAPES, SIZES

_NUM_WORDS = {
    w: i for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"])
}
_NUM_WORDS["no"] = 0
_NUM_WORDS["none"] = 0

_COLOR_ALIASES = {"colour": None, "grey": None, "violet": "purple"}
_LOCS = sorted(set(LOCATIONS.values()), key=len, reverse=True)
_LOC_RE = re.compile("|".join(re.escape(l.split(" ", 1)[1]) for l in _LOCS))  # "the top left", ...


def _norm(text: str) -> str:
    text = text.lower().replace("color", "colour").replace("grey", "gray")
    return re.sub(r"\s+", " ", text).strip()


def _words(text: str) -> list:
    return re.findall(r"[a-z0-9]+", _norm(text))


def first_number(text: str):
    for w in _words(text):
        if w.isdigit():
            return int(w)
        if w in _NUM_WORDS:  # "There are no red shapes." counts as zero
            return _NUM_WORDS[w]
    return None


def final_sentence(text: str) -> str:
    """The last sentence of ``text`` (the whole text when it is one sentence)."""
    parts = [p for p in re.split(r"(?<=[.!?])\s+", text.strip()) if p.strip(" .!?")]
    return parts[-1] if parts else text


def _strip_ref(text: str, ref: str | None) -> str:
    t = _norm(text)
    if ref:
        t = t.replace(_norm(ref), " ")
    return t


def _first_of(text: str, vocab) -> str | None:
    best, pos = None, None
    for v in vocab:
        m = re.search(r"\b" + re.escape(v) + r"s?\b", text)
        if m and (pos is None or m.start() < pos):
            best, pos = v, m.start()
    return best


_OBJ_RE = re.compile(r"\b(?:(small|large)\s+)?(" + "|".join(COLOR_NAMES) + r")\s+(" + "|".join(SHAPES) + r")s?\b")


def object_mentions(text: str) -> list:
    return [(m.group(1), m.group(2), m.group(3)) for m in _OBJ_RE.finditer(_norm(text))]


def score(sample: dict, prediction: str) -> bool:
    task = sample["task"]
    meta = sample.get("meta", {})
    pred = prediction or ""
    p = _norm(pred)
    if not p:
        return False

    if task == "lookup":  # a count / spatial question about a scene given as text
        return score(dict(sample, task=meta["asks"]), prediction)

    if task == "count":
        return first_number(pred) == meta["number"]

    if task == "attribute":
        kind, key, ref = meta["kind"], meta["key"], meta.get("ref")
        rest = _strip_ref(pred, ref)
        if kind == "color":
            return _first_of(rest, COLOR_NAMES) == key
        if kind == "shape":
            return _first_of(rest, SHAPES) == key
        if kind == "size":
            return _first_of(rest, SIZES) == key
        m = _LOC_RE.search(rest)
        return bool(m) and m.group(0) == key.split(" ", 1)[1]

    if task == "spatial":
        size, color, shape = meta["key"]
        rest = _strip_ref(final_sentence(pred), meta.get("ref"))
        mentions = object_mentions(rest)
        if not mentions:
            return False
        s, c, sh = mentions[0]
        if (c, sh) != (color, shape):
            return False
        return s is None or s == size

    if task == "reading":
        key = meta.get("key")
        if key is None:
            return bool(re.search(r"\bno (word|text)\b|\bnothing\b", p))
        quoted = re.findall(r"[\"'“”‘’]([a-z]+)[\"'“”‘’]", p)
        if quoted:
            return quoted[0] == key
        return bool(re.search(r"\b" + re.escape(key) + r"\b", p)) and "no word" not in p

    if task == "describe":
        if first_number(pred) != meta["count"]:
            return False
        need = Counter((c, s) for c, s in meta["objects"])
        have = Counter((c, s) for _, c, s in object_mentions(pred))
        return all(have[k] >= v for k, v in need.items())

    if task == "caption":
        n = meta["count"]
        num = first_number(pred)
        if n == 1:
            return any(re.search(r"\b" + s + r"\b", p) for s in meta["shapes"]) and (num in (None, 1))
        return num == n

    if task == "text":
        if "number" in meta:
            nums = [int(w) for w in _words(pred) if w.isdigit()]
            # canonical answers restate the operands first ("3 plus 4 is 7."): the result is the
            # last number for arithmetic, the first for "X comes after Y" / counts
            kind = meta.get("kind")
            if kind in ("add", "sub", "mul"):
                return bool(nums) and nums[-1] == meta["number"]
            return first_number(pred) == meta["number"]
        key = _norm(str(meta.get("key", "")))
        key = re.sub(r"[^a-z0-9 ,-]", "", key)
        pp = re.sub(r"[^a-z0-9 ,-]", "", p)
        return bool(key) and key in pp

    raise ValueError(f"unknown task {task!r}")


def exact(sample: dict, prediction: str) -> bool:
    return _norm(prediction).strip(" .") == _norm(sample["answer"]).strip(" .")
