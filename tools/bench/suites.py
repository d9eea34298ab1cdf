"""The inputs a benchmark runs on: held-out scenes, a folder of images + prompts, or text prompts."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from core.errors import InputError
from core.images import load_image
from ..scenes.generator import heldout_seeds
from ..scenes.tasks import make_sample
from .errors import BenchError

GROUNDED_TASKS = ("count", "attribute", "spatial", "reading")
DESCRIPTION_TASKS = ("describe", "caption")
BUILTIN_TEXT_PROMPTS = [
    "Explain in two sentences what speculative decoding is.",
    "Write a short story about a red fox and a blue bird.",
    "List the numbers from one to twenty, separated by commas.",
    "Repeat after me: the quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog.",
]


@dataclass
class Sample:
    id: str
    prompt: str
    image: object = None  # PIL image or None
    group: str = "all"
    task: str | None = None
    source: str | None = None  # image file name / scene seed

    def describe(self) -> dict:
        return {
            "id": self.id,
            "group": self.group,
            "task": self.task,
            "prompt": self.prompt,
            "image": self.source if self.image is not None else None,
        }


def scene_samples(n: int, start: int = 0) -> list[Sample]:
    """``n`` held-out scene samples, alternating description and grounded questions."""
    out = []
    for i, seed in enumerate(heldout_seeds(n, start)):
        if i % 2 == 0:
            want = DESCRIPTION_TASKS[(i // 2) % len(DESCRIPTION_TASKS)]
        else:
            want = GROUNDED_TASKS[(i // 2) % len(GROUNDED_TASKS)]
        try:
            scene = make_sample(seed, want)
        except TypeError:  # older / newer signature without ``task``
            scene = make_sample(seed)
        task = scene.get("task")
        group = "description" if task in DESCRIPTION_TASKS else "grounded" if task in GROUNDED_TASKS else "text"
        out.append(Sample(f"scene-{seed}", scene["prompt"], scene.get("image"), group, task, f"seed {seed}"))
    return out


def _read_jsonl(path: str) -> list:
    if not os.path.isfile(path):
        raise BenchError(f"prompts file not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise BenchError(f"{path}:{ln}: not valid JSON ({e.msg})") from None
    if not rows:
        raise BenchError(f"{path} holds no prompts")
    return rows


def _prompt_of(row, where: str) -> str:
    prompt = row if isinstance(row, str) else row.get("prompt") if isinstance(row, dict) else None
    if not isinstance(prompt, str) or not prompt.strip():
        raise BenchError(f"{where}: needs a non-empty \"prompt\" string")
    return prompt


def folder_samples(images: str | None, prompts: str | None) -> list[Sample]:
    if not images or not prompts:
        raise BenchError("--suite folder needs --images DIR and --prompts FILE.jsonl")
    if not os.path.isdir(images):
        raise BenchError(f"images directory not found: {images}")
    out = []
    for i, row in enumerate(_read_jsonl(prompts)):
        where = f"{prompts} line {i + 1}"
        prompt = _prompt_of(row, where)
        img_name = row.get("image") if isinstance(row, dict) else None
        image = None
        if img_name:
            try:
                image = load_image(os.path.join(images, img_name))
            except InputError as e:
                raise BenchError(f"{where}: {e}") from None
        group = str(row.get("group") or "folder") if isinstance(row, dict) else "folder"
        out.append(Sample(f"{i}:{img_name or 'text'}", prompt, image, group, None, img_name))
    return out


def text_samples(prompts: str | None) -> list[Sample]:
    rows = _read_jsonl(prompts) if prompts else BUILTIN_TEXT_PROMPTS
    out = []
    for i, row in enumerate(rows):
        group = str(row.get("group") or "text") if isinstance(row, dict) else "text"
        out.append(Sample(f"text-{i}", _prompt_of(row, f"{prompts} line {i + 1}"), None, group, "text"))
    return out


def load_suite(args) -> list[Sample]:
    if args.suite == "scenes":
        samples = scene_samples(args.n or 20, args.scene_start)
    elif args.suite == "folder":
        samples = folder_samples(args.images, args.prompts)
    else:
        samples = text_samples(args.prompts)
    if args.n:
        samples = samples[: args.n]
    if not samples:
        raise BenchError("the suite is empty")
    return samples


def groups_of(samples: list[Sample]) -> list[str]:
    """The sample groups in order of appearance, plus "all" when there is more than one."""
    names = list(dict.fromkeys(s.group for s in samples))
    return names + ["all"] if len(names) > 1 else names
