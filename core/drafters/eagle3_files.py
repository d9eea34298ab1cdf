"""EAGLE-3 head files: the speculators layout (what vLLM loads) and SpecForge's, read and written.

Speculators layout (speculators 0.8/0.9): ``config.json`` with ``speculators_model_type:
"eagle3"``, ``transformer_layer_config``, ``draft_vocab_size``, ``norm_before_residual``,
``target_hidden_size``, ``eagle_aux_hidden_state_layer_ids``, ``speculators_config``; weights
``fc.*``, ``layers.0.*``, ``norm.weight``, ``lm_head.weight``, ``d2t``, ``t2d`` and optionally
``embed_tokens.weight``. SpecForge layout: a LlamaConfig with ``draft_vocab_size`` (+
``eagle_config``), the layer named ``midlayer.*``, aux ids given as "output of layer i" (SGLang
adds 1 when capturing). ``Eagle3Head.save`` / ``Eagle3Head.load`` (core/drafters/eagle3_head.py)
call ``save_head`` / ``load_head``; docs/eagle3.md has the tables.
"""

from __future__ import annotations

import json
import os
import warnings

import torch

from .eagle3_head import Eagle3Config
from .msd import _read_weights, fetch

SPECULATORS_VERSION = "0.9.0"


def save_head(head, path: str, fmt: str = "speculators", extra: dict | None = None) -> None:
    """Write ``config.json`` + ``model.safetensors`` in the speculators layout (``fmt``
    "speculators", what vLLM loads) or SpecForge's (``fmt`` "specforge"). ``extra``: notes kept
    under the config's ``specscope`` key (ignored by other readers)."""
    from safetensors.torch import save_file

    if fmt not in ("speculators", "specforge"):
        raise ValueError(f"unknown head format {fmt!r}; choose speculators or specforge")
    c = head.config
    if c.aux_layer_ids is None:
        raise ValueError(
            "the head's aux layer ids are unknown (a checkpoint that named none); "
            "give them (they depend on the target's layer count) before saving"
        )
    os.makedirs(path, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items() if not k.startswith("rotary.")}
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


def load_head(cls, path: str, dtype=torch.float32):
    """A head (``cls``: Eagle3Head) in the speculators or SpecForge layout (local directory or Hub id). Raises
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
    emb = sd.get("embed_tokens.weight")
    if emb is not None and (not bool(torch.isfinite(emb).all()) or not bool(emb.any())):
        # a placeholder, not embeddings: speculators 0.9 saves its never-loaded embed_tokens as zeros
        # when a head that stores none is loaded with from_pretrained and saved again. Drafting from
        # it stays lossless but proposes almost nothing, so the target's embeddings are used instead.
        del sd["embed_tokens.weight"]
        config.meta["embed_tokens_ignored"] = "all zeros" if bool(torch.isfinite(emb).all()) else "not finite"
        warnings.warn(
            f"{path}: its embed_tokens.weight is {config.meta['embed_tokens_ignored']} (a placeholder saved for "
            "embeddings never loaded): the target's embeddings are used instead",
            stacklevel=2,
        )
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
        # speculators 0.9's variants of the head's computation (written False by its own saves)
        for flag, what in (
            ("norm_before_fc", "an RMSNorm over the fused taps"),
            ("fc_norm", "an RMSNorm over each tap before fc"),
            ("norm_output", "the normed hidden state fed back across draft steps"),
        ):
            if cfg.get(flag):
                raise ValueError(f"{path}: {flag} heads ({what}) are not supported yet")
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
