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
"""

from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from .device import DTYPES, kernels_default, resolve_device, resolve_dtype
from .errors import InputError, ModelLoadError
from .rows import STOCK, causal_mask, padded_inputs, row_set

SENTINEL = "\ue000"  # private-use char marking where the user's text goes in the chat template


@dataclass
class Encoded:
    input_ids: torch.Tensor  # (1, T) long
    extra: dict = field(default_factory=dict)  # pixel_values, image_grid_thw, ...
    has_image: bool = False

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])


@dataclass
class Session:
    cache: Any
    length: int = 0  # KV slots filled
    pos_offset: Any = 0  # added to logical positions (Qwen2-VL rope_deltas)
    embeds: Any = None  # decoder input embeddings of the prompt (prefill with want_hidden)


# --------------------------------------------------------------------------------------
class HFAdapter:
    """Any transformers causal LM, and the base of the VLM adapters."""

    family = "causal"
    image_token: str | None = None

    def __init__(self, model, tokenizer, processor=None, name: str = ""):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.processor = processor
        self.name = name or getattr(model.config, "_name_or_path", "")
        self.dtype = next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.eos_ids = self._eos_ids()
        self._lock = threading.Lock()
        self.kernels: dict = {"paths": "stock"}  # set by load(): the measured product paths

    def generate_inputs(self, enc) -> dict:
        """Keyword arguments of ``self.model.generate`` for ``enc``: transformers' own decoding of
        exactly the inputs this adapter prefills (the bench's reference baselines)."""
        return dict(input_ids=enc.input_ids, attention_mask=torch.ones_like(enc.input_ids), **enc.extra)

    # ---- identity -----------------------------------------------------------------
    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for src in (getattr(self.model, "generation_config", None), self.model.config, getattr(self.model.config, "text_config", None)):
            e = getattr(src, "eos_token_id", None) if src is not None else None
            if e is None:
                continue
            ids.update(e if isinstance(e, (list, tuple)) else [e])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return {int(i) for i in ids}

    @property
    def is_multimodal(self) -> bool:
        return False

    def decode_piece(self, tok: int) -> str:
        return self.tokenizer.decode([tok], skip_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def text_module(self):
        """The decoder stack (module with .layers and .embed_tokens)."""
        for m in self.model.modules():
            if isinstance(getattr(m, "layers", None), torch.nn.ModuleList) and hasattr(m, "embed_tokens"):
                return m
        raise ModelLoadError(f"{self.name}: cannot find the decoder layers of this model")

    # ---- inputs ---------------------------------------------------------------------
    def _render(self, prompt: str, with_image: bool) -> str:
        tpl_owner = self.processor if getattr(self.processor, "chat_template", None) else self.tokenizer
        if getattr(tpl_owner, "chat_template", None) is None:
            return prompt if not with_image else f"{self.image_token}\n{prompt}"
        content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": SENTINEL}]
        msgs = [{"role": "user", "content": content}]
        try:
            text = tpl_owner.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        except Exception:  # text-only templates want a plain string
            text = tpl_owner.apply_chat_template([{"role": "user", "content": SENTINEL}], add_generation_prompt=True, tokenize=False)
        if isinstance(text, list):
            text = text[0]
        return text

    def _ids(self, text: str, literal: bool = False) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=literal)["input_ids"]

    def encode(self, prompt: str, image=None) -> Encoded:
        """Chat-formatted ids. The user's text is tokenised *literally*: special-token
        strings typed by a user (``<image>``, ``<|eos|>``, role markers) stay plain text."""
        if image is not None and not self.is_multimodal:
            image = None  # text-only model: the image is dropped
        text = self._render(prompt, image is not None)
        if SENTINEL in text:
            before, after = text.split(SENTINEL, 1)
            ids = self._ids(before) + self._ids(prompt, literal=True) + self._ids(after)
        else:
            ids = self._ids(text)
        if (
            self.tokenizer.bos_token_id is not None
            and getattr(self.tokenizer, "add_bos_token", False)
            and (not ids or ids[0] != self.tokenizer.bos_token_id)
        ):
            ids = [self.tokenizer.bos_token_id] + ids
        extra: dict = {}
        if image is not None:
            ids, extra = self._add_image(ids, image)
        return Encoded(torch.tensor([ids], dtype=torch.long, device=self.device), extra, image is not None)

    def _add_image(self, ids: list[int], image) -> tuple[list[int], dict]:
        raise NotImplementedError

    # ---- forward ----------------------------------------------------------------------
    def new_cache(self):
        from transformers import DynamicCache

        return DynamicCache()

    def prefill_kwargs(self, enc: Encoded) -> dict:
        return dict(enc.extra)

    def encode_ids(self, ids: torch.Tensor) -> Encoded:
        """Inputs of bare token ids (no chat template, no image)."""
        return Encoded(ids.view(1, -1).to(self.device))

    @torch.inference_mode()
    def prefill(self, enc: Encoded, want_hidden: bool = False, all_logits: bool = False):
        """Run the prompt. Returns (session, logits of the last position or all, hidden (T,H) or None)."""
        sess = Session(self.new_cache())
        handle = None
        if want_hidden:  # also keep the decoder's input embeddings (image features merged in)

            def grab(_module, args, kwargs):
                sess.embeds = kwargs.get("inputs_embeds")

            handle = self.text_module().register_forward_pre_hook(grab, with_kwargs=True)
        try:
            with self._lock:
                out = self.model(
                    input_ids=enc.input_ids,
                    past_key_values=sess.cache,
                    use_cache=True,
                    output_hidden_states=want_hidden,
                    logits_to_keep=0 if all_logits else 1,
                    **self.prefill_kwargs(enc),
                )
                sess.pos_offset = self._pos_offset_after_prefill(enc)
        finally:
            if handle is not None:
                handle.remove()
        sess.length = enc.length
        logits = out.logits[0] if all_logits else out.logits[0, -1]
        hidden = out.hidden_states[-1][0] if want_hidden else None
        return sess, logits, hidden

    def _pos_offset_after_prefill(self, enc: Encoded):
        return 0

    def position_ids(self, sess: Session, positions: torch.Tensor) -> torch.Tensor:
        return (positions + sess.pos_offset).view(1, -1)

    def float_mask(self, attn: torch.Tensor) -> torch.Tensor:
        m = torch.zeros(attn.shape, dtype=self.dtype, device=self.device)
        m.masked_fill_(~attn.to(self.device), torch.finfo(self.dtype).min)
        return m.view(1, 1, *attn.shape)

    @torch.inference_mode()
    def forward(
        self,
        sess: Session,
        ids,
        positions: torch.Tensor | None = None,
        attn: torch.Tensor | None = None,
        want_hidden: bool = False,
        rows: int | None = None,
    ):
        """Feed a block of n tokens after the cache. ``positions`` default to the next slots,
        ``attn`` (bool, (n, len+n)) defaults to causal. Returns logits (n, V), hidden (n, H)|None.

        ``rows``: run the forward at this many rows (>= n), dummy rows after the real ones
        (``core.rows``: the row counts whose rows compute bit-identically); the cache then holds
        ``rows`` new slots, the dummies' last, for ``keep`` to drop. Always fed with an explicit
        mask, so every padded forward takes the same attention path."""
        ids = ids.tolist() if torch.is_tensor(ids) else list(ids)
        n = len(ids)
        start = sess.length
        if positions is None:
            positions = torch.arange(start, start + n)
        if rows is not None:
            if attn is None:
                attn = causal_mask(start, n, start + n)
            ids, positions, attn = padded_inputs(ids, positions, attn, start, rows)
        kw = {}
        if attn is not None:
            kw["attention_mask"] = self.float_mask(attn)
        m = len(ids)
        out = self.model(
            input_ids=torch.tensor([ids], dtype=torch.long, device=self.device),
            past_key_values=sess.cache,
            use_cache=True,
            position_ids=self.position_ids(sess, positions.to(self.device)),
            output_hidden_states=want_hidden,
            **kw,
        )
        sess.length = start + m
        return out.logits[0, :n], (out.hidden_states[-1][0, :n] if want_hidden else None)

    def keep(self, sess: Session, base: int, rows: list[int]) -> None:
        """Keep cache slots [0, base) plus base + rows (rows ascending); drop the rest."""
        total = sess.length
        k = len(rows)
        if rows == list(range(k)):
            if base + k < total:
                for layer in sess.cache.layers:
                    layer.keys = layer.keys[..., : base + k, :]
                    layer.values = layer.values[..., : base + k, :]
        else:
            idx = torch.cat([torch.arange(base), base + torch.tensor(rows, dtype=torch.long)]).to(self.device)
            for layer in sess.cache.layers:
                layer.keys = layer.keys.index_select(-2, idx)
                layer.values = layer.values.index_select(-2, idx)
        sess.length = base + k

    @torch.inference_mode()
    def probe(self, prefix: int = 32, padded: bool = False):
        """For timing: a function ``run(n)`` doing one decode forward of n tokens after a
        ``prefix``-token text prompt (its cache rolled back after each call). ``padded``: at the
        row count the engine's exact forwards use (``core.rows``), as a verify of n tokens costs."""
        ids = torch.full((1, prefix), int(self.eos_ids and min(self.eos_ids) or 0), device=self.device)
        sess, _, _ = self.prefill(Encoded(ids))
        rows = row_set(self) if padded else STOCK

        @torch.inference_mode()
        def run(n: int) -> None:
            self.forward(sess, [0] * n, rows=rows.pad(n) if rows.exact else None)
            self.keep(sess, prefix, [])

        return run

    # ---- self-speculation -----------------------------------------------------------
    def truncated(self, n_layers: int) -> HFAdapter:
        """A view of this model using only its first ``n_layers`` decoder layers (weights shared)."""
        text = self.text_module()
        total = len(text.layers)
        if not 1 <= n_layers < total:
            raise InputError(f"layer-skip needs 1 <= layers < {total}, got {n_layers}")
        path = _module_path(self.model, text)
        view = _shallow(self.model)
        parent = view
        for name in path[:-1]:
            child = _shallow(parent._modules[name])
            parent._modules[name] = child
            parent = child
        t = _shallow(text)
        t.layers = torch.nn.ModuleList(list(text.layers)[:n_layers])
        t.config = copy.copy(text.config)
        t.config.num_hidden_layers = n_layers
        if getattr(t.config, "layer_types", None):
            t.config.layer_types = list(t.config.layer_types)[:n_layers]
        parent._modules[path[-1]] = t
        clone = copy.copy(self)
        clone.model = view
        clone._lock = self._lock
        clone.name = f"{self.name} [first {n_layers}/{total} layers]"
        return clone


def _shallow(m: torch.nn.Module) -> torch.nn.Module:
    c = copy.copy(m)
    c.__dict__["_modules"] = dict(m._modules)
    return c


def _module_path(root: torch.nn.Module, target: torch.nn.Module) -> list[str]:
    for name, m in root.named_modules():
        if m is target:
            return name.split(".")
    raise ModelLoadError("decoder stack not found in model")


# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
FAMILIES: dict[str, type[HFAdapter]] = {
    "llava": LlavaAdapter,
    "llava_next": LlavaAdapter,
    "qwen2_vl": Qwen2VLAdapter,
    "qwen2_5_vl": Qwen2VLAdapter,
    "idefics3": Idefics3Adapter,
    "smolvlm": Idefics3Adapter,
}


def trust_remote_code_allowed() -> bool:
    return os.environ.get("SPECSCOPE_TRUST_REMOTE_CODE", "") == "1"


def load(
    name_or_path: str,
    dtype: str | torch.dtype = "float32",
    device: str = "cpu",
    device_map: str | None = None,
    trust_remote_code: bool = False,
    kernels: str | None = None,
    role: str = "target",
) -> HFAdapter:
    """Load a target or drafter by Hub id or local directory, through ``from_pretrained``.
    ``device``: cpu (default), cuda[:N] or auto (see ``resolve_device``). ``kernels``: auto
    (default: each linear layer's product path measured fastest on this CPU for ``role``,
    ``core.kernels``), stock (transformers as loaded), or one path forced everywhere."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

    if trust_remote_code and not trust_remote_code_allowed():
        raise ModelLoadError("trust_remote_code is disabled; the operator can enable it with SPECSCOPE_TRUST_REMOTE_CODE=1")
    device = resolve_device(device)
    if dtype == "auto":
        dtype = resolve_dtype(dtype, device)
    torch_dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if not isinstance(torch_dtype, torch.dtype):
        raise InputError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except Exception as e:  # unknown id, offline, missing files, bad json
        raise ModelLoadError(f"cannot load model config for {name_or_path!r}: {_first_line(e)}") from None
    mtype = getattr(config, "model_type", "")
    kw: dict = dict(dtype=torch_dtype, trust_remote_code=trust_remote_code)
    if device_map:
        kw["device_map"] = device_map
    try:
        if mtype in FAMILIES:
            model = AutoModelForImageTextToText.from_pretrained(name_or_path, **kw)
            processor = _load_processor(name_or_path, mtype, trust_remote_code)
            tokenizer = getattr(processor, "tokenizer", None) or AutoTokenizer.from_pretrained(name_or_path)
            cls = FAMILIES[mtype]
        else:
            model = AutoModelForCausalLM.from_pretrained(name_or_path, **kw)
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
            processor, cls = None, HFAdapter
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"cannot load {name_or_path!r} ({mtype or 'unknown type'}): {_first_line(e)}") from None
    if not device_map:
        model.to(device)
    kernels = kernels or kernels_default()
    choice = {"role": role, "paths": "stock"}
    adapter = cls(model, tokenizer, processor, name=str(name_or_path))
    if kernels != "stock":
        from . import kernels as K

        try:
            choice = K.accelerate(model, role, force=None if kernels == "auto" else kernels, probe=adapter.probe)
        except ValueError as e:
            raise InputError(str(e)) from None
    adapter.kernels = dict(choice, requested=kernels)
    return adapter


def _load_processor(name_or_path: str, model_type: str, trust_remote_code: bool):
    from transformers import AutoProcessor

    loader = PROCESSOR_FALLBACKS.get(model_type)
    try:
        return AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except Exception as e:
        if loader is None:
            raise ModelLoadError(f"cannot load the processor of {name_or_path!r}: {_first_line(e)}") from None
        return loader(name_or_path)


PROCESSOR_FALLBACKS: dict[str, Any] = {"qwen2_vl": _qwen_fallback, "qwen2_5_vl": _qwen_fallback}


def _first_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:300]
