"""Draft trees: the one data structure drafters hand to the verifier.

A tree hangs below a *root*: the last committed token, which the target has not
yet processed. Nodes are stored in topological order (a parent always comes
before its children), so node ``i`` has ``parents[i] < i`` or ``-1`` (= the root).
A chain is the tree where every node's parent is the node before it.

For lossless sampling each parent (``-1`` for the root) keeps the draft
distribution ``q`` its children were drawn from and the tokens in the order they
were drawn (``drawn``); a node's ``rank`` is its position in that order. Siblings
drawn but pruned away still count: the proposal distribution of the next kept
sibling excludes every token drawn before it (see core/acceptance.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class DraftTree:
    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)  # root children have depth 1
    q_tok: list[float] = field(default_factory=list)  # draft prob of the node's token
    score: list[float] = field(default_factory=list)  # cumulative draft log-prob
    rank: list[int] = field(default_factory=list)  # order drawn among siblings
    q: dict[int, torch.Tensor] = field(default_factory=dict)  # parent -> draft dist (sampling only)
    drawn: dict[int, list[int]] = field(default_factory=dict)  # parent -> tokens in draw order
    forwards: int = -1  # draft forwards spent building it (-1: unknown; 0: model-free drafter)

    def __len__(self) -> int:
        return len(self.tokens)

    def add(self, token: int, parent: int, q_tok: float, score: float, rank: int = 0) -> int:
        self.tokens.append(int(token))
        self.parents.append(int(parent))
        self.depths.append(1 if parent < 0 else self.depths[parent] + 1)
        self.q_tok.append(float(q_tok))
        self.score.append(float(score))
        self.rank.append(int(rank))
        return len(self.tokens) - 1

    @property
    def max_depth(self) -> int:
        return max(self.depths, default=0)

    def children(self) -> dict[int, list[int]]:
        """parent -> children sorted by draw rank."""
        out: dict[int, list[int]] = {}
        for i, p in enumerate(self.parents):
            out.setdefault(p, []).append(i)
        for p in out:
            out[p].sort(key=lambda i: self.rank[i])
        return out

    def truncate(self, keep: list[int]) -> DraftTree:
        """Sub-tree made of ``keep`` (must be ancestor-closed); indices are remapped."""
        keep = sorted(keep)
        remap = {-1: -1}
        out = DraftTree(q=self.q, drawn=self.drawn, forwards=self.forwards)
        for i in keep:
            remap[i] = len(out.tokens)
            out.tokens.append(self.tokens[i])
            out.parents.append(remap[self.parents[i]])
            out.depths.append(self.depths[i])
            out.q_tok.append(self.q_tok[i])
            out.score.append(self.score[i])
            out.rank.append(self.rank[i])
        out.q = {remap[p]: v for p, v in self.q.items() if p in remap}
        out.drawn = {remap[p]: v for p, v in self.drawn.items() if p in remap}
        return out


def ancestor_matrix(parents: list[int]) -> torch.Tensor:
    """The boolean ``(n, n)`` matrix of a tree given by ``parents`` (topological order, ``-1`` =
    the root): ``[i, j]`` is True iff node ``j`` is node ``i`` or one of its ancestors."""
    n = len(parents)
    anc = torch.zeros(n, n, dtype=torch.bool)
    for i, p in enumerate(parents):
        if p >= 0:
            anc[i] = anc[p]
        anc[i, i] = True
    return anc


def tree_mask(parents: list[int], rows: list[int], slot: dict[int, int], prefix: int, width: int) -> torch.Tensor:
    """The attention mask of tree nodes over a KV cache: THE one place a tree mask is built.

    Row ``r`` belongs to node ``rows[r]`` and has ``width`` columns (cache slots): the first
    ``prefix`` (the committed sequence) are visible to every row, and so is the slot
    ``slot[j]`` of every node ``j`` that is the row's node or one of its ancestors. Nodes
    missing from ``slot`` are not in the cache. Used by the verify forward (core/engine.py)
    and by the drafters that run a model over their own tree (core/drafters/)."""
    anc = ancestor_matrix(parents)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    mask[:, :prefix] = True
    if rows and slot:
        nodes = list(slot)
        cols = torch.tensor([slot[j] for j in nodes], dtype=torch.long)
        mask[:, cols] = anc[torch.tensor(rows, dtype=torch.long)][:, torch.tensor(nodes, dtype=torch.long)]
    return mask


def verify_layout(tree: DraftTree, prefix: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of the verify forward for ``[root] + tree.tokens`` after ``prefix`` cached tokens.

    Returns ``(depths, mask)``: the depth of every row (root = 0; positions are ``prefix +
    depths``) and the boolean ``(n+1, prefix+n+1)`` mask where row i may attend to the prefix and
    to column ``prefix + j`` when row j is row i or its ancestor (the root is every row's ancestor).
    """
    parents = [-1] + [p + 1 for p in tree.parents]  # the root as node 0
    rows = list(range(len(parents)))
    mask = tree_mask(parents, rows, {j: prefix + j for j in rows}, prefix, prefix + len(parents))
    depths = torch.tensor([0] + tree.depths, dtype=torch.long)
    return depths, mask
