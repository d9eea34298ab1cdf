"""Acceptance rules in isolation: exact-distribution checks over many seeded trials."""

import torch
import pytest

from core.acceptance import accept_greedy, accept_sampling
from core.drafters.base import DraftSpec, build_tree
from core.sampling import SamplingConfig
from core.tree import DraftTree

V = 6


def _dist(seed, sharp=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(V, generator=g) * sharp, -1)


def _first_token_freq(make_tree, p_rows, trials=8000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    counts = torch.zeros(V)
    for _ in range(trials):
        tree = make_tree(gen)
        v = accept_sampling(tree, p_rows, gen)
        first = tree.tokens[v.accepted[0]] if v.accepted else v.token
        counts[first] += 1
    return counts / trials


def _tv(a, b):
    return 0.5 * float((a - b).abs().sum())


def _sampled_tree(q_root, k, p_rows_for_children=None):
    """Root children drawn from q without replacement (via build_tree's sampler)."""

    def make(gen):
        logits = torch.log(q_root)
        spec = DraftSpec("tree", branching=(k,))
        return build_tree(logits, None, spec, SamplingConfig(temperature=1.0), gen, V)

    return make


@pytest.mark.parametrize("k", [1, 2, 4])
def test_sampled_children_are_lossless(k):
    p = _dist(1, 2.0)
    q = _dist(2, 2.0)
    rows = p.repeat(k + 1, 1)
    freq = _first_token_freq(_sampled_tree(q, k), rows)
    assert _tv(freq, p) < 0.03, (freq, p)


def test_deterministic_children_are_lossless():
    p = _dist(3, 2.0)

    def make(gen):
        t = DraftTree()
        for r, tok in enumerate([2, 0, 5]):
            t.add(tok, -1, 0.3, 0.0, rank=r)
        return t

    freq = _first_token_freq(make, p.repeat(4, 1))
    assert _tv(freq, p) < 0.04


def test_second_token_distribution_on_a_chain():
    """Two-token chain: the distribution of the 2nd output token given the 1st equals the target's."""
    p0, p1 = _dist(4, 2.0), _dist(5, 2.0)
    q0, q1 = _dist(6, 2.0), _dist(7, 2.0)
    gen = torch.Generator().manual_seed(1)
    joint = torch.zeros(V, V)
    trials = 15000
    for _ in range(trials):
        t = DraftTree()
        x0 = int(torch.multinomial(q0, 1, generator=gen))
        t.add(x0, -1, float(q0[x0]), 0.0)
        t.q[-1], t.drawn[-1] = q0, [x0]
        x1 = int(torch.multinomial(q1, 1, generator=gen))
        t.add(x1, 0, float(q1[x1]), 0.0)
        t.q[0], t.drawn[0] = q1, [x1]
        # target rows: root -> p0; after node 0 (token x0) -> p1 (independent of x0 in this toy target)
        rows = torch.stack([p0, p1, p1])
        v = accept_sampling(t, rows, gen)
        out = [t.tokens[a] for a in v.accepted] + [v.token]
        if len(out) >= 2:
            joint[out[0], out[1]] += 1
        else:  # only one token this step: the next would come from a fresh step, sample it from p1
            joint[out[0], int(torch.multinomial(p1, 1, generator=gen))] += 1
    joint /= trials
    assert _tv(joint, torch.outer(p0, p1)) < 0.04


def test_biased_rule_is_detected():
    """Negative control: accepting every draft (no rejection) must fail the same check."""
    p = _dist(1, 2.0)
    q = _dist(2, 2.0)
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(V)
    for _ in range(5000):
        counts[int(torch.multinomial(q, 1, generator=gen))] += 1
    assert _tv(counts / 5000, p) > 0.05


def test_greedy_walks_the_matching_path():
    t = DraftTree()
    a = t.add(5, -1, 0.5, 0.0, rank=0)
    b = t.add(3, -1, 0.3, 0.0, rank=1)
    c = t.add(1, b, 0.9, 0.0)
    t.add(2, c, 0.9, 0.0)
    # rows: root, a, b, c, d ; target wants 3 after root, then 1, then 4
    argmax = [3, 0, 1, 4, 0]
    v = accept_greedy(t, argmax)
    assert v.accepted == [b, c] and v.token == 4 and v.corrected and a in v.rejected
    v = accept_greedy(DraftTree(), [7])
    assert v.accepted == [] and v.token == 7 and not v.corrected
