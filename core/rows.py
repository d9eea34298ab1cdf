"""Row-invariant target forwards: the row counts at which a forward computes every row the same way.

A forward of n new tokens multiplies an (n, H) block by every weight matrix. Math libraries pick
their algorithm by the block's shape: on one CPU a one-row product takes a GEMV path and a 2-row
one a GEMM path; on another, rows are computed in register blocks of 8 and the rows of a partial
block take a different micro-kernel. The results agree to rounding, not to the bit, and a
speculative step verifies its tokens in a forward of several rows while plain decoding computes
each token in a forward of one. In float32 the difference almost never flips a token; in bfloat16
it flips near-ties (measured: 1-2 of 4 real prompts).

So the set of row counts that compute alike is measured, never assumed, on the target at hand:

    rows = row_set(adapter)        # cached per machine, dtype, device, product paths and model
    rows.pad(n)                    # the row count a forward of n tokens is run at (None: too many)

The probe decodes one fixed token sequence after a fixed prompt (a short one, then a longer one)
in chunks of s rows, for every candidate s (the last chunk padded to s), each chunk with an
explicit causal mask exactly as the engine's verify forwards are fed, and groups the sizes whose
logits agree bit for bit at every position of both: chunked decoding at two sizes of one group gives the same numbers, so any mix of them
does. Sizes whose products take different paths (``core.kernels`` may pick one path for a one-row
product and another for blocks; rowil counts as rowdot: the same numbers) are never grouped, however well they agree on the probe: two
algorithms agree on most rows and differ on a few (measured: the tiny Idefics3 target in bfloat16,
one-row products on MKL, blocks on rowdot, equal on the probe, one logits row in 24 different in
real decoding). The engine then runs every target forward (plain steps and verifies) at a size of the chosen
group: plain decoding and speculative decoding are the same computation, row for row.

Trees need one more thing: a node's ancestors sit at scattered columns of the verify block, where
plain decoding had them contiguous, and sums over keys are blocked by column. So the probe also
hides the sequence's next tokens in a tree behind decoy siblings and checks those rows, and it is
run for three attention paths in turn: eager, ``core.tree_attention`` (each row attends over its keys gathered
into position order) and the model's own (SDPA). The first that makes chains and trees exact far
enough wins (eager first: it is the cheaper one); otherwise the one reaching furthest, with exact
trees, then the cheapest plain step.

Within a path, the group chosen is the one with the cheapest plain step among those reaching
``REACH`` rows (a step of the automatic chain, root included). A forward of n tokens runs at the
group's smallest size >= n, or at a larger size of the group that measured clearly cheaper
(``padded_size``: any size of the group computes alike, and a library's blocking can make 3 rows
cheaper than 2). Plain steps at a size above 1 are padded (dummy rows after the real one, their KV
slots dropped): where an unpadded one-row step measured cheaper, the fastest plain decoding
(unpadded) stays the speed baseline and the padded one the identity reference (core/api.py
records which is which). Where no group reaches 2 rows the engine does not pad and says so; any
divergence left is then explained by ``core.divergence``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field

import torch

from . import compiled, kernels, tree_attention
from .machine import cpu_name, tuned, update_tuning

# 5 and 6 since the thirtieth session: a chain of 4 or 5 drafted tokens ran padded to 8 rows; on the Zen 5
# EPYC the step's products at 4 / 5 / 6 / 8 rows: rowdot_il 43 / 60 / 63 / 68 ms, the library's 44 / 46 / 48 / 57
CANDIDATES = (1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48)
TOKENS = 32  # positions compared
REACH = 17  # AUTO_CAP + the root: a group should verify a full automatic chain
PREFIXES = (24, 131)  # prompt tokens before the probe sequence: a short context and a longer, unaligned one
# the compiled forward's attention reads the first length + n key slots rounded up to compiled.WIDTH, so
# blocks of different sizes at one position can read different widths: its probe also decodes across
# such a step (176 + 16 = 192; seventeenth session, AVX512-BF16 EPYC: its 2- and 4-row steps differed in
# real decoding just past one, equal at the first two contexts)
COMPILED_PREFIXES = PREFIXES + (176,)
VERSION = 8  # bump when the probe changes: cached sets are measured again


@dataclass(frozen=True)
class RowSet:
    """The measured group of row counts (ascending); empty when none was found."""

    sizes: tuple[int, ...] = ()
    groups: tuple[tuple[int, ...], ...] = ()  # every group found, for the record
    seconds: dict = field(default_factory=dict)  # size -> seconds of one forward (probe timing)
    measured_s: float = 0.0
    attention: str = ""  # the attention implementation it holds for
    trees: bool = False  # tree verifies too (not only chains) bit-identical

    @property
    def exact(self) -> bool:
        return len(self.sizes) > 0

    @property
    def cap(self) -> int:
        """The most rows one forward may have (0: no invariant group, forwards are not padded)."""
        return max(self.sizes, default=0)

    def pad(self, n: int) -> int | None:
        """The row count a forward of ``n`` tokens runs at: a size of the group >= n, the cheapest
        as measured (``padded_size``); ``n`` itself when there is no group; None when ``n`` is above
        the group (draft less)."""
        if not self.sizes:
            return n
        return padded_size(self.sizes, self.seconds, n)

    @property
    def plain_seconds(self) -> float:
        """Measured seconds of a plain step at its padded size (0.0 when not measured)."""
        return self.seconds.get(self.pad(1), 0.0) if self.exact else self.seconds.get(1, 0.0)

    @property
    def unpadded_faster(self) -> bool:
        """Plain steps are padded (to ``pad(1)`` > 1 rows) and a one-row forward, outside the group,
        measured cheaper: then unpadded plain decoding is the speed baseline (core/api.py). Without
        timings, padding is assumed to cost."""
        if not self.exact or self.pad(1) == 1:
            return False
        return self.seconds.get(1, 0.0) < self.seconds.get(self.pad(1), float("inf"))

    def to_json(self) -> dict:
        return {
            "sizes": list(self.sizes),
            "groups": [list(g) for g in self.groups],
            "seconds": {str(k): round(v, 6) for k, v in self.seconds.items()},
            "measured_s": round(self.measured_s, 2),
            "attention": self.attention,
            "trees": self.trees,
        }

    @classmethod
    def from_json(cls, d: dict) -> RowSet:
        return cls(
            tuple(d.get("sizes", ())),
            tuple(tuple(g) for g in d.get("groups", ())),
            {int(k): float(v) for k, v in d.get("seconds", {}).items()},
            float(d.get("measured_s", 0.0)),
            str(d.get("attention", "")),
            bool(d.get("trees", False)),
        )


STOCK = RowSet()  # no padding: what a forward does without the measurement

CHEAPER = 0.9  # a larger size is taken only where it measured at most this share of the smaller one's time


def padded_size(sizes, seconds: dict[int, float], n: int) -> int | None:
    """The size of group ``sizes`` a forward of ``n`` tokens runs at: the smallest size >= n, or a
    larger one that measured clearly cheaper (``CHEAPER``; probe timings in ``seconds``). Any size
    of the group computes every row alike, so this choice is free: a math library's blocking can
    make a 3- or 4-row product cheaper than a 2-row one (measured: oneDNN's packed bfloat16 products
    on an AVX512-BF16 EPYC, 2 rows 128 ms a step, 3 rows 106, 4 rows 102). None above the group."""
    fit = [s for s in sorted(sizes) if s >= n]
    if not fit:
        return None
    best = fit[0]
    for s in fit[1:]:
        if s in seconds and best in seconds and seconds[s] < CHEAPER * seconds[best]:
            best = s
    return best


def causal_mask(start: int, n: int, width: int) -> torch.Tensor:
    """(n, width) bool: row i sees the cache [0, start) and the new rows 0..i."""
    m = torch.zeros(n, width, dtype=torch.bool)
    m[:, :start] = True
    m[:, start : start + n] = torch.ones(n, n, dtype=torch.bool).tril()
    return m


def padded_inputs(ids: list[int], positions: torch.Tensor, attn: torch.Tensor, start: int, rows: int):
    """``ids`` / ``positions`` / ``attn`` (n rows over ``start + n`` columns) grown to ``rows`` rows:
    each dummy row repeats the last token at the last position and sees the cache and itself only,
    and no real row sees a dummy (their KV slots come after the real ones and are dropped)."""
    n = len(ids)
    extra = rows - n
    if extra <= 0:
        return ids, positions, attn
    ids = list(ids) + [ids[-1]] * extra
    positions = torch.cat([positions, positions[-1:].expand(extra)])
    mask = torch.zeros(rows, start + rows, dtype=torch.bool)
    mask[:n, : start + n] = attn
    mask[n:, :start] = True
    mask[torch.arange(n, rows), start + torch.arange(n, rows)] = True
    return ids, positions, mask


# what a row set is kept for: the architecture too (two families of one shape differ in their ops)
SHAPE = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size")


def _key(adapter, path: str | None = None) -> str:
    cfg = adapter.model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    shape = {k: getattr(cfg, k, None) for k in SHAPE}
    kern = json.dumps(getattr(adapter, "kernels", {}).get("paths", "stock"), sort_keys=True)
    h = hashlib.sha1(f"{shape}|{kern}".encode()).hexdigest()[:12]
    path = path or getattr(adapter, "path", "eager")
    fast = getattr(adapter, "compiled", None)
    made = getattr(fast, "products", None) if path == "compiled" else None
    rd = f"-{made}" if made in ("rowdot", "amx") else ""
    path = "" if path == "eager" else f"{path}/{compiled.VERSION}{rd}|"
    return (
        f"rows/{VERSION}.{tree_attention.VERSION}|{path}{cpu_name()}|threads={torch.get_num_threads()}|torch={torch.__version__}|"
        f"{str(adapter.dtype).replace('torch.', '')}|{adapter.device}|{h}"
    )


def _cached(key: str) -> RowSet | None:
    d = tuned("rows", key)
    return RowSet.from_json(d) if isinstance(d, dict) else None


def measured(adapter, path: str) -> RowSet | None:
    """The row set of ``adapter`` on forward ``path`` if this machine measured it before (the tuning
    file), without measuring or compiling anything; None otherwise."""
    return _cached(_key(adapter, path))


def _store(key: str, rows: RowSet) -> None:
    update_tuning(lambda data: data.setdefault("rows", {}).__setitem__(key, rows.to_json()))


def _pattern(s: int) -> list[int]:
    """Real rows per chunk when probing size ``s``: full, 1, s-1, 2, ... (every alignment of the
    real rows against the cache, as drafts of any length give)."""
    out = []
    for i in range(s):
        r = s - i // 2 if i % 2 == 0 else 1 + i // 2
        out.append(r)
    return out


def attention(adapter) -> str:
    cfg = adapter.model.config
    sub = getattr(cfg, "text_config", None)
    return str(getattr(sub or cfg, "_attn_implementation", None) or "")


def set_attention(adapter, impl: str) -> None:
    """Run the decoder's attention through ``impl`` (transformers' attention interface); the vision
    tower (prefill only) keeps its own."""
    if not impl or attention(adapter) == impl:
        return
    if impl == tree_attention.NAME:  # a group read from the tuning file in a new process
        tree_attention.register()
    model = adapter.model
    model.set_attn_implementation({"text_config": impl} if hasattr(model.config, "text_config") else impl)


@torch.inference_mode()
def probe(adapter, candidates=CANDIDATES, tokens: int = TOKENS, prefixes=PREFIXES, seed: int = 0, path: str | None = None):
    """Chunked decoding of one token sequence at every candidate size s, the real rows of each chunk
    varying (``_pattern``) and padded to s, after each prompt length of ``prefixes`` (a kernel may
    change its path with the number of keys: sizes that agree at a short context can disagree at
    a longer one). Returns (groups of sizes whose logits agree bit for bit at every position of
    every context, seconds of one forward per size, whether each group's tree verifies agree)."""
    runs = []  # (session, ids, prefix, {size: logits})
    seconds: dict[int, float] = {}
    paths: dict[int, tuple[str, ...]] = {}  # size -> the product paths its forward took (core.kernels)
    sync = torch.cuda.synchronize if torch.device(adapter.device).type == "cuda" else (lambda: None)
    for i, prefix in enumerate(prefixes):
        g = torch.Generator().manual_seed(seed + i)
        ids = torch.randint(0, adapter.vocab_size, (prefix + tokens,), generator=g)
        sess, _, _ = adapter.prefill(adapter.encode_ids(ids[:prefix]), path=path)
        out = {}
        for s in candidates:
            chunks, best, at, pattern = [], float("inf"), 0, _pattern(s)
            while at < tokens:
                r = min(pattern[len(chunks) % len(pattern)], tokens - at)
                part = ids[prefix + at : prefix + at + r].tolist()
                start = sess.length
                sync()
                t0 = time.perf_counter()
                with kernels.paths_taken() as taken:
                    lg, _ = adapter.forward(sess, part, torch.arange(start, start + r), causal_mask(start, r, start + r), rows=s)
                sync()
                best = min(best, time.perf_counter() - t0)
                paths.setdefault(s, tuple(kernels.SAME_NUMBERS.get(p, p) for p in taken))
                adapter.keep(sess, start, list(range(r)))
                chunks.append(lg.float())
                at += r
            adapter.keep(sess, prefix, [])
            if i == 0:
                seconds[s] = best
            out[s] = torch.cat(chunks)
        if i == 0:
            _retime(adapter, sess, ids[prefix], prefix, candidates, seconds, sync)
        runs.append((sess, ids, prefix, out))
    reps: list[tuple[list[int], list[torch.Tensor]]] = []  # (sizes, logits per context) of each group found
    for s in candidates:
        logits = [out[s] for _, _, _, out in runs]
        for sizes, ref in reps:
            if paths[s] == paths[sizes[0]] and all(torch.equal(a, b) for a, b in zip(ref, logits)):
                sizes.append(s)
                break
        else:
            reps.append(([s], logits))
    trees = {
        tuple(sizes): all(_trees_agree(adapter, sess, ids, prefix, r, sizes) for (sess, ids, prefix, _), r in zip(runs, ref))
        for sizes, ref in reps
        if len(sizes) > 1
    }
    return [tuple(sizes) for sizes, _ in reps], seconds, trees


ROUNDS = 3  # interleaved rounds of one-token forwards at every size, after the sizes' own runs


def _retime(adapter, sess, token, prefix: int, candidates, seconds: dict[int, float], sync) -> None:
    """Each size's time, once more: a one-token step padded to s rows (a plain step's forward), the
    sizes taken in turn for ``ROUNDS`` rounds, each kept at its fastest. The sizes' own runs above
    come one size after another, so a machine that slows for a while (a neighbour's job; on the
    2-core AVX512-BF16 EPYC the read bandwidth moved between 32 and 66 GB/s within the hour) would
    favour whichever size it spared; in rounds every size sees the same phases."""
    for _ in range(ROUNDS):
        for s in candidates:
            sync()
            t0 = time.perf_counter()
            adapter.forward(sess, [int(token)], torch.arange(prefix, prefix + 1), causal_mask(prefix, 1, prefix + 1), rows=s)
            sync()
            seconds[s] = min(seconds.get(s, float("inf")), time.perf_counter() - t0)
            adapter.keep(sess, prefix, [])


def _trees_agree(adapter, sess, ids, prefix: int, ref: torch.Tensor, sizes) -> bool:
    """Do tree verifies at these sizes give the chunked decoding's logits? The sequence's own next
    tokens are hidden in a tree behind decoy siblings (so a node's ancestors sit at scattered
    columns, as in a real tree), at two alignments; each true node's row must equal ``ref``."""
    try:
        return _trees_agree_at(adapter, sess, ids, prefix, ref, RowSet(tuple(sizes)))
    finally:
        adapter.keep(sess, prefix, [])


def _trees_agree_at(adapter, sess, ids, prefix: int, ref: torch.Tensor, rows: RowSet) -> bool:
    from .tree import DraftTree, verify_layout

    for k in (3, 10):  # tokens committed before the tree's root
        if rows.pad(k) is None or k + 4 >= ref.shape[0]:
            return False
        part = ids[prefix : prefix + k].tolist()
        adapter.forward(sess, part, torch.arange(prefix, prefix + k), causal_mask(prefix, k, prefix + k), rows=rows.pad(k))
        adapter.keep(sess, prefix, list(range(k)))
        base = sess.length
        tree, true_rows, parent = DraftTree(), [0], -1
        for depth in range(1, 4):  # a decoy first, then the true token, at every depth
            decoy = tree.add(int(ids[prefix + k + depth]) ^ 1, parent, 0.5, 0.0)
            tree.add(int(ids[prefix + k + 1]), decoy, 0.5, 0.0)
            parent = tree.add(int(ids[prefix + k + depth]), parent, 0.5, 0.0, rank=1)
            true_rows.append(parent + 1)
        pad = rows.pad(len(tree) + 1)
        if pad is None:
            return False
        depths, mask = verify_layout(tree, base)
        lg, _ = adapter.forward(sess, [int(ids[prefix + k])] + tree.tokens, base + depths, mask, rows=pad)
        adapter.keep(sess, prefix, [])
        if not all(torch.equal(lg[r].float(), ref[k + i]) for i, r in enumerate(true_rows)):
            return False
    return True


def choose(groups, seconds: dict[int, float], reach: int = REACH) -> tuple[int, ...]:
    """The group to run at: among those reaching ``reach`` rows (or as far as any group reaches),
    the one whose plain step (at its padded size) measured cheapest; () when none reaches 2 rows. A
    group of one size is no evidence (its decoding was compared with nothing) and is never chosen."""
    groups = [g for g in groups if len(g) >= 2]
    top = max((max(g) for g in groups), default=0)
    need = max(2, min(reach, top))
    fit = [g for g in groups if max(g) >= need]
    if not fit:
        return ()
    return min(fit, key=lambda g: (seconds.get(padded_size(g, seconds, 1), 0.0), -max(g)))


def _better(a: RowSet, b: RowSet) -> bool:
    """Is ``a`` a better group than ``b``: reaching further (up to REACH), then a cheaper plain step."""
    ra, rb = min(a.cap, REACH), min(b.cap, REACH)
    if ra != rb:
        return ra > rb
    if a.trees != b.trees:
        return a.trees
    return a.plain_seconds < b.plain_seconds


_sets: dict[str, RowSet] = {}


def row_set(adapter, refresh: bool = False, path: str | None = None) -> RowSet:
    """The adapter's row-invariant group, with the attention path it holds for (applied to the
    model): measured at the target's first use on this machine for the model's attention and for
    eager attention (a second for the default target, a few minutes for a 1.5B model on 2 cores),
    then read from the tuning file (``tuning_path()``, key "rows"). ``path``: the forward to measure
    ("compiled" / "eager"; default the adapter's ``path`` now), as the caller's sessions run on it."""
    path = path or getattr(adapter, "path", "eager")
    key = _key(adapter, path)
    if not refresh:
        hit = _sets.get(key) or _cached(key)
        if hit is not None:
            _sets[key] = hit
            set_attention(adapter, hit.attention)
            return hit
    t0 = time.perf_counter()
    best = None
    impls = ["eager", tree_attention.register(), attention(adapter)]
    if path == "compiled":  # one attention: its own (core/compiled.py)
        impls = [""]
    for impl in dict.fromkeys(impls):
        if best is not None and best.exact and best.trees and best.cap >= REACH:
            break  # exact for chains and trees, far enough: measure no more
        set_attention(adapter, impl)
        groups, seconds, trees = probe(adapter, path=path, prefixes=COMPILED_PREFIXES if path == "compiled" else PREFIXES)
        sizes = choose(groups, seconds)
        found = RowSet(sizes, tuple(groups), seconds, 0.0, impl, trees.get(sizes, False))
        if best is None or (found.exact and (not best.exact or _better(found, best))):
            best = found
    rows = RowSet.from_json(dataclasses.replace(best, measured_s=time.perf_counter() - t0).to_json())
    set_attention(adapter, rows.attention)
    _sets[key] = rows
    _store(key, rows)
    return rows


def describe(rows: RowSet) -> str:
    if not rows.exact:
        return "no row-invariant forward found on this machine: forwards unpadded"
    pad = "plain steps unpadded" if rows.pad(1) == 1 else f"plain steps padded to {rows.pad(1)} rows"
    return f"rows {', '.join(map(str, rows.sizes))} compute alike ({pad}; at most {rows.cap} per forward)"
