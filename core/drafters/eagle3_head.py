"""The EAGLE-3 head itself: its config (``Eagle3Config``, ``layer_config``), its weights under the
speculators names and its forward (``Eagle3Head``: ``fuse``, ``features``, ``step``, ``logits``),
and a new random head for a target (``new_head``, what the trainer starts from).

One decoder layer over the target's features (the MSD / EAGLE-2 head's sibling,
core/drafters/msd.py), with three differences: the target's residual stream at THREE layers
fused by ``fc`` [H, 3*Ht]; attention over 2H inputs [input_layernorm(emb); hidden_norm(h)] with
the residual h or hidden_norm(h) (``norm_before_residual``); its own ``norm`` + ``lm_head`` over
a reduced draft vocabulary (draft id j is target id ``j + d2t[j]``). Reading and writing the
files: core/drafters/eagle3_files.py; the drafter: core/drafters/eagle3.py; docs/eagle3.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .msd import MSDHead


def default_aux_layers(num_layers: int) -> list[int]:
    """vLLM's / SGLang's default aux layer ids [2, L // 2, L - 3], clamped into [0, L]."""
    return [min(max(i, 0), num_layers) for i in (2, num_layers // 2, num_layers - 3)]


# --------------------------------------------------------------------------------------
@dataclass
class Eagle3Config:
    """What a head is: its layer (a LlamaConfig: hidden size, heads, rope, ...) and the EAGLE-3
    fields around it. ``aux_layer_ids`` None: the default of the target it runs on."""

    layer: object  # transformers LlamaConfig (num_hidden_layers 1)
    draft_vocab_size: int
    target_vocab_size: int
    target_hidden_size: int
    norm_before_residual: bool = False
    aux_layer_ids: list[int] | None = None
    fc_bias: bool = True
    qk_norm: bool = False  # Qwen3 layers: RMSNorm on q and k per head
    embed: bool = False  # the head stores its own embed_tokens
    meta: dict = field(default_factory=dict)  # verifier name / architectures, our training notes

    @property
    def hidden_size(self) -> int:
        return int(self.layer.hidden_size)


def layer_config(
    text_config, hidden_size: int | None = None, intermediate_size: int | None = None, heads: int | None = None, kv_heads: int | None = None
):
    """A one-layer LlamaConfig for a new head over ``text_config`` (the target's): its rope base
    and vocabulary, a plain (1-D) rope whatever the target's (M-RoPE and the like are reduced to
    the default type: the head numbers its own positions)."""
    from transformers import LlamaConfig

    c = text_config
    h = hidden_size or c.hidden_size
    heads = heads or c.num_attention_heads
    rope = dict(getattr(c, "rope_parameters", None) or {})
    theta = rope.get("rope_theta", getattr(c, "rope_theta", 10000.0))
    kind = rope.get("rope_type", "default")
    if kind not in ("default", "linear", "dynamic", "llama3", "yarn"):
        rope = {"rope_type": "default", "rope_theta": theta}
    rope = {k: v for k, v in rope.items() if k not in ("mrope_section", "mrope_interleaved")}
    rope.setdefault("rope_type", "default")
    rope["rope_theta"] = theta
    cfg = LlamaConfig(
        hidden_size=h,
        intermediate_size=intermediate_size or c.intermediate_size,
        num_hidden_layers=1,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or getattr(c, "num_key_value_heads", heads) or heads,
        head_dim=h // heads,
        max_position_embeddings=c.max_position_embeddings,
        rms_norm_eps=c.rms_norm_eps,
        vocab_size=c.vocab_size,
        hidden_act="silu",
        rope_parameters=rope,
        tie_word_embeddings=False,
    )
    return cfg


class _Attention(nn.Module):
    def __init__(self, cfg, qk_norm: bool):
        super().__init__()
        h, d = cfg.hidden_size, cfg.head_dim
        nq, nk = cfg.num_attention_heads, cfg.num_key_value_heads
        bias = bool(getattr(cfg, "attention_bias", False))
        self.head_dim, self.nq, self.nk = d, nq, nk
        self.q_proj = nn.Linear(2 * h, nq * d, bias=bias)
        self.k_proj = nn.Linear(2 * h, nk * d, bias=bias)
        self.v_proj = nn.Linear(2 * h, nk * d, bias=bias)
        self.o_proj = nn.Linear(nq * d, h, bias=False)
        if qk_norm:
            self.q_norm = _RMSNorm(d, cfg.rms_norm_eps)
            self.k_norm = _RMSNorm(d, cfg.rms_norm_eps)


class _RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps


class _MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, i = cfg.hidden_size, cfg.intermediate_size
        bias = bool(getattr(cfg, "mlp_bias", False))
        self.gate_proj = nn.Linear(h, i, bias=bias)
        self.up_proj = nn.Linear(h, i, bias=bias)
        self.down_proj = nn.Linear(i, h, bias=bias)


class _Layer(nn.Module):
    def __init__(self, cfg, qk_norm: bool):
        super().__init__()
        h, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.input_layernorm = _RMSNorm(h, eps)
        self.hidden_norm = _RMSNorm(h, eps)
        self.post_attention_layernorm = _RMSNorm(h, eps)
        self.self_attn = _Attention(cfg, qk_norm)
        self.mlp = _MLP(cfg)


class Eagle3Head(nn.Module):
    """The head's weights under the speculators names, and its forward (``step``)."""

    _rope = MSDHead._rope  # the cos / sign-folded sin table of the MSD head (same rope)

    def __init__(self, config: Eagle3Config):
        super().__init__()
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        self.config = config
        lc = config.layer
        lc._attn_implementation = "sdpa"
        h = config.hidden_size
        self.fc = nn.Linear(3 * config.target_hidden_size, h, bias=config.fc_bias)
        self.layers = nn.ModuleList([_Layer(lc, config.qk_norm)])
        self.norm = _RMSNorm(h, lc.rms_norm_eps)
        self.lm_head = nn.Linear(h, config.draft_vocab_size, bias=False)
        self.embed_tokens = nn.Embedding(config.target_vocab_size, h) if config.embed else None
        self.register_buffer("d2t", torch.zeros(config.draft_vocab_size, dtype=torch.long))
        self.register_buffer("t2d", torch.zeros(config.target_vocab_size, dtype=torch.bool))
        self.rotary = LlamaRotaryEmbedding(lc)
        self.act = _act(getattr(lc, "hidden_act", "silu"))
        if config.draft_vocab_size == config.target_vocab_size:
            self.t2d.fill_(True)  # identity mapping: d2t all zeros

    # ---- vocabulary --------------------------------------------------------------
    def set_vocab(self, draft_to_target: torch.Tensor) -> None:
        """Draft id j -> target id ``draft_to_target[j]`` (distinct ids of the target vocab)."""
        ids = torch.as_tensor(draft_to_target, dtype=torch.long)
        if ids.numel() != self.config.draft_vocab_size or len(set(ids.tolist())) != ids.numel():
            raise ValueError(f"need {self.config.draft_vocab_size} distinct target ids, got {ids.numel()}")
        self.d2t.copy_(ids - torch.arange(ids.numel()))
        self.t2d.zero_()
        self.t2d[ids] = True

    def draft_to_target(self) -> torch.Tensor:
        return torch.arange(self.config.draft_vocab_size, device=self.d2t.device) + self.d2t

    # ---- forward -----------------------------------------------------------------
    def fuse(
        self, tok_emb: torch.Tensor, feat: torch.Tensor, visual: torch.Tensor | None = None, is_visual: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The layer's input [emb; h]: ``feat`` is an H-vector (the target's fused features, or the
        head's own output one depth up). At image positions (``is_visual``) the token embedding is
        the target's merged visual embedding, as a VLM target's own input there."""
        if visual is not None and is_visual is not None and bool(is_visual.any()) and visual.shape[-1] == tok_emb.shape[-1]:
            tok_emb = torch.where(is_visual.unsqueeze(-1), visual.to(tok_emb.dtype), tok_emb)
        return torch.cat([tok_emb, feat.to(tok_emb.dtype)], dim=-1)

    def features(self, aux: torch.Tensor) -> torch.Tensor:
        """(n, 3*Ht) aux hidden states (low | mid | high) -> (n, H) fused features."""
        return self._lin("fc", aux.to(self.fc.weight.dtype), self.fc.weight, self.fc.bias)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Draft-vocabulary logits of the layer's outputs (before ``norm``)."""
        hn = F.rms_norm(h, (h.shape[-1],), self.norm.weight.to(h.dtype), self.norm.eps)
        return self._lin("lm_head", hn, self.lm_head.weight.to(h.dtype), None)

    # ---- the products' paths (core.kernels) ---------------------------------------
    def linears(self) -> nn.ModuleDict:
        """The head's inference products as ``nn.Linear`` modules over its weights (shared; q|k|v and
        gate|up packed as ``step`` runs them): fc, qkv, o, gu, down, lm_head. ``core.kernels.accelerate``
        puts each on the path measured fastest; ``use_products`` makes the forward run through them."""
        with torch.no_grad():
            P = self._weights(self.fc.weight.dtype)
        pairs = {
            "fc": (self.fc.weight, self.fc.bias),
            "qkv": (P["wqkv"], P["bqkv"]),
            "o": (P["wo"], None),
            "gu": (P["wgu"], P["bgu"]),
            "down": (P["wd"], P["bd"]),
            "lm_head": (self.lm_head.weight, None),
        }
        mods = nn.ModuleDict({k: _linear(w, b) for k, (w, b) in pairs.items()})
        # fc reads the target's residual streams as they are, massive channels and all: no path
        # with one input scale per call for it (core.kernels.fit_paths)
        mods["fc"].raw_inputs = True
        return mods

    def use_products(self, mods: nn.ModuleDict | None) -> None:
        """At inference (no grad), run ``features``, ``step`` and ``logits`` through ``mods`` (from
        ``linears``, paths chosen by core.kernels); None: plain ``F.linear``. Set by the drafter that
        loaded the head (core/drafters/eagle3.py); a head being trained never has them. Kept out of
        the module tree, so ``state_dict`` and ``save`` see the head's own weights only."""
        self.__dict__["_products"] = mods

    def _lin(self, name: str, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        mods = self.__dict__.get("_products")
        if mods is not None and not torch.is_grad_enabled():
            return mods[name](x)
        return F.linear(x, w, b)

    def step(self, x: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor | None, kv: list) -> torch.Tensor:
        """The layer over ``x`` (1, n, 2H) = [emb; h]; returns its output (1, n, H), before the final
        norm (what deeper draft steps feed back). ``kv = [k, v]``: the key / value cache, appended
        in place (``[None, None]`` to start one); ``attention_mask``: additive float
        (1, 1, n, cached + n) or None (no mask: every cached key and the new ones). Plain torch
        with packed weights at inference (per-operator costs dominate one-row draft steps on a
        CPU, as in ``MSDHead.step``); differentiable when grad is enabled (training)."""
        P = self._weights(x.dtype)
        n, H = x.shape[1], self.config.hidden_size
        nq, nk, d, eps = P["nq"], P["nk"], P["d"], P["eps"]
        emb, hid = x[..., :H], x[..., H:]
        normed = F.rms_norm(hid, (H,), P["hidden_norm"], eps)
        residual = normed if self.config.norm_before_residual else hid
        a = torch.cat([F.rms_norm(emb, (H,), P["input_norm"], eps), normed], dim=-1)
        qkv = self._lin("qkv", a, P["wqkv"], P["bqkv"]).view(n, nq + 2 * nk, d)
        qk = qkv[:, : nq + nk]
        if P["q_norm"] is not None:
            qk = torch.cat([F.rms_norm(qk[:, :nq], (d,), P["q_norm"], eps), F.rms_norm(qk[:, nq:], (d,), P["k_norm"], eps)], dim=1)
        cos, sin = self._rope(int(position_ids.max()) + 1, x.dtype)
        pos = position_ids.view(-1)
        cos, sin = cos[pos].unsqueeze(1), sin[pos].unsqueeze(1)  # (n, 1, d)
        qk = qk * cos + qk.roll(d // 2, -1) * sin  # rotate_half as a roll
        q = qk[:, :nq].transpose(0, 1).unsqueeze(0)
        k = qk[:, nq:].transpose(0, 1).unsqueeze(0)
        v = qkv[:, nq + nk :].transpose(0, 1).unsqueeze(0)
        if kv[0] is not None:
            k, v = torch.cat([kv[0], k], dim=2), torch.cat([kv[1], v], dim=2)
        kv[0], kv[1] = k, v
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, scale=d**-0.5, enable_gqa=nq != nk)
        x = residual + self._lin("o", o.transpose(1, 2).reshape(1, n, nq * d), P["wo"], None)
        h = F.rms_norm(x, (H,), P["post_norm"], eps)
        g, u = self._lin("gu", h, P["wgu"], P["bgu"]).chunk(2, dim=-1)
        return x + self._lin("down", self.act(g) * u, P["wd"], P["bd"])

    def _weights(self, dtype) -> dict:
        """The layer's weights, q|k|v and gate|up packed: cached under no-grad (drafting), rebuilt
        with grad each call while training."""
        layer = self.layers[0]
        a, m = layer.self_attn, layer.mlp
        if torch.is_grad_enabled() and a.q_proj.weight.requires_grad:
            return self._pack_weights(dtype)
        key = (dtype, a.q_proj.weight.data_ptr(), a.q_proj.weight._version, m.down_proj.weight._version)
        if getattr(self, "_pack", None) is None or self._pack["key"] != key:
            with torch.no_grad():
                self._pack = self._pack_weights(dtype)
            self._pack["key"] = key
            self._rope_table = None
        return self._pack

    def _pack_weights(self, dtype) -> dict:
        layer = self.layers[0]
        a, m = layer.self_attn, layer.mlp

        def cat(*ts):
            return None if ts[0] is None else torch.cat(ts).to(dtype)

        def w(t):
            return None if t is None else t.to(dtype)

        qn = getattr(a, "q_norm", None)
        return dict(
            d=a.head_dim,
            nq=a.nq,
            nk=a.nk,
            eps=layer.post_attention_layernorm.eps,
            input_norm=w(layer.input_layernorm.weight),
            hidden_norm=w(layer.hidden_norm.weight),
            post_norm=w(layer.post_attention_layernorm.weight),
            q_norm=None if qn is None else w(qn.weight),
            k_norm=None if qn is None else w(a.k_norm.weight),
            wqkv=cat(a.q_proj.weight, a.k_proj.weight, a.v_proj.weight),
            bqkv=cat(a.q_proj.bias, a.k_proj.bias, a.v_proj.bias),
            wo=w(a.o_proj.weight),
            wgu=cat(m.gate_proj.weight, m.up_proj.weight),
            bgu=cat(m.gate_proj.bias, m.up_proj.bias),
            wd=w(m.down_proj.weight),
            bd=w(m.down_proj.bias),
        )

    # ---- files (core/drafters/eagle3_files.py) ----------------------------------------
    def save(self, path: str, fmt: str = "speculators", extra: dict | None = None) -> None:
        """Write ``config.json`` + ``model.safetensors`` in the speculators layout (``fmt``
        "speculators", what vLLM loads) or SpecForge's (``fmt`` "specforge"). ``extra``: notes kept
        under the config's ``specscope`` key (ignored by other readers)."""
        from .eagle3_files import save_head

        save_head(self, path, fmt, extra)

    @classmethod
    def load(cls, path: str, dtype=torch.float32) -> Eagle3Head:
        """A head in the speculators or SpecForge layout (local directory or Hub id). Raises
        ValueError naming what is wrong with a broken checkpoint."""
        from .eagle3_files import load_head

        return load_head(cls, path, dtype)


def _linear(w: torch.Tensor, b: torch.Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` over existing weights (shared, not copied)."""
    m = nn.Linear(1, 1, bias=False)
    m.in_features, m.out_features = w.shape[1], w.shape[0]
    m.weight = nn.Parameter(w.detach(), requires_grad=False)
    m.bias = None if b is None else nn.Parameter(b.detach(), requires_grad=False)
    return m


def _act(name: str):
    from transformers.activations import ACT2FN

    return ACT2FN[name]


def new_head(
    target,
    hidden_size: int | None = None,
    draft_vocab: list[int] | None = None,
    aux_layer_ids: list[int] | None = None,
    norm_before_residual: bool = False,
    intermediate_size: int | None = None,
    own_embeddings: bool | None = None,
    fc_bias: bool = True,
    seed: int | None = None,
) -> Eagle3Head:
    """A new (random) head for ``target``: its layer sized like the target's (or ``hidden_size``),
    draft vocabulary ``draft_vocab`` (target ids; default the whole vocabulary), the target's
    default aux layers unless given. ``own_embeddings``: store embed_tokens (default: only when
    the head's hidden size differs from the target's). Records the target as the verifier."""
    tc = getattr(target.model.config, "text_config", None) or target.model.config
    th = target.model.get_input_embeddings().embedding_dim
    h = hidden_size or th
    heads = tc.num_attention_heads if h == th else max(1, h // (th // tc.num_attention_heads))
    kv = getattr(tc, "num_key_value_heads", None) or tc.num_attention_heads
    kv = kv if h == th and heads % kv == 0 else heads
    layer = layer_config(
        tc, hidden_size=h, heads=heads, kv_heads=kv, intermediate_size=intermediate_size or (tc.intermediate_size if h == th else 4 * h)
    )
    layer.vocab_size = target.vocab_size
    vocab = list(range(target.vocab_size)) if draft_vocab is None else list(draft_vocab)
    n_layers = len(target.text_module().layers)
    arch = list(getattr(target.model.config, "architectures", None) or [type(target.model).__name__])
    cfg = Eagle3Config(
        layer=layer,
        draft_vocab_size=len(vocab),
        target_vocab_size=target.vocab_size,
        target_hidden_size=th,
        norm_before_residual=norm_before_residual,
        aux_layer_ids=list(aux_layer_ids) if aux_layer_ids else default_aux_layers(n_layers),
        fc_bias=fc_bias,
        embed=(h != th) if own_embeddings is None else own_embeddings,
        meta={"verifier": getattr(target, "name", None), "verifier_architectures": arch},
    )
    if seed is not None:
        torch.manual_seed(seed)
    head = Eagle3Head(cfg)
    with torch.no_grad():
        for name, p in head.named_parameters():
            if name.endswith("norm.weight"):
                continue
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02 if name != "fc.weight" else (1.0 / p.shape[1]) ** 0.5)
            else:
                p.zero_()
        if head.embed_tokens is not None:
            head.embed_tokens.weight.copy_(_resize(target.model.get_input_embeddings().weight.float(), h))
    head.set_vocab(torch.tensor(vocab))
    return head


def _resize(w: torch.Tensor, h: int) -> torch.Tensor:
    """The target's embeddings in the head's width (a fixed random projection when they differ)."""
    if w.shape[1] == h:
        return w.clone()
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(w.shape[1], h, generator=g) / w.shape[1] ** 0.5
    return w @ proj
