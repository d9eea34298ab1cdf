"""The chain closed form (core/speedup_model.py) and its figure (ui/insight.py)."""

import random

import pytest

from core import speedup_model as M
from core.trace import Step, Trace


def test_expected_tokens_closed_form():
    assert M.expected_tokens(0.0, 5) == 1.0
    assert M.expected_tokens(1.0, 5) == 6.0
    assert M.expected_tokens(0.5, 2) == pytest.approx(1.75)
    assert M.expected_tokens(0.8, 4) == pytest.approx(3.3616)
    for bad in ((-0.1, 2), (1.1, 2), (0.5, -1)):
        with pytest.raises(ValueError):
            M.expected_tokens(*bad)


def test_closed_form_matches_simulation():
    """Monte Carlo of the model: accept each token with prob alpha until the first rejection."""
    rng = random.Random(0)
    for alpha, gamma in ((0.3, 3), (0.7, 5), (0.9, 8)):
        n = 40000
        total = 0
        for _ in range(n):
            k = 0
            while k < gamma and rng.random() < alpha:
                k += 1
            total += k + 1
        assert total / n == pytest.approx(M.expected_tokens(alpha, gamma), rel=0.02)


def test_speedup_uses_the_measured_verify_cost():
    flat = {1: 1.0, 2: 1.0, 4: 1.0, 8: 1.0, 16: 1.0}
    steep = {1: 1.0, 2: 2.0, 4: 4.0, 8: 8.0, 16: 16.0}  # verify costs n x c(1)
    assert M.speedup(0.8, 4, flat) == pytest.approx(M.expected_tokens(0.8, 4))
    assert M.speedup(0.8, 4, steep) == pytest.approx(M.expected_tokens(0.8, 4) / 5)
    assert M.speedup(0.8, 4, flat, draft_ratio=0.25) == pytest.approx(3.3616 / 2)
    assert M.verify_ratio({1: 2.0, 4: 5.0}, 3) == pytest.approx(2.0)  # interpolated: 4 / 2
    assert M.speedup(0.8, 0, steep) == 1.0


def test_grid_and_best_gamma():
    curve = {1: 1.0, 2: 1.1, 4: 1.3, 8: 1.8, 16: 3.0, 32: 6.0}
    g = M.grid(curve, draft_ratio=0.05, alphas=[0.2, 0.6, 0.95], gammas=list(range(1, 13)))
    assert len(g["speedup"]) == 3 and len(g["speedup"][0]) == 12
    assert g["best_gamma"][0] <= g["best_gamma"][1] <= g["best_gamma"][2]  # better drafter, longer chain
    assert g["speedup"][2][g["gammas"].index(g["best_gamma"][2])] == max(g["speedup"][2])
    assert g["verify_ratio"][0] == pytest.approx(1.1)


def _chain_step(drafted, n_acc, eos_cut=False):
    toks = list(range(100, 100 + drafted))
    acc = list(range(n_acc))
    rej = [n_acc] if n_acc < drafted else []
    return Step(
        tokens=toks,
        parents=[i - 1 for i in range(drafted)],
        depths=list(range(1, drafted + 1)),
        q=[1.0] * drafted,
        p=None,
        accepted=acc,
        rejected=rej,
        token=7,
        kind="correction" if rej else "bonus",
        committed=toks[:n_acc] + [7],
        t_draft=0.01 * drafted,
        t_verify=0.1,
        t_other=0.0,
    )


def test_run_point_from_a_trace():
    # 4-chains: 4 accepted (bonus), 2 accepted then rejected, 0 accepted, plus a plain step
    steps = [_chain_step(4, 4), _chain_step(4, 2), _chain_step(4, 0), Step([], [], [], [], None, [], [], 7, "bonus", [7], 0.0, 0.1, 0.0)]
    tr = Trace(steps=steps, output=[1] * 11)
    a = M.acceptance_of(tr)
    assert (a["accepted"], a["tested"], a["gamma"], a["drafted_steps"]) == (6, 4 + 3 + 1, 4, 3)
    p = M.run_point(tr, curve={1: 0.1, 8: 0.2})
    assert p["alpha"] == pytest.approx(0.75)
    assert p["draft_ratio"] == pytest.approx(0.01 / 0.1)
    assert p["tokens_per_step_run"] == pytest.approx((5 + 3 + 1) / 3)
    assert p["speedup_model"] == pytest.approx(M.expected_tokens(0.75, 4) / (M.verify_ratio({1: 0.1, 8: 0.2}, 5) + 0.4))


def test_speedup_map_figure():
    pytest.importorskip("plotly")
    from ui.insight import TEACH, speedup_map

    g = M.grid({1: 1.0, 8: 2.0, 16: 3.0}, 0.1, alphas=[0.1, 0.5, 0.9], gammas=[1, 2, 4, 8])
    fig = speedup_map(g, {"alpha": 0.7, "gamma": 4, "speedup_model": 1.6})
    names = [t.name for t in fig.data]
    assert names == ["speedup", "break-even (1×)", "best γ per α", "this run"]
    assert list(fig.data[0].z[2]) == g["speedup"][2]
    assert "1.60×" in fig.layout.annotations[0].text and fig.layout.annotations[0].bgcolor == "white"
    assert len(speedup_map(g).data) == 3
    assert "(1 − α^(γ+1)) / (1 − α)" in TEACH
