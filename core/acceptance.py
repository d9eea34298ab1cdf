"""Acceptance rules: which drafted tokens the target keeps, and the token it adds.

Both rules walk the tree from the root. The target's row for the root (or an
accepted node) gives the distribution of the next token; the node's children
are tried in draw order.

* greedy: a child is accepted iff it equals the target's argmax. The added token
  is that argmax where no child matched (a *correction* if there were children,
  a *bonus* at a leaf). Output == the target's own greedy decoding.
* sampling: recursive rejection over siblings (SpecInfer / Leviathan):
  child x with proposal q_x is accepted with prob min(1, p(x)/q_x(x)); on rejection
  the target distribution becomes the residual norm(max(0, p - q_x)). When every
  child is rejected the added token is sampled from the residual. Proposals:
    - children sampled from a stored draft distribution q, without replacement:
      q_x = q with every token drawn before x removed (renormalised);
    - children chosen deterministically (no q stored, e.g. top-k or n-gram
      lookup): q_x is a point mass on x, i.e. accept with prob p(x), else remove x.
  Either way the added token is distributed exactly as the target's p.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tree import DraftTree


@dataclass
class Verdict:
    accepted: list[int]  # node indices of the accepted path, root-side first
    token: int  # the token the target adds after the path
    rejected: list[int]  # nodes tried and rejected (children of accepted nodes)
    corrected: bool  # True: `token` replaced rejected children; False: a bonus

    @property
    def kind(self) -> str:
        return "correction" if self.corrected else "bonus"


def accept_greedy(tree: DraftTree, argmax: list[int]) -> Verdict:
    """``argmax[r]``: the target's argmax at verify row r (row 0 = root, row i+1 = node i)."""
    kids = tree.children() if len(tree) else {}
    node, accepted, rejected = -1, [], []
    while True:
        want = argmax[node + 1]
        children = kids.get(node, ())
        hit = next((c for c in children if tree.tokens[c] == want), None)
        rejected.extend(c for c in children if c != hit)
        if hit is None:
            return Verdict(accepted, want, rejected, corrected=bool(children))
        accepted.append(hit)
        node = hit


def _proposal(tree: DraftTree, parent: int, child: int, size: int, device=None) -> torch.Tensor:
    """The proposal of ``child``, on ``device`` (the target distribution's)."""
    q = tree.q.get(parent)
    tok = tree.tokens[child]
    if q is None:  # deterministic proposal: a point mass
        out = torch.zeros(size, device=device)
        out[tok] = 1.0
        return out
    q = q.to(device)
    drawn_before = tree.drawn[parent][: tree.rank[child]]
    if drawn_before:
        q = q.clone()
        q[drawn_before] = 0.0
        q = q / q.sum()
    return q


def accept_sampling(tree: DraftTree, target_probs: torch.Tensor, gen: torch.Generator | None) -> Verdict:
    """``target_probs``: (n+1, V) float rows of the target's (processed) distribution."""
    kids = tree.children() if len(tree) else {}
    size = target_probs.shape[-1]
    node, accepted, rejected = -1, [], []
    p = target_probs[0]
    while True:
        children = kids.get(node, ())
        hit = None
        for c in children:
            x = tree.tokens[c]
            qx = _proposal(tree, node, c, size, p.device)
            u = torch.rand((), generator=gen, device=p.device).item()
            if qx[x] > 0 and u * float(qx[x]) < float(p[x]):
                hit = c
                break
            rejected.append(c)
            residual = torch.clamp(p - qx, min=0.0)
            total = residual.sum()
            # total == 0 only if p <= q everywhere, i.e. p == q: then x was accepted surely.
            p = residual / total if total > 0 else p
        if hit is None:
            tok = int(torch.multinomial(p, 1, generator=gen).item())
            return Verdict(accepted, tok, rejected, corrected=bool(children))
        accepted.append(hit)
        node = hit
        p = target_probs[hit + 1]
