"""Turning logits into the distribution we decode from (shared by target and drafters), and the
randomness that picks a token from it.

At T > 0 the token at absolute position ``pos`` is ``argmax(log p + G(seed, pos))``: the
Gumbel-max trick, an exact draw from ``p``, with noise ``G`` that depends only on the seed and
the position (``Noise``). Plain decoding and speculative decoding ask the same question at every
position (the target's distribution there, bit for bit on row-invariant forwards, core/rows.py)
with the same noise, so for one seed they pick the same tokens (the "coupled" rule). Drafters
draw with the same noise, so a drafter close to the target proposes the token the target will
pick. ``rule="rejection"`` keeps the classic recursive rejection sampling instead (the same
distribution, other tokens for a seed; core/acceptance.py).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch


RULES = ("coupled", "rejection")


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    seed: int | None = 0
    rule: str = "coupled"  # T > 0: "coupled" (same tokens as plain decoding for a seed) or "rejection"

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"unknown sampling rule {self.rule!r}; choose one of {', '.join(RULES)}")
        for name in ("temperature", "top_p"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or math.isnan(v) or math.isinf(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if int(self.top_k) != self.top_k or self.top_k < 0:
            raise ValueError(f"top_k must be a non-negative integer, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def probs(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Rows of logits -> rows of probabilities (float32) after temperature / top-k / top-p."""
    x = logits.float()
    if cfg.greedy:  # a point mass on the argmax
        out = torch.zeros_like(x)
        out.scatter_(-1, x.argmax(-1, keepdim=True), 1.0)
        return out
    x = x / cfg.temperature
    if cfg.top_k and cfg.top_k < x.shape[-1]:
        kth = torch.topk(x, cfg.top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    p = torch.softmax(x, dim=-1)
    if cfg.top_p < 1.0:
        sp, idx = torch.sort(p, dim=-1, descending=True)
        cum = sp.cumsum(-1)
        drop = (cum - sp) >= cfg.top_p  # keep the smallest prefix reaching top_p
        sp = sp.masked_fill(drop, 0.0)
        p = torch.zeros_like(p).scatter_(-1, idx, sp)
        p = p / p.sum(-1, keepdim=True)
    return p


def sample(p: torch.Tensor, gen: torch.Generator | None) -> int:
    """One token from a 1-D distribution."""
    return int(torch.multinomial(p, 1, generator=gen).item())


def fit_vocab(logits: torch.Tensor, size: int) -> torch.Tensor:
    """Pad (with -inf) or cut the last dim of drafter logits to the target's logit size."""
    v = logits.shape[-1]
    if v == size:
        return logits
    if v > size:
        return logits[..., :size]
    pad = logits.new_full((*logits.shape[:-1], size - v), float("-inf"))
    return torch.cat([logits, pad], dim=-1)


class Noise:
    """The randomness of one sampled decoding, keyed by position: ``gumbel(pos, size)`` is the same
    for a seed whoever asks (the plain step, the verify row, the drafter) and whatever device
    decodes (drawn on the CPU). ``root`` is the position of the last committed token, set by the
    engine before each draft, so a drafter's child at depth d lives at ``root + d``. ``generator``
    is a torch.Generator for everything else (the rejection rule, third-party drafters)."""

    KEEP = 64  # positions cached: a step asks for at most its tree depth + 1

    def __init__(self, seed: int, generator: torch.Generator | None = None):
        self.seed, self.generator, self.root = int(seed), generator, 0
        self._cache: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()

    def gumbel(self, pos: int, size: int) -> torch.Tensor:
        key = (int(pos), int(size))
        g = self._cache.get(key)
        if g is None:
            gen = torch.Generator().manual_seed((self.seed * 0x9E3779B1 + int(pos) * 0x85EBCA77) % (1 << 62))
            u = torch.rand(size, generator=gen, dtype=torch.float64).clamp_(1e-300, 1.0)
            g = self._cache[key] = (-torch.log(-torch.log(u))).float()
            if len(self._cache) > self.KEEP:
                self._cache.popitem(last=False)
        return g

    def choose(self, p_rows: torch.Tensor, positions) -> list[int]:
        """The token each row of probabilities picks at its position (Gumbel-max)."""
        out = []
        for p, pos in zip(p_rows, positions):
            g = self.gumbel(int(pos), p.shape[-1]).to(p.device)
            out.append(int(torch.argmax(torch.log(p.float()) + g)))
        return out
