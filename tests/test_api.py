"""core/api.py: the one path for warm-up / plain / speculative / compare that every caller uses."""

from core import api
from core.drafters import DraftSpec

PROMPT = "What color is the square?"


def test_compare_alternates_and_reports_the_median_round():
    pair = api.load_pair("default", "ngram")
    spec = DraftSpec("chain", gamma=4)
    r = api.compare(pair, PROMPT, None, spec, max_new_tokens=12, repeats=3)
    assert len(r["ar_runs"]) == len(r["spec_runs"]) == len(r["speedups"]) == 3
    assert r["identical"] and all(a.output == r["ar"].output for a in r["ar_runs"])
    assert sorted(r["speedups"])[1] == r["speedup"]
    # the reported traces are those of the median round
    i = r["spec_runs"].index(r["spec"])
    assert r["ar_runs"][i] is r["ar"] and r["speedups"][i] == r["speedup"]
    # a shared baseline is reused, the missing plain runs are measured
    r2 = api.compare(pair, PROMPT, None, spec, max_new_tokens=12, repeats=2, baseline=r["ar_runs"][:1])
    assert r2["ar_runs"][0] is r["ar_runs"][0] and r2["ar_runs"][1] not in r["ar_runs"]


def test_warm_runs_once_per_pair_and_shape():
    pair = api.load_pair("default", "ngram")
    spec = DraftSpec("tree", branching=(2, 2))
    api._warmed.clear()
    assert api.warm(pair, PROMPT, None, spec) is True
    assert api.warm(pair, PROMPT, None, spec) is False
    assert api.warm(pair, PROMPT, None, spec, force=True) is True
