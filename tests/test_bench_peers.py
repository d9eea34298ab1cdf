"""The bench's plain-decoding bound and its vLLM peer, without vLLM: the weights a step reads, the
bound in the results and the table, and the peer plumbing through a stand-in virtualenv whose
"python" runs a fake worker (vLLM itself is too heavy for CI: scripts/vllm_venv.sh)."""

import json
import stat
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from core import pairs
from tools import bench
from tools.bench import bound as bench_bound
from tools.bench import peers
from tools.tiny import tiny_model_dir


@pytest.fixture(scope="module")
def text_model():
    return tiny_model_dir("qwen2")


def test_a_step_reads_every_weight_once_and_one_row_of_an_untied_embedding(text_model):
    model = AutoModelForCausalLM.from_pretrained(text_model)
    emb, out = model.get_input_embeddings(), model.get_output_embeddings()
    every = {id(p): p for p in model.parameters()}
    total = sum(p.numel() * p.element_size() for p in every.values())
    got = bench_bound.bytes_per_step(model)
    if out.weight is emb.weight:  # tied: the table is the output layer, read whole, once
        assert got == total
    else:
        assert got == total - emb.weight.numel() * emb.weight.element_size()
    model.lm_head.weight = emb.weight  # tie them: now the table is read whole, and counted once
    assert bench_bound.bytes_per_step(model) == sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())


def test_the_bound_is_bandwidth_over_bytes():
    lin = torch.nn.Linear(1000, 1000, bias=False)
    b = bench_bound.bound(lin, bw=4e9)
    assert b["bytes_per_step"] == 4_000_000
    assert b["bound_tok_s"] == 1000.0
    assert bench_bound.bandwidth(mib=16, passes=2) > 0


def test_a_prompt_position_costs_the_decoders_products_and_the_head_once(text_model):
    model = AutoModelForCausalLM.from_pretrained(text_model)
    per, once = bench_bound.macs_per_token(model)
    layers = [m for m in model.model.modules() if isinstance(m, torch.nn.Linear)]
    assert per == sum(m.weight.numel() for m in layers) and layers
    assert once == model.lm_head.weight.numel()
    assert bench_bound.product_rate(model, rows=8, passes=2) > 0


def test_the_product_rate_is_the_fastest_library_product(text_model, monkeypatch):
    """An upper bound takes the fastest product a prompt may run on (oneDNN's packed float32 product ran
    2.6x F.linear's on the Zen 5 EPYC): here a slow and an instant stand-in, the slow one listed first."""
    import time as _time

    from core import kernels

    model = AutoModelForCausalLM.from_pretrained(text_model)
    assert [p for p, _, _ in kernels.library_products(model.lm_head.weight)][0] == "dense"
    slow = lambda x, w, b: _time.sleep(0.05)
    fast = lambda x, w, b: None
    monkeypatch.setattr(kernels, "library_products", lambda w: [("slow", slow, w), ("fast", fast, w)])
    big = max(m.weight.numel() for m in model.model.modules() if isinstance(m, torch.nn.Linear))
    assert bench_bound.product_rate(model, rows=8, passes=2) > 8 * big / 0.05


def test_no_product_rate_without_weight_matrices():
    class Bare(torch.nn.Module):  # nothing a prefill would multiply: no rate, and no whole-run bound
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(4))

    assert bench_bound.product_rate(Bare()) is None


def test_the_run_bound_pays_each_prompt_then_a_read_a_token():
    # a step reads 1000 B at 10 kB/s: 0.1 s; a position costs 100 multiply-adds, the head 50, at 10 k/s
    b = bench_bound.run_bound([(10, 5), (0, 3), (20, 0)], 1000, 1e4, (100, 50), 1e4)
    # prompt of 10: 1050 / 1e4 = 0.105 s (more than a read); of 0: one read, 0.1 s; a run without tokens adds nothing
    assert b["prefill_floor_s"] == pytest.approx(0.205)
    assert b["steps_floor_s"] == pytest.approx((4 + 2) * 0.1)
    assert b["tok_s"] == pytest.approx(8 / 0.805, abs=0.01)
    assert b["prompt_tokens"] == 10 and b["new_tokens"] == 8


def test_peer_configs_map_model_folders_and_ngram(tmp_path):
    cfgs = peers.peer_configs([str(tmp_path), "ngram", "msd"], [2, 4])
    ids = [c["id"] for c in cfgs]
    assert ids == ["vllm plain", "vllm draft model k=2", "vllm draft model k=4", "vllm ngram k=2", "vllm ngram k=4"]
    assert cfgs[1]["speculative"] == {"model": str(tmp_path.resolve()), "num_speculative_tokens": 2}
    assert cfgs[3]["speculative"]["method"] == "ngram"


def test_peer_configs_serve_an_eagle3_head_as_eagle3(tmp_path):
    """An EAGLE-3 head (a speculators config.json), by folder or eagle3:<folder>, runs in vLLM with
    method eagle3 (vLLM drafts over the target's layers), not as a draft model."""
    head = tmp_path / "head"
    head.mkdir()
    (head / "config.json").write_text('{"speculators_model_type": "eagle3"}')
    for name in (str(head), f"eagle3:{head}"):
        cfgs = peers.peer_configs([name], [3])
        assert [c["id"] for c in cfgs] == ["vllm plain", "vllm eagle3 k=3"]
        assert cfgs[1]["speculative"] == {"method": "eagle3", "model": str(head.resolve()), "num_speculative_tokens": 3}


FAKE_WORKER = """
import json, sys
job = json.load(open(sys.argv[2]))
spec = job["speculative"]
runs = []
for i, ids in enumerate(job["prompts"]):
    toks = ids[-3:] if not (spec and i == 0) else ids[-2:]  # the speculative run differs on prompt 0
    runs.append({"tokens": toks, "wall_s": 0.5})
m = {"num_drafts": 10, "num_accepted_tokens": 15, "num_accepted_tokens_per_pos": [8, 5, 2, 0]} if spec else {}
json.dump({"vllm": "fake", "load_s": 0, "runs": runs, "metrics_before": {}, "metrics": m, "speculative": spec}, open(sys.argv[3], "w"))
"""


@pytest.fixture
def fake_venv(tmp_path, monkeypatch):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (tmp_path / "fake_worker.py").write_text(FAKE_WORKER)
    py = venv / "bin" / "python"
    py.write_text(f'#!/bin/sh\nexec {sys.executable} {tmp_path / "fake_worker.py"} "$@"\n')
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("SPECSCOPE_VLLM_VENV", str(venv))
    return venv


def test_peers_in_the_bench_results_and_table(text_model, fake_venv, tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = ["--suite", "text", "--target", text_model, "--n", "2", "--max-new-tokens", "6", "--drafters", "ngram"]
    argv += ["--strategies", "chain", "--peers", "vllm", "--peer-k", "3", "--silent", "--out", str(out)]
    assert bench.main(argv) == 0
    assert not pairs._cache  # our models were released before vLLM loaded its own
    res = json.loads(out.read_text())
    assert res["bound"]["bound_tok_s"] > 0 and res["bound"]["bytes_per_step"] > 0
    reads = res["bound"]["bandwidth_samples_gbs"]  # one read before each config, one after them all
    assert len(reads) == 2 and res["bound"]["bandwidth_gbs"] == max(reads)  # a busy moment only slows a read
    plain, spec = res["peers"]
    assert plain["id"] == "vllm plain" and plain["tokens_per_s"] == pytest.approx(6 / 1.0)
    assert spec["id"] == "vllm ngram k=3"
    assert spec["same_as_vllm_plain"] == 1 and spec["n"] == 2  # prompt 0 differs: counted, not hidden
    assert spec["mean_accepted_length"] == pytest.approx(2.5)
    assert spec["acceptance_by_position"] == [0.8, 0.5, 0.2, 0.0]
    table = capsys.readouterr().out
    assert "Plain decoding against its bound" in table and f"the fastest of 2 reads between the runs: {reads[0]:g}" in table
    # ours past the prompt: the plain step's cost against the bound, from the same run's numbers
    m = res["configs"][0]["groups"].get("all") or next(iter(res["configs"][0]["groups"].values()))
    line = next(ln for ln in table.splitlines() if ln.startswith("Past the prompt"))
    tps = 1e3 / m["step_cost_ar_ms"]
    assert f"{tps:.2f} tok/s, {tps / res['bound']['bound_tok_s']:.0%} of the bound" in line, line
    # ours with the prompts: the whole runs' bound, from the same runs' prompt and output lengths
    run = res["bound"]["run"]
    assert run["new_tokens"] == m["new_tokens_ar"] and run["prompt_tokens"] > 0
    step = res["bound"]["bytes_per_step"] / (res["bound"]["bandwidth_gbs"] * 1e9)
    assert run["steps_floor_s"] == pytest.approx((m["new_tokens_ar"] - m["runs"]) * step, rel=0.01)
    line = next(ln for ln in table.splitlines() if ln.startswith("With their prompts"))
    assert f"{m['tokens_per_s_ar'] / run['tok_s']:.0%} of that" in line and f"{run['prompt_tokens']} tokens" in line, line
    assert "| vllm ngram k=3 |" in table and "| 1/2 |" in table
    # each decoder against the bound of its own runs: vLLM's from its prompts and output lengths
    assert [n for _, n in plain["lengths"]] == [3, 3]  # the fake worker's outputs; the prompts are ours
    assert sum(p for p, _ in plain["lengths"]) == run["prompt_tokens"]
    b = res["bound"]
    macs, rate = (run["macs_per_token"], run["macs_head"]), run["product_rate_gmacs"] * 1e9
    mine = bench_bound.run_bound([tuple(x) for x in plain["lengths"]], b["bytes_per_step"], b["bandwidth_gbs"] * 1e9, macs, rate)
    assert plain["run_bound_tok_s"] == pytest.approx(mine["tok_s"])
    cells = [c.strip() for c in next(ln for ln in table.splitlines() if ln.startswith("| vllm plain |")).split("|")[1:-1]]
    assert cells[3] == f"{plain['tokens_per_s'] / plain['run_bound_tok_s']:.0%}", cells
    cells = [c.strip() for c in next(ln for ln in table.splitlines() if ln.startswith("| ours, plain |")).split("|")[1:-1]]
    assert cells[3] == f"{m['tokens_per_s_ar'] / run['tok_s']:.0%}", cells
    # acceptance as vLLM counts it, ours beside vLLM's, as many positions as vLLM drafted
    row = next(ln for ln in table.splitlines() if ln.startswith("| vllm ngram k=3 |"))
    assert row.endswith("| 2.50 | 0.80 0.50 0.20 0.00 |"), row
    ours = next(ln for ln in table.splitlines() if ln.startswith(f"| ours, {res['configs'][0]['id']} |"))
    cells = [c.strip() for c in ours.split("|")[1:-1]]
    mal, by_pos = m["mean_accepted_length"], m["acceptance_by_position"]
    assert cells[-2:] == ["" if mal is None else f"{mal:.2f}", " ".join(f"{x:.2f}" for x in by_pos[:4])], ours


def test_the_table_shows_each_decoder_against_both_bounds():
    bound = {"bound_tok_s": 100.0, "run": {"tok_s": 50.0}}
    ours = {"plain": 45.0, "spec": {"chain": {"tokens_per_s_spec": 60.0, "exact": {"matched": 1, "n": 2}}}}
    table = peers.markdown([{"id": "vllm plain", "tokens_per_s": 40.0, "n": 1, "run_bound_tok_s": 80.0}], ours, bound)
    cells = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in table.splitlines()[2:]}
    assert cells["ours, plain"][1:3] == ["45%", "90%"]
    assert cells["vllm plain"][1:3] == ["40%", "50%"]  # its own runs' bound, not ours
    assert cells["ours, chain"][1:3] == ["60%", ""]  # outputs unlike plain: not the plain runs' lengths


def test_a_peer_that_fails_is_reported_and_the_bench_goes_on(text_model, fake_venv, tmp_path):
    (fake_venv / "bin" / "python").write_text("#!/bin/sh\necho 'Illegal instruction' >&2\nexit 132\n")
    out = tmp_path / "r.json"
    argv = ["--suite", "text", "--target", text_model, "--n", "1", "--max-new-tokens", "4", "--strategies", "chain"]
    argv += ["--drafters", "ngram", "--peers", "vllm", "--silent", "--out", str(out)]
    assert bench.main(argv) == 0
    res = json.loads(out.read_text())
    assert all("Illegal instruction" in p["error"] for p in res["peers"])


def test_our_runs_are_written_before_a_peer_runs(text_model, fake_venv, tmp_path):
    """A peer may run the machine out of memory and take the bench with it (seen: vLLM loading a
    float32 1.5B target beside ours on 24 GiB): our finished runs are on disk before it starts."""
    out = tmp_path / "r.json"
    (fake_venv / "bin" / "python").write_text(f"#!/bin/sh\ncp {out} {tmp_path / 'seen.json'}\nexit 137\n")
    argv = ["--suite", "text", "--target", text_model, "--n", "1", "--max-new-tokens", "4", "--strategies", "chain"]
    argv += ["--drafters", "ngram", "--peers", "vllm", "--silent", "--out", str(out)]
    assert bench.main(argv) == 0
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["partial"] and seen["configs"] and seen["bound"]["bound_tok_s"] > 0
    assert "partial" not in json.loads(out.read_text())  # the full file replaced it


def test_our_models_leave_memory_before_a_peer_loads(text_model, fake_venv, monkeypatch):
    """vLLM loads its own copy of the target: every model of ours (target, its compiled forward,
    the drafter) must be gone from this process by then, or the two copies meet in memory (seen:
    our float32 1.5B target kept 14.5 GB alive beside vLLM's on 24 GiB, and the OOM killer came; and a
    local of the bench holding the compiled forward kept 14.3 GB, thirty-third session). On the compiled
    forward, as the bench runs a Llama / Qwen2 target."""
    import gc
    import weakref

    from core import api
    from tools.bench import cli

    alive, load_pair = [], api.load_pair

    def tracked(*a, **k):
        pair = load_pair(*a, **k)
        held = [pair.target, pair.target.model, pair.drafter, getattr(pair.drafter, "model", None), pair.target.compiled]
        held += list(pair.target.model.parameters())  # which a compiled graph's frozen constants may keep
        alive.extend(weakref.ref(o) for o in held if o is not None)
        return pair

    def peer(*a, **k):
        gc.collect()
        seen.extend(type(r()).__name__ for r in alive if r() is not None)
        return []

    seen: list = []
    monkeypatch.setenv("SPECSCOPE_COMPILE", "auto")
    monkeypatch.setattr(api, "load_pair", tracked)
    monkeypatch.setattr(cli, "vllm_peers", peer)
    argv = ["--suite", "text", "--target", text_model, "--n", "1", "--max-new-tokens", "4", "--strategies", "chain"]
    assert bench.main([*argv, "--drafters", f"{text_model},ngram", "--peers", "vllm", "--silent"]) == 0
    assert len(alive) >= 5  # the target, its compiled forward and the drafter were tracked
    assert seen == [], f"still in memory when the peer starts: {sorted(set(seen))}"


@pytest.mark.parametrize("k", ["abc", "0", ""])
def test_a_bad_peer_k_is_one_line_before_any_run(text_model, fake_venv, k, capsys):
    argv = ["--suite", "text", "--target", text_model, "--n", "1", "--strategies", "chain", "--drafters", "ngram"]
    assert bench.main([*argv, "--peers", "vllm", "--peer-k", k, "--silent"]) == 2
    err = capsys.readouterr().err
    assert "--peer-k" in err and len(err.strip().splitlines()) == 1


def test_no_vllm_venv_is_one_line(text_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPECSCOPE_VLLM_VENV", str(tmp_path / "none"))
    argv = ["--suite", "text", "--target", text_model, "--n", "1", "--max-new-tokens", "4", "--strategies", "chain"]
    assert bench.main([*argv, "--drafters", "ngram", "--peers", "vllm", "--silent"]) == 2
    err = capsys.readouterr().err
    assert "scripts/vllm_venv.sh" in err and len(err.strip().splitlines()) == 1
