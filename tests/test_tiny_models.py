"""Tiny random-weight models of every supported family, and the transformers 5.23 behaviours the
engine builds on (docs/families.md):

* each tiny model loads back through the Auto* path a Hub id takes and ``generate()`` runs with
  an image;
* the processor-free input recipe equals the real processor's output;
* "4D additive float mask + explicit position_ids == feeding tokens one by one", for a chain and
  for a tree (two siblings), per family, fp32 (the multi-token verify of speculative decoding);
* Qwen2-VL / Qwen2.5-VL M-RoPE: decode positions = cache_len + ``model.model.rope_deltas``;
  a manual greedy loop with explicit positions reproduces ``generate()``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tools import tiny as tm

torch = pytest.importorskip("torch")
T = pytest.importorskip("transformers")

MROPE = ("qwen2_vl", "qwen2_5_vl")
PROMPT = "What is in the image?"
TOL = 1e-5  # fp32; measured ~1e-7


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; these models are tiny
    yield
    torch.set_num_threads(old)


_loaded: dict = {}


def loaded(family: str, attn: str | None = None):
    """(model, tokenizer, image_processor, dir), loaded once per module via the Auto* classes."""
    key = (family, attn)
    if key not in _loaded:
        d = tm.tiny_model_dir(family)
        if attn is None:
            model, tok, ip = tm.load_tiny(d)
        else:
            auto = getattr(T, tm.FAMILY_INFO[family]["auto"])
            model = auto.from_pretrained(d, dtype=torch.float32, attn_implementation=attn).eval()
            _, tok, ip, _ = loaded(family)
        _loaded[key] = (model, tok, ip, d)
    return _loaded[key]


def inputs_for(family, with_image=True, prompt=PROMPT):
    model, tok, ip, d = loaded(family)
    image = tm.tiny_image(48, 40) if (with_image and family in tm.VISION_FAMILIES) else None
    return tm.build_inputs(family, d, prompt, image, tok, ip, model.config)


# ------------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------------


def test_tokenizer_is_shared_and_atomic(tmp_path):
    tok = tm.build_tokenizer(tmp_path / "tok", "llava")
    assert 300 <= len(tok) <= 500
    ids = tok.convert_tokens_to_ids(tm.SPECIAL_TOKENS)
    assert ids == list(range(len(tm.SPECIAL_TOKENS)))  # fixed ids, same for every family
    text = "<image>\n<|vision_start|><|image_pad|><|vision_end|><fake_token_around_image><row_2_col_3>"
    assert tok(text, add_special_tokens=False).input_ids == tok.convert_tokens_to_ids(
        ["<image>", "\u010a", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<fake_token_around_image>", "<row_2_col_3>"]
    )
    tricky = "Hello  world!\n\n 12345 café  naïve\tend <|im_end|>"
    ref = None
    for f in tm.FAMILIES:
        t = T.AutoTokenizer.from_pretrained(tm.tiny_model_dir(f))
        got = t(tricky).input_ids  # also checks: no automatic bos
        assert got == t(tricky, add_special_tokens=False).input_ids
        ref = ref or got
        assert got == ref, f"{f} ({type(t).__name__}) tokenizes differently"
        assert t.decode(got) == tricky
        assert t.eos_token == tm.FAMILY_INFO[f]["eos"]


@pytest.mark.parametrize("family", tm.FAMILIES)
def test_chat_template_renders_image_placeholder(family):
    tok = T.AutoTokenizer.from_pretrained(tm.tiny_model_dir(family))
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    s = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    placeholder = {
        "llava": "<image>",
        "llava_next": "<image>",
        "idefics3": "<image>",
        "qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>",
        "qwen2_5_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    }.get(family)
    if placeholder:
        assert s.count(placeholder) == 1
    assert s.endswith(("ASSISTANT:", "<|im_start|>assistant\n", "Assistant:"))


# ------------------------------------------------------------------------------------------------
# Build / cache / load
# ------------------------------------------------------------------------------------------------


def _weights_digest(d):
    from safetensors.torch import load_file

    sd = load_file(str(Path(d) / "model.safetensors"))
    h = hashlib.sha1()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].numpy().tobytes())
    return h.hexdigest()


def test_build_is_deterministic_and_memoised(tmp_path):
    a = tm.make_tiny("qwen2_vl", tmp_path / "a", seed=3)
    b = tm.make_tiny("qwen2_vl", tmp_path / "b", seed=3)
    c = tm.make_tiny("qwen2_vl", tmp_path / "c", seed=4)
    assert _weights_digest(a) == _weights_digest(b) != _weights_digest(c)
    d1 = tm.tiny_model_dir("llama")
    mtime = os.path.getmtime(Path(d1) / "model.safetensors")
    assert tm.tiny_model_dir("llama") == d1
    assert os.path.getmtime(Path(d1) / "model.safetensors") == mtime
    assert tm.tiny_model_dir("llama", seed=1) != d1


@pytest.mark.parametrize("family", tm.FAMILIES)
def test_loads_via_auto_and_generates(family):
    model, tok, ip, d = loaded(family)
    assert type(model).__name__ == tm.FAMILY_INFO[family]["cls"]
    if family in tm.VISION_FAMILIES:
        assert ip is not None and type(ip).__name__.endswith("Pil")
        assert (Path(d) / "preprocessor_config.json").exists()
        assert (Path(d) / "processor_config.json").exists()
    inputs = inputs_for(family)
    if family in tm.VISION_FAMILIES:
        image_id = tok.convert_tokens_to_ids(tm.FAMILY_INFO[family]["image_token"])
        assert int((inputs["input_ids"] == image_id).sum()) > 1
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=5, min_new_tokens=5)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 5)


def test_drafter_with_padded_vocab_shares_tokenizer():
    target_dir = tm.tiny_model_dir("llava")
    draft_dir = tm.tiny_model_dir("llava", num_layers=1, seed=1, vocab_pad=24)
    assert (Path(target_dir) / "tokenizer.json").read_bytes() == (Path(draft_dir) / "tokenizer.json").read_bytes()
    draft = T.AutoModelForImageTextToText.from_pretrained(draft_dir, dtype=torch.float32).eval()
    tok = T.AutoTokenizer.from_pretrained(draft_dir)
    assert draft.config.text_config.num_hidden_layers == 1
    assert draft.config.text_config.vocab_size == len(tok) + 24
    inputs = inputs_for("llava")
    with torch.no_grad():
        logits = draft(**inputs).logits
    assert logits.shape[-1] == len(tok) + 24
    with torch.no_grad():
        draft.generate(**inputs, do_sample=False, max_new_tokens=3)


# ------------------------------------------------------------------------------------------------
# Processor-free recipe == real processor
# ------------------------------------------------------------------------------------------------


def _processor_inputs(family, processor):
    model, tok, ip, d = loaded(family)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return processor(images=[tm.tiny_image(48, 40)], text=[text], return_tensors="pt", add_special_tokens=False)


def _assert_same(expected, got):
    assert set(expected.keys()) == set(got.keys())
    for k in expected:
        assert torch.equal(expected[k], got[k].to(expected[k].dtype)), k


@pytest.mark.parametrize("family", ["llava", "llava_next", "idefics3"])
def test_autoprocessor_matches_recipe(family):
    proc = T.AutoProcessor.from_pretrained(tm.tiny_model_dir(family))
    _assert_same(_processor_inputs(family, proc), inputs_for(family))


@pytest.mark.parametrize("family", MROPE)
def test_qwen_recipe_matches_processor(family, monkeypatch):
    from transformers.processing_utils import ProcessorMixin
    from transformers.utils import is_torchvision_available

    d = tm.tiny_model_dir(family)
    if not is_torchvision_available():
        # The environment fact docs/families.md records: AutoProcessor needs the video processor.
        with pytest.raises(ImportError, match="Torchvision"):
            T.AutoProcessor.from_pretrained(d)
        # Build the processor anyway (skip the class check that needs the video processor class).
        monkeypatch.setattr(ProcessorMixin, "check_argument_for_proper_class", lambda self, name, arg: None)
    cls = T.Qwen2VLProcessor if family == "qwen2_vl" else T.Qwen2_5_VLProcessor
    _, tok, ip, _ = loaded(family)
    proc = cls(image_processor=ip, tokenizer=tok, video_processor=None, chat_template=tok.chat_template)
    _assert_same(_processor_inputs(family, proc), inputs_for(family))


# ------------------------------------------------------------------------------------------------
# 4D float mask + explicit positions == step by step
# ------------------------------------------------------------------------------------------------


def verify_positions(model, family, cache_len, depths):
    """position_ids for tokens at tree depths ``depths`` after a prefix of ``cache_len`` tokens."""
    pos = torch.tensor([depths]) + cache_len  # (1, T)
    if family in MROPE:
        delta = model.model.rope_deltas
        pos = pos + (delta if delta is not None else 0)
        return pos[None].expand(3, -1, -1)  # (3, B, T)
    return pos


def tree_mask(cache_len, parents, dtype=torch.float32):
    """Additive float mask (1, 1, q, cache_len + q): node i sees the prefix, itself and its ancestors."""
    q = len(parents)
    allow = torch.zeros(q, cache_len + q, dtype=torch.bool)
    allow[:, :cache_len] = True
    for i in range(q):
        j = i
        while j >= 0:
            allow[i, cache_len + j] = True
            j = parents[j]
    mask = torch.zeros(q, cache_len + q, dtype=dtype).masked_fill(~allow, torch.finfo(dtype).min)
    return mask[None, None]


def _prefill(model, family, inputs, return_logits=False):
    if family in MROPE:
        model.model.rope_deltas = None  # never inherit the previous request's offset
    with torch.no_grad():
        out = model(**inputs, use_cache=True)
    return (out.past_key_values, out.logits[0, -1]) if return_logits else out.past_key_values


def _step(model, cache, token):
    with torch.no_grad():
        return model(input_ids=torch.tensor([[token]]), past_key_values=cache, use_cache=True).logits[0, -1]


SHAPES = {"chain": ([-1, 0, 1], [0, 1, 2]), "tree": ([-1, 0, 0], [0, 1, 1])}


@pytest.mark.parametrize("attn", [None, "eager"], ids=["default", "eager"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("family", tm.FAMILIES)
def test_4d_float_mask_matches_step_by_step(family, shape, attn):
    model, tok, ip, d = loaded(family, attn)
    inputs = inputs_for(family)
    tokens = [40, 41, 42]
    parents, depths = SHAPES[shape]
    # Reference: the plain decode path (no mask, no positions), one token at a time along each
    # root-to-node path.
    ref = {}
    for path in [[0, 1, 2]] if shape == "chain" else [[0, 1], [0, 2]]:
        cache = _prefill(model, family, inputs)
        for i in path:
            ref[i] = _step(model, cache, tokens[i])
    cache = _prefill(model, family, inputs)
    n = cache.get_seq_length()
    assert n == inputs["input_ids"].shape[1]
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor([tokens]),
            attention_mask=tree_mask(n, parents),
            position_ids=verify_positions(model, family, n, depths),
            past_key_values=cache,
            use_cache=True,
        )
    assert cache.get_seq_length() == n + 3
    diff = max(float((out.logits[0, i] - ref[i]).abs().max()) for i in range(3))
    assert diff < TOL, f"{family} {shape}: max abs diff {diff:.3g}"


# ------------------------------------------------------------------------------------------------
# M-RoPE (Qwen2-VL / Qwen2.5-VL)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", MROPE)
def test_rope_deltas_attribute_and_position_layouts(family):
    model, *_ = loaded(family)
    inputs = inputs_for(family)
    pos, deltas = model.model.get_rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        image_grid_thw=inputs["image_grid_thw"],
        attention_mask=inputs["attention_mask"],
    )
    n = inputs["input_ids"].shape[1]
    assert pos.shape == (3, 1, n) and deltas.shape == (1, 1)
    assert int(deltas) == int(pos.max()) + 1 - n
    grid = inputs["image_grid_thw"][0]
    assert int(deltas) == max(grid[1], grid[2]) // 2 - int(grid.prod()) // 4  # one image
    cache = _prefill(model, family, inputs)
    assert torch.equal(model.model.rope_deltas, deltas)
    ref = _step(model, cache, 40)
    p = torch.tensor([[n]]) + deltas  # (B, T)
    for layout in (p[None].expand(3, -1, -1), torch.cat([torch.tensor([[[n]]]), p[None].expand(3, -1, -1)]), p):
        cache = _prefill(model, family, inputs)
        with torch.no_grad():
            got = model(input_ids=torch.tensor([[40]]), position_ids=layout, past_key_values=cache).logits[0, -1]
        assert float((got - ref).abs().max()) < TOL, tuple(layout.shape)


def _manual_greedy(model, family, inputs, n_new):
    """Greedy decode the way the engine does: prefill, then one token at a time with an explicit
    4D float mask and explicit positions (cache_len + rope_deltas)."""
    cache, logits = _prefill(model, family, inputs, return_logits=True)
    nxt = int(logits.argmax())
    out = [nxt]
    for _ in range(n_new - 1):
        n = cache.get_seq_length()
        with torch.no_grad():
            logits = model(
                input_ids=torch.tensor([[nxt]]),
                attention_mask=tree_mask(n, [-1]),
                position_ids=verify_positions(model, family, n, [0]),
                past_key_values=cache,
                use_cache=True,
            ).logits[0, -1]
        nxt = int(logits.argmax())
        out.append(nxt)
    return out


@pytest.mark.parametrize("family", tm.VISION_FAMILIES)
def test_manual_decode_matches_generate(family):
    model, *_ = loaded(family)
    # an image request, then a text-only request: catches a stale rope_deltas
    for with_image in (True, False):
        inputs = inputs_for(family, with_image=with_image)
        with torch.no_grad():
            gen = model.generate(**inputs, do_sample=False, max_new_tokens=6)
        expected = gen[0, inputs["input_ids"].shape[1] :].tolist()  # may stop early at eos
        assert _manual_greedy(model, family, inputs, 6)[: len(expected)] == expected, f"with_image={with_image}"
