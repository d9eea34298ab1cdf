"""EAGLE-3 draft heads: the speculators layout (vLLM), SpecForge's names, and the drafter.

An EAGLE-3 head is ONE decoder layer over the target's features, like the MSD / EAGLE-2 head of
core/drafters/msd.py (its sibling: this drafter reuses that one's cache handling, tree growing
and commit logic), with three differences:

* features: the target's residual stream at THREE layers (low, mid, high), concatenated and
  fused by ``fc`` [H, 3*Ht] into one H-vector per position (Ht: the target's hidden size).
  Layer ids follow vLLM: id i is the hidden state entering decoder layer i (0 = the input
  embeddings, L = the last layer's output before the final norm). Default when a checkpoint
  names none: [2, L // 2, L - 3] (vLLM / SGLang), clamped into [0, L] for tiny targets.
* the layer's attention reads 2H inputs: [input_layernorm(emb(token)); hidden_norm(h)]; the
  residual is h (``norm_before_residual`` false, speculators' default) or hidden_norm(h) (true).
* its own ``norm`` + ``lm_head`` over a reduced draft vocabulary; draft id j is target id
  ``j + d2t[j]`` (``t2d`` marks the target ids the draft vocabulary holds).

Drafting deeper than one token feeds the layer's own output (before ``norm``) back as h, with no
``fc``: only the target's features are fused.

The target's aux hidden states: the engine hands a drafter the last hidden state only, so the
drafter taps the target's decoder layers with forward pre-hooks (``AuxTaps``) and finds, for the
rows the engine hands over (prefill in ``begin``, the kept rows in ``commit``), the same rows of
the tapped forward. The engine is never edited and never asked for more.

Files: ``config.json`` + ``model.safetensors``. Speculators layout (speculators 0.8/0.9, what
vLLM loads): ``speculators_model_type: "eagle3"``, ``transformer_layer_config``,
``draft_vocab_size``, ``norm_before_residual``, ``target_hidden_size``,
``eagle_aux_hidden_state_layer_ids``, ``speculators_config``; weights ``fc.*``, ``layers.0.*``,
``norm.weight``, ``lm_head.weight``, ``d2t``, ``t2d`` and optionally ``embed_tokens.weight``.
SpecForge layout: a LlamaConfig with ``draft_vocab_size`` (+ ``eagle_config``), the layer
named ``midlayer.*``, aux ids given as "output of layer i" (SGLang adds 1 when capturing).
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from .base import DraftContext, draft_dtype
from .msd import MSDDrafter, MSDHead, _read_weights, fetch

SPECULATORS_VERSION = "0.9.0"


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
        return self.fc(aux.to(self.fc.weight.dtype))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Draft-vocabulary logits of the layer's outputs (before ``norm``)."""
        hn = F.rms_norm(h, (h.shape[-1],), self.norm.weight.to(h.dtype), self.norm.eps)
        return F.linear(hn, self.lm_head.weight.to(h.dtype))

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
        qkv = F.linear(a, P["wqkv"], P["bqkv"]).view(n, nq + 2 * nk, d)
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
        x = residual + F.linear(o.transpose(1, 2).reshape(1, n, nq * d), P["wo"])
        h = F.rms_norm(x, (H,), P["post_norm"], eps)
        g, u = F.linear(h, P["wgu"], P["bgu"]).chunk(2, dim=-1)
        return x + F.linear(self.act(g) * u, P["wd"], P["bd"])

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

    # ---- files -------------------------------------------------------------------
    def save(self, path: str, fmt: str = "speculators", extra: dict | None = None) -> None:
        """Write ``config.json`` + ``model.safetensors`` in the speculators layout (``fmt``
        "speculators", what vLLM loads) or SpecForge's (``fmt`` "specforge"). ``extra``: notes kept
        under the config's ``specscope`` key (ignored by other readers)."""
        from safetensors.torch import save_file

        if fmt not in ("speculators", "specforge"):
            raise ValueError(f"unknown head format {fmt!r}; choose speculators or specforge")
        c = self.config
        if c.aux_layer_ids is None:
            raise ValueError(
                "the head's aux layer ids are unknown (a checkpoint that named none); "
                "give them (they depend on the target's layer count) before saving"
            )
        os.makedirs(path, exist_ok=True)
        sd = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if not k.startswith("rotary.")}
        notes = {"kind": "eagle3-head", **c.meta.get("specscope", {}), **(extra or {})}
        layer = _layer_dict(c.layer)
        if fmt == "speculators":
            cfg = {
                "architectures": ["Eagle3Speculator"],
                "speculators_model_type": "eagle3",
                "speculators_version": SPECULATORS_VERSION,
                "speculators_config": {
                    "algorithm": "eagle3",
                    "proposal_methods": [
                        {
                            "proposal_type": "greedy",
                            "speculative_tokens": int(c.meta.get("speculative_tokens", 3)),
                            "verifier_accept_k": 1,
                            "accept_tolerance": 0.0,
                        }
                    ],
                    "default_proposal_method": "greedy",
                    "verifier": {"name_or_path": c.meta.get("verifier"), "architectures": list(c.meta.get("verifier_architectures") or [])},
                },
                "transformer_layer_config": layer,
                "draft_vocab_size": c.draft_vocab_size,
                "norm_before_residual": bool(c.norm_before_residual),  # explicit: readers' defaults differ
                "target_hidden_size": c.target_hidden_size,
                "eagle_aux_hidden_state_layer_ids": list(c.aux_layer_ids),
                "has_no_defaults_at_init": False,
                "torch_dtype": str(sd["fc.weight"].dtype).replace("torch.", ""),
                "specscope": notes,
            }
        else:
            sd = {("midlayer." + k[len("layers.0.") :] if k.startswith("layers.0.") else k): v for k, v in sd.items()}
            cfg = dict(
                layer,
                architectures=["LlamaForCausalLMEagle3"],
                draft_vocab_size=c.draft_vocab_size,
                target_hidden_size=c.target_hidden_size,
                norm_before_residual=bool(c.norm_before_residual),
                eagle_config={"eagle_aux_hidden_state_layer_ids": [i - 1 for i in c.aux_layer_ids], "use_aux_hidden_state": True},
                specscope=notes,
            )
        save_file(sd, os.path.join(path, "model.safetensors"))
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)

    @classmethod
    def load(cls, path: str, dtype=torch.float32) -> Eagle3Head:
        """A head in the speculators or SpecForge layout (local directory or Hub id). Raises
        ValueError naming what is wrong with a broken checkpoint."""
        path = fetch(path)
        cfg = _read_config(path)
        config, renames = parse_config(cfg, path)
        sd = {}
        for k, v in _read_weights(path).items():
            for prefix in ("model.", "draft_model."):
                if k.startswith(prefix) and not k.startswith("model.layers."):
                    k = k[len(prefix) :]
            k = k.replace("model.layers.", "layers.")
            for old, new in renames:
                if k.startswith(old):
                    k = new + k[len(old) :]
            sd[k] = v
        config.fc_bias = "fc.bias" in sd
        config.qk_norm = "layers.0.self_attn.q_norm.weight" in sd
        config.embed = "embed_tokens.weight" in sd
        config.layer.attention_bias = "layers.0.self_attn.q_proj.bias" in sd
        config.layer.mlp_bias = "layers.0.mlp.gate_proj.bias" in sd
        if "d2t" not in sd and config.draft_vocab_size != config.target_vocab_size:
            raise ValueError(
                f"{path}: the draft vocabulary ({config.draft_vocab_size}) differs from the target's "
                f"({config.target_vocab_size}) but the checkpoint has no d2t mapping"
            )
        head = cls(config)
        want = {k: v.shape for k, v in head.state_dict().items() if not k.startswith("rotary.")}
        missing = [k for k in want if k not in sd and k not in ("d2t", "t2d")]
        if missing:
            raise ValueError(
                f"{path}: not a complete EAGLE-3 head: missing {', '.join(missing[:4])}"
                + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            )
        bad = [f"{k} is {list(sd[k].shape)}, expected {list(s)}" for k, s in want.items() if k in sd and tuple(sd[k].shape) != tuple(s)]
        if bad:
            raise ValueError(
                f"{path}: weights do not match its config.json (hidden size "
                f"{config.hidden_size}, target hidden size {config.target_hidden_size}, draft vocab "
                f"{config.draft_vocab_size}): {'; '.join(bad[:3])}"
            )
        unused = sorted(k for k in sd if k not in want)
        if unused:
            raise ValueError(f"{path}: unknown weights {', '.join(unused[:4])} (an EAGLE-3 variant this loader does not know)")
        head.load_state_dict({k: v for k, v in sd.items() if k in want}, strict=False)
        if "t2d" not in sd:
            head.t2d.zero_()
            head.t2d[head.draft_to_target()] = True
        ids = head.draft_to_target()
        if int(ids.min()) < 0 or int(ids.max()) >= config.target_vocab_size:
            raise ValueError(f"{path}: d2t maps draft ids outside the target vocabulary [0, {config.target_vocab_size})")
        return head.to(dtype).eval()


def _act(name: str):
    from transformers.activations import ACT2FN

    return ACT2FN[name]


def _layer_dict(layer) -> dict:
    """The layer config as speculators / vLLM read it: the v5 ``rope_parameters`` plus the older
    ``rope_theta`` / ``rope_scaling`` they may still expect."""
    d = layer.to_diff_dict()
    d.pop("transformers_version", None)
    d.pop("_attn_implementation_autoset", None)
    for k in (
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "rms_norm_eps",
        "max_position_embeddings",
        "vocab_size",
        "hidden_act",
    ):
        d[k] = getattr(layer, k)
    d["num_hidden_layers"] = 1
    d["model_type"] = "llama"
    d["architectures"] = ["LlamaForCausalLM"]
    rope = dict(getattr(layer, "rope_parameters", None) or {})
    if rope:
        d["rope_parameters"] = rope
        d["rope_theta"] = rope.get("rope_theta", 10000.0)
        scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
        d["rope_scaling"] = None if scaling.get("rope_type", "default") == "default" else scaling
    return d


def _read_config(path: str) -> dict:
    try:
        with open(os.path.join(path, "config.json")) as f:
            return json.load(f)
    except OSError:
        raise FileNotFoundError(f"no config.json in {path}") from None
    except ValueError as e:
        raise ValueError(f"{path}/config.json is not valid JSON ({e})") from None


def parse_config(cfg: dict, path: str = "") -> tuple[Eagle3Config, list[tuple[str, str]]]:
    """(config, weight renames) of a speculators or SpecForge config.json."""
    from transformers import LlamaConfig

    renames: list[tuple[str, str]] = []
    if cfg.get("speculators_model_type") == "eagle3":
        layer_d = dict(cfg.get("transformer_layer_config") or {})
        if not layer_d:
            raise ValueError(f"{path}: speculators config without transformer_layer_config")
        aux = cfg.get("eagle_aux_hidden_state_layer_ids")
        sc = cfg.get("speculators_config") or {}
        ver = sc.get("verifier") or {}
        methods = sc.get("proposal_methods") or [{}]
        meta = {
            "verifier": ver.get("name_or_path"),
            "verifier_architectures": ver.get("architectures") or [],
            "speculative_tokens": methods[0].get("speculative_tokens", 3),
            "format": "speculators",
        }
        if cfg.get("norm_before_fc"):
            raise ValueError(f"{path}: norm_before_fc heads (an RMSNorm over the fused taps) are not supported yet")
    elif "draft_vocab_size" in cfg and any("Eagle3" in a for a in cfg.get("architectures") or []):
        layer_d = {k: v for k, v in cfg.items() if k not in ("architectures", "draft_vocab_size", "eagle_config")}
        ec = cfg.get("eagle_config") or {}
        aux = ec.get("eagle_aux_hidden_state_layer_ids")
        if aux:
            aux = [int(i) + 1 for i in aux]  # SpecForge / SGLang: "output of layer i" = vLLM id i + 1
        renames = [("midlayer.", "layers.0.")]
        meta = {"verifier": None, "format": "specforge"}
    else:
        raise ValueError(
            f"{path}: not an EAGLE-3 head (config.json has no speculators_model_type 'eagle3' "
            "and is no SpecForge LlamaForCausalLMEagle3 config)"
        )
    if isinstance(cfg.get("specscope"), dict):
        meta["specscope"] = {k: v for k, v in cfg["specscope"].items() if k != "kind"}
        meta.setdefault("verifier", cfg["specscope"].get("target"))
    keep = (
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "rms_norm_eps",
        "max_position_embeddings",
        "vocab_size",
        "hidden_act",
        "rope_parameters",
        "rope_theta",
        "rope_scaling",
        "attention_bias",
        "mlp_bias",
    )
    kw = {k: layer_d[k] for k in keep if layer_d.get(k) is not None}
    for k in ("hidden_size", "num_attention_heads", "vocab_size"):
        if k not in kw:
            raise ValueError(f"{path}: the layer config has no {k}")
    if "rope_parameters" not in kw and ("rope_theta" in kw or "rope_scaling" in kw):
        rope = dict(kw.pop("rope_scaling", None) or {})
        if "type" in rope and "rope_type" not in rope:
            rope["rope_type"] = rope.pop("type")
        rope.setdefault("rope_type", "default")
        rope["rope_theta"] = kw.pop("rope_theta", 10000.0)
        kw["rope_parameters"] = rope
    kw.pop("rope_theta", None)
    kw.pop("rope_scaling", None)
    kw.setdefault("num_key_value_heads", kw["num_attention_heads"])
    kw.setdefault("head_dim", kw["hidden_size"] // kw["num_attention_heads"])
    kw.setdefault("intermediate_size", 4 * kw["hidden_size"])
    layer = LlamaConfig(num_hidden_layers=1, tie_word_embeddings=False, **kw)
    h = int(layer.hidden_size)
    config = Eagle3Config(
        layer=layer,
        draft_vocab_size=int(cfg.get("draft_vocab_size") or layer.vocab_size),
        target_vocab_size=int(layer.vocab_size),
        target_hidden_size=int(cfg.get("target_hidden_size") or h),
        norm_before_residual=bool(cfg.get("norm_before_residual", False)),
        aux_layer_ids=[int(i) for i in aux] if aux else None,
        meta=meta,
    )
    if config.aux_layer_ids is not None and len(config.aux_layer_ids) != 3:
        raise ValueError(f"{path}: EAGLE-3 fuses 3 target layers, the config names {len(config.aux_layer_ids)}")
    return config, renames


def is_eagle3_dir(path: str) -> bool:
    """A local directory whose config.json declares an EAGLE-3 head (speculators or SpecForge)."""
    try:
        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return False
    if not isinstance(cfg, dict):
        return False
    return cfg.get("speculators_model_type") == "eagle3" or (
        "draft_vocab_size" in cfg and any("Eagle3" in str(a) for a in cfg.get("architectures") or [])
    )


# --------------------------------------------------------------------------------------
class AuxTaps:
    """Forward pre-hooks on the target's decoder layers: for each target forward (this thread's),
    the residual stream entering the aux layers (id L: entering the final norm), next to the
    final norm's output (the hidden state the engine hands drafters). ``lookup(rows)`` finds
    given rows of that last hidden state among the recent forwards and returns their aux states.

    Rows are matched by value: the engine hands over copies (``hidden[kept]``), the replay a
    recording's slices; a 64-bit integer hash of each row's bits finds them, equality confirms.
    Kept: the last ``keep`` forwards within ``max_rows`` rows (the newest two always)."""

    def __init__(self, target, layer_ids: list[int], keep: int = 64, max_rows: int = 8192):
        text = target.text_module()
        n = len(text.layers)
        norm = getattr(text, "norm", None)
        if norm is None:
            raise ValueError(f"{getattr(target, 'name', 'the target')}: no final norm found to tap")
        bad = [i for i in layer_ids if not 0 <= i <= n]
        if bad:
            raise ValueError(f"aux layer ids {layer_ids} do not fit the target's {n} layers (valid: 0..{n})")
        self.ids, self.keep, self.max_rows = list(layer_ids), keep, max_rows
        self.local = threading.local()
        self.handles = []
        for i in sorted(set(layer_ids)):
            mod = text.layers[i] if i < n else norm
            self.handles.append(mod.register_forward_pre_hook(self._pre(i), with_kwargs=True))
        self.handles.append(norm.register_forward_hook(self._done))
        self._coeff: dict = {}

    def _pre(self, i):
        def hook(_module, args, kwargs):
            x = args[0] if args else kwargs.get("hidden_states")
            st = self.local.__dict__.setdefault("stage", {})
            st[i] = x

        return hook

    def _done(self, _module, _args, out):
        st = self.local.__dict__.pop("stage", {})
        if not all(i in st for i in self.ids) or out.dim() != 3 or out.shape[0] != 1:
            return  # not a full batch-1 decoder forward
        aux = torch.cat([st[i][0] for i in self.ids], dim=-1)
        hist = self.local.__dict__.setdefault("hist", deque())
        hist.append({"last": out[0], "aux": aux, "keys": None})
        while len(hist) > 2 and (len(hist) > self.keep or sum(e["last"].shape[0] for e in hist) > self.max_rows):
            hist.popleft()

    def _keys(self, t: torch.Tensor) -> torch.Tensor:
        bits = t.contiguous().view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
        c = self._coeff.get((t.shape[-1], t.device))
        if c is None:
            g = torch.Generator().manual_seed(1234)
            c = self._coeff[(t.shape[-1], t.device)] = torch.randint(1, 1 << 15, (t.shape[-1],), generator=g).to(t.device)
        return (bits.long() * c).sum(-1)

    @torch.inference_mode()
    def lookup(self, rows: torch.Tensor) -> torch.Tensor:
        hist = self.local.__dict__.get("hist", ())
        for e in reversed(hist):
            last = e["last"]
            if last.shape == rows.shape and torch.equal(last, rows.to(last.dtype)):
                return e["aux"]
            if rows.shape[0] > last.shape[0] or rows.shape[-1] != last.shape[-1]:
                continue
            if e["keys"] is None:
                e["keys"] = {k: r for r, k in reversed(list(enumerate(self._keys(last).tolist())))}
            idx = [e["keys"].get(k) for k in self._keys(rows.to(last.dtype)).tolist()]
            if None in idx:
                continue
            idx_t = torch.tensor(idx, device=last.device)
            if torch.equal(last[idx_t], rows.to(last.dtype)):
                return e["aux"][idx_t]
        raise LookupError(
            "the EAGLE-3 drafter did not see the target forward these hidden states came from "
            "(it reads the target's layers through hooks while the target runs)"
        )

    def clear(self) -> None:
        self.local.__dict__.pop("hist", None)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


# --------------------------------------------------------------------------------------
class Eagle3Drafter(MSDDrafter):
    """Drafts with an EAGLE-3 head over three of the target's layers. The MSD drafter's
    begin / propose / commit run unchanged on the head's fused features: this class only
    supplies them (``AuxTaps``), the head's own embeddings / logits and the vocabulary map."""

    needs_hidden = True
    can_skip = True

    def __init__(self, target, path: str | None = None, head: Eagle3Head | None = None, name: str = "eagle3"):
        self.target = target
        self.name = name
        self.dtype = draft_dtype(target)
        temb = target.model.get_input_embeddings()
        self.device = temb.weight.device
        self.head = head if head is not None else Eagle3Head.load(path, dtype=self.dtype)
        self.head.to(self.device, self.dtype).requires_grad_(False)
        c = self.head.config
        tname = getattr(target, "name", "the target")
        th = temb.embedding_dim
        if c.target_hidden_size != th:
            raise ValueError(
                f"this EAGLE-3 head reads a target with hidden size {c.target_hidden_size} "
                f"(fc takes 3 x {c.target_hidden_size}); {tname} has {th}. A head only works with "
                "the target it was trained for"
            )
        if c.target_vocab_size > target.vocab_size:
            raise ValueError(f"this EAGLE-3 head's target vocabulary has {c.target_vocab_size} ids; {tname} has {target.vocab_size}")
        if self.head.embed_tokens is not None:
            self.embed = self.head.embed_tokens
        elif c.hidden_size == th:
            self.embed = temb
        else:
            raise ValueError(
                f"this EAGLE-3 head (hidden size {c.hidden_size}) stores no embed_tokens and "
                f"cannot use {tname}'s embeddings (hidden size {th})"
            )
        layers = len(target.text_module().layers)
        self.aux_layer_ids = list(c.aux_layer_ids) if c.aux_layer_ids else default_aux_layers(layers)
        self.taps = AuxTaps(target, self.aux_layer_ids)
        self.vocab_index = self.head.draft_to_target().to(self.device)
        cfg = target.model.config
        self.image_token_id = getattr(cfg, "image_token_id", None) or getattr(cfg, "image_token_index", None)

    def close(self) -> None:
        """Remove the hooks from the target (also done when the drafter is garbage-collected)."""
        taps = getattr(self, "taps", None)
        if taps is not None:
            taps.remove()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def _emb(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids).to(self.dtype)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        """Target-vocabulary logits: the draft vocabulary's scattered to their target ids, -inf
        elsewhere (never drafted)."""
        d = self.head.logits(h).float()
        out = d.new_full((*d.shape[:-1], self.target.vocab_size), float("-inf"))
        out[..., self.vocab_index] = d
        return out

    @torch.inference_mode()
    def _features(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden is None:
            raise ValueError("the EAGLE-3 drafter needs the target's hidden states (needs_hidden)")
        return self.head.features(self.taps.lookup(hidden))

    @torch.inference_mode()
    def begin(self, ctx: DraftContext) -> None:
        super().begin(replace(ctx, target_hidden=self._features(ctx.target_hidden)))

    @torch.inference_mode()
    def commit(self, tree, accepted, new_tokens, target_hidden) -> None:
        super().commit(tree, accepted, new_tokens, self._features(target_hidden))


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
