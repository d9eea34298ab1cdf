"""Synthetic decoding traces: realistic, internally consistent, no model needed.

Used by the tests and to develop the UI before trained models exist. The "target"
is a fixed random text stream (a function of ``seed`` only), so traces of every
strategy built with the same seed commit the same tokens: a speculative trace and
an ``"ar"`` trace of the same seed and ``max_new_tokens`` have identical outputs,
exactly as lossless greedy speculative decoding promises.

Each step follows the greedy verification rule of core/acceptance.py: walking
from the root, a child is accepted iff it equals the target's next token; the
other children of the root / accepted nodes are rejected; the target then adds
its own next token (a *correction* if the last accepted node had children, else
a *bonus*).
"""

from __future__ import annotations

import math
import random

from core.api import Comparison, Step, Trace

STRATEGIES = ("dynamic", "chain", "ar")

# word-like pieces, as a byte-level BPE would produce them: leading spaces,
# newlines, tabs, punctuation, accents, CJK, emoji, a bare space, an empty piece.
_PIECES = [
    " the",
    " a",
    " cat",
    " dog",
    " sits",
    " on",
    " mat",
    " red",
    " ball",
    " is",
    " of",
    " and",
    " to",
    " in",
    " picture",
    " shows",
    " two",
    " three",
    " blue",
    " square",
    " left",
    " right",
    " above",
    " below",
    " image",
    " there",
    " are",
    ",",
    ".",
    "\n",
    "\n\n",
    " ",
    "\t",
    "The",
    "A",
    " circle",
    " green",
    " small",
    " large",
    " next",
    " café",
    " naïve",
    " 猫",
    "犬",
    " 🐈",
    "→",
    " über",
    "'s",
    "ing",
    "ed",
    " un",
    "believ",
    "able",
    " 42",
    "7",
    " -",
    ":",
    " (",
    ")",
    "<s>",
    " <b>",
    " &",
    "",
    " très",
    " jalapeño",
    " Zürich",
    " 東京",
    " \u00a0",
    " yes",
    " no",
]


def _vocab() -> dict[str, str]:
    return {str(i): s for i, s in enumerate(_PIECES)}


def _target_stream(seed: int, n: int) -> list[int]:
    """The target's greedy continuation: a sticky random walk over the pieces."""
    rng = random.Random(seed * 1_000_003 + 17)
    v = len(_PIECES)
    table = [[rng.randrange(v) for _ in range(3)] for _ in range(v)]  # "grammar"
    out, prev = [], rng.randrange(v)
    for _ in range(n):
        prev = rng.choice(table[prev]) if rng.random() < 0.8 else rng.randrange(v)
        out.append(prev)
    return out


def _probs(rng: random.Random, k: int, first: float) -> list[float]:
    """k decreasing probabilities summing to < 1, the first about ``first``."""
    rest = [rng.random() for _ in range(k - 1)]
    tot = sum(rest) or 1.0
    left = (1.0 - first) * rng.uniform(0.5, 0.95)
    ps = [first] + sorted((r / tot * left for r in rest), reverse=True)
    return [round(max(p, 1e-4), 4) for p in ps]


def synthetic_trace(
    n_steps: int = 30,
    seed: int = 0,
    strategy: str = "dynamic",
    *,
    max_new_tokens: int | None = None,
    budget: int | None = None,
    depth: int | None = None,
    top_k: int = 4,
    skill: float = 0.75,
) -> Trace:
    """A random but valid trace.

    ``n_steps``: number of verify steps (ignored when ``max_new_tokens`` is given:
    then decoding stops once that many tokens are out, cutting the last step).
    ``strategy``: "dynamic" (EAGLE-2-like tree, ``budget`` nodes, default 24),
    "chain" (one draft path of ``depth`` tokens, default 5) or "ar" (no draft).
    ``skill``: probability that the drafter's top guess is the target's token.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    rng = random.Random(f"{seed}/{strategy}/{budget}/{depth}/{top_k}/{skill}")
    limit = max_new_tokens if max_new_tokens is not None else None
    need = (limit if limit is not None else n_steps * 16) + 64
    stream = _target_stream(seed, need)
    vocab = _vocab()
    v = len(_PIECES)
    depth = depth or (5 if strategy == "chain" else 6)
    budget = budget or 24

    tr = Trace(
        meta={
            "synthetic": True,
            "strategy": strategy,
            "seed": seed,
            "temperature": 0.0,
            "target": "synthetic-target",
            "drafter": None if strategy == "ar" else f"synthetic-{strategy}",
        },
        prompt_tokens=rng.randint(60, 140),
        vocab=vocab,
    )
    if limit == 0:
        tr.stop_reason = "length"
        return tr
    tr.first_token = stream[0]
    tr.t_prefill = rng.uniform(0.05, 0.12)
    output = [stream[0]]
    pos = 1  # stream index of the next token to commit

    def wrong(rng_, want, avoid):
        while True:
            t = rng_.randrange(v)
            if t != want and t not in avoid:
                return t

    while True:
        if limit is None and len(tr.steps) >= n_steps:
            tr.stop_reason = "steps"
            break
        if limit is not None and len(output) >= limit:
            tr.stop_reason = "length"
            break
        tokens, parents, depths, q, p = [], [], [], [], []

        def add(tok, par, qq, pp):
            tokens.append(tok)
            parents.append(par)
            depths.append(1 if par < 0 else depths[par] + 1)
            q.append(qq)
            p.append(pp)
            return len(tokens) - 1

        # which stream token each node "means" (for greedy matching) is decided by
        # node token == stream[pos + depth - 1] along the accepted prefix.
        if strategy == "chain":
            par = -1
            for d in range(depth):
                want = stream[pos + d]
                hit = rng.random() < skill * (0.97**d)
                tok = want if hit else wrong(rng, want, ())
                qq = round(rng.uniform(0.45, 0.95) if hit else rng.uniform(0.1, 0.5), 4)
                pp = round(rng.uniform(0.5, 0.97), 4) if tok == want else round(rng.uniform(0.0, 0.2), 4)
                par = add(tok, par, qq, pp)
        elif strategy == "dynamic":
            # expand by best cumulative score (log q), like EAGLE-2, until the budget is used
            score = {-1: 0.0}
            frontier = [-1]
            for d in range(depth):
                cands = []
                for node in frontier:
                    on_path = node == -1 or all(tokens[a] == stream[pos + depths[a] - 1] for a in _path(parents, node))
                    want = stream[pos + d]
                    hit = rng.random() < skill * (0.95**d)
                    qs = _probs(rng, top_k, rng.uniform(0.4, 0.9))
                    kids, used = [], set()
                    if hit:
                        kids.append(want)
                    elif rng.random() < 0.5:  # the right token, but not the top guess
                        kids.extend([wrong(rng, want, ()), want])
                    while len(kids) < top_k:
                        t = wrong(rng, want, set(kids))
                        kids.append(t)
                    for t, qq in zip(kids[:top_k], qs):
                        if t in used:
                            continue
                        used.add(t)
                        pp = rng.uniform(0.5, 0.97) if (on_path and t == want) else rng.uniform(0.0, 0.25)
                        cands.append((score[node] + math.log(qq), node, t, qq, round(pp, 4)))
                cands.sort(key=lambda c: -c[0])
                room = budget - len(tokens)
                if room <= 0:
                    break
                keep = cands[: min(room, top_k if d == 0 else top_k * 2)]
                frontier = []
                # keep topological order: parents were added at earlier depths
                for sc, node, t, qq, pp in sorted(keep, key=lambda c: (c[1], -c[0])):
                    i = add(t, node, qq, pp)
                    score[i] = sc
                    frontier.append(i)
                frontier = sorted(frontier, key=lambda i: -score[i])[:top_k]
        # ---- greedy verification against the stream ----
        kids: dict[int, list[int]] = {}
        for i, par in enumerate(parents):
            kids.setdefault(par, []).append(i)
        node, accepted, rejected, d = -1, [], [], 0
        while True:
            want = stream[pos + d]
            children = kids.get(node, [])
            hit = next((c for c in children if tokens[c] == want), None)
            rejected.extend(c for c in children if c != hit)
            if hit is None:
                token, kind = want, ("correction" if children else "bonus")
                break
            accepted.append(hit)
            node, d = hit, d + 1
        committed = [tokens[i] for i in accepted] + [token]
        if limit is not None:
            committed = committed[: max(0, limit - len(output))]
        pos += len(accepted) + 1
        output.extend(committed)
        n = len(tokens)
        tr.steps.append(
            Step(
                tokens=tokens,
                parents=parents,
                depths=depths,
                q=q,
                p=p,
                accepted=accepted,
                rejected=rejected,
                token=token,
                kind=kind,
                committed=committed,
                t_draft=round(0.0025 * max(depths, default=0) + rng.uniform(0, 0.001), 6) if n else 0.0,
                t_verify=round(0.018 + 0.0004 * n + rng.uniform(0, 0.004), 6),
                t_other=round(rng.uniform(0.0003, 0.0015), 6),
            )
        )
    tr.output = output
    tr.text = "".join(vocab[str(t)] for t in output)
    tr.wall_s = round(tr.t_prefill + sum(s.t_draft + s.t_verify + s.t_other for s in tr.steps) + rng.uniform(0.001, 0.01), 6)
    return tr


def timed(trace: Trace, seed: int = 0, rounds: int = 1) -> Trace:
    """``trace`` with a comparison to plain decoding (``Comparison.of``): ``rounds`` synthetic plain
    runs of the same seed and length, the same speculative run each round (so the speedup is the
    ratio of the two runs' tok/s). Returns the trace, its ``comparison`` set."""
    plain = synthetic_trace(max_new_tokens=len(trace.output), seed=seed, strategy="ar")
    trace.comparison = Comparison.of([plain] * rounds, [trace] * rounds, plain)
    return trace


def _path(parents: list[int], i: int) -> list[int]:
    out = []
    while i >= 0:
        out.append(i)
        i = parents[i]
    return out[::-1]
