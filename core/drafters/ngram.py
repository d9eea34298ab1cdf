"""Prompt / n-gram lookup: propose what followed the same n-gram earlier in the
prompt or the output. No model, no training; great when answers copy the prompt."""

from __future__ import annotations

from ..tree import DraftTree
from .base import DraftContext, DraftSpec, Drafter


class NgramDrafter(Drafter):
    """Drafts the continuations of the longest suffix n-gram seen before (a trie of them for
    trees). Model-free: no ``assistant_model`` (transformers has its own prompt lookup)."""

    needs_hidden = False
    can_skip = True

    def __init__(self, target=None, max_ngram: int = 3, min_ngram: int = 1, **_):
        self.name = f"ngram (n={min_ngram}..{max_ngram})"
        self.max_ngram, self.min_ngram = max_ngram, min_ngram

    def begin(self, ctx: DraftContext) -> None:
        self.ctx = ctx
        self.seq = list(ctx.prompt_ids) + list(ctx.tokens)  # what the target has seen + the root

    def _continuations(self, seq: list[int], depth: int) -> list[list[int]]:
        """Continuations of the longest suffix n-gram that occurred before, most recent first."""
        for n in range(self.max_ngram, self.min_ngram - 1, -1):
            if len(seq) <= n:
                continue
            pat = seq[-n:]
            found = []
            for i in range(len(seq) - n - 1, -1, -1):
                if seq[i : i + n] == pat:
                    found.append(seq[i + n : i + n + depth])
            if found:
                return found
        return []

    def propose(self, root, spec: DraftSpec, sampling, gen) -> DraftTree:
        conts = self._continuations(self.seq, spec.max_depth)
        tree = DraftTree(forwards=0)
        if not conts:
            return tree
        width = 1 if spec.strategy == "chain" else spec.top_k if spec.strategy == "dynamic" else spec.branching[0]
        # a trie over the continuations; q = share of matches that agree with the prefix
        node_of: dict[tuple, int] = {}
        counts: dict[tuple, int] = {}
        for c in conts:
            for d in range(1, len(c) + 1):
                counts[tuple(c[:d])] = counts.get(tuple(c[:d]), 0) + 1
        order = sorted(counts, key=lambda k: (len(k), -counts[k]))
        kids: dict[tuple, int] = {}
        for key in order:
            parent_key = key[:-1]
            if parent_key and parent_key not in node_of:
                continue
            if kids.get(parent_key, 0) >= width or len(tree) >= spec.max_nodes:
                continue
            parent = node_of.get(parent_key, -1)
            share = counts[key] / (counts[parent_key] if parent_key else len(conts))
            node_of[key] = tree.add(key[-1], parent, share, 0.0, rank=kids.get(parent_key, 0))
            kids[parent_key] = kids.get(parent_key, 0) + 1
        return tree

    def commit(self, tree, accepted, new_tokens, target_hidden) -> None:
        self.seq.extend(new_tokens)
