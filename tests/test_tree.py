"""core/tree.py: the one tree-mask helper against a brute-force ancestor walk, verify_layout,
and DraftTree (add / children / truncate)."""

import random

import pytest
import torch

from core.tree import DraftTree, ancestor_matrix, tree_mask, verify_layout


def random_parents(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(-1, i) for i in range(n)]  # topological: parent < i, -1 = root


def brute_ancestors(parents: list[int], i: int) -> set[int]:
    """Node i and every node on its path to the root, by walking parent links."""
    out = set()
    while i >= 0:
        out.add(i)
        i = parents[i]
    return out


def tree_of(parents: list[int]) -> DraftTree:
    t = DraftTree()
    for i, p in enumerate(parents):
        t.add(100 + i, p, 0.5, -float(i))
    return t


@pytest.mark.parametrize("seed", range(8))
def test_ancestor_matrix_matches_a_walk_to_the_root(seed):
    parents = random_parents(1 + seed * 5, seed)
    anc = ancestor_matrix(parents)
    for i in range(len(parents)):
        assert {j for j in range(len(parents)) if anc[i, j]} == brute_ancestors(parents, i)


def test_ancestor_matrix_of_a_chain_is_lower_triangular():
    assert torch.equal(ancestor_matrix([-1, 0, 1, 2]), torch.tril(torch.ones(4, 4, dtype=torch.bool)))
    assert ancestor_matrix([]).shape == (0, 0)


@pytest.mark.parametrize("seed", range(6))
def test_tree_mask_over_cache_slots(seed):
    """Rows of some nodes over a cache whose slots are scattered: the prefix plus the slots of
    the node's ancestors and its own, nothing else (nodes without a slot are not in the cache)."""
    rng = random.Random(seed)
    parents = random_parents(12, seed)
    prefix = rng.randrange(0, 5)
    cached = [j for j in range(len(parents)) if rng.random() < 0.8]
    slots = rng.sample(range(prefix, prefix + 30), len(cached))
    slot = dict(zip(cached, slots))
    width = prefix + 30
    rows = rng.sample(range(len(parents)), 5)
    mask = tree_mask(parents, rows, slot, prefix, width)
    assert mask.shape == (5, width) and mask.dtype == torch.bool
    for r, node in enumerate(rows):
        want = set(range(prefix)) | {slot[j] for j in brute_ancestors(parents, node) if j in slot}
        assert {c for c in range(width) if mask[r, c]} == want, (node, r)


def test_verify_layout_is_the_root_plus_the_tree_after_the_prefix():
    #   root -> 0 -> 2
    #        -> 1 -> 3 -> 4
    tree = tree_of([-1, -1, 0, 1, 3])
    depths, mask = verify_layout(tree, prefix=3)
    assert depths.tolist() == [0, 1, 1, 2, 2, 3]
    assert mask.shape == (6, 3 + 6)
    assert mask[:, :3].all()  # everyone sees the prefix
    parents_with_root = [-1] + [p + 1 for p in tree.parents]
    for r in range(6):
        want = {3 + j for j in brute_ancestors(parents_with_root, r)}
        assert {c for c in range(3, 9) if mask[r, c]} == want
    # no prefix: the (n+1, n+1) ancestor matrix with the root as column 0
    depths0, anc = verify_layout(tree)
    assert torch.equal(anc, mask[:, 3:]) and torch.equal(depths0, depths)


def test_empty_tree_layout_is_the_root_alone():
    depths, mask = verify_layout(DraftTree(), prefix=2)
    assert depths.tolist() == [0] and mask.tolist() == [[True, True, True]]


def test_draft_tree_add_children_and_truncate():
    t = DraftTree()
    a = t.add(7, -1, 0.6, -0.5, rank=0)
    b = t.add(8, -1, 0.3, -1.2, rank=1)
    c = t.add(9, a, 0.9, -0.6, rank=0)
    t.add(10, b, 0.5, -1.9, rank=0)
    assert len(t) == 4 and t.depths == [1, 1, 2, 2] and t.max_depth == 2
    assert t.children() == {-1: [a, b], a: [c], b: [3]}
    t.q = {-1: torch.tensor([0.5]), b: torch.tensor([0.25])}
    t.drawn = {-1: [7, 8], b: [10]}
    sub = t.truncate([b, 3])  # ancestor-closed: b and its child
    assert sub.tokens == [8, 10] and sub.parents == [-1, 0] and sub.depths == [1, 2]
    assert sub.rank == [1, 0] and set(sub.q) == {-1, 0} and sub.drawn == {-1: [7, 8], 0: [10]}
    assert DraftTree().max_depth == 0
