"""The adapter every model family shares: a transformers model + its tokenizer behind the small
interface the engine decodes through (encode, prefill, forward at logical positions with an
optional tree mask, keep = KV compaction, a truncated view for self-speculation). The family
differences (how an image becomes input ids, Qwen2-VL's position offsets) are in families.py."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..compiled import StaticKV
from ..errors import InputError, ModelLoadError
from ..machine import tuned, update_tuning
from ..rows import REACH, STOCK, causal_mask, measured, padded_inputs, row_set

PREFILL_CHUNK = 128  # a prompt on the compiled forward: rows per block (bounds each row's gathered keys)
PREFILL_PROBE = 96  # prompt tokens of the prefill timing (settle_path): a typical chat prompt
DRAFT_ROWS = (1, 4)  # a drafter's forwards timed each way (settle_path): a chain's step, a tree's level
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
    path: str = "eager"  # the forward this session runs on: "compiled" (a static cache) or "eager"
    prefill: str = "eager"  # the forward its prompt ran on (compiled only where measured cheaper)
    top_only: bool = False  # its reader takes only each row's two largest logits (greedy: core/screen.py)


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
        self.compiled = None  # core.compiled.CompiledDecoder, where load() found the model eligible
        self.use_compiled = False  # the compiled forward's turn: changed only by settle_path()
        self._compiled_rows = None  # its measured row set (core.rows), once measured
        # the prompt on the compiled forward too: chosen by settle_path where measured cheaper
        # (prefill_seconds: the timing behind the choice, {"eager": s, "compiled": s})
        self.compiled_prefill = False
        self.prefill_seconds: dict = {}
        self._trial = threading.local()  # .on: this thread measures the compiled forward
        # readers of the compiled forward's residual stream: f(hidden (m, H), resid (m, L + 1, H)) after
        # each compiled forward, for what reads the layers through hooks on the eager one (AuxTaps)
        self.readers: list = []
        self.role = "target"  # set by load(); a "drafter"'s forward is chosen by its speed alone
        self.draft_seconds: dict = {}  # a drafter's forwards timed each way ({"eager": s, "compiled": s})

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

    # ---- which forward: eager (transformers) or compiled -----------------------------------
    @property
    def path(self) -> str:
        """The forward new sessions take: "compiled" once ``settle_path`` chose it (or in the thread
        measuring it), unless something reads the target's layers through hooks the compiled
        forward cannot serve (it runs no modules), then "eager". Hooks marked ``reads_compiled``
        (an EAGLE-3 head's taps) are served: their owner reads the compiled forward's residual
        stream (``readers``). Each path has its own measured row set (``core.rows``)."""
        trial = getattr(self._trial, "on", False)
        if (self.use_compiled or trial) and self.compiled is not None and not self._tapped():
            return "compiled"
        return "eager"

    def _tapped(self) -> bool:
        """Does anyone read the decoder's modules through hooks the compiled forward cannot serve
        (transformers' own output capture, installed once and gated by its flag, does not count;
        nor do hooks marked ``reads_compiled``, whose owner is among ``readers``)?"""
        text = self.text_module()
        mods = [m for m in (text, getattr(text, "norm", None), *getattr(text, "layers", [])) if m is not None]
        hooks = [h for m in mods for h in (*m._forward_pre_hooks.values(), *m._forward_hooks.values())]
        return any(not (getattr(h, "__module__", "").startswith("transformers.") or getattr(h, "reads_compiled", False)) for h in hooks)

    def settle_path(self, wait: bool = True) -> str:
        """Take the compiled forward from now on if it is ready, exact (its row set reaches as far as
        the eager one's, trees too where those are) and its plain step measured cheaper. Compiling
        it and measuring its row set take minutes for a 1.5B model on two cores (once per process
        and per machine): done here (``wait``) or in a background thread while the eager forward
        serves (a later call switches). Where this machine measured the compiled forward's row set in an
        earlier process and it lost, nothing is compiled. Called between runs only (``core.api.warm``),
        never inside one. A drafter's forward: ``_settle_draft``."""
        fast = self.compiled
        if fast is None or self.use_compiled or fast.failed:
            return self.path
        if self.role == "drafter":
            return self._settle_draft(wait)
        if self._compiled_rows is None:
            known = measured(self, "compiled")  # this machine's verdict from an earlier process
            if known is not None and not (known.exact and _faster(known, row_set(self))):
                self._compiled_rows = known  # it lost to the eager forward: no compile (minutes) to repeat
                fast._give_back()
                return self.path
            if not wait:
                fast.warm_in_background(then=self._measure_compiled)  # once: a running one goes on
                return self.path
            fast.join()  # a compile already running in the background: wait for it, never a second
            if fast.warm() and self._compiled_rows is None:
                self._measure_compiled()
        comp = self._compiled_rows
        if comp is not None and not fast.failed:
            self.use_compiled = comp.exact and _faster(comp, row_set(self))
            if self.use_compiled:
                self.compiled_prefill = self._prefill_cheaper()
        return self.path

    def _settle_draft(self, wait: bool) -> str:
        """``settle_path`` for a drafter. Its numbers never reach the output (the target verifies every
        token), so its compiled forward may round the weights (int8 copies: ``core.compiled.products``) and
        no row set is asked of it: it is taken where its forwards (``DRAFT_ROWS`` after a prompt) measure
        cheaper than the eager ones (``_measure_draft``). The timing is kept per machine: where the
        compiled forward lost, a later process compiles nothing."""
        fast = self.compiled
        if not self.draft_seconds:
            self.draft_seconds = tuned("draft_path", self._draft_key()) or {}
        if self.draft_seconds and not _cheaper(self.draft_seconds):
            fast._give_back()  # it lost here: nothing to compile
            return self.path
        if not fast.ready or fast.running():  # not compiled, or compiling / measuring in the background
            if not wait:
                fast.warm_in_background(then=None if self.draft_seconds else self._measure_draft)
                return self.path
            fast.join()  # never a second compile beside the running one
            if not fast.warm():
                return self.path
        if not self.draft_seconds:
            self._measure_draft()
        if self.draft_seconds and not fast.failed:
            self.use_compiled = _cheaper(self.draft_seconds)
            if self.use_compiled:
                self.compiled_prefill = self._prefill_cheaper()
        return self.path

    def _draft_key(self) -> str:
        from .. import compiled, rowdot
        from ..machine import cpu_name

        return (
            f"{cpu_name()}|threads={torch.get_num_threads()}|torch={torch.__version__}|v{compiled.VERSION}|rowdot={rowdot.version()}|"
            f"{self.dtype}|kernels={self.kernels.get('paths')}|{self.compiled.products}|{compiled._shapes(self.model)}"
        )

    def _measure_draft(self) -> None:
        """Seconds of a draft's forwards (``DRAFT_ROWS`` rows after a ``PREFILL_PROBE``-token prompt) on
        the eager and the compiled forward, alternated three times, the fastest of each kept, in
        ``draft_seconds`` and the tuning file (key "draft_path"). Only in the thread measuring."""
        try:
            timed = _alternated(self._time_draft, rounds=3)
        except Exception as e:  # a compiled forward that fails: the eager one stays, and why is kept
            self.compiled.failed = f"{type(e).__name__}: {str(e).strip()[:200]}"
            return
        update_tuning(lambda d: d.setdefault("draft_path", {}).__setitem__(self._draft_key(), timed))
        self.draft_seconds = timed

    def _time_draft(self, mode: str) -> float:
        self._trial.on = mode == "compiled"
        try:
            run = self.probe(prefix=PREFILL_PROBE)
            for n in DRAFT_ROWS:  # untimed: the first call of each size
                run(n)
            t0 = time.perf_counter()
            for n in DRAFT_ROWS:
                run(n)
            return time.perf_counter() - t0
        finally:
            self._trial.on = False

    def _prefill_cheaper(self) -> bool:
        """Does a prompt cost less on the compiled forward than on transformers'? Measured once (a
        ``PREFILL_PROBE``-token prompt, each way twice, alternated, the faster of each kept). Exactness
        does not depend on it: plain and speculative decoding of a prompt share its prefill."""
        ids = torch.arange(PREFILL_PROBE) * 7919 % max(self.vocab_size - 1, 1)
        enc = self.encode_ids(ids)
        try:
            seen = _alternated(lambda mode: _time_prefill(self, enc, mode), rounds=2)
        except Exception as e:  # the prompt stays with transformers; why is kept
            self.prefill_seconds = {"failed": f"{type(e).__name__}: {str(e).strip()[:200]}"}
            return False
        self.prefill_seconds = seen
        return seen["compiled"] < seen["eager"]

    def _measure_compiled(self) -> None:
        """The compiled forward's row set, measured in this thread only (others keep their path)."""
        self._trial.on = True
        try:
            rows = row_set(self)
        except Exception as e:  # a compiled forward that fails: the eager one stays, and why is kept
            self.compiled.failed = f"{type(e).__name__}: {str(e).strip()[:200]}"
            rows = STOCK
        finally:
            self._trial.on = False
        self._compiled_rows = rows

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
    def prefill(self, enc: Encoded, want_hidden: bool = False, all_logits: bool = False, path: str | None = None):
        """Run the prompt. Returns (session, logits of the last position or all, hidden (T,H) or None).
        The session's forward is ``path`` ("compiled" / "eager"; default ``self.path``, taken before
        this prefill hooks anything itself): the caller's row set (``core.rows``) is measured on it."""
        path = path or self.path
        if path == "compiled" and self.compiled is None:
            raise ValueError(f"{self.name}: no compiled forward to run on")
        if path == "compiled" and self.compiled_prefill and not enc.extra:
            return self._prefill_compiled(enc, want_hidden, all_logits)
        sess = Session(self.new_cache(), path=path)
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
                if path == "compiled":  # the prompt's cache, into the compiled forward's static buffers
                    sess.cache = self.compiled.from_cache(sess.cache, enc.length)
        finally:
            if handle is not None:
                handle.remove()
        sess.length = enc.length
        logits = out.logits[0] if all_logits else out.logits[0, -1]
        hidden = out.hidden_states[-1][0] if want_hidden else None
        return sess, logits, hidden

    def _prefill_compiled(self, enc: Encoded, want_hidden: bool, all_logits: bool):
        """``prefill`` of a text prompt on the compiled forward, in blocks of ``PREFILL_CHUNK`` rows
        (one graph serves every size, so nothing compiles); its readers see the whole prompt at once,
        as a hook sees transformers' prefill. ``embeds`` stays None, as there for a text prompt (its
        decoder is given ids, not embeddings)."""
        fast, ids = self.compiled, enc.input_ids[0].tolist()
        kv = fast.empty_kv(len(ids))
        kv.length = 0
        sess = Session(kv, path="compiled", prefill="compiled")
        read = bool(self.readers)  # the residual stream is kept only for someone who reads it
        logits, hidden, resid = [], [], []
        with self._lock:
            for s in range(0, len(ids), PREFILL_CHUNK):
                part = ids[s : s + PREFILL_CHUNK]
                lg, h, r = fast.forward(kv, part, torch.arange(s, s + len(part)), None)
                logits.append(lg if all_logits else lg[-1:])
                if want_hidden or read:
                    hidden.append(h)
                if read:
                    resid.append(r)
        hidden_t = torch.cat(hidden) if hidden else None
        if read:
            resid_t = torch.cat(resid)
            for reader in self.readers:
                reader(hidden_t, resid_t)
        sess.length = enc.length
        logits_t = torch.cat(logits)
        return sess, (logits_t if all_logits else logits_t[-1]), (hidden_t if want_hidden else None)

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
        m = len(ids)
        if isinstance(sess.cache, StaticKV):
            logits, hidden, resid = self.compiled.forward(sess.cache, ids, self.position_ids(sess, positions).view(-1), attn, sess.top_only)
            sess.length = start + m
            for read in self.readers:
                read(hidden, resid)
            return logits[:n], (hidden[:n] if want_hidden else None)
        kw = {}
        if attn is not None:
            kw["attention_mask"] = self.float_mask(attn)
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

    def head_screened(self, sess: Session) -> list[int]:
        """The row counts whose lm_head this session takes through the screen (core/screen.py): its
        greedy steps on the compiled forward, where the screen was settled; [] for the full head."""
        fast = self.compiled
        if not (sess.top_only and isinstance(sess.cache, StaticKV) and fast is not None):
            return []
        return sorted(fast.screen_rows)

    def keep(self, sess: Session, base: int, rows: list[int]) -> None:
        """Keep cache slots [0, base) plus base + rows (rows ascending); drop the rest."""
        total = sess.length
        k = len(rows)
        if isinstance(sess.cache, StaticKV):
            self.compiled.keep(sess.cache, base, rows)
        elif rows == list(range(k)):
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
        clone.compiled, clone.use_compiled, clone._compiled_rows = None, False, None  # compiled over all layers
        clone.readers = []
        clone._lock = self._lock
        clone.name = f"{self.name} [first {n_layers}/{total} layers]"
        return clone


def _time_prefill(adapter: HFAdapter, enc: Encoded, mode: str) -> float:
    """Seconds of one prefill of ``enc`` into a compiled session, the prompt on ``mode``'s forward."""
    keep = adapter.compiled_prefill
    adapter.compiled_prefill = mode == "compiled"
    try:
        t0 = time.perf_counter()
        adapter.prefill(enc, path="compiled")
        return time.perf_counter() - t0
    finally:
        adapter.compiled_prefill = keep


def _alternated(timer, rounds: int) -> dict:
    """``timer(mode)`` for "eager" then "compiled", ``rounds`` times alternated (a slow moment of the
    machine hits both), the fastest of each kept: {mode: s}."""
    seen: dict = {}
    for mode in ("eager", "compiled") * rounds:
        seen[mode] = min(seen.get(mode, float("inf")), timer(mode))
    return {k: round(v, 6) for k, v in seen.items()}


def _cheaper(seconds: dict) -> bool:
    """A drafter's compiled forward measured cheaper than its eager one (``draft_seconds``)?"""
    return seconds.get("compiled", float("inf")) < seconds.get("eager", float("inf"))


def _faster(a, b) -> bool:
    """Row set ``a`` (compiled) over ``b`` (eager): as far-reaching, trees exact where b's are, and a
    cheaper plain step (each at its padded size, from the probes' timings)."""
    if min(a.cap, REACH) < min(b.cap, REACH) or (b.trees and not a.trees):
        return False
    if not b.exact:
        return True
    return (a.plain_seconds or float("inf")) < (b.plain_seconds or float("inf"))


def _shallow(m: torch.nn.Module) -> torch.nn.Module:
    c = copy.copy(m)
    c.__dict__["_modules"] = dict(m._modules)
    return c


def _module_path(root: torch.nn.Module, target: torch.nn.Module) -> list[str]:
    for name, m in root.named_modules():
        if m is target:
            return name.split(".")
    raise ModelLoadError("decoder stack not found in model")
