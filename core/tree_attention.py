"""Attention in which every row sees its keys in position order: a tree node computes like a chain's.

In a verify forward a tree node attends to the cached prefix and to its ancestors, which sit at
scattered columns of the new block (siblings in between, masked). Plain decoding computed the same
token with the same keys contiguous. Masked columns weigh exactly zero, but the sums over keys are
vectorised and blocked by column, so moving a key to another column changes how the terms are
grouped and rounded: tree rows then differ from plain rows in the last bits (measured with eager
and SDPA attention on CPUs of both kinds).

Here each row first gathers its visible keys to the front, in column order (the prefix, then its
ancestors root first, then itself: exactly plain decoding's layout), masked ones after them, and
attends over that. The gather is the identity for plain steps and chains, so every forward, plain
or verify, runs the same computation per row. ``core.rows`` measures whether it makes rows bit
identical on the machine at hand and picks it only where it does.

Registered with transformers' attention interface as ``NAME`` (``core.rows.set_attention``).
Blocks of more than ``MAX_ROWS`` queries (a prompt's prefill) use eager attention: the prefill is
shared by plain and speculative decoding, and gathering a long prompt's keys per row is costly.
"""

from __future__ import annotations

import torch

NAME = "specscope_rows"
VERSION = 5  # bump when the computation changes: row sets measured with it are measured again
MAX_ROWS = 64


def _eager(query, key, value, mask, scaling):
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    w = torch.matmul(query, key.transpose(2, 3)) * scaling
    if mask is not None:
        w = w + mask[..., : key.shape[-2]]
    w = torch.softmax(w, dim=-1, dtype=torch.float32).to(query.dtype)
    return torch.matmul(w, value)


def gathered(query, key, value, mask, scaling):
    """``query`` (B, Hq, n, d), ``key`` / ``value`` (B, Hkv, L, d), ``mask`` additive (B, 1, n, >=L):
    attention with each row's visible keys moved to the front in column order."""
    b, hq, n, d = query.shape
    hkv, length = key.shape[1], key.shape[2]
    mask = mask[..., :length].expand(b, 1, n, length)
    hidden = mask[:, 0] != 0  # (B, n, L): True = masked
    c, order = key_order(hidden)
    # half precision sums over keys in float32: a bfloat16 block product's sums depended on the
    # number of keys, zeros included (an AMX Xeon: 34 visible keys in 35 and in 36 columns gave
    # other bits), and a row's key count differs between a plain step and a verify. The scores'
    # sums run over the head dimension, the same for every row, and stay in the model's dtype.
    wide = torch.float32 if query.dtype in (torch.bfloat16, torch.float16) else query.dtype
    k = _rows(key, n, c, order, key.dtype)  # (B, Hkv, n, L, d)
    v = _rows(value, n, c, order, wide)
    m = mask[:, 0] if order is None else torch.cat([mask[:, 0, :, :c], torch.gather(mask[:, 0], -1, order)], dim=-1)
    m = m[:, None, :, None, :]  # (B, 1, n, 1, L)
    groups = hq // hkv
    q = query.view(b, hkv, groups, n, d).transpose(2, 3)  # (B, Hkv, n, G, d): a row's query heads
    q = _at_least4(q)  # (B, Hkv, n, G', d)
    # one small block product per (KV head, row): its batch dims match k's and v's, so nothing is
    # broadcast (a broadcast batch would be materialised: copies of every row's keys per head)
    w = torch.matmul(q, k.transpose(-1, -2)) * scaling  # (B, Hkv, n, G', L)
    w = torch.softmax(w + m, dim=-1, dtype=torch.float32).to(wide)
    out = torch.matmul(w, v)[..., :groups, :]  # (B, Hkv, n, G, d)
    return out.to(query.dtype).transpose(2, 3).reshape(b, hq, n, d)


def key_order(hidden: torch.Tensor) -> tuple[int, torch.Tensor | None]:
    """Where each row's keys go, from ``hidden`` (B, n, L; True = masked): ``(c, order)``, the
    leading columns every row sees (the cached prefix: they stay in place) and the order of the
    rest (B, n, L - c; column ids, visible first in column order), None where every row's visible
    keys already come first (a plain step, a chain): the rows' keys are then copied, not gathered
    (the same values in the same layout, at a fraction of the cost)."""
    c = int((~hidden).all(dim=1).to(torch.int32).cumprod(dim=-1).sum(dim=-1).min())
    tail = hidden[..., c:]
    if not bool((tail[..., 1:] < tail[..., :-1]).any()):  # no masked column before a visible one
        return c, None
    return c, torch.sort(tail.to(torch.int8), dim=-1, stable=True).indices + c


def _rows(x: torch.Tensor, n: int, c: int, order, dtype) -> torch.Tensor:
    """Each of the ``n`` rows' copy of ``x`` (B, H, L, d) in ``dtype``: columns [0, c) as they are,
    the rest in ``order`` (B, n, L - c; None: as they are)."""
    b, h, length, d = x.shape
    out = torch.empty(b, h, n, length, d, dtype=dtype, device=x.device)
    if order is None:
        out.copy_(x[:, :, None].expand(b, h, n, length, d))
        return out
    out[..., :c, :].copy_(x[:, :, None, :c].expand(b, h, n, c, d))
    tail = x[:, :, c:].to(dtype)  # (B, H, L - c, d): a few columns, gathered per row
    idx = (order - c)[:, None, :, :, None].expand(b, h, n, length - c, d)
    out[..., c:, :] = torch.gather(tail[:, :, None].expand(b, h, n, length - c, d), 3, idx)
    return out


def _at_least4(x: torch.Tensor) -> torch.Tensor:
    """Rows grown to 4 where fewer (zeros after them): a product of one row takes a vector kernel
    whose sums are split by length and thread, while the block kernel computes each row alike
    for any length."""
    if x.shape[-2] >= 4:
        return x
    return torch.cat([x, x.new_zeros(*x.shape[:-2], 4 - x.shape[-2], x.shape[-1])], dim=-2)


def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention-function signature; returns (output (B, n, Hq, d), None)."""
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    if attention_mask is None or query.shape[2] > MAX_ROWS:
        out = _eager(query, key, value, attention_mask, scaling)
    else:
        out = gathered(query, key, value, attention_mask, scaling)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make ``NAME`` known to transformers (idempotent); returns it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, eager_mask)
    return NAME
