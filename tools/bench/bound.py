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

A run's tok/s also pays for its prompt. A prefill multiplies every prompt position by the weights:
it reads them once and is bound by the arithmetic. So a whole run has a bound too (``run_bound``):
each prompt's multiply-adds at the fastest rate the library's products reach on the target's
shapes (``product_rate``: the torch sum's counterpart), or one read of the weights if that is
longer, then one read of the weights per further token:

    macs_per_token(model)   multiply-adds of the decoder's weight matrices for one prompt position,
                            and the output layer's, computed once (for the last position)
    product_rate(model)     multiply-adds/s of a product of many rows by the largest weight matrix,
                            in the model's dtype, the fastest of several passes
    run_bound(runs, ...)    tok/s no decoder exceeds on these (prompt tokens, new tokens) runs
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


def _weights(model: nn.Module) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The decoder's 2-D weight matrices (each once; the output layer apart) and the output layer's."""
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head = out.weight if out is not None else None
    body = model.get_decoder() if hasattr(model, "get_decoder") else model  # a VLM: its language model
    seen, mats = {id(head)}, []
    for mod in body.modules():
        if isinstance(mod, nn.Linear) and id(mod.weight) not in seen:
            seen.add(id(mod.weight))
            mats.append(mod.weight)
    return mats, head


def macs_per_token(model: nn.Module) -> tuple[int, int]:
    """(per prompt position, once per prompt): the multiply-adds of the decoder's linear layers for one
    position, and of the output layer (a prefill computes only the last position's logits). The
    attention's own products are left out: without them a prefill's floor is lower, so the bound stays
    an upper one."""
    mats, head = _weights(model)
    return sum(w.numel() for w in mats), (head.numel() if head is not None else 0)


@torch.inference_mode()
def product_rate(model: nn.Module, rows: int = 256, passes: int = 5) -> float | None:
    """Multiply-adds/s of ``rows`` rows by the model's largest weight matrix (a prefill's product), in its
    dtype: the fastest of the library's products the engine may run (``F.linear``; oneDNN's on the
    dense weight and on a copy packed in its layout: ``core.kernels``), each the fastest of ``passes``
    after one untimed pass. An upper bound needs the fastest: on the Zen 5 EPYC oneDNN's packed float32
    product ran 246 G/s where ``F.linear`` (MKL) ran 94. Random values of the same shape: the product's
    cost does not depend on them. None for a model without weight matrices to time."""
    from core import kernels

    mats, head = _weights(model)
    mats = mats or ([head] if head is not None else [])
    if not mats:
        return None
    big = max(mats, key=lambda w: w.numel())
    w = torch.randn(big.shape, dtype=torch.float32).to(big.dtype)
    x = torch.randn(rows, big.shape[1], dtype=torch.float32).to(big.dtype)
    best = float("inf")
    for _path, fn, weight in kernels.library_products(w):
        fn(x, weight, None)
        for _ in range(passes):
            t0 = time.perf_counter()
            fn(x, weight, None)
            best = min(best, time.perf_counter() - t0)
    return rows * w.numel() / best


def run_bound(runs: list[tuple[int, int]], weight_bytes: int, bw: float, macs: tuple[int, int], rate: float) -> dict:
    """The tok/s bound of whole runs, prompt included: ``runs`` are (prompt tokens, new tokens). A run's
    floor is its prefill (the prompt's multiply-adds at ``rate``, at least one read of the weights),
    which yields the first new token, and one read of the weights for each further one."""
    step = weight_bytes / bw
    prefill = [max((p * macs[0] + macs[1]) / rate, step) for p, n in runs if n]
    floor = sum(prefill) + sum((n - 1) * step for p, n in runs if n)
    tokens = sum(n for _, n in runs)
    return {
        "tok_s": round(tokens / floor, 2) if floor else None,
        "prefill_floor_s": round(sum(prefill), 6),
        "steps_floor_s": round(floor - sum(prefill), 6),
        "prompt_tokens": sum(p for p, n in runs if n),
        "new_tokens": tokens,
        "macs_per_token": macs[0],
        "macs_head": macs[1],
        "product_rate_gmacs": round(rate / 1e9, 1),
    }


def run_bound_like(runs: list[tuple[int, int]], bound: dict) -> float | None:
    """``run_bound``'s tok/s for other runs (a peer's: its own prompt and output lengths) on the machine
    and target measured in ``bound`` (the bench's results["bound"], with its "run")."""
    r = bound.get("run") or {}
    if "macs_head" not in r:
        return None
    rate = r["product_rate_gmacs"] * 1e9
    return run_bound(runs, bound["bytes_per_step"], bound["bandwidth_gbs"] * 1e9, (r["macs_per_token"], r["macs_head"]), rate)["tok_s"]


def bound(model: nn.Module, bw: float | None = None) -> dict:
    """{"bytes_per_step", "bandwidth_gbs", "bound_tok_s"} for a plain step of ``model``."""
    w = bytes_per_step(model)
    bw = bandwidth() if bw is None else bw
    return {"bytes_per_step": w, "bandwidth_gbs": round(bw / 1e9, 2), "bound_tok_s": round(bw / w, 2)}
