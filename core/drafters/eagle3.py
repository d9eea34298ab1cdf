"""EAGLE-3 draft heads as drafters: the head over three of the target's layers, read through hooks.

The engine hands a drafter the target's last hidden state only, so ``Eagle3Drafter`` taps the
target's decoder layers with forward pre-hooks (``AuxTaps``) and finds, for the rows the engine
hands over (prefill in ``begin``, the kept rows in ``commit``), the same rows of the tapped
forward: the engine is never edited and never asked for more. The MSD drafter's begin / propose
/ commit (core/drafters/msd.py) then run unchanged on the head's fused features.

The head (config, weights, forward, ``new_head``): core/drafters/eagle3_head.py. Its files (the
speculators layout vLLM loads, SpecForge's names): core/drafters/eagle3_files.py. The names of
both are re-exported here, so ``from core.drafters.eagle3 import Eagle3Head, ...`` keeps working.
docs/eagle3.md describes all three.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import replace

import torch

from .base import DraftContext, draft_dtype
from .eagle3_files import SPECULATORS_VERSION, is_eagle3_dir, load_head, parse_config, save_head
from .eagle3_head import Eagle3Config, Eagle3Head, default_aux_layers, layer_config, new_head
from .msd import MSDDrafter

__all__ = [
    "SPECULATORS_VERSION",
    "AuxTaps",
    "Eagle3Config",
    "Eagle3Drafter",
    "Eagle3Head",
    "default_aux_layers",
    "is_eagle3_dir",
    "layer_config",
    "load_head",
    "new_head",
    "parse_config",
    "save_head",
]


# The head's taps read the compiled forward's residual stream, so the target keeps that forward
# (off: a head moves its target to transformers' forward). History: docs/results.md, ninth and
# tenth sessions.
COMPILED_TAPS = True


# --------------------------------------------------------------------------------------
class AuxTaps:
    """Forward pre-hooks on the target's decoder layers: for each target forward (this thread's),
    the residual stream entering the aux layers (id L: entering the final norm), next to the
    final norm's output (the hidden state the engine hands drafters). ``lookup(rows)`` finds
    given rows of that last hidden state among the recent forwards and returns their aux states.
    On the target's compiled forward (core/compiled.py), which runs no modules, the same states
    come from the residual stream it returns (the adapter's ``readers``); the hooks are marked
    ``reads_compiled`` so the target keeps that forward.

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
        self._coeff: dict = {}
        # a target whose compiled forward hands over its residual stream keeps that forward
        self.readers = getattr(target, "readers", None)
        served = COMPILED_TAPS and self.readers is not None
        if not served:
            self.readers = None
        for i in sorted(set(layer_ids)):
            mod = text.layers[i] if i < n else norm
            self.handles.append(mod.register_forward_pre_hook(_marked(self._pre(i), served), with_kwargs=True))
        self.handles.append(norm.register_forward_hook(_marked(self._done, served)))
        if served:
            self.readers.append(self._read_compiled)

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
        self._record(out[0], torch.cat([st[i][0] for i in self.ids], dim=-1))

    def _read_compiled(self, hidden: torch.Tensor, resid: torch.Tensor) -> None:
        """The compiled forward's rows: final hidden (m, H), residual stream (m, L + 1, H)."""
        self._record(hidden, torch.cat([resid[:, i] for i in self.ids], dim=-1))

    def _record(self, last: torch.Tensor, aux: torch.Tensor) -> None:
        hist = self.local.__dict__.setdefault("hist", deque())
        hist.append({"last": last, "aux": aux, "keys": None})
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
        if self.readers is not None and self._read_compiled in self.readers:
            self.readers.remove(self._read_compiled)


def _marked(hook, served: bool):
    """``hook``, marked for the adapter as served on its compiled forward where it is (a bound
    method takes no attributes, so a served hook is wrapped); unchanged where it is not."""
    if not served:
        return hook

    def marked(*args, **kwargs):
        return hook(*args, **kwargs)

    marked.reads_compiled = True
    return marked


# --------------------------------------------------------------------------------------
class Eagle3Drafter(MSDDrafter):
    """Drafts with an EAGLE-3 head over three of the target's layers. The MSD drafter's
    begin / propose / commit run unchanged on the head's fused features: this class only
    supplies them (``AuxTaps``), the head's own embeddings / logits and the vocabulary map."""

    needs_hidden = True
    can_skip = True

    def __init__(self, target, path: str | None = None, head: Eagle3Head | None = None, name: str = "eagle3", kernels: str | None = None):
        self.target = target
        self.name = name
        self.dtype = draft_dtype(target)
        temb = target.model.get_input_embeddings()
        self.device = temb.weight.device
        self.head = head if head is not None else Eagle3Head.load(path, dtype=self.dtype)
        self.head.to(self.device, self.dtype).requires_grad_(False)
        # a head loaded here is this drafter's own: its products on the paths measured fastest
        # (``kernels``: as for a draft model, core/kernels.py); a head passed in (a trainer's) stays as it is
        self.kernels = _accelerate(self.head, kernels) if head is None or kernels is not None else {"paths": "stock"}
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


def _accelerate(head: Eagle3Head, kernels: str | None) -> dict:
    """Put the head's products on the paths ``core.kernels`` measures fastest on this CPU for a
    drafter (int8 / bf16 copies included: the target verifies every token, so a drafter's precision
    changes what is accepted, never the output), checked on the whole head at 1, 4 and 16 rows
    against plain float32 products. ``kernels``: auto (default: ``SPECSCOPE_KERNELS``), stock, or
    one path forced. Returns core.kernels' summary."""
    from .. import kernels as K
    from ..device import kernels_default

    k = kernels or kernels_default()
    if k == "stock" or head.fc.weight.device.type != "cpu":
        return {"role": "drafter", "paths": "stock"}
    mods = head.linears()
    head.use_products(mods)  # the probe below runs through them (accelerate swaps them in place)
    width = 2 * head.config.hidden_size

    def probe():
        @torch.inference_mode()
        def run(n: int) -> None:
            x = torch.randn(1, n, width, dtype=head.fc.weight.dtype)
            head.logits(head.step(x, torch.arange(n).view(1, -1), None, [None, None]))

        return run

    return K.accelerate(mods, role="drafter", force=None if k == "auto" else k, probe=probe)
