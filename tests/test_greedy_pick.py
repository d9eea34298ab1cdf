"""The engine's greedy pick and tie margins (core/engine.py): cheaper forms of ``argmax`` and
``topk(2)`` that must give exactly what those give, ties included."""

from __future__ import annotations

import pytest
import torch

from core.engine import _margins, greedy


def rows(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5000, generator=g).to(dtype)
    x[1, 7] = x[1, 4000] = x[1].max() + 1  # a tie at the top: the first index, margin 0
    x[2, :] = 0.25  # a row of ties
    x[3, 9] = float("inf")  # one infinite logit
    x[4, 100:] = float("-inf")  # most of the row masked
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_greedy_is_argmax_first_on_ties(dtype):
    x = rows(dtype)
    assert greedy(x) == x.argmax(-1).tolist()
    assert greedy(x)[1] == 7 and greedy(x)[2] == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_margins_are_top1_minus_top2(dtype):
    x = rows(dtype)
    top = x.float().topk(2, dim=-1).values
    want = [round(v, 6) for v in (top[:, 0] - top[:, 1]).tolist()]
    got = _margins(x)
    assert got[1] == 0.0 and got[2] == 0.0  # ties
    for g, w in zip(got, want):
        assert g == w or (g != g and w != w)  # inf - inf is nan both ways
