"""The drafter protocol, draft structures, and the tree builder shared by model drafters.

Every drafter implements ``Drafter`` (below): what the engine (core/engine.py) calls at each
step and what the benchmark may ask of it. The shipped drafters subclass it explicitly
(``ModelDrafter`` here, ``MSDDrafter``, ``NgramDrafter``); a third-party drafter, loaded by
``module:Class`` and constructed as ``Class(target_adapter, **options)``, only needs the same
attributes and methods (subclassing ``Drafter`` gives it the optional ones' defaults).
"""

from __future__ import annotations

import json

import math
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from collections.abc import Callable

import torch

from ..machine import machine_key, tuning_path
from ..sampling import Noise, SamplingConfig, fit_vocab, probs
from ..tree import DraftTree, tree_mask


STRATEGIES = ("chain", "tree", "dynamic")
CHOICES = ("auto",) + STRATEGIES  # what users pick: "auto" = an adaptive chain (core/policy.py)
AUTO_CAP = 16  # auto: the longest chain a step may draft


@dataclass(frozen=True)
class DraftSpec:
    """How much to draft. chain: ``gamma`` tokens. tree: static tree with ``branching[d]``
    children per node at depth d. dynamic: EAGLE-2 style, ``depth`` layers of ``top_k``
    expansions, reranked to ``budget`` nodes."""

    strategy: str = "chain"
    gamma: int = 6  # the one default draft shape (app, CLI, bench, api); sized for CPUs, and
    branching: tuple[int, ...] = (3, 2, 2, 1)  # `python -m tools.tune` measures this machine's best
    depth: int = 8
    top_k: int = 4
    budget: int = 20
    min_prob: float = 0.0  # Spec-LLaVA-style pruning: don't expand nodes whose cumulative
    # draft probability is below this (0 = never prune)
    adaptive: bool = False  # chain only: each step's length chosen by the measured cost model
    # and the drafter's confidence (core/policy.py), ``gamma`` the cap

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown draft strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        for name, lo, hi in (("gamma", 1, 64), ("depth", 1, 32), ("top_k", 1, 64), ("budget", 1, 512)):
            v = getattr(self, name)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if self.adaptive and self.strategy != "chain":
            raise ValueError("adaptive draft length is for chains (strategy 'auto' = an adaptive chain)")
        if not isinstance(self.min_prob, (int, float)) or not 0.0 <= self.min_prob < 1.0:
            raise ValueError(f"min_prob must be a number in [0, 1), got {self.min_prob!r}")
        if not self.branching or any((not isinstance(b, int)) or b < 1 or b > 16 for b in self.branching):
            raise ValueError(f"branching must be a list of integers in [1, 16], got {self.branching!r}")
        n, width = 0, 1
        for b in self.branching:
            width *= b
            n += width
        if n > 512:
            raise ValueError(f"static tree too large ({n} nodes, max 512)")

    @property
    def max_depth(self) -> int:
        return {"chain": self.gamma, "tree": len(self.branching), "dynamic": self.depth}[self.strategy]

    @property
    def max_nodes(self) -> int:
        if self.strategy == "chain":
            return self.gamma
        if self.strategy == "tree":
            n, width = 0, 1
            for b in self.branching:
                width *= b
                n += width
            return n
        return self.budget


def spec_for(
    strategy: str,
    gamma: int | None = None,
    branching=DraftSpec.branching,
    depth: int = DraftSpec.depth,
    top_k: int = DraftSpec.top_k,
    budget: int = DraftSpec.budget,
    min_prob: float = 0.0,
) -> DraftSpec:
    """The DraftSpec a user's choice means. ``auto``: a chain whose length the measured cost model
    picks at every step, ``gamma`` (default AUTO_CAP) the longest; the others are fixed shapes
    (DraftSpec's defaults)."""
    if strategy == "auto":
        return DraftSpec("chain", AUTO_CAP if gamma is None else gamma, tuple(branching), depth, top_k, budget, min_prob, adaptive=True)
    return DraftSpec(strategy, DraftSpec.gamma if gamma is None else gamma, tuple(branching), depth, top_k, budget, min_prob)


DEFAULT_CHAIN = DraftSpec("chain")
DEFAULT_DYNAMIC = DraftSpec("dynamic")


def tuned_spec(target: str, drafter: str, strategy: str) -> DraftSpec:
    """The shape ``python -m tools.tune`` measured fastest on this machine for the pair, else the default."""
    default = DEFAULT_CHAIN if strategy == "chain" else DEFAULT_DYNAMIC
    try:
        entry = json.loads(tuning_path().read_text()).get(machine_key(target, drafter), {})
        d = entry.get(strategy)
        return DraftSpec(strategy, **d) if d else default
    except (OSError, ValueError, TypeError):
        return default


@dataclass
class DraftContext:
    target: object  # the target adapter
    prompt_ids: list[int]  # target prompt ids (image tokens expanded)
    prompt: str = ""
    image: object = None  # PIL image or None
    encoded: object = None  # the target's Encoded inputs
    target_hidden: torch.Tensor | None = None  # (T, H) prefill hidden states if needs_hidden
    target_embeds: torch.Tensor | None = None  # (1, T, H) decoder input embeddings (image features merged)
    tokens: list[int] = field(default_factory=list)  # output committed before the first draft (a copy; later tokens come through commit)
    policy: object = None  # core.policy.AutoPolicy for adaptive chains (build_tree asks it)


@runtime_checkable
class Drafter(Protocol):
    """What the engine asks of a drafter, step by step.

    ``name``: shown in traces and reports. ``needs_hidden``: the drafter wants the target's last
    hidden states (prefill in ``begin``, the kept rows in ``commit``). ``can_skip``: ``commit``
    may follow a step that was not proposed (a plain target step the adaptive policy chose);
    the tokens are caught up at the next ``propose`` (default False: every step is proposed).

    ``begin(ctx)``: a new request (prompt ids, image, the target's prefill). ``propose(root,
    spec, sampling, gen)``: a draft tree below ``root``, the last committed token the target has
    not processed yet; an empty tree lets the target take a plain step. ``gen`` is the
    decoding's ``core.sampling.Noise`` (pass it to ``build_tree``; ``gen.generator`` is a
    torch.Generator for other draws). ``commit(tree,
    accepted, new_tokens, target_hidden)``: what the target kept: ``accepted`` node indices,
    ``new_tokens`` the tokens appended to the output (the accepted path + the target's
    bonus/correction token, the next root last). ``assistant_model()``: the transformers model
    that ``model.generate(assistant_model=...)`` can run as this drafter drafts, or None (no
    standalone model, or one transformers would run differently); the benchmark's transformers
    baseline reads only this."""

    name: str
    needs_hidden: bool
    can_skip: bool = False
    kernels: dict = {}  # read-only default: the kernel paths its forwards use (for the trace)

    def begin(self, ctx: DraftContext) -> None: ...

    def propose(self, root: int, spec: DraftSpec, sampling: SamplingConfig, gen) -> DraftTree: ...

    def commit(self, tree: DraftTree, accepted: list[int], new_tokens: list[int], target_hidden) -> None: ...

    def assistant_model(self):
        return None


def assistant_model(drafter) -> object | None:
    """``drafter.assistant_model()``; None for a drafter without the method (third-party ones
    need not subclass ``Drafter``) or without a drafter."""
    method = getattr(drafter, "assistant_model", None)
    return method() if callable(method) else None


# --------------------------------------------------------------------------------------
def _draw(logits: torch.Tensor, k: int, sampling: SamplingConfig, gen, sample: bool, position: int):
    """Children of one node, at ``position``: (tokens, q_tok, log q_tok, q or None).
    Greedy/deterministic: top-k of the draft's softmax. Sampling: k tokens without replacement
    from q (Gumbel top-k). With the coupled rule (``gen`` a core.sampling.Noise) the Gumbel noise
    is the position's, the noise the target picks with, so the first child is the token the
    target picks wherever q agrees with p; with the rejection rule q is kept for the acceptance."""
    if sample:
        q = probs(logits, sampling)
        logq = torch.log(q)
        if isinstance(gen, Noise):
            g = gen.gumbel(position, q.shape[-1]).to(q.device)
        else:
            u = torch.rand(q.shape, generator=gen, device=q.device)  # gen lives on q's device too
            g = -torch.log(-torch.log(u.clamp_(1e-20, 1.0)))
        k = min(k, int((q > 0).sum()))
        toks = torch.topk(logq + g, k).indices
        sel = q[toks]
        return toks.tolist(), sel.tolist(), torch.log(sel).tolist(), (q if sampling.rule == "rejection" else None)
    lp = torch.log_softmax(logits.float(), -1)
    top = torch.topk(lp, k)
    return top.indices.tolist(), top.values.exp().tolist(), top.values.tolist(), None


def build_tree(
    root_logits: torch.Tensor,
    expand: Callable[[DraftTree, list[int]], torch.Tensor],
    spec: DraftSpec,
    sampling: SamplingConfig,
    gen,
    vocab: int,
    policy=None,
) -> DraftTree:
    """Grow a chain / static tree / dynamic tree from the drafter's next-token logits at the root.

    ``expand(tree, nodes)`` runs the drafter on ``nodes`` (their ancestors were expanded
    before) and returns one row of logits per node: one draft forward per depth.

    Sampling (T > 0), coupled rule (the default): children are drawn without replacement from
    q with the noise of their position (core/sampling.Noise), every strategy. Rejection rule:
    chains and static trees draw children from q without replacement and keep q (recursive
    rejection sampling); dynamic trees choose children by score and then prune, so their
    children are treated as deterministic proposals (lossless for any choice; see
    core/acceptance.py)."""
    coupled = not sampling.greedy and sampling.rule == "coupled"
    sample = not sampling.greedy and (coupled or spec.strategy != "dynamic")
    root_pos = gen.root if isinstance(gen, Noise) else 0
    tree = DraftTree()

    def grow(parent: int, logits: torch.Tensor, k: int) -> list[int]:
        logits = fit_vocab(logits, vocab)
        depth = 1 if parent < 0 else tree.depths[parent] + 1
        toks, qs, lqs, q = _draw(logits, k, sampling, gen, sample, root_pos + depth)
        base = 0.0 if parent < 0 else tree.score[parent]
        if q is not None:
            tree.q[parent] = q
            tree.drawn[parent] = list(toks)
        return [tree.add(t, parent, qt, base + lq, rank=r) for r, (t, qt, lq) in enumerate(zip(toks, qs, lqs))]

    if spec.strategy == "chain":
        widths, depth = [1] * spec.gamma, spec.gamma
    elif spec.strategy == "tree":
        widths, depth = list(spec.branching), len(spec.branching)
    else:
        widths, depth = [spec.top_k] * spec.depth, spec.depth

    frontier = grow(-1, root_logits, widths[0])
    tree.forwards = 1  # the drafter's forward that gave root_logits
    floor = math.log(spec.min_prob) if spec.min_prob > 0 else None
    for d in range(1, depth):
        if spec.adaptive and policy is not None and not policy.keep_drafting(tree, spec.gamma):
            break  # the next token is not worth a draft forward (core/policy.py)
        if spec.strategy == "dynamic":
            frontier = sorted(frontier, key=lambda i: -tree.score[i])[: spec.top_k]
        if floor is not None:  # too unlikely to survive verification: not worth a draft forward
            frontier = [i for i in frontier if tree.score[i] >= floor]
        if not frontier:
            break
        rows = expand(tree, frontier)
        tree.forwards += 1
        new = []
        for node, row in zip(frontier, rows):
            new += grow(node, row, widths[d])
        frontier = new
    if spec.strategy == "dynamic" and len(tree) > spec.budget:
        order = sorted(range(len(tree)), key=lambda i: (-tree.score[i], i))[: spec.budget]
        tree = tree.truncate(order)
    return tree


# --------------------------------------------------------------------------------------
def draft_dtype(target) -> torch.dtype:
    """The dtype a drafter (MSD head or separate draft model) runs in: float32 on a CPU, whatever
    the target's dtype; the target's dtype on a GPU. A draft step multiplies one row (a chain) or
    a few rows by each weight matrix, and on a CPU one-row products are not faster in bf16 than
    in fp32, while the target's many-row verify is (the measurements behind this choice:
    docs/results/measurements-in-docstrings.md). The drafter's precision never affects what is
    accepted: the target verifies every token. On top of this dtype, ``core.kernels`` may run a
    separate draft model's linear layers through bf16 or int8 copies of its weights where they
    measured faster on this machine."""
    dev = getattr(target, "device", torch.device("cpu"))
    return torch.float32 if torch.device(dev).type == "cpu" else target.dtype


ROUNDED = {"int8": "int8", "i8": "int8", "bf16": "bfloat16", "rowbf16": "bfloat16"}  # paths on rounded copies


def rounded_copies(drafter) -> list[str]:
    """The roundings of its weights a drafter's products run on ("bfloat16", "int8"; [] where only on its
    own): ``core.kernels``' lossy paths in its eager forward, the i8 products of its compiled forward
    where it drafts on that. The output is the target's either way; the acceptance may be lower than the
    drafter's own (``core.device.draft_weights_default``)."""
    kinds = set()
    paths = (getattr(drafter, "kernels", None) or {}).get("paths")
    if isinstance(paths, dict):
        kinds |= {ROUNDED[p] for table in paths.values() for p in table.values() if p in ROUNDED}
    lm = getattr(drafter, "lm", None)
    fast = getattr(lm, "compiled", None)
    if getattr(lm, "use_compiled", False) and fast is not None and fast.ready and fast.products in ROUNDED:
        kinds.add(ROUNDED[fast.products])
    return sorted(kinds)


# --------------------------------------------------------------------------------------
class ModelDrafter(Drafter):
    """A drafter backed by a language model with its own KV cache, used through the same
    adapter interface as the target (separate small model, layer-skip view, ...).
    ``use_image=False`` (text-only mode) drafts without the image even when the model could
    see it.

    The draft cache holds the committed sequence (``fed`` tokens of it) plus, during
    ``propose``, the tree nodes fed so far. After verification the accepted nodes that
    were fed are kept, the rest dropped; tokens not yet fed are fed next time."""

    needs_hidden = False
    can_skip = True  # commit() without propose(): a plain target step, tokens fed later

    @property
    def kernels(self) -> dict:
        return self.lm.kernels

    def __init__(self, adapter, name: str, use_image: bool = True):
        self.lm = adapter
        self.name = name
        self.use_image = use_image and adapter.is_multimodal
        self.sess = None

    def assistant_model(self):
        """The draft model for ``generate(assistant_model=...)``; None in text-only mode with a
        multimodal model (transformers would show the assistant the image: another drafter)."""
        if not self.use_image and self.lm.is_multimodal:
            return None
        return self.lm.model

    def begin(self, ctx: DraftContext) -> None:
        self.ctx = ctx
        enc = self.lm.encode(ctx.prompt, ctx.image if self.use_image else None)
        self.sess, self._last_logits, _ = self.lm.prefill(enc)
        self.committed = self.sess.length  # slots holding committed tokens
        self.pending: list[int] = []  # committed tokens not yet in the draft cache
        self.root = ctx.tokens[-1] if ctx.tokens else None
        self._slot: dict[int, int] | None = None  # tree node -> cache slot (None: no propose)

    def propose(self, root: int, spec: DraftSpec, sampling: SamplingConfig, gen) -> DraftTree:
        lm, sess = self.lm, self.sess
        feed = self.pending + [root]
        logits, _ = lm.forward(sess, feed)
        self.committed = sess.length
        self.pending = []
        self._slot = {}

        def expand(tree: DraftTree, nodes: list[int]) -> torch.Tensor:
            start = sess.length
            for r, node in enumerate(nodes):  # the nodes' cache slots, after their ancestors'
                self._slot[node] = start + r
            attn = tree_mask(tree.parents, nodes, self._slot, self.committed, start + len(nodes))
            positions = torch.tensor([self.committed - 1 + tree.depths[x] for x in nodes])
            out, _ = lm.forward(sess, [tree.tokens[x] for x in nodes], positions, attn)
            return out

        return build_tree(logits[-1], expand, spec, sampling, gen, self.ctx.target.vocab_size, policy=self.ctx.policy)

    def commit(self, tree: DraftTree, accepted: list[int], new_tokens: list[int], target_hidden) -> None:
        if self._slot is None:  # a plain step: nothing was fed this time
            self.pending += [self.root] + list(new_tokens[:-1])
        else:
            fed = [a for a in accepted if a in self._slot]  # a prefix of the accepted path
            rows = [self._slot[a] - self.committed for a in fed]
            self.lm.keep(self.sess, self.committed, rows)
            self.committed = self.sess.length
            self.pending = list(new_tokens[len(fed) : -1])  # the last one is the next root
        self.root, self._slot = new_tokens[-1], None
