"""core.costs: the target's measured cost curve (monotone, cached) and the online estimates."""

import types

import pytest

from core import adapters, costs
from tools.tiny import tiny_model_dir


def test_interpolation_and_extrapolation():
    curve = {1: 1.0, 2: 2.0, 4: 2.0, 8: 4.0}
    assert costs._interp(curve, 1) == 1.0
    assert costs._interp(curve, 3) == 2.0
    assert costs._interp(curve, 6) == 3.0
    assert costs._interp(curve, 16) == 8.0  # linear beyond the last point
    assert costs._interp(curve, 0) == 1.0


def test_measured_curve_is_monotone_and_kept_for_the_process(monkeypatch):
    tgt = adapters.load(tiny_model_dir("llama"), kernels="stock")
    curve = costs.target_curve(tgt, refresh=True)
    assert sorted(curve) == list(costs.SIZES)
    assert all(curve[a] <= curve[b] for a, b in zip(costs.SIZES, costs.SIZES[1:]))
    assert all(v > 0 for v in curve.values())
    monkeypatch.setattr(costs, "measure_target", lambda *a, **k: pytest.fail("measured again"))
    assert costs.target_curve(tgt) == curve


def test_a_target_that_switched_its_forward_is_priced_by_the_new_forwards_curve(monkeypatch):
    """The app settles a target's compiled forward in the background and switches between runs: the
    curve measured on the eager forward must not price the compiled one (red with one curve for both)."""
    tgt = adapters.load(tiny_model_dir("qwen2"), dtype="bfloat16")
    seen = []
    monkeypatch.setattr(costs, "_curves", {})  # nothing another test measured in this process
    monkeypatch.setattr(
        costs, "measure_target", lambda a, *x, **k: seen.append(a.path) or {n: 0.1 if a.path == "eager" else 0.05 for n in costs.SIZES}
    )
    assert tgt.path == "eager" and costs.target_curve(tgt)[1] == 0.1
    monkeypatch.setattr(type(tgt), "path", property(lambda self: "compiled"))
    assert costs.target_curve(tgt)[1] == 0.05 and seen == ["eager", "compiled"]
    assert costs.target_curve(tgt)[1] == 0.05 and seen == ["eager", "compiled"]  # kept for the process


def test_online_estimates_follow_observations():
    m = costs.CostModel({1: 0.1, 2: 0.2, 4: 0.4})
    assert m.draft(2) == pytest.approx(2 * 0.25 * 0.1)  # the prior before any draft is seen
    m.observe(2, 0.4, forwards=4, t_draft=0.08, t_other=0.0)  # a verify twice as slow as the curve
    assert m.per_forward == pytest.approx(0.02)  # first sighting replaces the prior
    assert m.target(2) > 0.2
    for _ in range(60):
        m.observe(2, 0.4, forwards=4, t_draft=0.08, t_other=0.001)
    assert m.target(2) == pytest.approx(0.4, rel=1e-3)
    assert m.target(4) == pytest.approx(0.8, rel=1e-3)  # not observed: the overall ratio
    for _ in range(60):
        m.observe(4, 0.2, forwards=4, t_draft=0.08, t_other=0.001)  # observed: its own ratio
    assert m.target(4) == pytest.approx(0.2, rel=1e-2) and m.target(2) == pytest.approx(0.4, rel=1e-2)
    m.observe(3, 0.9, forwards=4, t_draft=0.08, t_other=0.001)  # exactly 3 tokens: as seen
    assert m.target(3) == pytest.approx(0.9)
    assert m.other == pytest.approx(0.001, rel=1e-2)
    m.observe(1, 0.2, forwards=0, t_draft=0.01, t_other=0.0)  # model-free drafting: per step
    assert m.per_step > 0


def test_the_curve_keeps_each_sizes_fastest_round(monkeypatch):
    """Noise only ever adds to a forward's time: the curve keeps each size's fastest round, so a
    machine that slowed in most rounds of one size does not price it above what it costs (red with
    the median of the rounds: two rows then cost more than four and lift the rest of the curve)."""
    clock = [0.0]
    cost = {1: 1.0, 2: 1.1, 4: 1.2, 8: 1.5, 16: 2.0, 32: 3.0}
    calls = {n: 0 for n in cost}

    class Probe:
        device = "cpu"

        def probe(self, prefix, padded=False):
            def run(n):
                calls[n] += 1
                slow = n == 2 and calls[n] in (1, 3, 5)  # 2 rows: slow in 3 of its 5 rounds
                clock[0] += cost[n] * (1.6 if slow else 1.0)

            return run

    monkeypatch.setattr(costs, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))  # costs' clock only
    curve = costs.measure_target(Probe(), reps=5)
    assert curve == pytest.approx(cost)
