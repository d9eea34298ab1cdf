"""Turning logits into the distribution we decode from (shared by target and drafters)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    seed: int | None = 0

    def __post_init__(self):
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
