"""EAGLE-3 heads (core/drafters/eagle3.py): loaded from the speculators layout and SpecForge's names
through the registry (the path a downloaded head takes), lossless decoding for every tiny family
and draft strategy, proposals equal to an independent full-sequence reference (aux taps, fused
features, commit alignment, the vocabulary map), both norm conventions, broken checkpoints, the
export command's round trip and the replay."""

import json
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from core import errors
from core.paths import ASSETS, DEFAULT_TARGET
from core.adapters import Encoded
from core.drafters import DraftContext, DraftSpec, make_drafter, spec_for
from core.drafters.eagle3 import Eagle3Config, Eagle3Drafter, Eagle3Head, default_aux_layers, is_eagle3_dir, layer_config, new_head
from core.engine import generate
from core.sampling import SamplingConfig
from tools.tiny import FAMILIES, adapter_cache, tiny_image

load = adapter_cache()
PROMPT = "Describe the picture."
SPECS = [
    DraftSpec("chain", gamma=3),
    DraftSpec("tree", branching=(2, 2)),
    DraftSpec("dynamic", depth=3, top_k=3, budget=8),
    spec_for("auto", gamma=4),
]


def image_for(tgt):
    return tiny_image() if tgt.is_multimodal else None


def saved(tmp_path, tgt, name="head", fmt="speculators", **kw):
    """A random head for ``tgt`` saved in ``fmt``: the directory."""
    kw.setdefault("seed", 0)
    head = new_head(tgt, **kw)
    path = str(tmp_path / name)
    head.save(path, fmt=fmt)
    return path, head


def drafted(trace):
    return [(s.tokens, s.parents, s.q) for s in trace.steps]


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_lossless_for_every_family_and_strategy(family, tmp_path):
    """A random EAGLE-3 head saved in the speculators layout and loaded by name: every strategy
    gives the target's own greedy output, and every drafted token is in the draft vocabulary."""
    tgt = load(family)
    vocab = list(range(1, tgt.vocab_size, 3))  # a reduced draft vocabulary: d2t non-trivial
    odd = FAMILIES.index(family) % 2 == 1
    path, _ = saved(
        tmp_path, tgt, draft_vocab=vocab, norm_before_residual=odd, hidden_size=48 if family == "qwen2" else None
    )  # own embeddings, Ht != H
    d = make_drafter(path, tgt)
    assert isinstance(d, Eagle3Drafter) and d.needs_hidden and d.name.startswith("eagle3 head")
    img = image_for(tgt)
    ar = generate(tgt, PROMPT, img, max_new_tokens=10)
    allowed = set(vocab)
    for spec in SPECS:
        sp = generate(tgt, PROMPT, img, d, spec, max_new_tokens=10)
        assert sp.output == ar.output, (family, spec.strategy)
        toks = [t for s in sp.steps for t in s.tokens]
        assert toks and set(toks) <= allowed, (family, spec.strategy)


# ---------------------------------------------------------------------------------------------
def reference(tgt, head, ids, prompt, image, output):
    """Independent of the drafter: one full target prefill over prompt + output with its own hooks,
    the head over every (aux_t, token_{t+1}) pair at once (causal). Returns the head's outputs h
    (pair index -> H) and draft-vocabulary logits."""
    enc = tgt.encode(prompt, image)
    seq = torch.cat([enc.input_ids, torch.tensor([output])], dim=1)
    text = tgt.text_module()
    L = len(text.layers)
    got = {}

    def grab(i):
        def hook(_m, args, kwargs):
            got[i] = (args[0] if args else kwargs["hidden_states"])[0]

        return hook

    hooks = [(text.layers[i] if i < L else text.norm).register_forward_pre_hook(grab(i), with_kwargs=True) for i in sorted(set(ids))]
    try:
        sess, _, _ = tgt.prefill(Encoded(seq, enc.extra, enc.has_image), want_hidden=True)
    finally:
        for h in hooks:
            h.remove()
    s = seq[0]
    with torch.no_grad():
        aux = torch.cat([got[i] for i in ids], dim=-1).float()
        emb_mod = head.embed_tokens if head.embed_tokens is not None else tgt.model.get_input_embeddings()
        e = emb_mod(s[1:]).float()
        cfg = tgt.model.config
        img_id = getattr(cfg, "image_token_id", None) or getattr(cfg, "image_token_index", None)
        if sess.embeds is not None and img_id is not None:
            vis = (s[1:] == img_id).unsqueeze(-1)
            e = torch.where(vis, sess.embeds[0, 1:].float(), e)
        x = torch.cat([e, head.fc(aux[:-1])], dim=-1)
        n = x.shape[0]
        mask = torch.full((n, n), torch.finfo(x.dtype).min).triu(1).view(1, 1, n, n)
        kv = [None, None]
        h = head.step(x.unsqueeze(0), torch.arange(n).view(1, -1), mask, kv)[0]
    return h, head.logits(h), kv, e, enc.length


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "llama"])
def test_proposals_equal_a_full_sequence_reference(family, tmp_path):
    """Drive the drafter by hand (the engine's calls, with some drafted tokens force-accepted so
    commits keep several rows) and check every proposal against ``reference``: the first token and
    its probability at each root, and the second (fed the head's own output). Catches misaligned
    aux rows, a wrong fc input order, a stale head cache and a wrong vocabulary map."""
    tgt = load(family)
    special = set(tgt.tokenizer.added_tokens_decoder)  # forced into the sequence, an image token
    vocab = [t for t in range(0, tgt.vocab_size, 2) if t not in special][::-1]  # would break the prefill
    path, _ = saved(tmp_path, tgt, draft_vocab=vocab, seed=3)
    d = make_drafter(path, tgt, kernels="stock")  # the head's own math (lossy product paths: below)
    head = d.head
    img = image_for(tgt)
    enc = tgt.encode(PROMPT, img)
    sess, logits, hidden = tgt.prefill(enc, want_hidden=True)
    out = [int(logits.argmax())]
    d.begin(
        DraftContext(
            target=tgt,
            prompt_ids=enc.input_ids[0].tolist(),
            prompt=PROMPT,
            image=img,
            encoded=enc,
            target_hidden=hidden,
            tokens=out,
            target_embeds=sess.embeds,
        )
    )
    steps = []
    gen = torch.Generator().manual_seed(0)
    for i in range(6):
        root = out[-1]
        tree = d.propose(root, DraftSpec("chain", gamma=2), SamplingConfig(), gen)
        base = sess.length
        lg, hid = tgt.forward(sess, [root] + tree.tokens, want_hidden=True)  # a chain: causal verify
        acc = [0, 1][: i % 3]  # 0, 1 or 2 drafted tokens kept
        new = [tree.tokens[a] for a in acc] + [int(lg[len(acc)].argmax())]
        kept = [0] + [a + 1 for a in acc]
        tgt.keep(sess, base, kept)
        d.commit(tree, acc, new, hid[kept])
        steps.append((enc.length + len(out) - 1, list(tree.tokens), list(tree.q_tok)))
        out += new
    h, lgt, kv, e, _ = reference(tgt, head, d.aux_layer_ids, PROMPT, img, out)
    to_target = head.draft_to_target()
    for r, toks, q in steps:
        p = torch.softmax(lgt[r - 1], -1)
        assert toks[0] == int(to_target[p.argmax()]), r
        assert q[0] == pytest.approx(float(p.max()), rel=1e-4, abs=1e-6)
        # depth 2: the head's own output at the root pair, with the chosen token, after pairs < r
        sub = [kv[0][..., :r, :], kv[1][..., :r, :]]
        d1 = int((to_target == toks[0]).nonzero())
        emb = head.embed_tokens if head.embed_tokens is not None else tgt.model.get_input_embeddings()
        with torch.no_grad():
            x = head.fuse(emb(torch.tensor([toks[0]])).float(), h[r - 1 : r])
            h2 = head.step(x.unsqueeze(0), torch.tensor([[r]]), None, sub)[0]
        p2 = torch.softmax(head.logits(h2)[0], -1)
        assert toks[1] == int(to_target[p2.argmax()]) and d1 >= 0, r
        assert q[1] == pytest.approx(float(p2.max()), rel=1e-4, abs=1e-6)


# ---------------------------------------------------------------------------------------------
def naive_layer(head, x, nbr):
    """The EAGLE-3 layer as the speculators reference writes it (separate q/k/v, rotate_half,
    explicit causal softmax, repeated kv heads), for a (n, 2H) input at positions 0..n-1."""
    c, lay = head.config, head.layers[0]
    H = c.hidden_size
    a = lay.self_attn
    eps = lay.hidden_norm.eps

    def rms(t, w):
        return w * (t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps))

    emb, hid = x[:, :H], x[:, H:]
    if nbr:
        hid = rms(hid, lay.hidden_norm.weight)
        residual = hid
    else:
        residual = hid
        hid = rms(hid, lay.hidden_norm.weight)
    inp = torch.cat([rms(emb, lay.input_layernorm.weight), hid], -1)
    n, d = x.shape[0], a.head_dim
    q = a.q_proj(inp).view(n, a.nq, d)
    k = a.k_proj(inp).view(n, a.nk, d)
    v = a.v_proj(inp).view(n, a.nk, d)
    if hasattr(a, "q_norm"):
        q, k = rms(q, a.q_norm.weight), rms(k, a.k_norm.weight)
    cos, sin = head.rotary(x, torch.arange(n).view(1, -1))
    cos, sin = cos[0].unsqueeze(1), sin[0].unsqueeze(1)

    def rot(t):
        return torch.cat([-t[..., d // 2 :], t[..., : d // 2]], -1)

    q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
    rep = a.nq // a.nk
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    s = torch.einsum("ihd,jhd->hij", q, k) / d**0.5
    s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    o = torch.einsum("hij,jhd->ihd", torch.softmax(s, -1), v).reshape(n, -1)
    x1 = residual + a.o_proj(o)
    m = lay.mlp
    h = rms(x1, lay.post_attention_layernorm.weight)
    return x1 + m.down_proj(F.silu(m.gate_proj(h)) * m.up_proj(h))


@pytest.mark.parametrize("nbr", [False, True])
@pytest.mark.parametrize("qk_norm", [False, True])
def test_step_matches_the_reference_layer(nbr, qk_norm):
    """The packed, cached ``step`` (one call for a block, then one row at a time) equals the
    naive layer for both residual conventions, GQA and Qwen3-style q/k norms."""
    tc = load("llama").model.config
    lay = layer_config(tc, hidden_size=64, heads=4, kv_heads=2, intermediate_size=96)
    cfg = Eagle3Config(
        layer=lay,
        draft_vocab_size=50,
        target_vocab_size=400,
        target_hidden_size=64,
        norm_before_residual=nbr,
        aux_layer_ids=[0, 1, 2],
        qk_norm=qk_norm,
    )
    torch.manual_seed(1)
    head = Eagle3Head(cfg)
    with torch.no_grad():
        for name, p in head.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.5) + (1.0 if "norm" in name else 0.0))
    head.eval()
    x = torch.randn(7, 128)
    with torch.no_grad():
        ref = naive_layer(head, x, nbr)
        kv = [None, None]
        n = 4
        mask = torch.full((n, n), torch.finfo(x.dtype).min).triu(1).view(1, 1, n, n)
        got = [head.step(x[:n].unsqueeze(0), torch.arange(n).view(1, -1), mask, kv)[0]]
        for t in range(n, 7):
            got.append(head.step(x[t : t + 1].unsqueeze(0), torch.tensor([[t]]), None, kv)[0])
    assert torch.allclose(torch.cat(got), ref, atol=1e-4, rtol=1e-4)
    # the other convention gives another layer (the flag is not a no-op)
    assert not torch.allclose(naive_layer(head, x, not nbr), ref, atol=1e-3)


# ---------------------------------------------------------------------------------------------
def test_a_loaded_head_runs_its_products_on_the_measured_paths(tmp_path):
    """A head loaded by name puts fc, q|k|v, o, gate|up, down and lm_head on the paths core.kernels
    chose (int8 forced here: a drafter may be lossy, the target verifies), and its forward really runs
    on them: the proposals move off the float32 ones, and decoding stays the target's own. A
    head passed in by a trainer keeps plain products; so does ``kernels="stock"``."""
    tgt = load("qwen2")
    path, _ = saved(tmp_path, tgt, seed=5)
    exact, lossy = make_drafter(path, tgt, kernels="stock"), make_drafter(path, tgt, kernels="int8")
    assert exact.kernels["paths"] == "stock"
    tables = lossy.kernels["paths"]
    fc = f"{lossy.head.config.hidden_size}x{3 * tgt.model.config.hidden_size} raw inputs"
    # fc reads residual streams as they are: never int8's one input scale per call (core.kernels.fit_paths)
    assert set(tables.pop(fc).values()) == {"dense"}
    assert tables and all(set(t.values()) == {"int8"} for t in tables.values())
    x = torch.randn(1, 3, 2 * lossy.head.config.hidden_size)
    with torch.inference_mode():
        a = exact.head.logits(exact.head.step(x, torch.arange(3).view(1, -1), None, [None, None]))
        b = lossy.head.logits(lossy.head.step(x, torch.arange(3).view(1, -1), None, [None, None]))
        f = exact.head.features(torch.randn(2, 3 * tgt.model.config.hidden_size))
    assert not torch.equal(a, b) and torch.allclose(a, b, atol=0.1 * float(a.abs().max()))
    assert f.shape == (2, exact.head.config.hidden_size)
    ar = generate(tgt, PROMPT, None, max_new_tokens=10)
    for d in (exact, lossy):
        assert generate(tgt, PROMPT, None, d, spec_for("auto", gamma=4), max_new_tokens=10).output == ar.output
    assert Eagle3Drafter(tgt, head=new_head(tgt, seed=5)).kernels["paths"] == "stock"
    assert "_products" not in Eagle3Drafter(tgt, head=new_head(tgt, seed=5)).head.__dict__


# ---------------------------------------------------------------------------------------------
def test_vocabulary_map(tmp_path):
    """Draft id j proposes target id j + d2t[j]; t2d marks exactly the draft vocabulary; both are
    saved and read back; a head drafting over the full vocabulary needs no d2t."""
    tgt = load("llama")
    vocab = [7, 300, 5, 42, 399, 0, 123]
    path, head = saved(tmp_path, tgt, draft_vocab=vocab)
    sd = load_file(os.path.join(path, "model.safetensors"))
    assert sd["d2t"].dtype == torch.int64 and sd["t2d"].dtype == torch.bool
    assert (torch.arange(len(vocab)) + sd["d2t"]).tolist() == vocab
    assert sd["t2d"].nonzero().view(-1).tolist() == sorted(vocab) and sd["t2d"].numel() == tgt.vocab_size
    d = make_drafter(path, tgt)
    for j, t in enumerate(vocab):
        with torch.no_grad():
            d.head.lm_head.weight.zero_()
            d.head.lm_head.weight[j] = 1.0  # only draft id j scores
        h = torch.ones(1, d.head.config.hidden_size)
        logits = d._logits(h)[0]
        assert int(logits.argmax()) == t
        assert torch.isinf(logits).sum() == tgt.vocab_size - len(vocab)  # never drafted elsewhere
    # full draft vocabulary: no d2t / t2d needed (identity)
    path2, _ = saved(tmp_path, tgt, name="full")
    sd2 = load_file(os.path.join(path2, "model.safetensors"))
    save_file({k: v for k, v in sd2.items() if k not in ("d2t", "t2d")}, os.path.join(path2, "model.safetensors"))
    assert make_drafter(path2, tgt).vocab_index.tolist() == list(range(tgt.vocab_size))


def test_norm_before_residual_is_read_and_written(tmp_path):
    """The flag is written explicitly, read back (same proposals as the head in memory), and a
    config without it means speculators' default (False): other proposals."""
    tgt = load("llava")
    img = image_for(tgt)
    path, head = saved(tmp_path, tgt, draft_vocab=list(range(0, 400, 2)), norm_before_residual=True, seed=5)
    cfg = json.loads(open(os.path.join(path, "config.json")).read())
    assert cfg["norm_before_residual"] is True
    d = make_drafter(path, tgt, kernels="stock")  # the head's own math, as the one in memory (it keeps its products)
    assert d.head.config.norm_before_residual is True
    mem = Eagle3Drafter(tgt, head=head)
    spec = DraftSpec("chain", gamma=3)
    a = drafted(generate(tgt, PROMPT, img, d, spec, max_new_tokens=8))
    assert a == drafted(generate(tgt, PROMPT, img, mem, spec, max_new_tokens=8))
    del cfg["norm_before_residual"]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    d2 = make_drafter(path, tgt, kernels="stock")
    assert d2.head.config.norm_before_residual is False
    assert drafted(generate(tgt, PROMPT, img, d2, spec, max_new_tokens=8)) != a


def test_specforge_names_and_aux_convention(tmp_path):
    """A SpecForge checkpoint (``midlayer.*``, no fc bias, aux ids as 'output of layer i') loads to
    the same head: the same proposals as the speculators copy."""
    tgt = load("idefics3")
    img = image_for(tgt)
    sp_path, head = saved(tmp_path, tgt, name="sp", draft_vocab=list(range(3, 400, 4)), fc_bias=False, aux_layer_ids=[2, 0, 1])
    sf_path = str(tmp_path / "sf")
    head.save(sf_path, fmt="specforge")
    keys = set(load_file(os.path.join(sf_path, "model.safetensors")))
    assert "midlayer.self_attn.q_proj.weight" in keys and not any(k.startswith("layers.") for k in keys)
    assert "fc.bias" not in keys
    cfg = json.loads(open(os.path.join(sf_path, "config.json")).read())
    assert cfg["architectures"] == ["LlamaForCausalLMEagle3"] and "speculators_model_type" not in cfg
    assert cfg["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [1, -1, 0]
    assert is_eagle3_dir(sf_path)
    d_sf, d_sp = make_drafter(sf_path, tgt), make_drafter(sp_path, tgt)
    assert d_sf.aux_layer_ids == d_sp.aux_layer_ids == [2, 0, 1]
    assert d_sf.head.fc.bias is None
    spec = DraftSpec("tree", branching=(2, 2))
    a = generate(tgt, PROMPT, img, d_sf, spec, max_new_tokens=8)
    assert drafted(a) == drafted(generate(tgt, PROMPT, img, d_sp, spec, max_new_tokens=8))
    # a checkpoint naming no aux layers runs on the target's default ones
    del cfg["eagle_config"]
    with open(os.path.join(sf_path, "config.json"), "w") as f:
        json.dump(cfg, f)
    assert make_drafter("eagle3:" + sf_path, tgt).aux_layer_ids == default_aux_layers(2) == [2, 1, 0]


# ---------------------------------------------------------------------------------------------
def _edit(path, config=None, weights=None):
    if config:
        cfg = json.loads(open(os.path.join(path, "config.json")).read())
        config(cfg)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(cfg, f)
    if weights:
        sd = load_file(os.path.join(path, "model.safetensors"))
        weights(sd)
        save_file(sd, os.path.join(path, "model.safetensors"))


BROKEN = {
    "missing key": (None, lambda sd: sd.pop("layers.0.hidden_norm.weight"), "missing layers.0.hidden_norm.weight"),
    "wrong target hidden size": (
        lambda c: c.__setitem__("target_hidden_size", 32),
        lambda sd: sd.__setitem__("fc.weight", sd["fc.weight"][:, :96].contiguous()),
        "hidden size 32 .* has 64",
    ),
    "weights disagree with config": (
        None,
        lambda sd: sd.__setitem__("fc.weight", sd["fc.weight"][:, :150].contiguous()),
        r"fc.weight is \[64, 150\], expected \[64, 192\]",
    ),
    "d2t out of range": (None, lambda sd: sd["d2t"].__setitem__(0, 5000), "outside the target vocabulary"),
    "no d2t": (None, lambda sd: sd.pop("d2t"), "no d2t mapping"),
    "aux layer out of range": (
        lambda c: c.__setitem__("eagle_aux_hidden_state_layer_ids", [0, 1, 7]),
        None,
        r"do not fit the target's 2 layers",
    ),
    "two aux layers": (lambda c: c.__setitem__("eagle_aux_hidden_state_layer_ids", [0, 1]), None, "fuses 3 target layers"),
    "unknown weight": (None, lambda sd: sd.__setitem__("layers.0.extra.weight", torch.zeros(2)), "unknown weights layers.0.extra.weight"),
    "no layer config": (lambda c: c.pop("transformer_layer_config"), None, "without transformer_layer_config"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_checkpoints_fail_with_a_clear_message(case, tmp_path):
    tgt = load("llama")
    path, _ = saved(tmp_path, tgt, draft_vocab=list(range(100)))
    config, weights, msg = BROKEN[case]
    _edit(path, config, weights)
    with pytest.raises(errors.ModelLoadError, match="cannot load EAGLE-3 head .*" + msg):
        make_drafter(path, tgt)


def test_a_zero_embedding_placeholder_is_not_used(tmp_path):
    """speculators 0.9 loads a head that stores no embed_tokens and saves it again with an all-zero
    one (a placeholder it never filled; seen with the coder head: tau 1.88 -> 1.34 at a chain of 3).
    The loader takes the target's embeddings instead, with a warning, so the proposals are the head's
    as first saved (red when the zeros are used); its variants of the head's computation that this
    loader does not implement are refused by name."""
    tgt = load("llama")
    path, _ = saved(tmp_path, tgt, draft_vocab=list(range(100)))
    spec = DraftSpec("chain", gamma=3)
    ref = drafted(generate(tgt, PROMPT, None, make_drafter(path, tgt), spec, max_new_tokens=8))
    emb = tgt.model.get_input_embeddings().weight
    _edit(path, weights=lambda sd: sd.__setitem__("embed_tokens.weight", torch.zeros(tuple(emb.shape))))
    with pytest.warns(UserWarning, match="embed_tokens.weight is all zeros"):
        d = make_drafter(path, tgt)
    assert d.head.embed_tokens is None and d.head.config.meta["embed_tokens_ignored"] == "all zeros"
    assert drafted(generate(tgt, PROMPT, None, d, spec, max_new_tokens=8)) == ref
    for flag in ("norm_before_fc", "fc_norm", "norm_output"):
        _edit(path, config=lambda c: c.update({flag: True}))
        with pytest.raises(errors.ModelLoadError, match=f"{flag} heads .* not supported"):
            make_drafter(path, tgt)
        _edit(path, config=lambda c: c.update({flag: False}))


def test_not_an_eagle3_directory(tmp_path):
    tgt = load("llama")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert not is_eagle3_dir(str(tmp_path))
    with pytest.raises(errors.ModelLoadError, match="not an EAGLE-3 head"):
        make_drafter(f"eagle3:{tmp_path}", tgt)


# ---------------------------------------------------------------------------------------------
def test_export_round_trip(tmp_path, capsys):
    """``python -m core export``: speculators and SpecForge copies of a head with every field
    explicit, loading to the same proposals; a second export into the same directory is refused."""
    from core.__main__ import main

    tgt = load("qwen2_vl")
    img = image_for(tgt)
    src, _ = saved(tmp_path, tgt, name="src", draft_vocab=list(range(2, 400, 3)), norm_before_residual=True)
    out = str(tmp_path / "spec")
    assert main(["export", "--drafter", src, "--format", "speculators", out, "--verifier", "org/target", "--speculative-tokens", "5"]) == 0
    cfg = json.loads(open(os.path.join(out, "config.json")).read())
    assert cfg["speculators_model_type"] == "eagle3" and cfg["architectures"] == ["Eagle3Speculator"]
    assert cfg["norm_before_residual"] is True and cfg["target_hidden_size"] == 64
    assert cfg["eagle_aux_hidden_state_layer_ids"] == [2, 1, 0] and cfg["draft_vocab_size"] == 133
    sc = cfg["speculators_config"]
    assert sc["algorithm"] == "eagle3" and sc["default_proposal_method"] == "greedy"
    assert sc["proposal_methods"][0] == {
        "proposal_type": "greedy",
        "speculative_tokens": 5,
        "verifier_accept_k": 1,
        "accept_tolerance": 0.0,
    }
    assert sc["verifier"]["name_or_path"] == "org/target"
    assert sc["verifier"]["architectures"] == ["Qwen2VLForConditionalGeneration"]
    lc = cfg["transformer_layer_config"]
    assert lc["num_hidden_layers"] == 1 and lc["vocab_size"] == 400 and lc["hidden_size"] == 64
    sf = str(tmp_path / "sf")
    assert main(["export", "--drafter", out, "--format", "specforge", sf]) == 0
    spec = DraftSpec("dynamic", depth=3, top_k=3, budget=8)
    ref = drafted(generate(tgt, PROMPT, img, make_drafter(src, tgt), spec, max_new_tokens=8))
    for p in (out, sf):
        assert drafted(generate(tgt, PROMPT, img, make_drafter(p, tgt), spec, max_new_tokens=8)) == ref, p
    half = str(tmp_path / "half")  # bfloat16 weights: half the bytes, proposals of the same head
    assert main(["export", "--drafter", src, half, "--dtype", "bfloat16"]) == 0
    assert json.loads(open(os.path.join(half, "config.json")).read())["torch_dtype"] == "bfloat16"
    from safetensors import safe_open

    with safe_open(os.path.join(half, "model.safetensors"), "pt") as f:
        kinds = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert "BF16" in kinds and "F32" not in kinds
    assert os.path.getsize(os.path.join(half, "model.safetensors")) < 0.6 * os.path.getsize(os.path.join(out, "model.safetensors"))
    capsys.readouterr()
    assert main(["export", "--drafter", src, out]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert main(["export", "--drafter", str(tmp_path), str(tmp_path / "x")]) == 2  # no head there
    assert "holds no EAGLE-3 head" in capsys.readouterr().err


def test_replay_scores_like_the_live_run(tmp_path):
    """The replay drives the drafter without target forwards: the aux rows are found in the
    recording's forwards; same tau as a real run."""
    from core import replay

    tgt = load("llava")
    img = image_for(tgt)
    path, _ = saved(tmp_path, tgt, aux_layer_ids=[1, 2, 0])
    d = make_drafter(path, tgt)
    spec = DraftSpec("chain", gamma=3)
    live = generate(tgt, PROMPT, img, d, spec, max_new_tokens=10)
    rec = replay.record(tgt, PROMPT, img, output=list(live.output))
    res = replay.replay(rec, d, spec)
    assert res["matches_recording"] and res["tau"] == pytest.approx(live.summary()["tau"], abs=1e-3)
    assert res["verify_sizes"] == [1 + len(s.tokens) for s in live.steps]


def test_hooks_are_removed(tmp_path):
    tgt = load("llama")
    layer = tgt.text_module().layers[1]
    before = len(layer._forward_pre_hooks)
    path, _ = saved(tmp_path, tgt, aux_layer_ids=[0, 1, 2])
    d = make_drafter(path, tgt)
    assert len(layer._forward_pre_hooks) == before + 1
    d.close()
    assert len(layer._forward_pre_hooks) == before
    d2 = make_drafter(path, tgt)
    del d2
    import gc

    gc.collect()
    assert len(layer._forward_pre_hooks) == before


# ---------------------------------------------------------------------------------------------
# training: python -m tools.train eagle3


def test_ttt_steps_compute_what_drafting_computes():
    """Training-time test step j at query t equals drafting depth j + 1 below the root x_{t+1}:
    the head's own output fed back one position on (rope t + j), attending the real pairs up to t
    and its own chain. Checked against ``head.step`` with the cache of pairs <= t, as drafting."""
    from tools.train.eagle3 import AuxTaps, target_features, ttt_loss

    tgt = load("llava")
    head = new_head(tgt, aux_layer_ids=[0, 1, 2], seed=4)
    taps = AuxTaps(tgt, [0, 1, 2])
    try:
        f = target_features(tgt, taps, {"prompt": "hello world", "image": None, "answer": "one two three four"})
    finally:
        taps.remove()
    outs = []
    with torch.no_grad():
        ttt_loss(head, tgt, f, 3, outputs=outs)
        ids = f["ids"]
        emb = tgt.model.get_input_embeddings()
        g = head.features(f["aux"][:-1])
        n = g.shape[0]
        x = head.fuse(emb(ids[1:]).float(), g)
        kv = [None, None]
        mask = torch.full((n, n), torch.finfo(g.dtype).min).triu(1).view(1, 1, n, n)
        h0 = head.step(x.unsqueeze(0), torch.arange(n).view(1, -1), mask, kv)[0]
        assert torch.allclose(outs[0], h0, atol=1e-5)
        for t in (0, 3, n - 4):
            cache = [kv[0][..., : t + 1, :], kv[1][..., : t + 1, :]]
            h = h0[t : t + 1]
            for j in (1, 2):  # depth j + 1: token x_{t+1+j} at rope t + j
                xin = head.fuse(emb(ids[t + 1 + j : t + 2 + j]).float(), h)
                h = head.step(xin.unsqueeze(0), torch.tensor([[t + j]]), None, cache)[0]
                assert torch.allclose(outs[j][t], h[0], atol=1e-5), (t, j)


def test_ttt_loss_learns():
    from tools.train.eagle3 import AuxTaps, target_features, ttt_loss

    tgt = load("llama")
    head = new_head(tgt, draft_vocab=list(range(0, 400, 2)), aux_layer_ids=[0, 1, 2], seed=0)
    taps = AuxTaps(tgt, [0, 1, 2])
    try:
        f = target_features(tgt, taps, {"prompt": "hello", "image": None, "answer": "a b c d e f g"})
    finally:
        taps.remove()
    f["logits"] = f["logits"] * 300  # the tiny random target is near-uniform: make it decided
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss, acc = ttt_loss(head, tgt, f, 2)
        first = first if first is not None else (loss.item(), acc)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first[1] == [0.0, 0.0] and loss.item() < 0.2 * first[0] and min(acc) >= 0.8


def test_train_command_smoke_and_resume(tmp_path):
    """A few steps on a tiny target with self-distilled answers: progress logged, checkpoint,
    resume, a draft vocabulary of the most frequent tokens, a head that loads and decodes
    losslessly."""
    from tools.train.__main__ import main

    tgt = load("llava")
    tiny_image().save(tmp_path / "img.png")
    rows = [
        {"image": None, "prompt": "hello world"},
        {"image": "img.png", "prompt": "Describe the picture."},
        {"image": None, "prompt": "count to three"},
    ]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out, run = str(tmp_path / "head"), tmp_path / "run"
    common = [
        "eagle3",
        "--target",
        tgt.name,
        "--data",
        str(tmp_path / "data.jsonl"),
        "--out",
        out,
        "--run-dir",
        str(run),
        "--batch",
        "2",
        "--ttt",
        "2",
        "--draft-vocab",
        "8",
        "--vocab-samples",
        "6",
        "--answer-tokens",
        "6",
        "--threads",
        "1",
        "--aux-layers",
        "2,0,1",
    ]
    torch.set_num_threads(1)
    assert main(common + ["--steps", "2"]) == 0
    assert (run / "ckpt.pt").exists()
    assert main(common + ["--steps", "3", "--resume"]) == 0
    logtxt = (run / "log.txt").read_text()
    assert "resuming from step 2" in logtxt and "step 3 loss" in logtxt and "saved" in logtxt
    voc = json.loads((run / "vocab.json").read_text())
    chosen, counts = voc["draft_to_target"], {int(k): v for k, v in voc["counts"].items()}
    assert len(chosen) == 8 and len(counts) > 8
    low = min(counts.get(t, 0) for t in chosen[1:])  # chosen[0]: EOS, always in
    assert all(c <= low for t, c in counts.items() if t not in chosen)
    d = make_drafter(out, tgt)
    cfg = json.loads(open(os.path.join(out, "config.json")).read())
    assert cfg["specscope"]["steps"] == 3 and cfg["eagle_aux_hidden_state_layer_ids"] == [2, 0, 1]
    img = tiny_image()
    ar = generate(tgt, PROMPT, img, max_new_tokens=8)
    assert generate(tgt, PROMPT, img, d, DraftSpec("chain", gamma=3), max_new_tokens=8).output == ar.output


def test_train_curriculum_and_reuse(tmp_path):
    """MSD's two-stage curriculum (--text-frac: text-only first) and --reuse (each distilled sample
    used about that many times): the log shows the multimodal share and fewer fresh samples than
    samples trained on; the head loads."""
    from tools.train.__main__ import main
    from tools.train.msd import curriculum

    assert curriculum(0.1, 0.25) == 0.0 and curriculum(0.625, 0.25) == 0.5 and curriculum(1.0, 0.25) == 1.0
    tgt = load("llava")
    tiny_image().save(tmp_path / "img.png")
    rows = [{"image": None, "prompt": "hello world"}, {"image": "img.png", "prompt": "Describe the picture."}]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out, run = str(tmp_path / "head"), tmp_path / "run"
    args = ["eagle3", "--target", tgt.name, "--data", str(tmp_path / "data.jsonl"), "--out", out, "--run-dir", str(run)]
    args += ["--batch", "4", "--reuse", "4", "--ttt", "2", "--draft-vocab", "16", "--vocab-samples", "4"]
    args += ["--answer-tokens", "4", "--threads", "1", "--aux-layers", "2,0,1", "--text-frac", "0.5", "--steps", "3"]
    args += ["--distill-drafter", "ngram"]  # distilled speculatively: the same answers
    torch.set_num_threads(1)
    assert main(args) == 0
    lines = [ln for ln in (run / "log.txt").read_text().splitlines() if " loss " in ln]
    assert len(lines) == 3 and all("p_mm 0.00" in ln for ln in lines)  # --steps: elapsed share ~0, text-only
    assert lines[-1].split("fresh ")[1].split()[0] == "6"  # 4 fresh, then 1 per step
    cfg = json.loads(open(os.path.join(out, "config.json")).read())
    assert cfg["specscope"]["steps"] == 3 and cfg["specscope"]["answer_tokens_seen"] > 0
    make_drafter(out, tgt).close()


def test_init_from_target(tmp_path):
    """--init-from-target: the head's lm_head is the target's rows of the draft vocabulary and its
    norm the target's final norm, so on the target's own last hidden state (before the final norm)
    the head's logits are the target's over the draft vocabulary; another hidden size is refused."""
    from tools.train.__main__ import main
    from tools.train.eagle3 import AuxTaps, init_from_target, target_features

    tgt = load("llama")
    vocab = list(range(3, 400, 3))
    head = new_head(tgt, draft_vocab=vocab, aux_layer_ids=[0, 1, 2], seed=0)
    init_from_target(head, tgt)
    lm, norm = tgt.model.get_output_embeddings().weight, tgt.text_module().norm.weight
    assert torch.equal(head.lm_head.weight, lm[vocab]) and torch.equal(head.norm.weight, norm)
    L = len(tgt.text_module().layers)
    taps = AuxTaps(tgt, [L, L, L])
    try:
        f = target_features(tgt, taps, {"prompt": "hello", "image": None, "answer": "a b c"})
    finally:
        taps.remove()
    H = head.config.hidden_size
    with torch.no_grad():
        assert torch.allclose(head.logits(f["aux"][:, :H]), f["logits"][:, vocab], atol=1e-4)
    with pytest.raises(ValueError, match="hidden size 32 differs"):
        init_from_target(new_head(tgt, hidden_size=32, aux_layer_ids=[0, 1, 2]), tgt)
    # the train command: the saved head (no step taken) holds the target's rows
    (tmp_path / "d.jsonl").write_text(json.dumps({"image": None, "prompt": "hello", "answer": "a b c"}) + "\n")
    out = tmp_path / "head"
    args = ["eagle3", "--target", tgt.name, "--data", str(tmp_path / "d.jsonl"), "--out", str(out), "--run-dir", str(tmp_path / "run")]
    args += ["--no-distill", "--draft-vocab", "16", "--vocab-samples", "2", "--aux-layers", "0,1,2", "--minutes", "0", "--threads", "1"]
    assert main(args + ["--init-from-target"]) == 0
    saved = Eagle3Head.load(str(out))
    assert torch.equal(saved.lm_head.weight, lm[saved.draft_to_target()]) and torch.equal(saved.norm.weight, norm)
    with pytest.raises(SystemExit):
        main(args + ["--init-from-target", "--hidden-size", "32"])


def test_init_head_continues_a_trained_head_on_another_draft_vocabulary(tmp_path):
    """--init-head: training continues from a saved head; every weight is copied, lm_head rows are
    matched by target id (a new run's draft vocabulary is not the old one's order), rows the old
    head lacked keep their init; another size or other aux layers are refused."""
    from tools.train.__main__ import main
    from tools.train.eagle3 import init_from_head

    tgt = load("llama")
    old_path, old = saved(tmp_path, tgt, "old", draft_vocab=list(range(0, 300, 3)), aux_layer_ids=[0, 1, 2], seed=5)
    old = Eagle3Head.load(old_path, dtype=torch.float32)
    new_vocab = list(range(150, 400, 3)) + [1, 2]  # half the old ids, elsewhere; the rest new
    head = new_head(tgt, draft_vocab=new_vocab, aux_layer_ids=[0, 1, 2], seed=6)
    before = head.lm_head.weight.clone()
    assert init_from_head(head, old) == 50  # 150..297
    assert torch.equal(head.fc.weight, old.fc.weight) and torch.equal(head.norm.weight, old.norm.weight)
    for j, tid in enumerate(new_vocab):
        want = old.lm_head.weight[tid // 3] if tid < 300 and tid % 3 == 0 else before[j]
        assert torch.equal(head.lm_head.weight[j], want), tid
    with pytest.raises(ValueError, match="reads layers"):
        init_from_head(new_head(tgt, draft_vocab=new_vocab, aux_layer_ids=[1, 1, 2]), old)
    with pytest.raises(ValueError, match="same sizes"):
        init_from_head(new_head(tgt, draft_vocab=new_vocab, aux_layer_ids=[0, 1, 2], intermediate_size=8), old)
    # the train command: the saved head (no step taken) is the old one where they share ids
    (tmp_path / "d.jsonl").write_text(json.dumps({"image": None, "prompt": "hello", "answer": "a b c"}) + "\n")
    out = tmp_path / "head"
    args = ["eagle3", "--target", tgt.name, "--data", str(tmp_path / "d.jsonl"), "--out", str(out), "--run-dir", str(tmp_path / "run")]
    args += ["--no-distill", "--draft-vocab", "16", "--vocab-samples", "2", "--aux-layers", "0,1,2", "--minutes", "0", "--threads", "1"]
    assert main(args + ["--init-head", old_path]) == 0
    got = Eagle3Head.load(str(out), dtype=torch.float32)
    assert torch.equal(got.fc.weight, old.fc.weight)
    assert got.config.meta["specscope"]["continued_from"]["path"] == old_path  # the lineage is recorded
    with pytest.raises(SystemExit):
        main(args + ["--init-head", str(tmp_path / "nowhere")])


# ---------------------------------------------------------------------------------------------
SHIPPED = ASSETS / "drafters" / "eagle3"


@pytest.mark.skipif(not (DEFAULT_TARGET / "config.json").exists() or not SHIPPED.exists(), reason="no shipped head / target")
def test_shipped_head_is_lossless_with_the_default_target():
    """The head trained for the embedded target (assets/drafters/eagle3, TRAINING.md), loaded by
    its directory through the registry (the path a downloaded head takes): on held-out scenes a
    short greedy decode is identical to plain decoding for chain, dynamic tree and auto, and it
    drafts well (fewer target forwards than tokens by a wide margin)."""
    from core import api
    from tools.scenes.generator import heldout_seeds
    from tools.scenes.tasks import make_sample

    assert is_eagle3_dir(str(SHIPPED))
    pair = api.load_pair("default", str(SHIPPED))
    assert isinstance(pair.drafter, Eagle3Drafter)
    samples = [make_sample(s) for s in heldout_seeds(6, start=700)][:3]
    greedy = SamplingConfig()
    ar_fw = sp_fw = 0
    for s in samples:
        ar = api.run(pair, s["prompt"], s["image"], max_new_tokens=40, speculative=False, detail=False)
        for spec in (DraftSpec("chain", gamma=4), DraftSpec("dynamic", depth=4, top_k=4, budget=12), spec_for("auto", gamma=6)):
            sp = api.run(pair, s["prompt"], s["image"], spec, greedy, max_new_tokens=40, detail=False)
            assert sp.output == ar.output, (spec, s["prompt"])
            ar_fw += ar.summary()["target_forwards"]
            sp_fw += sp.summary()["target_forwards"]
    assert sp_fw * 2 < ar_fw, (sp_fw, ar_fw)


def test_shipped_head_for_the_real_coder_target_is_a_servable_eagle3_checkpoint():
    """The head trained for the real Qwen2.5-Coder-1.5B target (assets/drafters/eagle3_coder,
    TRAINING.md; the target itself is not in CI): a speculators checkpoint naming the Hub target as
    its verifier, vLLM's aux layers for 28 layers, bfloat16 weights, an 8192-id draft vocabulary
    mapped into the target's 151936 ids, and the assets still within their 150 MB."""
    from ui.presets import CODER_HEAD

    if not CODER_HEAD.exists():
        pytest.skip("the coder head is not shipped")
    cfg = json.loads((CODER_HEAD / "config.json").read_text())
    assert cfg["speculators_model_type"] == "eagle3" and cfg["draft_vocab_size"] == 8192
    assert cfg["speculators_config"]["verifier"]["name_or_path"] == "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    assert cfg["eagle_aux_hidden_state_layer_ids"] == [2, 14, 25] and cfg["norm_before_residual"] is False
    sd = load_file(str(CODER_HEAD / "model.safetensors"))
    assert {t.dtype for k, t in sd.items() if k not in ("d2t", "t2d")} == {torch.bfloat16}
    head = Eagle3Head.load(str(CODER_HEAD))
    ids = head.draft_to_target()
    assert ids.shape == (8192,) and int(ids.min()) >= 0 and int(ids.max()) < 151936 and len(set(ids.tolist())) == 8192
    assert int(head.t2d.sum()) == 8192 and head.config.layer.hidden_size == 1536
    size = sum(p.stat().st_size for p in CODER_HEAD.parents[1].rglob("*") if p.is_file())
    assert size < 150e6, f"assets/ holds {size / 1e6:.0f} MB"
