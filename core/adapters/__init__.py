"""Model adapters: one small interface over the model families the engine decodes.

An adapter wraps a Hugging Face model + tokenizer/processor and offers:

    enc  = adapter.encode(prompt, image)            # token ids + image tensors
    sess, logits, hidden = adapter.prefill(enc)     # start a decoding session
    logits, hidden = adapter.forward(sess, ids, positions, attn)   # a token block / tree
    adapter.keep(sess, base, rows)                  # compact the KV cache

``forward`` takes *logical* positions (prefix length + depth for a tree) and an
optional boolean mask ``attn`` of shape (n, cache_len + n): row i may attend
column j. It is turned into an additive float mask (a boolean 4D mask is silently
wrong under eager attention). Families differ only in how the prompt and image
become inputs and in how positions are passed (Qwen2-VL's M-RoPE adds
``rope_deltas``); the decoding loop never sees those differences.

    base.py       Encoded, Session, HFAdapter (any causal LM; the base of the VLM adapters)
    families.py   LLaVA / LLaVA-NeXT, Qwen2-VL (M-RoPE), Idefics3 / SmolVLM; FAMILIES
    loader.py     load(): Hub id or folder -> the family's adapter
"""

from __future__ import annotations

from .base import SENTINEL, Encoded, HFAdapter, Session
from .families import (
    FAMILIES,
    PROCESSOR_FALLBACKS,
    FallbackProcessor,
    Idefics3Adapter,
    LlavaAdapter,
    ProcessorImageMixin,
    Qwen2VLAdapter,
)
from .loader import load, trust_remote_code_allowed

__all__ = [
    "FAMILIES",
    "PROCESSOR_FALLBACKS",
    "SENTINEL",
    "Encoded",
    "FallbackProcessor",
    "HFAdapter",
    "Idefics3Adapter",
    "LlavaAdapter",
    "ProcessorImageMixin",
    "Qwen2VLAdapter",
    "Session",
    "load",
    "trust_remote_code_allowed",
]
