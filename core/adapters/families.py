"""The vision-language families: how each one's processor turns an image into input ids and
pixel tensors (LLaVA, LLaVA-NeXT, Qwen2-VL / Qwen2.5-VL with M-RoPE offsets, Idefics3 /
SmolVLM), and a stand-in processor for Qwen2-VL where its own cannot be built."""

from __future__ import annotations

import os
from typing import Any

import torch

from ..errors import InputError
from .base import HFAdapter


class ProcessorImageMixin:
    """Expand the image placeholder by running the family's processor on the placeholder
    alone, then splice the expanded ids in. Works for every processor that expands image
    tokens in text (LLaVA, LLaVA-NeXT, Qwen2-VL, Idefics3 / SmolVLM)."""

    placeholder: str = "<image>"

    def _add_image(self, ids, image):
        ph = self._ids(self.placeholder)
        pos = _find(ids, ph)
        if pos < 0:
            raise InputError("the chat template did not place an image placeholder")
        proc = self.processor(text=[self.placeholder], images=[image], return_tensors="pt", add_special_tokens=False)
        expanded = proc["input_ids"][0].tolist()
        extra = {k: v for k, v in proc.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
        for k, v in extra.items():
            if torch.is_tensor(v):  # on the model's device (a no-op on a CPU), floats in its dtype
                extra[k] = v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)
        return ids[:pos] + expanded + ids[pos + len(ph) :], extra


def _find(seq: list[int], sub: list[int]) -> int:
    n = len(sub)
    for i in range(len(seq) - n + 1):
        if seq[i : i + n] == sub:
            return i
    return -1


class LlavaAdapter(ProcessorImageMixin, HFAdapter):
    family = "llava"

    def __init__(self, model, tokenizer, processor=None, name=""):
        super().__init__(model, tokenizer, processor, name)
        self.placeholder = getattr(processor, "image_token", None) or "<image>"
        self.image_token = self.placeholder

    @property
    def is_multimodal(self) -> bool:
        return True


class Qwen2VLAdapter(LlavaAdapter):
    """Qwen2-VL / Qwen2.5-VL: M-RoPE. After an image prefill every later token's position is
    ``cache_len + depth + rope_deltas`` on all three rotary axes; losing that offset is the
    classic wrong-output bug. ``rope_deltas`` lives on the model, so it is reset before each
    prefill (a text-only prefill would otherwise inherit a stale one) and copied to the session."""

    family = "qwen2_vl"

    def __init__(self, model, tokenizer, processor=None, name=""):
        super().__init__(model, tokenizer, processor, name)
        self.placeholder = "<|vision_start|><|image_pad|><|vision_end|>"
        self.image_token_id = int(model.config.image_token_id)

    def _image_token_types(self, enc) -> dict:
        return {"mm_token_type_ids": (enc.input_ids == self.image_token_id).long()} if enc.has_image else {}

    def prefill_kwargs(self, enc):
        self.model.model.rope_deltas = None
        return dict(enc.extra) | self._image_token_types(enc)

    def generate_inputs(self, enc) -> dict:
        return super().generate_inputs(enc) | self._image_token_types(enc)

    def _pos_offset_after_prefill(self, enc):
        d = self.model.model.rope_deltas
        return int(d.view(-1)[0]) if d is not None else 0

    def position_ids(self, sess, positions):
        return (positions + sess.pos_offset).view(1, 1, -1).expand(3, 1, -1)


class Idefics3Adapter(LlavaAdapter):
    """Idefics3 / SmolVLM: image split into tiles + a global view, 1-D positions."""

    family = "idefics3"


class FallbackProcessor:
    """Stands in for a family processor that cannot be built here (Qwen2-VL's needs torchvision
    for its video part): expands the image placeholder from the image processor's grid."""

    def __init__(self, tokenizer, image_processor, image_token="<|image_pad|>", chat_template=None):
        self.tokenizer, self.image_processor, self.image_token = tokenizer, image_processor, image_token
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)

    def apply_chat_template(self, messages, **kw):
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, **kw)

    def __call__(self, text, images, return_tensors="pt", add_special_tokens=False):
        out = self.image_processor(images=images, return_tensors=return_tensors)
        grid = out["image_grid_thw"]
        merge = getattr(self.image_processor, "merge_size", 2)
        n = int(grid[0].prod()) // (merge**2)
        expanded = text[0].replace(self.image_token, self.image_token * n, 1)
        ids = self.tokenizer(expanded, add_special_tokens=add_special_tokens, return_tensors=return_tensors)
        return {"input_ids": ids["input_ids"], "pixel_values": out["pixel_values"], "image_grid_thw": grid}


def _qwen_fallback(name_or_path: str):
    from transformers import AutoImageProcessor, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name_or_path)
    ip = AutoImageProcessor.from_pretrained(name_or_path)
    template = getattr(tok, "chat_template", None)
    if not template and os.path.isdir(name_or_path):
        f = os.path.join(name_or_path, "chat_template.jinja")
        if os.path.exists(f):
            template = open(f).read()
    if not template:
        try:
            from huggingface_hub import hf_hub_download

            template = open(hf_hub_download(name_or_path, "chat_template.jinja")).read()
        except Exception:
            template = None
    return FallbackProcessor(tok, ip, chat_template=template)


FAMILIES: dict[str, type[HFAdapter]] = {
    "llava": LlavaAdapter,
    "llava_next": LlavaAdapter,
    "qwen2_vl": Qwen2VLAdapter,
    "qwen2_5_vl": Qwen2VLAdapter,
    "idefics3": Idefics3Adapter,
    "smolvlm": Idefics3Adapter,
}


PROCESSOR_FALLBACKS: dict[str, Any] = {"qwen2_vl": _qwen_fallback, "qwen2_5_vl": _qwen_fallback}
