"""Procedural scene generator: deterministic by integer seed, endless.

A scene is a 128x128 RGB picture on a light (plain / striped / noisy / checkered) background
with 1-8 coloured shapes placed on a 3x3 grid (one object per cell, small jitter, so every
object has an unambiguous location phrase) and, sometimes, one short word written in large
letters in a free cell.

Seeds below ``HELDOUT_START`` are the training split; seeds at or above it are held out.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

IMAGE_SIZE = 128
GRID = 3
CELL = IMAGE_SIZE / GRID

HELDOUT_START = 1_000_000_000
TRAIN = range(0, HELDOUT_START)
HELDOUT = range(HELDOUT_START, 2 * HELDOUT_START)

SHAPES = ("circle", "square", "triangle", "star", "hexagon")
SHAPE_PLURALS = {s: s + "s" for s in SHAPES}

# Saturated, clearly distinct colours. Backgrounds are mid-light tints, so white and yellow
# stay visible (plus every shape gets a darker outline).
COLORS = {
    "red": (220, 30, 30),
    "green": (30, 150, 40),
    "blue": (30, 70, 225),
    "yellow": (250, 215, 0),
    "purple": (135, 40, 180),
    "orange": (255, 125, 0),
    "white": (255, 255, 255),
    "black": (15, 15, 15),
}
COLOR_NAMES = tuple(COLORS)
SIZES = ("small", "large")
RADIUS = {"small": 9, "large": 18}

WORDS = (
    "cat",
    "dog",
    "sun",
    "tree",
    "book",
    "fish",
    "bird",
    "moon",
    "car",
    "hat",
    "cup",
    "box",
    "key",
    "bed",
    "pen",
    "map",
    "egg",
    "cow",
    "pig",
    "bus",
    "boat",
    "cake",
    "door",
    "frog",
    "lamp",
    "milk",
    "rain",
    "ship",
    "star",
    "wind",
)

# row, col -> location phrase (used verbatim in answers)
LOCATIONS = {
    (0, 0): "at the top left",
    (0, 1): "at the top",
    (0, 2): "at the top right",
    (1, 0): "on the left",
    (1, 1): "in the center",
    (1, 2): "on the right",
    (2, 0): "at the bottom left",
    (2, 1): "at the bottom",
    (2, 2): "at the bottom right",
}
BACKGROUNDS = ("plain", "stripes", "noise", "checker")

_FONT_CACHE: dict[int, ImageFont.ImageFont] = {}


def _font(size: int):
    if size not in _FONT_CACHE:
        _FONT_CACHE[size] = ImageFont.load_default(size=size)
    return _FONT_CACHE[size]


@dataclass
class SceneObject:
    shape: str
    color: str
    size: str
    row: int
    col: int
    cx: float
    cy: float
    angle: float

    @property
    def location(self) -> str:
        return LOCATIONS[(self.row, self.col)]

    def phrase(self, with_size: bool = True) -> str:
        return f"{self.size} {self.color} {self.shape}" if with_size else f"{self.color} {self.shape}"


@dataclass
class Scene:
    seed: int
    background: str
    bg_color: tuple
    objects: list = field(default_factory=list)
    word: str | None = None
    word_row: int = -1
    word_col: int = -1

    @property
    def word_location(self) -> str | None:
        return LOCATIONS[(self.word_row, self.word_col)] if self.word else None

    def ordered(self) -> list:
        """Objects in reading order (row-major): the canonical order used in answers."""
        return sorted(self.objects, key=lambda o: (o.row, o.col))


def is_heldout(seed: int) -> bool:
    return seed >= HELDOUT_START


def heldout_seeds(n: int, start: int = 0) -> list:
    return [HELDOUT_START + start + i for i in range(n)]


def train_seeds(n: int, start: int = 0) -> list:
    return [start + i for i in range(n)]


def sample_scene(seed: int, n_objects: int | None = None, with_word: bool | None = None) -> Scene:
    rng = random.Random(seed * 7919 + 17)
    background = rng.choice(BACKGROUNDS)
    base = rng.randint(150, 200)
    tint = [rng.randint(-18, 18) for _ in range(3)]
    bg = tuple(max(0, min(255, base + t)) for t in tint)
    if with_word is None:
        with_word = rng.random() < 0.4
    if n_objects is None:
        n_objects = rng.randint(1, 8)
    n_objects = max(1, min(n_objects, 8 if with_word else 9))
    if n_objects == 9:
        n_objects = 8
    cells = [(r, c) for r in range(GRID) for c in range(GRID)]
    rng.shuffle(cells)
    scene = Scene(seed=seed, background=background, bg_color=bg)
    if with_word:
        scene.word = rng.choice(WORDS)
        scene.word_row, scene.word_col = cells.pop()
    for r, c in cells[:n_objects]:
        size = rng.choice(SIZES)
        jitter = 4 if size == "large" else 8
        cx = (c + 0.5) * CELL + rng.uniform(-jitter, jitter)
        cy = (r + 0.5) * CELL + rng.uniform(-jitter, jitter)
        scene.objects.append(
            SceneObject(
                shape=rng.choice(SHAPES), color=rng.choice(COLOR_NAMES), size=size, row=r, col=c, cx=cx, cy=cy, angle=rng.uniform(0, 360)
            )
        )
    return scene


def _polygon(cx, cy, r, n, angle, inner=None):
    pts = []
    steps = n * 2 if inner else n
    for i in range(steps):
        a = math.radians(angle) + 2 * math.pi * i / steps - math.pi / 2
        rr = inner if (inner and i % 2) else r
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _draw_background(img: Image.Image, scene: Scene, rng: random.Random):
    d = ImageDraw.Draw(img)
    bg = scene.bg_color
    if scene.background == "plain":
        return
    delta = rng.randint(12, 22) * rng.choice((-1, 1))
    alt = tuple(max(0, min(255, v + delta)) for v in bg)
    if scene.background == "stripes":
        width = rng.randint(4, 10)
        orient = rng.choice(("h", "v", "d"))
        for k in range(-IMAGE_SIZE, 2 * IMAGE_SIZE, 2 * width):
            if orient == "h":
                d.rectangle([0, k, IMAGE_SIZE, k + width - 1], fill=alt)
            elif orient == "v":
                d.rectangle([k, 0, k + width - 1, IMAGE_SIZE], fill=alt)
            else:
                d.polygon([(k, 0), (k + width, 0), (k + width + IMAGE_SIZE, IMAGE_SIZE), (k + IMAGE_SIZE, IMAGE_SIZE)], fill=alt)
    elif scene.background == "checker":
        sq = rng.randint(8, 16)
        for y in range(0, IMAGE_SIZE, sq):
            for x in range(0, IMAGE_SIZE, sq):
                if ((x // sq) + (y // sq)) % 2:
                    d.rectangle([x, y, x + sq - 1, y + sq - 1], fill=alt)
    elif scene.background == "noise":
        px = img.load()
        amp = abs(delta)
        for y in range(0, IMAGE_SIZE, 2):
            for x in range(0, IMAGE_SIZE, 2):
                v = rng.randint(-amp, amp)
                c = tuple(max(0, min(255, b + v)) for b in bg)
                px[x, y] = c
                px[x + 1, y] = c
                px[x, y + 1] = c
                px[x + 1, y + 1] = c


def _outline(color):
    if color == COLORS["black"]:
        return (90, 90, 90)
    return tuple(int(v * 0.45) for v in color)


def render(scene: Scene) -> Image.Image:
    rng = random.Random(scene.seed * 104729 + 3)
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), scene.bg_color)
    _draw_background(img, scene, rng)
    d = ImageDraw.Draw(img)
    for o in scene.objects:
        fill = COLORS[o.color]
        line = _outline(fill)
        r = RADIUS[o.size]
        if o.shape == "circle":
            d.ellipse([o.cx - r, o.cy - r, o.cx + r, o.cy + r], fill=fill, outline=line, width=2)
        elif o.shape == "square":
            d.polygon(_polygon(o.cx, o.cy, r * 1.05, 4, o.angle % 90), fill=fill, outline=line, width=2)
        elif o.shape == "triangle":
            d.polygon(_polygon(o.cx, o.cy, r * 1.15, 3, (o.angle % 40) - 20), fill=fill, outline=line, width=2)
        elif o.shape == "hexagon":
            d.polygon(_polygon(o.cx, o.cy, r, 6, o.angle % 60), fill=fill, outline=line, width=2)
        elif o.shape == "star":
            d.polygon(_polygon(o.cx, o.cy, r * 1.2, 5, o.angle % 72, inner=r * 0.5), fill=fill, outline=line, width=2)
    if scene.word:
        font = _font(18)
        cx = (scene.word_col + 0.5) * CELL
        cy = (scene.word_row + 0.5) * CELL
        left, top, right, bottom = d.textbbox((0, 0), scene.word, font=font)
        x = cx - (right - left) / 2 - left
        y = cy - (bottom - top) / 2 - top
        x = max(1 - left, min(IMAGE_SIZE - 1 - right, x))
        d.text((x, y), scene.word, fill=(0, 0, 0), font=font)
    return img
