"""The physical bound on plain decoding: one token per read of the weights.

A plain decode step of batch 1 multiplies one row by every weight matrix, so it must read every
weight byte once; with the machine's memory bandwidth B and W bytes of weights read per step, no
decoder can exceed B / W tokens per second (the KV cache and activations only add to W). The bench
reports that bound and each decoder's share of it, so "how fast is plain decoding" has an
absolute answer beside the ratios.

    bytes_per_step(model)   weights a one-token step reads (the embedding table counts only
                            where it is also the output layer: otherwise one row is read)
    bandwidth()             bytes/s of a torch reduction over a buffer far larger than the caches,
                            the fastest of several passes (a busy machine only slows a pass down;
                            the bound is an upper one), with this process's thread count
"""

from __future__ import annotations

import time

import torch
from torch import nn


def bytes_per_step(model: nn.Module) -> int:
    """Bytes of parameters a one-token forward reads: everything but input-embedding tables that
    are not shared with the output layer (one row of those is read)."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    skip = set()
    if isinstance(emb, nn.Embedding) and not (out is not None and out.weight is emb.weight):
        skip.add(id(emb.weight))
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or id(p) in skip:
            continue
        seen.add(id(p))
        total += p.numel() * p.element_size()
    return total


@torch.inference_mode()
def bandwidth(mib: int = 512, passes: int = 7) -> float:
    """Read bandwidth in bytes/s: ``torch.sum`` over a ``mib`` MiB float32 buffer (far beyond any
    cache), the fastest of ``passes`` after one untimed pass."""
    x = torch.ones(mib * 2**20 // 4, dtype=torch.float32)
    x.sum()
    ts = []
    for _ in range(passes):
        t0 = time.perf_counter()
        x.sum()
        ts.append(time.perf_counter() - t0)
    return x.numel() * 4 / min(ts)


def bound(model: nn.Module, bw: float | None = None) -> dict:
    """{"bytes_per_step", "bandwidth_gbs", "bound_tok_s"} for a plain step of ``model``."""
    w = bytes_per_step(model)
    bw = bandwidth() if bw is None else bw
    return {"bytes_per_step": w, "bandwidth_gbs": round(bw / 1e9, 2), "bound_tok_s": round(bw / w, 2)}
