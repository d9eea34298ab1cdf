"""core.trace: a hand-built trace's summary numbers and token origins, the JSON round trip, the
schema-1 upgrade (accepted tokens after EOS / the budget become ``discarded``), refused inputs."""

import json

import pytest

from core.trace import READABLE, SCHEMA, Step, Trace


def hand_built() -> Trace:
    """Prefill token 10; step 0 drafts 11 -> 12 and a sibling 20, accepts 11, 12, adds bonus 13;
    step 1 drafts 14 -> 30, accepts 14, corrects 30 to 15."""
    s0 = Step(
        tokens=[11, 12, 20],
        parents=[-1, 0, -1],
        depths=[1, 2, 1],
        q=[0.9, 0.8, 0.1],
        p=[0.7, 0.6, 0.05],
        accepted=[0, 1],
        rejected=[2],
        token=13,
        kind="bonus",
        committed=[11, 12, 13],
        t_draft=0.1,
        t_verify=0.2,
        t_other=0.05,
    )
    s1 = Step(
        tokens=[14, 30],
        parents=[-1, 0],
        depths=[1, 2],
        q=[0.5, 0.4],
        p=None,
        accepted=[0],
        rejected=[1],
        token=15,
        kind="correction",
        committed=[14, 15],
        t_draft=0.2,
        t_verify=0.3,
        t_other=0.15,
    )
    return Trace(
        meta={"drafter": "test"},
        prompt_tokens=7,
        first_token=10,
        t_prefill=0.5,
        t_trace=0.01,
        steps=[s0, s1],
        wall_s=2.0,
        output=[10, 11, 12, 13, 14, 15],
        vocab={str(i): f"<{i}>" for i in (10, 11, 12, 13, 14, 15, 20, 30)},
        text="hello",
        stop_reason="length",
    )


def test_summary_numbers_of_a_hand_built_trace():
    s = hand_built().summary()
    assert s["new_tokens"] == 6
    assert s["target_forwards"] == 3  # prefill + 2 steps
    assert s["tau"] == 2.5  # (6 - the prefill's 1) / 2 steps: 3 + 2 committed
    assert s["accepted_per_step"] == 1.5  # (2 + 1) / 2, bonus excluded
    assert s["drafted_per_step"] == 2.5  # (3 + 2) / 2
    assert s["acceptance_by_depth"] == [1.0, 0.5]  # both steps accept depth 1, one depth 2
    assert s["tokens_per_s"] == 3.0
    assert s["time_split"] == {"prefill": 0.5, "draft": 0.3, "verify": 0.5, "other": 0.2}
    assert s["trace_overhead"] == 0.005
    assert s["stop_reason"] == "length"


def test_an_empty_trace_summarises_to_zeros():
    s = Trace().summary()
    assert s["new_tokens"] == 0 and s["target_forwards"] == 0 and s["tau"] == 0.0
    assert s["accepted_per_step"] == 0.0 and s["acceptance_by_depth"] == [] and s["tokens_per_s"] == 0.0
    assert Trace().token_origins() == []


def test_token_origins():
    assert hand_built().token_origins() == [
        (10, "prefill", -1),
        (11, "accepted", 0),
        (12, "accepted", 0),
        (13, "bonus", 0),
        (14, "accepted", 1),
        (15, "correction", 1),
    ]


def test_token_origins_follow_the_committed_tokens_only():
    tr = hand_built()
    tr.steps[1].committed = [14]  # the budget cut the correction
    tr.steps[1].accepted, tr.steps[1].discarded = [0], []
    tr.output = tr.output[:-1]
    assert [o for _, o, _ in tr.token_origins()] == ["prefill", "accepted", "accepted", "bonus", "accepted"]


def test_json_round_trip():
    tr = hand_built()
    text = tr.to_json()
    d = json.loads(text)
    assert d["schema"] == SCHEMA and d["summary"] == tr.summary()
    back = Trace.from_json(text)
    assert back == tr
    assert back.summary() == tr.summary() and back.token_origins() == tr.token_origins()
    assert Trace.from_dict(tr.to_dict()) == tr


def test_schema_1_traces_are_upgraded_on_read():
    """Schema 1 counted tokens the target accepted after EOS as accepted; read back, only the
    committed ones stay accepted and the rest are ``discarded``."""
    d = hand_built().to_dict()
    d["schema"] = "specscope.trace/1"
    assert d["schema"] in READABLE
    for s in d["steps"]:
        del s["discarded"]
    d["steps"][0]["accepted"] = [0, 1]
    d["steps"][0]["committed"] = [11]  # EOS was 11: 12 accepted but never committed
    d["steps"][0]["kind"] = "bonus"
    tr = Trace.from_json(json.dumps(d))
    assert tr.schema == SCHEMA
    assert tr.steps[0].accepted == [0] and tr.steps[0].discarded == [1]
    assert tr.steps[1].accepted == [0] and tr.steps[1].discarded == []  # nothing to discard
    # a schema-2 step keeps its fields as written
    d2 = hand_built().to_dict()
    d2["steps"][0]["discarded"] = [1]
    d2["steps"][0]["accepted"] = [0]
    assert Trace.from_dict(d2).steps[0].discarded == [1]


def test_unknown_fields_are_ignored_and_bad_inputs_refused():
    d = hand_built().to_dict()
    d["something_new"] = 1
    assert Trace.from_dict(d) == hand_built()
    for bad in ('{"schema": "other/1"}', "[1, 2]", "not json", '{"steps": []}'):
        with pytest.raises(ValueError, match="not a SpecScope trace"):
            Trace.from_json(bad)
