"""Where the speedup comes from: the closed form for chains, priced with measured costs.

Model (Leviathan et al. 2023): every drafted token is accepted independently with probability
``alpha`` (given that its predecessors were), a step drafts a chain of ``gamma`` tokens. The
tokens one step commits are the accepted prefix plus the target's own token:

    E[tokens per step] = 1 + alpha + alpha^2 + ... + alpha^gamma = (1 - alpha^(gamma+1)) / (1 - alpha)

A step costs one verify forward of gamma + 1 tokens plus gamma draft forwards; plain decoding
costs one one-token forward per token. With the *measured* target cost curve c(n) (core/costs.py)

    speedup(alpha, gamma) = E[tokens per step] / (c(gamma + 1) / c(1) + gamma * c_draft / c(1))

Verification is not free: on a GPU c(8)/c(1) is close to 1, on a 2-core CPU it can be 2-4, and
that ratio, not alpha alone, decides the best gamma. Pure math: no torch, no plotting.
"""

from __future__ import annotations

from .costs import _interp


def expected_tokens(alpha: float, gamma: int) -> float:
    """Expected tokens committed per step of a gamma-chain with per-token acceptance alpha."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")
    if alpha == 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def verify_ratio(curve: dict[int, float] | None, n: int) -> float:
    """c(n) / c(1) from a measured cost curve (seconds per forward of n tokens); None = free (1)."""
    if not curve:
        return 1.0
    return _interp(curve, n) / _interp(curve, 1)


def speedup(alpha: float, gamma: int, curve: dict[int, float] | None = None, draft_ratio: float = 0.0) -> float:
    """Predicted speedup over plain decoding. ``draft_ratio``: one draft forward's cost / c(1)."""
    if gamma == 0:
        return 1.0
    return expected_tokens(alpha, gamma) / (verify_ratio(curve, gamma + 1) + gamma * draft_ratio)


def grid(curve: dict[int, float] | None = None, draft_ratio: float = 0.0, alphas=None, gammas=None) -> dict:
    """speedup over a grid of alpha x gamma for one measured cost ratio. Returns {"alphas",
    "gammas", "speedup": rows per alpha, "tokens": E per alpha x gamma, "best_gamma": per alpha,
    "verify_ratio": per gamma, "draft_ratio"}."""
    alphas = list(alphas) if alphas is not None else [round(0.05 * i, 2) for i in range(20)] + [0.98]
    gammas = list(gammas) if gammas is not None else list(range(1, 17))
    sp = [[speedup(a, g, curve, draft_ratio) for g in gammas] for a in alphas]
    tok = [[expected_tokens(a, g) for g in gammas] for a in alphas]
    best = [gammas[max(range(len(gammas)), key=lambda i: row[i])] for row in sp]
    return {
        "alphas": alphas,
        "gammas": gammas,
        "speedup": sp,
        "tokens": tok,
        "best_gamma": best,
        "verify_ratio": [verify_ratio(curve, g + 1) for g in gammas],
        "draft_ratio": draft_ratio,
    }


def acceptance_of(trace) -> dict:
    """A run's own alpha: drafted tokens accepted / drafted tokens whose test was reached (the
    accepted path plus the first rejected child, if any), gamma = the longest chain drafted.
    For a chain this is the maximum-likelihood alpha of the model above."""
    acc = tested = 0
    gamma = 0
    steps = 0
    for s in trace.steps:
        if not s.tokens:
            continue
        steps += 1
        gamma = max(gamma, max(s.depths))
        acc += len(s.accepted) + len(s.discarded)
        reached_end = (len(s.accepted) + len(s.discarded)) >= max(s.depths)
        tested += len(s.accepted) + len(s.discarded) + (0 if reached_end else 1)
    return {"alpha": acc / tested if tested else 0.0, "gamma": gamma, "drafted_steps": steps, "accepted": acc, "tested": tested}


def run_point(trace, curve: dict[int, float] | None = None, draft_ratio: float | None = None) -> dict:
    """The run's own point on the map: its measured alpha and gamma, the tokens per step the
    closed form predicts vs the run's, and the predicted speedup. ``draft_ratio`` defaults to the
    run's measured draft seconds per drafted token over c(1) (curve needed; else 0)."""
    a = acceptance_of(trace)
    drafted = [s for s in trace.steps if s.tokens]
    if draft_ratio is None:
        n_tok = sum(len(s.tokens) for s in drafted)
        if curve and n_tok:
            draft_ratio = (sum(s.t_draft for s in drafted) / n_tok) / _interp(curve, 1)
        else:
            draft_ratio = 0.0
    per_step = [len(s.committed) for s in drafted]
    return {
        **a,
        "draft_ratio": draft_ratio,
        "tokens_per_step_model": expected_tokens(a["alpha"], a["gamma"]) if a["gamma"] else 1.0,
        "tokens_per_step_run": sum(per_step) / len(per_step) if per_step else 1.0,
        "speedup_model": speedup(a["alpha"], a["gamma"], curve, draft_ratio) if a["gamma"] else 1.0,
    }
