"""Tiny random-weight models of every family SpecScope supports (tests, the soak script, demos).

Every model is built from a config with random weights (deterministic: ``torch.manual_seed``),
saved with ``save_pretrained`` and therefore loadable through exactly the path a Hub id takes::

    AutoModelForImageTextToText.from_pretrained(d)   # llava, llava_next, qwen2_vl, qwen2_5_vl, idefics3
    AutoModelForCausalLM.from_pretrained(d)          # llama, qwen2
    AutoTokenizer.from_pretrained(d)                 # every family
    AutoImageProcessor.from_pretrained(d)            # every vision family (PIL backend, no torchvision)
    AutoProcessor.from_pretrained(d)                 # works for llava / llava_next only here (see docs/families.md)

All families share ONE vocabulary (same ids for the same strings), so a drafter of another family,
or the same family with fewer layers and another seed, shares the target's tokenizer. Only the
chat template and the eos token differ per family.

API
---
``FAMILIES``                      tuple of supported family names
``VISION_FAMILIES``               the image-text-to-text ones
``build_tokenizer(dir, family="llava")`` -> PreTrainedTokenizerFast (also saved to ``dir``)
``make_tiny(family, root_dir, seed=0, num_layers=2, vocab_pad=0, **overrides)`` -> saved dir
``tiny_model_dir(family, **kw)``  memoised ``make_tiny`` under ``tempfile.gettempdir()/specscope-tiny``
``load_tiny(dir)``                -> (model, tokenizer, image_processor or None), fp32, eval mode
``tiny_image(w, h, seed)``        deterministic PIL RGB test image
``build_inputs(family, model_dir, prompt, image=None, tokenizer=None, image_processor=None)``
                                  -> dict of tensors ready for ``model(**inputs)`` / ``generate(**inputs)``,
                                     built WITHOUT AutoProcessor (recipes of docs/families.md)
``FAMILY_INFO``                   per family: image_token, auto class, model class name, eos
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "llama", "qwen2")
VISION_FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3")

# Bump when the recipe changes: the memoised cache key includes it.
TINY_VERSION = 1

# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------

# Fixed order => fixed ids (0..len-1) shared by every family.
BASE_SPECIAL_TOKENS = [
    "<pad>",  # 0
    "<s>",  # 1  bos (llama-style families)
    "</s>",  # 2  eos (llama-style families)
    "<|endoftext|>",  # 3
    "<|im_start|>",  # 4
    "<|im_end|>",  # 5  eos (qwen families)
    "<image>",  # 6  LLaVA / LLaVA-NeXT / Idefics3 image token
    "<|vision_start|>",  # 7
    "<|vision_end|>",  # 8
    "<|image_pad|>",  # 9  Qwen2-VL / 2.5-VL image token
    "<|video_pad|>",  # 10
    "<fake_token_around_image>",  # 11 Idefics3
    "<global-img>",  # 12 Idefics3
    "<end_of_utterance>",  # 13 Idefics3 eos
]
IDEFICS3_ROW_COL_TOKENS = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
SPECIAL_TOKENS = BASE_SPECIAL_TOKENS + IDEFICS3_ROW_COL_TOKENS  # 50 tokens

TOKENIZER_VOCAB_SIZE = 400  # incl. the 50 special tokens and the 256 byte-level symbols

_CORPUS = """
The quick brown fox jumps over the lazy dog. A picture of a cat sitting on a red chair.
What is in the image? Describe the image in detail. There is a dog in the park.
The image shows a small house with a blue door and two windows. The sky is blue and clear.
A man is riding a bicycle on the street. Two children are playing with a ball on the grass.
What color is the car? The car is red. How many people are in the picture? There are three people.
User: Please describe this photo. Assistant: The photo shows a table with a cup of coffee.
Speculative decoding drafts several tokens and the target model verifies them in one forward pass.
A vision language model reads an image and a question and answers in text.
The cat is black and white. The bird is flying above the trees near the river.
This is a test. Hello world! Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 2024.
""".strip()

# Family -> (image placeholder rendered by the chat template, eos token, uses bos)
_TEMPLATE_PARTS = {
    "llava": ("<image>\n", "</s>", True),
    "llava_next": ("<image>\n", "</s>", True),
    "llama": ("", "</s>", True),
    "qwen2_vl": ("<|vision_start|><|image_pad|><|vision_end|>", "<|im_end|>", False),
    "qwen2_5_vl": ("<|vision_start|><|image_pad|><|vision_end|>", "<|im_end|>", False),
    "qwen2": ("", "<|im_end|>", False),
    "idefics3": ("<image>", "<end_of_utterance>", False),
}


def _chat_template(family: str) -> str:
    """A small jinja chat template in the style of each family's real template."""
    img, eos, _ = _TEMPLATE_PARTS[family]
    img_j = img.replace("\n", "\\n")
    content = (
        "{%- if message['content'] is string -%}{{ message['content'] }}"
        "{%- else -%}{%- for item in message['content'] -%}"
        "{%- if item['type'] == 'image' -%}{{ '" + img_j + "' }}"
        "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
    )
    if family in ("llava", "llava_next", "llama"):
        # LLaVA-1.5 style: "<s>USER: <image>\nWhat is this? ASSISTANT:"
        return (
            "{{ bos_token }}{%- for message in messages -%}"
            "{%- if message['role'] == 'system' -%}" + content + "{{ ' ' }}"
            "{%- elif message['role'] == 'user' -%}{{ 'USER: ' }}" + content + "{{ ' ' }}"
            "{%- else -%}{{ 'ASSISTANT: ' }}" + content + "{{ eos_token }}"
            "{%- endif -%}{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
        )
    if family in ("qwen2_vl", "qwen2_5_vl", "qwen2"):
        # ChatML: "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>text<|im_end|>\n"
        return (
            "{%- for message in messages -%}"
            "{{ '<|im_start|>' + message['role'] + '\\n' }}" + content + "{{ '<|im_end|>\\n' }}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
        )
    if family == "idefics3":
        # SmolVLM / Idefics3 style: "<|im_start|>User:<image>text<end_of_utterance>\nAssistant:"
        return (
            "{{ '<|im_start|>' }}{%- for message in messages -%}"
            "{{ message['role'] | capitalize }}{{ ':' }}" + content + "{{ '<end_of_utterance>\\n' }}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}"
        )
    raise ValueError(f"unknown family {family!r}")


_QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def _train_tokenizer_object():
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    # Exactly the pipeline transformers' Qwen2Tokenizer rebuilds from vocab + merges (NFC, Qwen regex
    # split, byte-level without its own regex). AutoTokenizer loads a "qwen2" model dir as
    # Qwen2Tokenizer (whatever tokenizer_class says), the other families as TokenizersBackend: with
    # this pipeline both produce the same ids, so every family really shares one tokenizer.
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    return tok


def build_tokenizer(dir: str | os.PathLike | None = None, family: str = "llava"):
    """Train a byte-level BPE (vocab TOKENIZER_VOCAB_SIZE) and wrap it in PreTrainedTokenizerFast.

    Same vocabulary for every family; ``family`` selects the chat template and eos token, and the
    ``image_token`` attribute processors look for. Saved to ``dir`` when given.
    """
    from transformers import PreTrainedTokenizerFast

    if family not in _TEMPLATE_PARTS:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    _, eos, _ = _TEMPLATE_PARTS[family]
    obj = _train_tokenizer_object()
    # model-specific named special tokens become attributes (tokenizer.image_token / .image_token_id),
    # the way the Hub tokenizers of these families expose them.
    image_token = FAMILY_INFO[family]["image_token"]
    extra = {"image_token": image_token} if image_token else {}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=obj,
        bos_token="<s>",
        eos_token=eos,
        pad_token="<pad>",
        unk_token=None,
        extra_special_tokens=extra,
        chat_template=_chat_template(family),
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
    # make sure every special string is atomic (never split by BPE)
    tok.add_special_tokens(
        {"additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in ("<pad>", "<s>", eos)]},
        replace_extra_special_tokens=False,
    )
    if dir is not None:
        tok.save_pretrained(str(dir))
    return tok


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

FAMILY_INFO = {
    "llava": dict(auto="AutoModelForImageTextToText", cls="LlavaForConditionalGeneration", image_token="<image>"),
    "llava_next": dict(auto="AutoModelForImageTextToText", cls="LlavaNextForConditionalGeneration", image_token="<image>"),
    "qwen2_vl": dict(auto="AutoModelForImageTextToText", cls="Qwen2VLForConditionalGeneration", image_token="<|image_pad|>"),
    "qwen2_5_vl": dict(auto="AutoModelForImageTextToText", cls="Qwen2_5_VLForConditionalGeneration", image_token="<|image_pad|>"),
    "idefics3": dict(auto="AutoModelForImageTextToText", cls="Idefics3ForConditionalGeneration", image_token="<image>"),
    "llama": dict(auto="AutoModelForCausalLM", cls="LlamaForCausalLM", image_token=None),
    "qwen2": dict(auto="AutoModelForCausalLM", cls="Qwen2ForCausalLM", image_token=None),
}
for _f, _info in FAMILY_INFO.items():
    _info["eos"] = _TEMPLATE_PARTS[_f][1]

# Tiny geometry (documented in docs/families.md)
HIDDEN = 64
HEADS = 4  # head_dim 16
KV_HEADS = 2
INTERMEDIATE = 128
VIS_HIDDEN = 32
VIS_HEADS = 2
VIS_INTERMEDIATE = 64
CLIP_IMAGE = 32  # LLaVA / LLaVA-NeXT: 32 px, patch 8 -> 16 patches (+CLS)
CLIP_PATCH = 8
NEXT_PINPOINTS = [[32, 64], [64, 32], [64, 64]]
QWEN_PATCH = 14  # Qwen2-VL: 14 px patches, merge 2 -> one token per 28x28 px
QWEN_MIN_PIXELS = 56 * 56
QWEN_MAX_PIXELS = 112 * 112  # at most 8x8 patches = 16 image tokens
IDEFICS_IMAGE = 32  # Idefics3: 32 px tiles, patch 8, scale_factor 2 -> 4 tokens per tile
IDEFICS_PATCH = 8
IDEFICS_LONGEST = 64  # images resized so the longest edge is 64 -> at most 2x2 tiles + global


def _text_kwargs(num_layers: int, vocab: int, ids: dict, rope_theta: float = 10000.0) -> dict:
    return dict(
        vocab_size=vocab,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=num_layers,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=1024,
        rms_norm_eps=1e-6,
        bos_token_id=ids["bos"],
        eos_token_id=ids["eos"],
        pad_token_id=ids["pad"],
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
    )


def _clip_vision(num_layers: int = 2) -> dict:
    return dict(
        model_type="clip_vision_model",
        hidden_size=VIS_HIDDEN,
        intermediate_size=VIS_INTERMEDIATE,
        num_hidden_layers=num_layers,
        num_attention_heads=VIS_HEADS,
        image_size=CLIP_IMAGE,
        patch_size=CLIP_PATCH,
        projection_dim=VIS_HIDDEN,
    )


def _build_config(family: str, num_layers: int, vocab: int, ids: dict, vision_layers: int, overrides: dict):
    import transformers as T

    text = _text_kwargs(num_layers, vocab, ids)
    text.update(overrides.pop("text_config", {}) or {})
    vision_over = overrides.pop("vision_config", {}) or {}
    image_id = ids.get("image")

    if family == "llama":
        cfg = T.LlamaConfig(**text)
    elif family == "qwen2":
        text["rope_parameters"]["rope_theta"] = 1000000.0
        cfg = T.Qwen2Config(**text)
    elif family in ("llava", "llava_next"):
        vision = _clip_vision(vision_layers)
        vision.update(vision_over)
        common = dict(
            text_config=T.LlamaConfig(**text),
            vision_config=T.CLIPVisionConfig(**{k: v for k, v in vision.items() if k != "model_type"}),
            image_token_index=image_id,
            vision_feature_select_strategy="default",
            vision_feature_layer=-2,
            projector_hidden_act="gelu",
            image_seq_length=(CLIP_IMAGE // CLIP_PATCH) ** 2,
            tie_word_embeddings=False,
        )
        if family == "llava":
            cfg = T.LlavaConfig(**common)
        else:
            cfg = T.LlavaNextConfig(image_grid_pinpoints=NEXT_PINPOINTS, **common)
    elif family in ("qwen2_vl", "qwen2_5_vl"):
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [2, 3, 3],  # sums to head_dim / 2 = 8
        }
        if family == "qwen2_vl":
            vision = dict(
                depth=vision_layers,
                embed_dim=VIS_HIDDEN,
                hidden_size=HIDDEN,  # merger output = text hidden
                mlp_ratio=2,
                num_heads=VIS_HEADS,
                patch_size=QWEN_PATCH,
                spatial_merge_size=2,
                temporal_patch_size=2,
            )
            vision.update(vision_over)
            cls, tcls = T.Qwen2VLConfig, T.Qwen2VLTextConfig
        else:
            vision = dict(
                depth=vision_layers,
                hidden_size=VIS_HIDDEN,
                intermediate_size=VIS_INTERMEDIATE,
                out_hidden_size=HIDDEN,
                num_heads=VIS_HEADS,
                patch_size=QWEN_PATCH,
                spatial_merge_size=2,
                temporal_patch_size=2,
                window_size=56,  # 2x2 merged tokens per window
                fullatt_block_indexes=[vision_layers - 1],
                tokens_per_second=2,
            )
            vision.update(vision_over)
            cls, tcls = T.Qwen2_5_VLConfig, T.Qwen2_5_VLTextConfig
        cfg = cls(
            text_config=tcls(**text).to_dict(),
            vision_config=vision,
            image_token_id=image_id,
            video_token_id=ids["video"],
            vision_start_token_id=ids["vision_start"],
            vision_end_token_id=ids["vision_end"],
            tie_word_embeddings=False,
        )
    elif family == "idefics3":
        vision = dict(
            hidden_size=VIS_HIDDEN,
            intermediate_size=VIS_INTERMEDIATE,
            num_hidden_layers=vision_layers,
            num_attention_heads=VIS_HEADS,
            image_size=IDEFICS_IMAGE,
            patch_size=IDEFICS_PATCH,
        )
        vision.update(vision_over)
        cfg = T.Idefics3Config(
            text_config=T.LlamaConfig(**text).to_dict(),
            vision_config=vision,
            image_token_id=image_id,
            scale_factor=2,
            pad_token_id=ids["pad"],
            tie_word_embeddings=False,
        )
    else:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")

    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def _build_image_processor(family: str):
    """The image processor a Hub repo of this family would ship (tiny geometry).

    Built from the ``...Pil`` classes (no torchvision here). ``save_pretrained`` records the Hub's
    name without the suffix (``"image_processor_type": "CLIPImageProcessor"`` etc.); loading that
    without torchvision falls back to the ``...Pil`` class with a warning, exactly as a Hub repo does.
    """
    import transformers as T

    mean, std = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    if family == "llava":
        return T.CLIPImageProcessorPil(
            size={"shortest_edge": CLIP_IMAGE},
            crop_size={"height": CLIP_IMAGE, "width": CLIP_IMAGE},
            image_mean=mean,
            image_std=std,
        )
    if family == "llava_next":
        return T.LlavaNextImageProcessorPil(
            size={"shortest_edge": CLIP_IMAGE},
            crop_size={"height": CLIP_IMAGE, "width": CLIP_IMAGE},
            image_grid_pinpoints=NEXT_PINPOINTS,
            image_mean=mean,
            image_std=std,
        )
    if family in ("qwen2_vl", "qwen2_5_vl"):
        return T.Qwen2VLImageProcessorPil(
            min_pixels=QWEN_MIN_PIXELS,
            max_pixels=QWEN_MAX_PIXELS,
            size={"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": QWEN_MAX_PIXELS},
            patch_size=QWEN_PATCH,
            temporal_patch_size=2,
            merge_size=2,
            image_mean=mean,
            image_std=std,
        )
    if family == "idefics3":
        return T.Idefics3ImageProcessorPil(
            size={"longest_edge": IDEFICS_LONGEST},
            max_image_size={"longest_edge": IDEFICS_IMAGE},
            do_image_splitting=True,
            image_mean=mean,
            image_std=std,
        )
    return None


def _token_ids(tok) -> dict:
    conv = tok.convert_tokens_to_ids
    return dict(
        pad=tok.pad_token_id,
        bos=tok.bos_token_id,
        eos=tok.eos_token_id,
        video=conv("<|video_pad|>"),
        vision_start=conv("<|vision_start|>"),
        vision_end=conv("<|vision_end|>"),
        fake_image=conv("<fake_token_around_image>"),
        global_img=conv("<global-img>"),
    )


def _save_processor_files(family: str, out: Path, tok, image_processor) -> None:
    """Write what the Hub layout holds: preprocessor_config.json, tokenizer files, chat template,
    and processor_config.json (processor class + its own kwargs)."""
    import transformers as T

    if image_processor is None:
        return
    image_processor.save_pretrained(str(out))
    proc = None
    if family == "llava":
        proc = T.LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tok,
            patch_size=CLIP_PATCH,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
            chat_template=tok.chat_template,
        )
    elif family == "llava_next":
        proc = T.LlavaNextProcessor(
            image_processor=image_processor,
            tokenizer=tok,
            patch_size=CLIP_PATCH,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
            chat_template=tok.chat_template,
        )
    if proc is not None:
        proc.save_pretrained(str(out))
        return
    # Qwen2-VL / Qwen2.5-VL / Idefics3: the processor class cannot be instantiated here (see
    # docs/families.md), so write processor_config.json by hand, as the Hub repo has it.
    proc_cls = {
        "qwen2_vl": "Qwen2VLProcessor",
        "qwen2_5_vl": "Qwen2_5_VLProcessor",
        "idefics3": "Idefics3Processor",
    }[family]
    cfg = {"processor_class": proc_cls}
    if family == "idefics3":
        cfg["image_seq_len"] = (IDEFICS_IMAGE // IDEFICS_PATCH) ** 2 // 4
    (out / "processor_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (out / "chat_template.jinja").write_text(tok.chat_template)


def make_tiny(
    family: str,
    root_dir: str | os.PathLike,
    seed: int = 0,
    num_layers: int = 2,
    vocab_pad: int = 0,
    vision_layers: int = 2,
    name: str | None = None,
    **overrides,
) -> str:
    """Build a tiny random model of ``family``, save model + tokenizer (+ image processor) to
    ``root_dir/<name>`` and return that directory.

    num_layers: text decoder layers (a drafter: 1 layer and another seed).
    vocab_pad:  extra rows in embeddings / lm_head beyond the tokenizer's vocabulary (real
                checkpoints pad their vocab; the logit dim is then len(tokenizer) + vocab_pad).
    overrides:  ``text_config={...}``, ``vision_config={...}`` merged into the sub-configs; any
                other key is set on the top-level config.
    """
    import torch
    import transformers as T

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    out = Path(root_dir) / (name or f"{family}-L{num_layers}-s{seed}-p{vocab_pad}")
    out.mkdir(parents=True, exist_ok=True)

    tok = build_tokenizer(None, family)
    ids = _token_ids(tok)
    if FAMILY_INFO[family]["image_token"]:
        ids["image"] = tok.convert_tokens_to_ids(FAMILY_INFO[family]["image_token"])
    vocab = len(tok) + int(vocab_pad)
    cfg = _build_config(family, num_layers, vocab, ids, vision_layers, dict(overrides))

    model_cls = getattr(T, FAMILY_INFO[family]["cls"])
    torch.manual_seed(seed)
    model = model_cls(cfg)
    model.eval()
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = ids["bos"], ids["eos"], ids["pad"]
    gen.do_sample = False
    for k in ("temperature", "top_p", "top_k"):
        if hasattr(gen, k):
            setattr(gen, k, None)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    _save_processor_files(family, out, tok, _build_image_processor(family))
    return str(out)


# ---------------------------------------------------------------------------------------------
# Session cache
# ---------------------------------------------------------------------------------------------

_CACHE_ROOT = Path(tempfile.gettempdir()) / "specscope-tiny"
_lock = threading.Lock()


def _cache_key(family: str, kw: dict) -> str:
    import torch
    import transformers

    payload = json.dumps(
        {"f": family, "kw": kw, "v": TINY_VERSION, "tf": transformers.__version__, "torch": torch.__version__},
        sort_keys=True,
        default=str,
    )
    return f"{family}-{hashlib.sha1(payload.encode()).hexdigest()[:12]}"


def tiny_model_dir(family: str, **kw) -> str:
    """Memoised ``make_tiny``: built once into ``<tmp>/specscope-tiny/<key>`` and reused across the
    test session (and across sessions: the key includes the recipe version and library versions).
    A complete build is marked with a ``.complete`` file, written last, so an interrupted build is
    redone."""
    key = _cache_key(family, kw)
    final = _CACHE_ROOT / key
    if (final / ".complete").exists():
        return str(final)
    with _lock:
        if (final / ".complete").exists():
            return str(final)
        _CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=_CACHE_ROOT))
        try:
            built = Path(make_tiny(family, staging, name="m", **kw))
            (built / ".complete").write_text("ok\n")
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.replace(built, final)
            except OSError:  # another process won the race
                if not (final / ".complete").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return str(final)


# ---------------------------------------------------------------------------------------------
# Loading and input preparation without AutoProcessor
# ---------------------------------------------------------------------------------------------


def family_of(model_dir: str) -> str:
    """Family name from a saved config.json (model_type)."""
    mt = json.loads((Path(model_dir) / "config.json").read_text())["model_type"]
    if mt not in FAMILIES:
        raise ValueError(f"unsupported model_type {mt!r}")
    return mt


def load_tiny(model_dir: str, dtype=None):
    """Load (model, tokenizer, image_processor|None) through the Auto* classes, as for a Hub id."""
    import torch
    import transformers as T

    family = family_of(model_dir)
    auto = getattr(T, FAMILY_INFO[family]["auto"])
    model = auto.from_pretrained(model_dir, dtype=dtype or torch.float32)
    model.eval()
    tok = T.AutoTokenizer.from_pretrained(model_dir)
    ip = T.AutoImageProcessor.from_pretrained(model_dir) if family in VISION_FAMILIES else None
    return model, tok, ip


def tiny_image(width: int = 48, height: int = 40, seed: int = 0):
    """A deterministic RGB PIL image (random pixels)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), "RGB")


def build_inputs(family, model_dir, prompt, image=None, tokenizer=None, image_processor=None, config=None):
    """Build model inputs for one (prompt, image) WITHOUT AutoProcessor, per docs/families.md.

    ``prompt`` is the user text; the chat template adds the image placeholder (when ``image`` is
    given) and the generation prompt. Returns a dict of batch-1 tensors.
    """
    import transformers as T

    tok = tokenizer or T.AutoTokenizer.from_pretrained(model_dir)
    content = ([{"type": "image"}] if image is not None else []) + [{"type": "text", "text": prompt}]
    text = tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
    if image is None:
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if family not in VISION_FAMILIES:
        raise ValueError(f"{family} takes no image")
    ip = image_processor or T.AutoImageProcessor.from_pretrained(model_dir)
    if config is None:
        config = T.AutoConfig.from_pretrained(model_dir)
    extra = {}

    if family == "llava":
        pix = ip(images=[image], return_tensors="pt")["pixel_values"]
        h, w = pix.shape[-2:]
        ps = config.vision_config.patch_size
        n = (h // ps) * (w // ps) + 1  # + CLS
        if config.vision_feature_select_strategy == "default":
            n -= 1
        text = text.replace("<image>", "<image>" * n, 1)
        extra = {"pixel_values": pix}
    elif family == "llava_next":
        from transformers.image_processing_utils import select_best_resolution

        out = ip(images=[image], return_tensors="pt")
        pix, sizes = out["pixel_values"], out["image_sizes"]
        n = llava_next_num_image_tokens(int(sizes[0][0]), int(sizes[0][1]), config, select_best_resolution)
        text = text.replace("<image>", "<image>" * n, 1)
        extra = {"pixel_values": pix, "image_sizes": sizes}
    elif family in ("qwen2_vl", "qwen2_5_vl"):
        out = ip(images=[image], return_tensors="pt")
        grid = out["image_grid_thw"]
        n = int(grid[0].prod()) // (ip.merge_size**2)
        text = text.replace("<|image_pad|>", "<|image_pad|>" * n, 1)
        extra = {"pixel_values": out["pixel_values"], "image_grid_thw": grid}
    elif family == "idefics3":
        out = ip(images=[[image]], return_tensors="pt", return_row_col_info=True)
        rows, cols = out["rows"][0][0], out["cols"][0][0]
        seq = int((config.vision_config.image_size // config.vision_config.patch_size) ** 2 / config.scale_factor**2)
        text = text.replace("<image>", idefics3_image_string(rows, cols, seq), 1)
        extra = {"pixel_values": out["pixel_values"], "pixel_attention_mask": out["pixel_attention_mask"]}

    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], **extra}
    if family in ("qwen2_vl", "qwen2_5_vl"):
        inputs["mm_token_type_ids"] = (enc["input_ids"] == config.image_token_id).long()
    return inputs


def idefics3_image_string(rows: int, cols: int, image_seq_len: int) -> str:
    """Expansion of one ``<image>`` in an Idefics3 / SmolVLM prompt (as Idefics3Processor does)."""
    fake, img, glob = "<fake_token_around_image>", "<image>", "<global-img>"
    if rows == 0 and cols == 0:
        return fake + glob + img * image_seq_len + fake
    s = ""
    for r in range(rows):
        for c in range(cols):
            s += fake + f"<row_{r + 1}_col_{c + 1}>" + img * image_seq_len
        s += "\n"
    return s + "\n" + fake + glob + img * image_seq_len + fake


def llava_next_num_image_tokens(orig_h: int, orig_w: int, config, select_best_resolution=None) -> int:
    """Number of ``<image>`` tokens LLaVA-NeXT needs for an image of the given ORIGINAL size
    (same arithmetic as LlavaNextProcessor._get_number_of_features, "default" strategy)."""
    if select_best_resolution is None:
        from transformers.image_processing_utils import select_best_resolution
    size = config.vision_config.image_size
    ps = config.vision_config.patch_size
    best_h, best_w = select_best_resolution([orig_h, orig_w], config.image_grid_pinpoints)
    scale_h, scale_w = best_h // size, best_w // size
    ph = pw = size // ps
    cur_h, cur_w = ph * scale_h, pw * scale_w
    if orig_w / orig_h > cur_w / cur_h:
        new_h = int(round(orig_h * (cur_w / orig_w), 7))
        cur_h -= ((cur_h - new_h) // 2) * 2
    else:
        new_w = int(round(orig_w * (cur_h / orig_h), 7))
        cur_w -= ((cur_w - new_w) // 2) * 2
    n = cur_h * cur_w + cur_h + ph * pw + 1  # unpadded + newlines + base (+CLS)
    if config.vision_feature_select_strategy == "default":
        n -= 1
    return n


def adapter_cache():
    """``load(family, **make_kw)``: the tiny model of ``family`` loaded as a SpecScope adapter,
    kept after the first call (one cache per caller, e.g. per test module)."""
    from core import adapters

    loaded: dict = {}

    def load(family: str, **kw):
        key = (family, tuple(sorted(kw.items())))
        if key not in loaded:
            loaded[key] = adapters.load(tiny_model_dir(family, **kw))
        return loaded[key]

    return load
