"""MSD-style draft head (EAGLE-2 layout, decoupled visual tokens).

The head is ONE decoder layer. Its input at position t fuses the next token's embedding with
the target's last hidden state at t:  x_t = fc([emb(tok_{t+1}); f_t]). At image positions the
fusion is skipped: x_t is the target's projected visual embedding (MSD's decoupling: visual
and text tokens are treated differently). The layer's output predicts f_{t+1}; the target's
own lm_head turns it into next-token logits. Drafting deeper than one token feeds the head's
own predicted hidden state in place of f.

Weights are stored in the EAGLE layout: ``fc.weight``, ``fc.bias``, ``layers.0.*`` plus a
LlamaConfig (``config.json``), so released EAGLE/MSD checkpoints load with ``MSDHead.load``.
The target's embeddings and lm_head are used, never stored in the head's checkpoint.
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F
from torch import nn

from ..tree import DraftTree, tree_mask
from .base import DraftContext, DraftSpec, Drafter, build_tree, draft_dtype


class MSDHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

        self.config = config
        h = config.hidden_size
        self.fc = nn.Linear(2 * h, h, bias=True)
        self.layers = nn.ModuleList([LlamaDecoderLayer(config, layer_idx=0)])
        self.rotary = LlamaRotaryEmbedding(config)

    @staticmethod
    def make_config(target_text_config, **over):
        from transformers import LlamaConfig

        c = target_text_config
        kw = dict(
            hidden_size=c.hidden_size,
            intermediate_size=c.intermediate_size,
            num_hidden_layers=1,
            num_attention_heads=c.num_attention_heads,
            num_key_value_heads=getattr(c, "num_key_value_heads", c.num_attention_heads),
            max_position_embeddings=c.max_position_embeddings,
            rms_norm_eps=c.rms_norm_eps,
            vocab_size=c.vocab_size,
            rope_parameters=getattr(c, "rope_parameters", None),
        )
        kw.update(over)
        if kw["rope_parameters"] is None:
            kw.pop("rope_parameters")
        cfg = LlamaConfig(**kw)
        cfg._attn_implementation = "sdpa"
        return cfg

    def fuse(
        self, tok_emb: torch.Tensor, feat: torch.Tensor, visual: torch.Tensor | None = None, is_visual: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.fc(torch.cat([tok_emb, feat], dim=-1))
        if visual is not None and is_visual is not None and bool(is_visual.any()):
            x = torch.where(is_visual.unsqueeze(-1), visual.to(x.dtype), x)
        return x

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor | None, cache=None) -> torch.Tensor:
        pos = self.rotary(x, position_ids)
        return self.layers[0](
            x,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=cache is not None,
            position_embeddings=pos,
        )

    def step(self, x: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor | None, kv: list) -> torch.Tensor:
        """The same layer as ``forward`` for decoding, written out in plain torch with the key /
        value cache as two tensors (``kv = [k, v]``, appended in place). Drafting calls the head
        once per tree depth, and on a CPU a call costs per operator, not per flop, so the weights
        are packed once (q|k|v and gate|up as one matrix each), rotary cos/sin come from a table,
        and the rotation is one roll: ~20 operators instead of HF's ~60.
        ``x``: (1, n, H); ``attention_mask``: additive float (1, 1, n, cached + n) or None."""
        P = self._packed(x.dtype)
        n = x.shape[1]
        nq, nk, d = P["nq"], P["nk"], P["d"]
        h = x if P["norm1"] is None else F.rms_norm(x, (x.shape[-1],), P["norm1"], P["eps"])
        qkv = F.linear(h, P["wqkv"], P["bqkv"]).view(n, nq + 2 * nk, d)
        cos, sin = self._rope(int(position_ids.max()) + 1, x.dtype)
        pos = position_ids.view(-1)
        cos, sin = cos[pos].unsqueeze(1), sin[pos].unsqueeze(1)  # (n, 1, d)
        qk = qkv[:, : nq + nk]
        qk = qk * cos + qk.roll(d // 2, -1) * sin  # rotate_half as a roll
        q = qk[:, :nq].transpose(0, 1).unsqueeze(0)
        k = qk[:, nq:].transpose(0, 1).unsqueeze(0)
        v = qkv[:, nq + nk :].transpose(0, 1).unsqueeze(0)
        if kv[0] is not None:
            k, v = torch.cat([kv[0], k], dim=2), torch.cat([kv[1], v], dim=2)
        kv[0], kv[1] = k, v
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, scale=P["scale"], enable_gqa=nq != nk)
        x = x + F.linear(o.transpose(1, 2).reshape(1, n, nq * d), P["wo"], P["bo"])
        h = F.rms_norm(x, (x.shape[-1],), P["norm2"], P["eps"])
        g, u = F.linear(h, P["wgu"], P["bgu"]).chunk(2, dim=-1)
        return x + F.linear(P["act"](g) * u, P["wd"], P["bd"])

    @torch.no_grad()
    def _packed(self, dtype) -> dict:
        layer = self.layers[0]
        a, m = layer.self_attn, layer.mlp
        key = (dtype, a.q_proj.weight.data_ptr(), a.q_proj.weight._version)
        if getattr(self, "_pack", None) is not None and self._pack["key"] == key:
            return self._pack

        def cat(*ts):
            return None if ts[0] is None else torch.cat(ts).to(dtype)

        def norm_w(mod):
            return None if isinstance(mod, nn.Identity) else mod.weight.to(dtype)

        eps = getattr(layer.post_attention_layernorm, "variance_epsilon", self.config.rms_norm_eps)
        self._pack = dict(
            key=key,
            d=a.head_dim,
            scale=a.scaling,
            eps=eps,
            nq=a.q_proj.out_features // a.head_dim,
            nk=a.k_proj.out_features // a.head_dim,
            norm1=norm_w(layer.input_layernorm),
            norm2=norm_w(layer.post_attention_layernorm),
            wqkv=cat(a.q_proj.weight, a.k_proj.weight, a.v_proj.weight),
            bqkv=cat(a.q_proj.bias, a.k_proj.bias, a.v_proj.bias),
            wo=a.o_proj.weight.to(dtype),
            bo=None if a.o_proj.bias is None else a.o_proj.bias.to(dtype),
            wgu=cat(m.gate_proj.weight, m.up_proj.weight),
            bgu=cat(m.gate_proj.bias, m.up_proj.bias),
            wd=m.down_proj.weight.to(dtype),
            bd=None if m.down_proj.bias is None else m.down_proj.bias.to(dtype),
            act=m.act_fn,
        )
        self._rope_table = None
        return self._pack

    @torch.no_grad()
    def _rope(self, length: int, dtype):
        """cos and sign-folded sin for positions [0, length) or more (the table doubles as needed)."""
        t = getattr(self, "_rope_table", None)
        dev = self.fc.weight.device  # the table is indexed by positions there
        if t is None or t[0].shape[0] < length or t[0].dtype != dtype or t[0].device != dev:
            size = max(256, 1 << (length - 1).bit_length())
            dummy = torch.zeros(1, 1, dtype=dtype, device=dev)
            cos, sin = self.rotary(dummy, torch.arange(size, device=dev).view(1, -1))
            cos, sin = cos[0].to(dtype), sin[0].to(dtype)
            half = sin.shape[-1] // 2
            sin = torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)  # roll(q)*sin == rotate_half(q)*sin
            self._rope_table = t = (cos, sin)
        return t

    # ---- EAGLE-layout checkpoints --------------------------------------------------
    def save(self, path: str, extra: dict | None = None) -> None:
        from safetensors.torch import save_file

        os.makedirs(path, exist_ok=True)
        sd = {k: v.contiguous() for k, v in self.state_dict().items() if not k.startswith("rotary.")}
        save_file(sd, os.path.join(path, "model.safetensors"))
        cfg = self.config.to_dict()
        cfg["specscope"] = {"kind": "msd-head", **(extra or {})}
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)

    @classmethod
    def load(cls, path: str, dtype=torch.float32) -> MSDHead:
        from transformers import LlamaConfig

        path = fetch(path)
        cfg = LlamaConfig.from_pretrained(path)
        cfg.num_hidden_layers = 1
        cfg._attn_implementation = "sdpa"
        head = cls(cfg)
        sd = _read_weights(path)
        sd = {k: v for k, v in sd.items() if k.startswith(("fc.", "layers.0."))}
        if "layers.0.input_layernorm.weight" not in sd:
            # EAGLE-1/2 and the released MSD heads skip the first layer's input norm: the fused
            # input goes into attention as is (their code: ``if self.index != 0: norm(x)``)
            head.layers[0].input_layernorm = nn.Identity()
        if "fc.bias" not in sd:
            head.fc.bias = None
        missing, unexpected = head.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.startswith("rotary.")]
        if missing:
            raise ValueError(f"{path}: not an EAGLE/MSD draft head (missing {missing[:3]})")
        return head.to(dtype).eval()


def fetch(path: str) -> str:
    """A local directory as is; a Hub id (e.g. a released MSD head, ``lucylyn/MSD-LLaVA1.6-7B``)
    is downloaded (config + weights only) into the Hugging Face cache."""
    if os.path.isdir(path):
        return path
    if path.count("/") != 1 or path.startswith((".", "/")):
        raise FileNotFoundError(f"no such directory: {path}")
    from huggingface_hub import snapshot_download

    return snapshot_download(path, allow_patterns=["config.json", "*.safetensors", "pytorch_model.bin"])


def _read_weights(path: str) -> dict:
    """model.safetensors, sharded safetensors (an index), or pytorch_model.bin."""
    from safetensors.torch import load_file

    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        sd = {}
        for name in files:
            sd.update(load_file(os.path.join(path, name)))
        return sd
    st = os.path.join(path, "model.safetensors")
    if os.path.exists(st):
        return load_file(st)
    bin_ = os.path.join(path, "pytorch_model.bin")
    if os.path.exists(bin_):
        return torch.load(bin_, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {path}")


def is_msd_dir(path: str) -> bool:
    """A local directory holding an EAGLE/MSD head (ours, or a released one: fc + one layer)."""
    try:
        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return False
    if cfg.get("specscope", {}).get("kind") == "msd-head":
        return True
    try:
        keys = set(_read_weights(path).keys())
    except Exception:  # unreadable / corrupt weights (e.g. SafetensorError): not a head
        return False
    return "fc.weight" in keys and any(k.startswith("layers.0.") for k in keys) and not any(k.startswith("model.") for k in keys)


# --------------------------------------------------------------------------------------
class MSDDrafter(Drafter):
    """Drafts with an MSD head on top of the target's features (needs the target's hidden states).
    No ``assistant_model``: the head is no standalone transformers model."""

    needs_hidden = True
    can_skip = True  # commit() without propose(): pairs queue up for the next propose

    def __init__(self, target, path: str | None = None, head: MSDHead | None = None, name: str = "msd"):
        self.target = target
        self.dtype = draft_dtype(target)
        self.embed = target.model.get_input_embeddings()
        self.device = self.embed.weight.device  # the head runs next to the target's embeddings
        self.head = head if head is not None else MSDHead.load(path, dtype=self.dtype)
        self.head.to(self.device, self.dtype)
        self.name = name
        lm = target.model.get_output_embeddings()
        # the target's lm_head, in the draft dtype (a copy only when that differs)
        self.lm_w = lm.weight.detach().to(self.dtype)
        self.lm_b = None if getattr(lm, "bias", None) is None else lm.bias.detach().to(self.dtype)
        if self.head.config.hidden_size != self.embed.embedding_dim:
            raise ValueError(
                f"this head was trained for a target with hidden size {self.head.config.hidden_size}; "
                f"{getattr(target, 'name', 'the target')} has {self.embed.embedding_dim}. An MSD "
                "head only works with the target it was trained on"
            )
        cfg = target.model.config
        self.image_token_id = getattr(cfg, "image_token_id", None) or getattr(cfg, "image_token_index", None)

    def begin(self, ctx: DraftContext) -> None:
        self.ctx = ctx
        self.kv = [None, None]  # the head's key / value cache
        self.length = 0
        ids = torch.tensor(ctx.prompt_ids, device=self.device)
        feats = ctx.target_hidden  # f_0 .. f_{T-1}
        # pairs (f_t, tok_{t+1}) for t = 0 .. T-2 are all inside the prompt
        if len(ids) > 1:
            nxt = ids[1:]
            visual = None
            is_vis = None
            if ctx.target_embeds is not None and self.image_token_id is not None:
                is_vis = nxt == self.image_token_id
                visual = ctx.target_embeds[0, 1:]
            x = self.head.fuse(self._emb(nxt), feats[:-1].to(self.dtype), visual, is_vis)
            self._run(x, torch.arange(len(nxt), device=self.device), causal=True)
        self.pending_feats = feats[-1:]  # f_{T-1}, to be paired with the root
        self.pending_tokens: list[int] = []
        self.root = ctx.tokens[-1] if ctx.tokens else None
        self.proposed = False

    def _emb(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids).to(self.dtype)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.lm_w, self.lm_b).float()

    @torch.inference_mode()
    def _run(self, x: torch.Tensor, positions: torch.Tensor, causal: bool = False, attn=None):
        n = x.shape[0]
        mask = None
        if attn is not None or (causal and n > 1):
            if attn is None:
                attn = torch.ones(n, self.length + n, dtype=torch.bool)
                attn[:, self.length :] = torch.tril(torch.ones(n, n, dtype=torch.bool))
            mask = torch.zeros(attn.shape, dtype=x.dtype, device=x.device)  # attn: built on the CPU
            mask.masked_fill_(~attn.to(x.device), torch.finfo(x.dtype).min)
            mask = mask.view(1, 1, *attn.shape)
        h = self.head.step(x.unsqueeze(0), positions.view(1, -1), mask, self.kv)[0]
        self.length += n
        return h

    @torch.inference_mode()
    def propose(self, root: int, spec: DraftSpec, sampling, gen) -> DraftTree:
        self.proposed = True
        toks = self.pending_tokens + [root]
        feats = self.pending_feats
        start = self.length
        x = self.head.fuse(self._emb(torch.tensor(toks, device=self.device)), feats.to(self.dtype))
        h = self._run(x, torch.arange(start, start + len(toks), device=self.device), causal=True)
        self.committed = self.length
        root_pos = self.length - 1
        hid: dict[int, torch.Tensor] = {-1: h[-1]}
        slot: dict[int, int] = {}

        def expand(tree: DraftTree, nodes: list[int]) -> torch.Tensor:
            base = self.length
            for r, node in enumerate(nodes):  # the nodes' cache slots, after their ancestors'
                slot[node] = base + r
            attn = tree_mask(tree.parents, nodes, slot, self.committed, base + len(nodes))
            tok = torch.tensor([tree.tokens[x] for x in nodes], device=self.device)
            par = torch.stack([hid[tree.parents[x]] for x in nodes])
            xin = self.head.fuse(self._emb(tok), par)
            pos = torch.tensor([root_pos + tree.depths[x] for x in nodes], device=self.device)
            out = self._run(xin, pos, attn=attn)
            for r, node in enumerate(nodes):
                hid[node] = out[r]
            return self._logits(out)

        root_logits = self._logits(h[-1:])[0]
        return build_tree(root_logits, expand, spec, sampling, gen, self.target.vocab_size, policy=self.ctx.policy)

    def commit(self, tree: DraftTree, accepted: list[int], new_tokens: list[int], target_hidden) -> None:
        if not self.proposed:  # a plain step: (f, token) pairs queue up for the next propose
            self.pending_tokens += [self.root] + list(new_tokens[:-1])
            self.pending_feats = torch.cat([self.pending_feats, target_hidden.to(self.pending_feats.dtype)])
            self.root = new_tokens[-1]
            return
        self.proposed, self.root = False, new_tokens[-1]
        # drop every tree entry (they were computed from predicted features); re-feed the accepted
        # tokens with the target's real features next time
        drop = self.length - self.committed
        if drop:
            self.kv = [t[..., : self.committed, :] for t in self.kv]
            self.length = self.committed
        # pairs: (f_root, acc_1), (f_acc_1, acc_2), ..., (f_acc_last, next root)
        self.pending_tokens = list(new_tokens[:-1])
        self.pending_feats = target_hidden
