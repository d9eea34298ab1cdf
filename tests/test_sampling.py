"""Sampling is lossless end to end: the distribution of the first three generated tokens under
speculative decoding equals the target's exact distribution (enumerated), for a sampled chain,
a sampled static tree and a (deterministic-proposal) dynamic tree; a biased rule is detected."""
import itertools

import pytest
import torch

import core.engine as engine
from core import adapters
from core.acceptance import Verdict
from core.drafters import DraftSpec, ModelDrafter, make_drafter
from core.engine import generate
from core.sampling import SamplingConfig, probs
from tests.tiny_models import tiny_model_dir

SAMPLING = dict(temperature=1.5, top_k=3)   # support of 3 tokens per step: 27 sequences
PROMPT = "hello world"
RUNS = 600


@pytest.fixture(scope="module")
def models():
    tgt = adapters.load(tiny_model_dir("llama"))
    small = adapters.load(tiny_model_dir("llama", num_layers=1, seed=1))
    return tgt, small


def exact_distribution(tgt):
    cfg = SamplingConfig(**SAMPLING)
    enc = tgt.encode(PROMPT)
    ids = enc.input_ids[0].tolist()
    dist = {}

    def dist_after(seq):
        _, logits, _ = tgt.prefill(adapters.Encoded(torch.tensor([seq])))
        return probs(logits, cfg)

    p1 = dist_after(ids)
    for a in torch.nonzero(p1).flatten().tolist():
        p2 = dist_after(ids + [a])
        for b in torch.nonzero(p2).flatten().tolist():
            p3 = dist_after(ids + [a, b])
            for c in torch.nonzero(p3).flatten().tolist():
                dist[(a, b, c)] = float(p1[a] * p2[b] * p3[c])
    return dist


def empirical(tgt, drafter, spec, runs=RUNS):
    counts = {}
    for seed in range(runs):
        tr = generate(tgt, PROMPT, None, drafter, spec, SamplingConfig(seed=seed, **SAMPLING),
                      max_new_tokens=3, detail=False)
        key = tuple(tr.output)
        counts[key] = counts.get(key, 0) + 1
    return counts


def tv(counts, exact, runs):
    keys = set(counts) | set(exact)
    return 0.5 * sum(abs(counts.get(k, 0) / runs - exact.get(k, 0.0)) for k in keys)


def null_threshold(exact, runs, q=0.999, trials=1000):
    """TV between the exact distribution and an empirical one of `runs` exact samples: its
    q-quantile is the threshold a correct sampler stays under with probability q."""
    keys = list(exact)
    p = torch.tensor([exact[k] for k in keys])
    gen = torch.Generator().manual_seed(123)
    draws = torch.multinomial(p, runs * trials, replacement=True, generator=gen).view(trials, runs)
    offsets = torch.arange(trials).view(-1, 1) * len(keys)
    freq = torch.bincount((draws + offsets).flatten(), minlength=trials * len(keys)).view(trials, -1) / runs
    tvs = 0.5 * (freq - p).abs().sum(1)
    return float(torch.quantile(tvs, q))


@pytest.fixture(scope="module")
def reference(models):
    exact = exact_distribution(models[0])
    assert abs(sum(exact.values()) - 1) < 1e-4
    return exact, null_threshold(exact, RUNS)


@pytest.mark.parametrize("kind,spec", [
    ("small", DraftSpec("chain", gamma=2)),
    ("small", DraftSpec("tree", branching=(2, 2))),
    ("layerskip", DraftSpec("dynamic", depth=2, top_k=2, budget=4)),
    # confidence pruning: whether a node is expanded depends on the drawn tokens (a stopping
    # time), which must not bias the output
    ("small", DraftSpec("tree", branching=(2, 2), min_prob=0.4)),
    ("layerskip", DraftSpec("dynamic", depth=2, top_k=2, budget=4, min_prob=0.4)),
])
def test_speculative_sampling_matches_target_distribution(models, reference, kind, spec):
    tgt, small = models
    exact, thr = reference
    d = ModelDrafter(small, "small") if kind == "small" else make_drafter("layerskip:1", tgt)
    counts = empirical(tgt, d, spec)
    assert sum(counts.values()) == RUNS
    assert tv(counts, exact, RUNS) < thr, (tv(counts, exact, RUNS), thr)


def test_biased_acceptance_is_detected(models, reference, monkeypatch):
    """Negative control: a rule that accepts every draft token without rejection sampling."""
    tgt, small = models
    exact, thr = reference

    def accept_all(tree, target_probs, gen):
        path, node = [], -1
        kids = tree.children()
        while kids.get(node):
            node = kids[node][0]
            path.append(node)
        tok = int(torch.multinomial(target_probs[node + 1], 1, generator=gen))
        return Verdict(path, tok, [], False)

    monkeypatch.setattr(engine, "accept_sampling", accept_all)
    counts = empirical(tgt, ModelDrafter(small, "small"), DraftSpec("chain", gamma=2))
    assert tv(counts, exact, RUNS) > 1.5 * thr, (tv(counts, exact, RUNS), thr)
