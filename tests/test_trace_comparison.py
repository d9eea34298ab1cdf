"""core/comparison.py: the verdict of plain vs speculative rounds (speedup by tok/s, the reported
median round, a round above its bound flagged, identity against the reference, the classified
divergence), saved with the trace (schema /4) and read back equal; a schema-/3 trace's
``meta["ar_baseline"]`` is upgraded to it. Hand-built traces, no model."""

import json
import re

import pytest

from core.comparison import SLACK, Comparison, Timing
from core.paths import ASSETS
from core.trace import SCHEMA, Step, Trace


def run(output: list[int], steps: int, wall: float, margins: float = 5.0) -> Trace:
    """A run of ``output`` in ``steps`` forwards after the prefill (each step commits an equal share)."""
    per = (len(output) - 1) // steps if steps else 0
    st = []
    for k in range(steps):
        n = per if k < steps - 1 else len(output) - 1 - per * (steps - 1)
        toks = output[1 + per * k : 1 + per * k + n]
        st.append(
            Step(
                tokens=toks[:-1],
                parents=list(range(-1, len(toks) - 2)),
                depths=list(range(1, len(toks))),
                q=[0.5] * (len(toks) - 1),
                p=None,
                accepted=list(range(len(toks) - 1)),
                rejected=[],
                token=toks[-1],
                kind="bonus",
                committed=list(toks),
                t_draft=0.0,
                t_verify=0.0,
                t_other=0.0,
                margins=[margins] * len(toks),
            )
        )
    return Trace(
        meta={"dtype": "float32"},
        first_token=output[0],
        first_margin=margins,
        steps=st,
        wall_s=wall,
        output=list(output),
        text="x" * len(output),
        stop_reason="length",
    )


OUT = list(range(100, 133))  # 33 tokens


def three_rounds() -> tuple[list[Trace], list[Trace]]:
    plain = [run(OUT, 32, w) for w in (1.0, 1.1, 0.9)]
    spec = [run(OUT, 8, w) for w in (0.5, 0.4, 0.6)]  # tau 4
    return plain, spec


def test_the_verdict_of_three_rounds():
    plain, spec = three_rounds()
    c = Comparison.of(plain, spec, plain[0])
    ratios = [(33 / s.wall_s) / (33 / a.wall_s) for a, s in zip(plain, spec)]  # 2.0, 2.75, 1.5
    assert c.speedups == [round(r, 4) for r in ratios]
    assert c.speedup == 2.0 and c.reported == 0  # the median round
    assert c.plain == Timing.of(plain[0]) and c.spec == Timing.of(spec[0])
    assert c.plain_trace is plain[0] and c.spec_trace is spec[0] and c.reference_trace is plain[0]
    assert c.bounds == [4.0] * 3 and c.flagged == [] and not c.above_bound and c.tau == 4.0
    assert c.plain_tokens_per_s == 33.0  # median of 30, 33, 36.667
    assert c.identical and c.divergence.kind == "identical" and c.baseline == "exact"
    assert c.plain_output == OUT and c.plain_text == plain[0].text
    assert c.spec_traces == spec and c.plain_traces == plain
    with pytest.raises(TypeError):  # read by attribute only: the old dict keys are gone
        c["speedup"]


def test_a_round_above_its_bound_is_flagged_and_left_out_of_the_median():
    plain, spec = three_rounds()
    spec[1] = run(OUT, 8, 1.0 / (4 * SLACK) - 0.01)  # above tau 4 x SLACK
    c = Comparison.of(plain, spec, plain[0])
    assert c.flagged == [1] and c.above_bound
    assert c.speedup == round((c.speedups[0] + c.speedups[2]) / 2, 4)


def test_a_differing_round_is_classified_against_the_reference():
    plain, spec = three_rounds()
    other = OUT[:10] + [999] + OUT[11:]
    spec[2] = run(other, 8, 0.6, margins=0.00001)  # a near-tie on its side only
    c = Comparison.of(plain, spec, plain[0], "unpadded")
    assert not c.identical  # one round differs
    assert c.divergence.kind == "identical"  # the reported round does not
    c2 = Comparison.of(plain[2:], spec[2:], plain[0])
    assert c2.divergence.kind == "disagreement" and c2.divergence.position == 10
    with pytest.raises(ValueError):
        Comparison.of(plain[:2], spec, plain[0])
    with pytest.raises(ValueError):
        Comparison.of(plain, spec, plain[0], "fastest")


def test_the_comparison_is_saved_with_the_trace_and_read_back_equal():
    plain, spec = three_rounds()
    spec[1] = run(OUT, 8, 0.2)  # 5.5x: above its bound (tau 4), flagged
    spec[2] = run(OUT[:20] + [7] * 13, 8, 0.6)  # differs
    c = Comparison.of(plain, spec, plain[0], "unpadded")
    assert c.flagged == [1] and not c.identical and c.reported == 2 and c.divergence.kind == "disagreement"  # the lower median of 2
    tr = c.spec_trace
    tr.comparison = c
    d = json.loads(tr.to_json())
    assert d["schema"] == SCHEMA == "specscope.trace/4"
    assert d["comparison"] == json.loads(json.dumps(c.to_json())) and "ar_baseline" not in d["meta"]
    assert all(v not in (None, [], "", 0) for v in d["comparison"].values() if v is not False)  # every field set: all are checked
    assert d["comparison"]["divergence"]["text"] == c.divergence.text
    back = Trace.from_json(json.dumps(d))
    assert back == tr and back.comparison == c
    assert back.comparison.plain_runs == c.plain_runs and back.comparison.divergence == c.divergence
    assert back.comparison.spec_trace is None  # the traces behind the numbers stay in memory
    assert Trace.from_json(Trace().to_json()).comparison is None
    with pytest.raises(ValueError, match="not a SpecScope comparison"):
        Trace.from_dict(dict(d, comparison={"speedup": 2}))


def test_a_schema_3_trace_with_an_ar_baseline_is_upgraded():
    plain, spec = three_rounds()
    tr = spec[0]
    d = json.loads(tr.to_json())
    d["schema"] = "specscope.trace/3"
    del d["comparison"]
    d["meta"]["ar_baseline"] = {
        "output": OUT,
        "wall_s": 1.0,
        "text": "plain",
        "stop_reason": "length",
        "speedup": 2.0,
        "speedups": [2.0, 2.75, 1.5],
        "baseline": "unpadded",
        "reference_output": OUT,
        "divergence": {"kind": "identical", "dtype": "float32", "text": "identical"},
        "bounds": [4.0, 4.0, 4.0],
        "above_bound": False,
    }
    back = Trace.from_json(json.dumps(d))
    c = back.comparison
    assert back.schema == SCHEMA and "ar_baseline" not in back.meta
    assert c.speedup == 2.0 and c.speedups == [2.0, 2.75, 1.5] and c.reported == 0 and c.baseline == "unpadded"
    assert c.plain == Timing(33, 1.0, 33.0, 1.0, "length") and c.spec == Timing.of(tr) and c.plain_text == "plain"
    assert c.identical and c.divergence.kind == "identical" and c.bounds == [4.0] * 3 and not c.above_bound
    assert c.plain_runs == [] and c.plain_tokens_per_s == 33.0
    # written back, it is a schema-/4 trace with the same comparison
    assert Trace.from_json(back.to_json()) == back
    # an early record: the answer and its time only (identity classified from the outputs)
    d["meta"]["ar_baseline"] = {"output": OUT[:5] + [1] + OUT[6:], "wall_s": 2.0, "text": "p"}
    c = Trace.from_json(json.dumps(d)).comparison
    assert c.speedup == round((33 / 0.5) / (33 / 2.0), 4) and c.speedups == [c.speedup] and c.baseline == "exact"
    assert not c.identical and c.divergence.position == 5 and c.divergence.kind == "disagreement"
    # a damaged one: the run loads without a comparison
    d["meta"]["ar_baseline"] = {"output": ["x"]}
    assert Trace.from_json(json.dumps(d)).comparison is None


def test_the_shipped_example_trace_is_upgraded():
    tr = Trace.from_json((ASSETS / "examples" / "example_trace.json").read_text())
    c = tr.comparison
    assert c is not None and "ar_baseline" not in tr.meta
    assert c.speedup == 1.6746 and c.speedups == [1.7767, 1.6746, 1.0993] and c.reported == 1
    assert c.identical and c.plain_output == tr.output


def test_the_cli_compare_writes_the_comparison_with_its_trace(tmp_path):
    """``python -m core compare --trace FILE`` saves what the app saves: the reported speculative
    trace with its comparison, the one the JSON reports."""
    import os
    import subprocess
    import sys

    from tools.tiny import tiny_model_dir

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = tmp_path / "t.json"
    args = ["compare", "--target", tiny_model_dir("llama"), "--drafter", "layerskip:1", "--strategy", "chain"]
    args += ["--prompt", "hello hello", "--max-new-tokens", "10", "--json", "--trace", str(path)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", SPECSCOPE_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "core", *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    tr = Trace.from_json(path.read_text())
    c = tr.comparison
    assert c is not None and c == Comparison.from_json(out["comparison"])
    assert c.speedup == out["speedup"] and c.identical is out["identical"] is True
    assert tr.output == out["spec"]["token_ids"] and c.plain_output == out["ar"]["token_ids"] == c.reference_output
    assert c.spec == Timing.of(tr) and tr.meta["prompt"] == "hello hello"


def test_every_round_above_its_bound_is_called_noise_not_left_out(monkeypatch):
    """When every round is flagged the reported speedup comes from them all: the page says it is
    noise, not that a round was left out (red with the one-round wording for every case); the CLI
    adds the load average where other processes compete for the cores."""
    from core import machine
    from ui.render.verdict import bound_note

    plain, spec = three_rounds()
    one = Comparison.of(plain, [spec[0], run(OUT, 8, 1.0 / (4 * SLACK) - 0.01), spec[2]], plain[0])
    assert one.above_bound and not one.all_above_bound and "left out" in bound_note(one)
    fast = [run(OUT, 8, w) for w in (0.01, 0.02, 0.03)]  # 100x and more: above tau 4 in every round
    every = Comparison.of(plain, fast, plain[0])
    assert every.all_above_bound and every.flagged == [0, 1, 2]
    note = bound_note(every)
    assert "not a verdict" in note and "left out" not in note
    # both notes land in the Compare table's note cell, a phone's narrow column: no word a browser
    # may break at an inner hyphen (seen: "re-measured:" split over two lines, a browser test red)
    for text in (note, bound_note(one)):
        assert not re.search(r"\w-\w", text), text
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (4.2, 4.0, 3.0))
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda _pid: {0, 1})
    assert machine.competing_load() == (4.2, 2)
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (2.3, 2.0, 2.0))
    assert machine.competing_load() is None  # a decoding's own two threads
