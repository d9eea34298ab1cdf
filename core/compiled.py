"""A compiled decode forward over a static KV cache, for Llama / Qwen2 text decoders.

A plain step of a 1.5B model on two CPU cores spends ~130 ms in its 197 matrix products (the
machine's read rate for them) and another ~30 ms in about a thousand small eager ops and their
Python dispatch: norms, rotary, the attention, the growing cache. Compiled by inductor (weights
frozen and packed once, one C++ wrapper per step, the small ops fused) the same step costs little
more than its products. This module is that forward, for the target's decode and verify blocks:

    fast = CompiledDecoder.build(model)   # None where the model is not one it handles
    kv = fast.new_kv(prompt_cache, length)
    logits, hidden, resid = fast.forward(kv, ids, positions, attn)
    fast.keep(kv, base, rows)

``resid`` is the residual stream entering each decoder layer and the final norm, (n, L + 1, H): what
an EAGLE-3 head reads from three of the layers (core/drafters/eagle3.py), delivered without hooks
(the compiled forward runs no modules). It costs a copy of n x (L + 1) x H values a step, nothing
beside the weights' 3 GB, so every graph returns it and no head's choice of layers recompiles.

Exactness is the engine's concern as everywhere (``core.rows`` measures which row counts compute
alike on this forward, as on the eager ones), so the attention keeps the rule of
``core.tree_attention``: every row sees its visible keys moved to the front in column order, the
masked ones after, and sums over keys in float32, per block of ``BLOCK`` keys (``attend``), so a
row computes alike at every width read. A tree node then computes like the same token decoded
plainly. The gather is expressed as indices into the cache (``cols``), which inductor folds
into the attention's loops; nothing is copied per row.

The products run where they measure fastest (``products``): inductor's (oneDNN on weights it packs
at freezing) or, for bfloat16 targets on CPUs with AVX512-BF16, ``core/rowdot.c``'s kernel on a copy
of the weights laid out as it reads them (``rowdot.pack``), called from the graph as the custom op
``specscope::rowdot_il`` (q / k / v and gate / up each one call: their outputs are independent dot
products, so nothing changes but the number of calls; the operators are C++ where they build:
``core/rowdot_ops.py``). Every row then computes as a single row does
(the compile settings, ``inductor_settings``, keep inductor's one-row graph computing alike), so a
plain step may run at one row where the row probe measures it cheaper; a torch sum of the same
bytes reads the weights about as fast.
On CPUs with AMX-BF16 a third path, ``specscope::rowdot_amx`` (``core/rowdot.c``: tiles of 16 rows,
fewer padded with zeros), costs about the same for 1 to 16 rows, where rowdot_il's cost grows past
four rows with its arithmetic; every row computes alike there too. All that run are timed.

On the "rowdot" path, and on the library's where a screen may run (float32 targets on the AVX2 kind:
the full head then oneDNN's packed product, called after the graph), the lm_head runs after the graph, so that a greedy
step, which reads only each row's first and second logits (``forward(..., top_only=True)``: the
engine's sessions without target probabilities), may take it through ``core.screen``: an int8 copy of
the head, the tokens that could be first or second computed exactly, the same numbers as the full
head's. It is timed against the full head at warm-up (``_settle_head``) and taken at the row counts
where it measured cheaper: on the Zen 5 EPYC one to four rows (2.0 ms off a 38.9 ms plain step,
docs/results/screen33.log); past four, the int8 products' arithmetic costs more than the bytes saved.
On the library path the screen's numbers are rowdot's, not oneDNN's, so a greedy session takes it at
every row count or at none, as their sum measured.

A model drafter runs this forward too (``CompiledDecoder(model, lossy=True)``, taken where its draft
forwards measure cheaper than its eager ones: ``HFAdapter._settle_draft``). Its numbers never reach
the output (the target verifies every token), so its products may also run on int8 copies of its
weights (``specscope::rowdot_i8``): a 0.5B drafter's step reads half the bytes of bfloat16.

The prompt's prefill stays with transformers (it is shared by plain and speculative decoding); its
cache is copied into the static buffers. One graph serves every block size and cache capacity
(dynamic shapes): nothing recompiles while decoding.
"""

from __future__ import annotations

import functools
import os
import threading
import time

import torch
import torch.nn.functional as F

FAMILIES = ("llama", "qwen2")
GROW = 512  # cache capacity grows in steps of this many slots
WIDTH = 64  # the attention reads the first length + n slots rounded up to this (masked after)
BLOCK = 64  # keys per block of the attention's sums (``attend``); WIDTH and GROW are multiples of it
RESERVE = 2  # memory a compile takes, in copies of the weights (kept free for it: __init__)
VERSION = 9  # bump when the computation changes: row sets measured on it are measured again
PRODUCTS = ("library", "rowdot", "amx", "i8")  # the products' paths (``products``); rowdot's and amx's are in row-set keys
PRODUCT_ROWS = (1, 2, 4, 8)  # the row counts the products' choice is timed at: plain steps (padded or not), verifies
SCREEN_ROWS = (1, 2, 3, 4, 8)  # the row counts the lm_head's screen is timed at (``_settle_head``)
MAX_SCREEN_ROWS = 64  # SPECSCOPE_HEAD_SCREEN=on: the screen up to this many rows (a verify of a tree)
SWEEP = 256 << 20  # bytes of layers the products' choice reads as a step does: past the caches


_built = 0  # compiled forwards made in this process (release() drops them all)


def release() -> None:
    """Forget every compiled forward of this process: with ``core.pairs.release``, when every model
        is dropped. Dynamo's cache holds each graph with its model, and inductor's module cache holds
        the generated code with the frozen weights as module attributes (``_frozen_param0``...), which
        ``torch._dynamo.reset`` leaves (measured: a process stayed at 7.9 GB resident after releasing a
    float32 0.5B target, at 14.5 GB after a 1.5B one)."""
    global _built
    from . import kernels

    kernels.reserve(-kernels.reserved())
    if _built:
        import sys

        import torch._dynamo
        from torch._inductor.codecache import PyCodeCache

        torch._dynamo.reset()
        for mod in list(PyCodeCache.modules):
            for name, value in list(vars(mod).items()):
                if isinstance(value, torch.Tensor):  # frozen weights and folded constants
                    delattr(mod, name)
            if sys.modules.get(mod.__name__) is mod:
                del sys.modules[mod.__name__]
        PyCodeCache.cache_clear()
        _built = 0


def _fixed(t: torch.Tensor) -> torch.Tensor:
    """A cache buffer (KV heads, capacity, head dim) with its heads and head dim marked static: only
    its capacity is a symbol of the compiled graph. Every symbol is an int the graph's wrapper turns
    into a tensor and back, and a guard, on every call. With every dim symbolic (dynamic=True, no duck
    shapes) the 1.5B target's graph took 345 a call: its 56 buffers' three dims, its 113 packed weights'
    two (``_make_packs`` marks them static) and a layout read from each pack; now 62 (docs/results.md,
    thirty-first session)."""
    import torch._dynamo

    torch._dynamo.mark_static(t, 0)
    torch._dynamo.mark_static(t, 2)
    return t


class StaticKV:
    """A session's cache: per layer (KV heads, capacity, head dim) keys and values, ``length`` filled."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], length: int):
        self.keys, self.values, self.length = keys, values, length

    @property
    def capacity(self) -> int:
        return int(self.keys[0].shape[1])

    def reserve(self, n: int) -> None:
        need = self.length + n
        if need <= self.capacity:
            return
        cap = -(-need // GROW) * GROW
        for buf in (self.keys, self.values):
            for i, t in enumerate(buf):
                new = _fixed(t.new_zeros(t.shape[0], cap, t.shape[2]))
                new[:, : self.length] = t[:, : self.length]
                buf[i] = new


def inductor_settings(hidden_size: int) -> dict:
    """The inductor configuration the compiled forward is built with (names as
    ``torch._inductor.config.patch`` takes them)."""
    import torch._inductor.config as ic

    return {
        "freezing": True,  # weights are constants: packed once for the CPU's kernels
        "cpp_wrapper": True,  # one C++ call per step, not a Python line per kernel
        # every bfloat16 result rounded where eager rounds it, whatever inductor fuses: left out, a
        # fused kernel keeps some sums in float32 (several residual adds, then the norm's sum of
        # squares over the unrounded values), and which ones depends on the graph: the one-row
        # graph's kernels kept others than the many-row graph's, so one row computed unlike a row of
        # a verify (docs/results.md, twenty-sixth session)
        "emulate_precision_casts": True,
        # no sum split across threads: where a graph's rows are fewer than the threads (the one-row
        # graph's norms), inductor splits the reduction itself over the threads, each summing its
        # part, where the many-row graph sums each row in one thread, in order. A kernel runs on one
        # thread where its work per thread would be under this: a row's hidden size, so a norm over
        # one row is never split
        "cpp.min_chunk_size": max(ic.cpp.min_chunk_size, hidden_size),
    }


def eligible(model) -> str | None:
    """Why this model cannot take the compiled forward (None: it can)."""
    cfg = model.config
    if getattr(cfg, "model_type", "") not in FAMILIES:
        return f"model type {getattr(cfg, 'model_type', '?')!r} (compiled forward: {', '.join(FAMILIES)})"
    rope = getattr(cfg, "rope_scaling", None) or getattr(cfg, "rope_parameters", None) or {}
    if (rope.get("rope_type") or rope.get("type") or "default") != "default":
        return f"rope type {rope.get('rope_type') or rope.get('type')!r}"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"activation {cfg.hidden_act!r}"
    if getattr(cfg, "use_sliding_window", False):
        return "sliding-window attention"
    if not hasattr(getattr(model, "model", None), "layers"):
        return "no decoder layers found"
    return None


def products(model, lossy: bool = False) -> str:
    """Which products the compiled forward of ``model`` runs: "rowdot", "amx", "i8" or "library" (module
    docstring). ``SPECSCOPE_COMPILED_PRODUCTS`` (auto / rowdot / amx / i8 / library) forces one (rowdot only where it
    runs: a bfloat16 CPU target, rowdot_dpbf16 built; amx where rowdot_amx runs and takes every weight's
    shape; i8, int8 copies of the weights, only for a drafter (``lossy``) where rowdot_i8 runs and takes
    every weight's shape); by default all that run are timed on the model's weights
    at ``PRODUCT_ROWS`` rows, as a step calls them over its first layers (``_step_calls``, at least
    ``SWEEP`` bytes) scaled to all layers (``_time_products``), and the path whose step costs least
    across those row counts is kept (``machine.cheapest_per_token``); the verdict is cached per machine (the tuning file,
    key "compiled_products")."""
    from . import rowdot
    from .errors import InputError
    from .machine import cpu_name, cheapest_per_token, tuned, update_tuning

    want = os.environ.get("SPECSCOPE_COMPILED_PRODUCTS", "").strip().lower() or "auto"
    if want not in ("auto", *PRODUCTS):
        raise InputError(f"SPECSCOPE_COMPILED_PRODUCTS={want!r}: use auto, {', '.join(PRODUCTS)}")
    p = next(model.parameters())
    bf16_cpu = p.dtype == torch.bfloat16 and p.device.type == "cpu"
    able = ["library"] + (["rowdot"] if bf16_cpu and rowdot.dpbf16() else [])
    shapes = [m.weight.shape for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if bf16_cpu and rowdot.amx() and all(rowdot.amx_fits(s) for s in shapes):
        able.append("amx")
    if lossy and p.device.type == "cpu" and rowdot.i8() and all(rowdot.i8_fits(s) for s in shapes):
        able.append("i8")
    if want != "auto" or len(able) == 1:
        return want if want in able else "library"
    key = (
        f"{cpu_name()}|threads={torch.get_num_threads()}|torch={torch.__version__}|rowdot={rowdot.version()}|rows={PRODUCT_ROWS}|"
        f"step={SWEEP >> 20}MB|{p.dtype}|{','.join(able)}|{_shapes(model)}|per-rows"
    )
    hit = tuned("compiled_products", key)
    if hit is None:
        hit = _time_products(_step_calls(model), able)
        update_tuning(lambda d: d.setdefault("compiled_products", {}).__setitem__(key, hit))
    return cheapest_per_token(hit)


def _shapes(model) -> str:
    """The model's linears by weight shape and count, for the verdict's key."""
    counts: dict = {}
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            counts[tuple(m.weight.shape)] = counts.get(tuple(m.weight.shape), 0) + 1
    return ",".join(f"{o}x{k}*{c}" for (o, k), c in counts.items())


def _step_calls(model) -> list[tuple[list, float]]:
    """The products of a step as the compiled forward calls them on rowdot (per layer q / k / v as one
    call, o, gate / up as one, down; then the lm_head), over the first layers that hold ``SWEEP`` bytes:
    [(linears of one call, weight)], ``weight`` the number of layers over the number taken (1 for the
    lm_head); the library's path calls each linear alone."""
    layers = list(model.model.layers)
    calls, size, used = [], 0, 0
    for layer in layers:
        a, mlp = layer.self_attn, layer.mlp
        calls += [[a.q_proj, a.k_proj, a.v_proj], [a.o_proj], [mlp.gate_proj, mlp.up_proj], [mlp.down_proj]]
        size += sum(p.numel() * p.element_size() for p in layer.parameters())
        used += 1
        if size >= SWEEP:
            break
    return [(c, len(layers) / used) for c in calls] + [([model.lm_head], 1.0)]


@torch.inference_mode()
def _time_products(calls: list, paths=("rowdot", "library"), rounds: int = 3) -> dict:
    """Seconds of the products of a step at each of ``PRODUCT_ROWS`` rows, on each path, as the step
    calls them (``_step_calls``: distinct weights in the step's order, more than the caches hold, so
    each is read from memory as in a step; one matrix of each shape timed alone and kept in cache
    had the library's small products look cheaper than in a step, and an AMX Xeon chose them at 158 ms
    a one-row step against rowdot_il's 122: twenty-seventh session), scaled to all layers; the fastest
    of ``rounds`` alternated between the ``paths``: {path: {rows: s}}."""
    from . import kernels, rowdot

    il, onednn = kernels.PATHS["rowil"], kernels.PATHS["packed"]
    make = {  # the library's product as inductor's freezing runs it: oneDNN on a packed weight
        "rowdot": lambda: [[(lambda x, p=rowdot.pack_linears(c): il(x, *p), w)] for c, w in calls],
        "amx": lambda: [[(lambda x, p=rowdot.pack_linears(c, amx=True): rowdot.linear_amx(x, *p), w)] for c, w in calls],
        "i8": lambda: [[(lambda x, p=rowdot.pack_linears(c, i8=True): rowdot.linear_i8(x, *p), w)] for c, w in calls],
        "library": lambda: [[(lambda x, p=kernels._pack(m.weight), b=m.bias: onednn(x, p, b), w) for m in c] for c, w in calls],
    }
    packs = {p: make[p]() for p in paths}
    dtype = calls[0][0][0].weight.dtype
    xs = {n: [torch.randn(n, c[0].in_features).to(dtype) for c, _ in calls] for n in PRODUCT_ROWS}
    best = {p: {n: float("inf") for n in PRODUCT_ROWS} for p in packs}
    for r in range(rounds + 1):  # the first round untimed
        for path, per_call in packs.items():
            for n in PRODUCT_ROWS:
                total = 0.0
                for x, fs in zip(xs[n], per_call):
                    for f, w in fs:
                        t0 = time.perf_counter()
                        f(x)
                        total += (time.perf_counter() - t0) * w
                if r:
                    best[path][n] = min(best[path][n], total)
    return {p: {str(n): round(t, 6) for n, t in per.items()} for p, per in best.items()}


def _rms(x, w, eps):
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * xf.to(x.dtype)


def _rotate(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def attend(q, k, v, bias, scale):
    """Attention of ``q`` (KV, n, G, d) over ``k`` / ``v`` (KV, n, B, BLOCK, d): each row its own keys
    in B blocks of ``BLOCK``, ``bias`` (n, B, BLOCK) added to the scores. Returns (KV, n, G, d).

    The sum over keys of probabilities x values runs per block as a batched product of a fixed
    ``BLOCK`` keys, then over the blocks in order: the masked keys after a row's own add exact zeros,
    so a row computes alike whatever width is read. One batched product over all the keys blocks its
    sum by the width (measured for the real target's heads: rows summed over 256 keys came out other
    than over 192, 384 or 640), and the width moves between a plain step and a verify. (Sums written
    as plain reductions are width-invariant too, but inductor's loops for them cost 3-5x the products
    at 256-512 keys.) The softmax's maximum and sum run over every key of the row at once."""
    s = torch.matmul(q[:, :, None], k.transpose(-1, -2)) * scale + bias[None, :, :, None, :]  # (KV, n, B, G, BLOCK)
    e = torch.exp(s - s.amax(dim=(2, 4), keepdim=True))
    p = e / e.sum(dim=(2, 4), keepdim=True)
    return torch.matmul(p, v).sum(2)


def _lin(x, lin):
    return F.linear(x, lin.weight, lin.bias)


class CompiledDecoder:
    """The decoder's forward written once over the model's own weights, compiled by inductor."""

    def __init__(self, model, lossy: bool = False):
        cfg = model.config
        self.model = model
        self.lossy = lossy  # a drafter's: products may round the weights (i8)
        self.layers = list(model.model.layers)
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.eps = cfg.rms_norm_eps
        rot = model.model.rotary_emb
        self.inv_freq = rot.inv_freq.float()
        self.rope_scale = float(getattr(rot, "attention_scaling", 1.0))
        self.dtype = next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        self._fn = None
        self._packs: list[dict] | None = None  # rowdot's weight copies, made at the compile
        self._layout: int | None = None  # rowdot_il's layout of those copies
        # the lm_head outside the graph (the "rowdot" path): in full, or screened where a step
        # needs only each row's first two logits (core/screen.py) and that measured cheaper
        self._head_outside = False
        self._onednn_head = None  # the library path's full head outside the graph: oneDNN's packed copy
        self.screen = None  # core.screen.Screen, made after the compile where it may run
        self.screen_rows: frozenset = frozenset()  # row counts whose head the screen takes
        self.head_seconds: dict = {}  # the timing behind that: {"full" / "screen": {rows: s}}
        self.head_why: str | None = None  # why no screen (None: screened at screen_rows)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.compile_s: float | None = None  # seconds the first compile took (None: not yet)
        self.failed: str | None = None  # why compiling or running it failed (the eager path stays)
        # memory the compile will take (inductor's frozen, packed copy of the weights, and its peak
        # while building it): kept from the product paths' packed copies (core.kernels) until then
        self.reserved = RESERVE * sum(p.numel() * p.element_size() for p in model.parameters())
        from . import kernels

        kernels.reserve(self.reserved)

    @functools.cached_property
    def products(self) -> str:
        """ "rowdot", "amx", "i8" or "library": measured (``products``) when first asked (the row-set key, the compile)."""
        return products(self.model, self.lossy)

    @property
    def ready(self) -> bool:
        return self.compile_s is not None and not self.failed

    @classmethod
    def build(cls, model, lossy: bool = False) -> CompiledDecoder | None:
        return None if eligible(model) else cls(model, lossy)

    # ---- the forward ------------------------------------------------------------------
    def _make_packs(self) -> None:
        """rowdot's (rowdot_amx's, rowdot_i8's) copies of the weights (``rowdot.pack_linears``): per layer q / k / v as one, o,
        gate / up as one, down; then the lm_head."""
        if self._packs is not None:
            return
        if self.products == "library":
            # the head out of the graph where a screen may take it (``_head``): in full on oneDNN's
            # packed product, as inductor computes it in the graph (core.kernels' "packed")
            from . import kernels, screen

            head = self.model.lm_head
            self._head_outside = (
                not self.lossy
                and head.weight.device.type == "cpu"
                and kernels.available("packed", head.weight.dtype)
                and screen.available(head.weight, head.bias) is None
            )
            if self._head_outside:
                self._onednn_head = kernels._pack(head.weight)
            return
        from . import rowdot, rowdot_ops

        kind = {"amx": True} if self.products == "amx" else {"i8": True} if self.products == "i8" else {}
        self._layout = rowdot.layout()  # rowdot_il's: as ``pack`` lays them out

        rowdot_ops.register()

        def pack(lins):
            return rowdot.pack_linears(lins, **kind)

        packs = []
        for layer in self.layers:
            a, mlp = layer.self_attn, layer.mlp
            packs.append(
                {
                    "qkv": pack([a.q_proj, a.k_proj, a.v_proj]),
                    "o": pack([a.o_proj]),
                    "gate_up": pack([mlp.gate_proj, mlp.up_proj]),
                    "down": pack([mlp.down_proj]),
                }
            )
        packs.append({"head": pack([self.model.lm_head])})
        # one op either way: out of the graph, the screen may take it (a target's: a drafter reads every logit)
        self._head_outside = self.products == "rowdot" and not self.lossy
        import torch._dynamo

        for t in (t for p in packs for call in p.values() for t in call if isinstance(t, torch.Tensor)):
            torch._dynamo.mark_static(t)  # the graph's inputs: symbols only where a size changes (``_fixed``)
        self._packs = packs

    def _step(self, ids, pos, slots, cols, bias, keys, values):
        n = ids.shape[0]
        nh, kvh, d = self.heads, self.kv_heads, self.head_dim
        g = nh // kvh
        x = F.embedding(ids, self.model.model.embed_tokens.weight)
        freqs = pos[:, None].float() * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * self.rope_scale).to(x.dtype)[:, None, :]
        sin = (emb.sin() * self.rope_scale).to(x.dtype)[:, None, :]
        scale = d**-0.5
        resid = []
        il = self._packs
        ops = {"amx": "rowdot_amx", "i8": "rowdot_i8", "rowdot": "rowdot_il"}
        rd = getattr(torch.ops.specscope, ops[self.products]) if il is not None else None
        if self.products == "rowdot":  # its layout read once: every int the graph reads is an input of each call
            rd = functools.partial(rd, layout=self._layout)
        for i, layer in enumerate(self.layers):
            resid.append(x)
            a, mlp = layer.self_attn, layer.mlp
            h = _rms(x, layer.input_layernorm.weight, self.eps)
            if il is not None:
                q, k, v = rd(h, *il[i]["qkv"]).split([nh * d, kvh * d, kvh * d], dim=-1)
            else:
                q, k, v = _lin(h, a.q_proj), _lin(h, a.k_proj), _lin(h, a.v_proj)
            q = _rotate(q.reshape(n, nh, d), cos, sin)
            k = _rotate(k.reshape(n, kvh, d), cos, sin)
            v = v.reshape(n, kvh, d)
            keys[i].index_copy_(1, slots, k.transpose(0, 1))
            values[i].index_copy_(1, slots, v.transpose(0, 1))
            kg = keys[i][:, cols].float()  # (KV, n, B, BLOCK, d): each row's keys in its own order
            vg = values[i][:, cols].float()
            qg = q.view(n, kvh, g, d).transpose(0, 1).float()  # (KV, n, G, d): a row's query heads
            o = attend(qg, kg, vg, bias, scale)  # (KV, n, G, d)
            o = o.to(x.dtype).transpose(0, 1).reshape(n, nh * d)
            if il is not None:
                x = x + rd(o, *il[i]["o"])
                h = _rms(x, layer.post_attention_layernorm.weight, self.eps)
                gate, up = rd(h, *il[i]["gate_up"]).chunk(2, dim=-1)
                x = x + rd(F.silu(gate) * up, *il[i]["down"])
            else:
                x = x + _lin(o, a.o_proj)
                h = _rms(x, layer.post_attention_layernorm.weight, self.eps)
                x = x + _lin(F.silu(_lin(h, mlp.gate_proj)) * _lin(h, mlp.up_proj), mlp.down_proj)
        resid.append(x)
        x = _rms(x, self.model.model.norm.weight, self.eps)
        if self._head_outside:
            head = None  # ``_head``, after the graph
        else:
            head = rd(x, *il[-1]["head"]) if il is not None else _lin(x, self.model.lm_head)
        return head, x, torch.stack(resid, dim=1)

    def _head(self, x: torch.Tensor, top_only: bool = False) -> torch.Tensor:
        """The lm_head over rows ``x`` after the graph: the full head (rowdot_il's on the "rowdot" path,
        oneDNN's packed product on the library's), or with ``top_only`` the screened logits (float32;
        each row's first and second those of rowdot's head bit for bit: core/screen.py). On the rowdot
        path the screen is rowdot_il's own numbers, so it may take some row counts and not others; on
        the library's oneDNN computes a row unlike rowdot, so a greedy session takes the screen at every
        row count or at none (``_settle_head``), and every row of it is rowdot's numbers."""
        library = self.products == "library"
        if top_only and (x.shape[0] in self.screen_rows or (library and self.screen_rows)):
            out = self.screen.logits(x) if x.shape[0] <= MAX_SCREEN_ROWS else None
            if out is not None:
                return out
            if library:  # the screen's own full head: rowdot's numbers, as its exact tokens
                from . import rowdot

                return rowdot.sums(x, self.model.lm_head.weight).to(x.dtype)
        if library:
            from . import kernels

            return kernels.PATHS["packed"](x, self._onednn_head, self.model.lm_head.bias)
        w, b = self._packs[-1]["head"]
        return torch.ops.specscope.rowdot_il(x, w, b, self._layout)

    def compiled(self):
        with self._lock:
            if self._fn is None:
                import torch._inductor.config as ic

                for name, value in inductor_settings(self.model.config.hidden_size).items():
                    section, _, key = name.rpartition(".")
                    setattr(getattr(ic, section) if section else ic, key, value)
                import torch.fx.experimental._config as fx_config

                fx_config.use_duck_shape = False  # a block of 2 rows is not the 2 KV heads' size
                import torch._dynamo.config as dc

                # one entry per model (guarded on it) and per shape family: room for many models in
                # one process; past the limit fail loudly, never fall back to eager numbers silently
                dc.recompile_limit = max(dc.recompile_limit, 64)
                dc.fail_on_recompile_limit_hit = True
                self._fn = torch.compile(self._step, dynamic=True, fullgraph=True)
                global _built
                _built += 1
            return self._fn

    def warm(self, kv_len: int = 64) -> bool:
        """Compile now (minutes for a 1.5B model on two cores); True when it is ready. A failure
        (no C++ compiler, an unsupported op) is recorded in ``failed``, never raised."""
        if self.ready or self.failed:
            return self.ready
        t0 = time.perf_counter()
        try:
            # buffers made as sessions make them (under inference mode, in prefill): the graph's
            # guards check it, so a warm-up over plain tensors would be compiled a second time
            with torch.inference_mode():
                self._make_packs()
                kv = self.empty_kv(kv_len)
            # dynamic from the start: one graph for every block size of 2 or more, and one for a
            # single row (sizes 0 and 1 are always specialised): the row-set probe and plain
            # decoding run both, so both are compiled here, ahead of any session
            seen = None
            for n in (2, 3, 1):
                _, h, _ = self.forward(kv, list(range(n)), torch.arange(kv.length, kv.length + n), None)
                kv.length -= n
                seen = h if n == 3 else seen
            if self._head_outside:
                try:
                    self._settle_head(seen)
                except Exception as e:  # the full head serves: a screen that failed is never fatal
                    self.screen, self.screen_rows = None, frozenset()
                    self.head_why = f"{type(e).__name__}: {str(e).strip()[:200]}"
        except Exception as e:
            self.failed = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
            return False
        finally:
            self._give_back()
        self.compile_s = time.perf_counter() - t0
        return True

    @torch.inference_mode()
    def _settle_head(self, x: torch.Tensor) -> None:
        """Screen the lm_head (core/screen.py) at the row counts where it measures cheaper than the
        full head: both timed at ``SCREEN_ROWS`` on rows of ``x`` (the warm-up's final hidden states),
        the fastest of a few alternated rounds. ``SPECSCOPE_HEAD_SCREEN`` (``device.head_screen_default``):
        auto (default), on (every row count up to ``MAX_SCREEN_ROWS``), off."""
        from . import screen
        from .device import head_screen_default

        want = head_screen_default()
        head = self.model.lm_head
        self.head_why = "SPECSCOPE_HEAD_SCREEN=off" if want == "off" else screen.available(head.weight, head.bias)
        if self.head_why:
            return
        self.screen = screen.Screen(head.weight)
        if want == "on":
            self.screen_rows = frozenset(range(1, MAX_SCREEN_ROWS + 1))
            return
        rows = [x[torch.arange(n) % x.shape[0]].contiguous() for n in SCREEN_ROWS]
        best = {"full": {}, "screen": {}}
        for r in range(7):  # the first round untimed; six timed (four let a busy moment flip 8 rows, 33rd session)
            for xn in rows:
                for name, top in (("full", False), ("screen", True)):
                    self.screen_rows = frozenset(SCREEN_ROWS) if top else frozenset()
                    t0 = time.perf_counter()
                    self._head(xn, top)
                    t = time.perf_counter() - t0
                    if r:
                        n = xn.shape[0]
                        best[name][n] = min(best[name].get(n, t), t)
        self.head_seconds = {k: {str(n): round(t, 6) for n, t in v.items()} for k, v in best.items()}
        self.screen_rows = frozenset(n for n in SCREEN_ROWS if best["screen"][n] < best["full"][n])
        if self.products == "library":  # all row counts or none (``_head``): as their sum measured
            cheaper = sum(best["screen"].values()) < sum(best["full"].values())
            self.screen_rows = frozenset(range(1, MAX_SCREEN_ROWS + 1)) if cheaper else frozenset()
        if not self.screen_rows:
            self.head_why = "the full head measured cheaper at every row count"

    def _give_back(self) -> None:
        """The reservation ends: the compile took its memory (now seen as used) or failed."""
        from . import kernels

        kernels.reserve(-self.reserved)
        self.reserved = 0

    def running(self) -> bool:
        """Is a ``warm_in_background`` thread (its compile, then what follows it) still at work, in
        another thread than this one?"""
        t = self._thread
        return t is not None and t.is_alive() and t is not threading.current_thread()

    def join(self) -> None:
        """Wait for a background warm (and what follows it) to end: a caller that must have the
        compiled forward now waits for the compile already running rather than start a second one."""
        if self.running():
            self._thread.join()

    def warm_in_background(self, then=None) -> None:
        """``warm`` in a daemon thread (once), then ``then()`` if it compiled; ``ready`` says when
        the compile is done."""

        def work():
            if self.warm() and then is not None:
                then()

        with self._lock:
            if self._thread is None and not self.failed:
                self._thread = threading.Thread(target=work, name="specscope-compile", daemon=True)
                self._thread.start()

    # ---- sessions -----------------------------------------------------------------------
    def empty_kv(self, length: int = 0) -> StaticKV:
        cap = max(GROW, -(-(length + 1) // GROW) * GROW)
        shape = (self.kv_heads, cap, self.head_dim)
        keys = [_fixed(torch.zeros(shape, dtype=self.dtype, device=self.device)) for _ in self.layers]
        values = [_fixed(torch.zeros(shape, dtype=self.dtype, device=self.device)) for _ in self.layers]
        return StaticKV(keys, values, length)

    def from_cache(self, cache, length: int) -> StaticKV:
        """Copy a transformers cache of ``length`` slots (a prefill's) into static buffers."""
        kv = self.empty_kv(length)
        for i, layer in enumerate(cache.layers):
            kv.keys[i][:, :length] = layer.keys[0, :, :length]
            kv.values[i][:, :length] = layer.values[0, :, :length]
        return kv

    @torch.inference_mode()
    def forward(self, kv: StaticKV, ids: list[int], positions: torch.Tensor, attn: torch.Tensor | None, top_only: bool = False):
        """A block of n tokens after the cache, ``attn`` (bool (n, length + n); None: causal).
        Returns logits (n, V), the final (normed) hidden states (n, H) and the residual stream
        entering each layer and the final norm (n, L + 1, H). ``top_only``: the caller reads only
        each row's two largest logits (greedy decoding): the rest may be the screen's (``_head``)."""
        n = len(ids)
        kv.reserve(n)
        start = kv.length
        # at least two blocks: a dimension of size 1 is specialised by the compiler, which would
        # compile the whole graph again (minutes) for the first short prompt
        width = min(kv.capacity, max(2 * BLOCK, -(-(start + n) // WIDTH) * WIDTH))
        if attn is None:
            attn = torch.ones(n, start + n, dtype=torch.bool).tril(start)
        visible = torch.zeros(n, width, dtype=torch.bool)
        visible[:, : attn.shape[1]] = attn.cpu()
        # each row's visible columns first, in column order (stable), then the masked ones
        cols = torch.sort((~visible).to(torch.uint8), dim=1, stable=True).indices
        hidden = torch.gather(~visible, 1, cols)
        bias = torch.zeros(n, width, dtype=torch.float32).masked_fill_(hidden, torch.finfo(torch.float32).min)
        dev = self.device
        blocks = width // BLOCK
        logits, h, resid = self.compiled()(
            torch.tensor(ids, dtype=torch.long, device=dev),
            positions.to(dev, torch.long).clone(),  # made here: every input an inference tensor
            torch.arange(start, start + n, device=dev),
            cols.view(n, blocks, BLOCK).to(dev),  # blocked here, not in the graph (a view of a
            bias.view(n, blocks, BLOCK).to(dev),  # dynamic width kept inductor busy for 25 minutes)
            kv.keys,
            kv.values,
        )
        kv.length = start + n
        if logits is None:
            logits = self._head(h, top_only)
        return logits, h, resid

    @staticmethod
    def keep(kv: StaticKV, base: int, rows: list[int]) -> None:
        """Keep slots [0, base) plus base + rows (ascending); the rest is free again."""
        k = len(rows)
        if rows != list(range(k)):
            idx = torch.tensor(rows, dtype=torch.long, device=kv.keys[0].device) + base
            for buf in (kv.keys, kv.values):
                for t in buf:
                    t[:, base : base + k] = t.index_select(1, idx)
        kv.length = base + k
