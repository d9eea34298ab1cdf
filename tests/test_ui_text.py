"""What the page says, without a browser: the last Teach step tells one story, titles wrap instead
of running off a figure, no server path in a result or a downloaded trace, no emoji in status
lines, the replay sweep names shapes as the rest of the page does. (The same classes are checked
in a real browser, at 1440x900 and 390x844, in tests/test_browser_screens.py.)"""

from __future__ import annotations

import json
import re
import tempfile

from core.paths import ROOT
from core.trace import Step, Trace

VOCAB = {
    "1": "There",
    "2": " are",
    "3": " 8",
    "4": " shapes",
    "5": ".",
    "6": " A",
    "7": " small",
    "8": " star",
    "9": " at",
    "10": "<|eos|>",
}


def step(tokens, accepted, token, kind, committed, discarded=(), rejected=()):
    n = len(tokens)
    return Step(
        tokens=list(tokens),
        parents=list(range(-1, n - 1)),
        depths=list(range(1, n + 1)),
        q=[0.9] * n,
        p=[0.9] * n,
        accepted=list(accepted),
        rejected=list(rejected),
        token=token,
        kind=kind,
        committed=list(committed),
        t_draft=0.0,
        t_verify=0.0,
        t_other=0.0,
        discarded=list(discarded),
    )


def cut_trace() -> Trace:
    """Two steps; the second drafts 5 tokens, the target agrees with all, but the length limit
    keeps only the first: 4 accepted drafts and the target's own token are discarded."""
    s1 = step([2, 3], [0, 1], 4, "bonus", [2, 3, 4])
    s2 = step([5, 6, 7, 8, 9], [0], 10, "bonus", [5], discarded=[1, 2, 3, 4])
    return Trace(meta={}, prompt_tokens=10, first_token=1, steps=[s1, s2], output=[1, 2, 3, 4, 5], vocab=VOCAB, text="There are 8 shapes.")


def plain_text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip()


def test_the_last_teach_step_tells_one_story():
    from ui.tabs import teach_text

    text = plain_text(teach_text.explain_step(cut_trace(), 1))
    # it agreed with all five, only the first is kept, the other four are discarded: no "whole path"
    # followed by "also agreed with"
    assert "whole path" not in text and "also agreed" not in text, text
    assert "it agreed with . A small star at (5 tokens), but only the first 1 (.) fits in the answer" in text, text
    assert "Discarded: A small star at came after the end" in text and "do not count as accepted" in text
    assert "End: the answer is complete" in text
    # the tree says the same: 1 accepted of 5 drafted, 4 more accepted and the target's token discarded
    from ui import render

    fig = render.tree_figure(cut_trace(), 1)
    sub = plain_text(fig.layout.title.subtitle.text.replace("<br>", " "))
    assert "the answer ended after 1 accepted token" in sub and "the other 4 accepted" in sub, sub
    assert "accepted 1 of 5" in fig.layout.title.text


def test_next_is_off_on_the_last_step_and_previous_on_the_first():
    from ui.tabs import teach

    tr = cut_trace()
    prev, nxt = teach.nav_state(tr, 2)
    assert prev["interactive"] is True and nxt["interactive"] is False
    prev, nxt = teach.nav_state(tr, 0)
    assert prev["interactive"] is False and nxt["interactive"] is True
    prev, nxt = teach.nav_state(None, 0)  # nothing decoded yet
    assert prev["interactive"] is False and nxt["interactive"] is False


def test_a_plain_step_is_not_called_a_bonus():
    from ui import render

    s1 = step([], [], 2, "bonus", [2])
    tr = Trace(meta={}, first_token=1, steps=[s1], output=[1, 2], vocab=VOCAB)
    fig = render.tree_figure(tr, 0)
    sub = fig.layout.title.subtitle.text
    assert "bonus" not in sub and "itself" in sub, sub
    assert "bonus" not in [t.name for t in fig.data if t.meta == "legend"]


def test_titles_wrap_to_the_width():
    from ui import render

    text = "the answer ended after 1 accepted token (end of text or the length limit): the other 5 accepted"
    lines = render.wrap(text, 40).split("<br>")
    assert len(lines) > 1 and all(len(x) <= 40 for x in lines) and " ".join(lines) == text
    assert render.wrap("then <b>bonus</b> · committed 3 tokens", 16).split("<br>")[1].startswith("·")
    for compact in (False, True):  # the tree's subtitle: lines that fit the plot
        fig = render.tree_figure(cut_trace(), 1, compact=compact)
        width = render.COMPACT_WIDTH if compact else render.DESKTOP_WIDTH
        for line in fig.layout.title.subtitle.text.split("<br>"):
            assert len(plain_text(line)) * 6.8 <= width, line


def test_a_chip_never_holds_the_space_before_its_word():
    from ui import render

    assert render.split_lead(" red") == (" ", "red")
    assert render.split_lead("red") == ("", "red")
    assert render.split_lead(" ") == ("", "\u00a0")
    from ui.tabs import teach_text

    html = teach_text.teach_text_html(cut_trace(), 1)
    assert '<span class="tk accepted"> ' not in html and ' <span class="tk accepted">are</span>' in html


def test_depth_chart_stops_after_the_deepest_accepted_depth():
    from ui import render

    s1 = step(list(range(2, 10)), [0, 1], 10, "correction", [2, 3, 10], rejected=[2])  # 8 deep, 2 accepted
    tr = Trace(meta={}, first_token=1, steps=[s1], output=[1, 2, 3, 10], vocab=VOCAB)
    bars = render.depth_figure(tr).data[0]
    assert list(bars.x) == [1, 2, 3]  # depths 1-2 reached, then the first one not reached


def test_no_server_path_in_a_result_or_a_downloaded_trace():
    from ui import views

    tmp = tempfile.gettempdir()
    tr = cut_trace()
    tr.meta = {
        "target": f"{ROOT}/assets/target",
        "drafter": "/home/someone/models/my-drafter",
        "note": f"SpecScope default ({ROOT}/assets/target)",
        "prompt": "keep /this/as typed",
    }
    payload = views.result_payload(tr, f"{tmp}/specscope-traces/specscope-trace-x.json")
    text = json.dumps(payload)
    assert str(ROOT) not in text and f"{tmp}/" not in text and "/home/" not in text, text
    assert payload["trace_file"] == "specscope-trace-x.json"
    assert payload["meta"]["target"] == "assets/target" and payload["meta"]["drafter"] == "my-drafter"
    assert payload["meta"]["prompt"] == "keep /this/as typed"  # what the user typed stays
    path = views.save_trace(tr)
    saved = open(path).read()
    assert str(ROOT) not in saved and "/home/" not in saved
    assert Trace.from_json(saved).output == tr.output  # still a trace the viewer opens


def test_status_lines_use_no_emoji():
    from ui.messages import status_html

    for kind in ("", "ok", "busy", "warn", "err"):
        html = status_html("x", kind)
        assert not any(ord(ch) >= 0x1F000 or 0x2300 <= ord(ch) <= 0x23FF for ch in html), (kind, html)
    assert 'class="ss-status busy"' in status_html("x", "busy")  # the spinner is CSS


def test_no_library_name_in_an_image_error(tmp_path):
    import pytest
    from core.errors import InputError
    from ui.inputs import read_image

    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(InputError) as e:
        read_image(str(bad))
    assert "PIL" not in str(e.value) and "not an image" in str(e.value)


def test_the_replay_sweep_names_shapes_as_the_page_does():
    from ui.tabs.compare_replay import SWEEP_SHAPES, shape_name

    names = [shape_name(x) for x in SWEEP_SHAPES]
    assert "chain γ=8" in names and "static tree 3,2,1" in names
    assert "dynamic tree: depth 8, top-4, 20 nodes" in names
    assert not any(re.search(r"\w:\d", n) for n in names), names


def test_every_examples_answer_ends_within_the_default_length():
    """The default length leaves every example's answer whole (the first one's, "There are 8
    shapes. ...", was cut after 7 shapes by a 64-token default): decoded as the page does by
    default (the default pair and precision, greedy), each run ends on its end-of-text token."""
    from core import api
    from ui import presets
    from ui.inputs import defaults, load_examples

    examples = load_examples()
    assert examples
    pair = api.load_pair("default", presets.default_drafter(), dtype=presets.auto_dtype())
    n = defaults().max_new_tokens
    for ex in examples:
        tr = api.run(pair, ex["prompt"], api.load_image(ex["path"]), api.DraftSpec("chain", gamma=6), api.SamplingConfig(), n)
        assert tr.stop_reason == "eos", (ex["file"], len(tr.output), n, tr.text[-80:])


def test_a_number_column_reads_with_its_decimals():
    """A column of the Compare and replay tables shows every number with the column's decimals
    ("7.00" above "0.56", not "7": a browser drops a float's trailing zeros); the API's values
    stay numbers."""
    from ui.tabs import compare, compare_replay

    rows = [
        ["n-gram · chain γ=6", 7.0, 0.56, 12.0, 11.3, "1.06× (1.00–1.10)", "✓ identical", ""],
        ["MSD · dynamic tree", None, None, None, None, None, "", "cannot run here"],
    ]
    value = compare.table_update(rows)["value"]
    assert value["data"][0][1:5] == [7.0, 0.56, 12.0, 11.3]  # numbers, as /compare returns them
    shown = value["metadata"]["display_value"]
    assert shown[0][1:5] == ["7.00", "0.56", "12.0", "11.3"], shown[0]
    assert shown[1][1:6] == [""] * 5 and shown[1][-1] == "cannot run here"
    sweep = [{"shape": "chain:8", "tau": 7.0, "predicted_tok_s": 30.0, "predicted_speedup": 2.0, "tau_estimate": 3.0}]
    value = compare_replay.replay_table(sweep, sampling=True)["value"]
    assert value["metadata"]["display_value"][0] == ["1", "chain γ=8", "7.00", "30.0", "2.00×", "3.00"]
    assert value["data"][0][2] == 7.0


def test_the_step_sliders_label_and_ends_agree():
    """The step slider says "Step (1 to N)" only where its end is N; one step has nothing to
    revisit and a slider needs two ends, so it is hidden (it read "Step (1 to 1)" beside an end
    of 2)."""
    from ui import views

    one = Trace(meta={}, first_token=1, steps=[step([2], [0], 3, "bonus", [2, 3])], output=[1, 2, 3], vocab=VOCAB)
    u = views.step_slider_update(one)
    assert u["visible"] is False
    two = cut_trace()
    u = views.step_slider_update(two)
    assert u["visible"] is True and u["maximum"] == 2 and u["label"] == "Step (1 to 2)" and 1 <= u["value"] <= 2
