"""vLLM's side of the bench's ``--peers vllm``: run by the vLLM virtualenv's python
(``scripts/vllm_venv.sh``), never imported by the project (it needs vLLM's own transformers).

    <vllm-venv>/bin/python tools/bench/vllm_worker.py JOB.json OUT.json

JOB: {"target", "dtype", "max_new_tokens", "prompts": [[token ids], ...], "speculative": null |
{vLLM's speculative_config}, "threads"}. The prompts are the token ids our engine feeds the target
(same chat template, same ids), decoded greedily, one request at a time (batch 1, as the bench
measures ours). OUT: per prompt the generated ids and the wall seconds, and for a speculative run
vLLM's own counters (drafts, drafted and accepted tokens, accepted per draft position).
Standard library and vLLM only."""

from __future__ import annotations

import json
import os
import sys
import time


def _metrics(llm) -> dict:
    """vLLM's speculative-decoding counters, whatever of them this version reports."""
    out: dict = {}
    try:
        for m in llm.get_metrics():
            name = getattr(m, "name", "")
            if not name.startswith("vllm:spec_decode"):
                continue
            key = name.removeprefix("vllm:spec_decode_")
            if hasattr(m, "values"):
                out[key] = list(m.values)
            elif hasattr(m, "value"):
                out[key] = m.value
    except Exception as e:  # an older vLLM: no metrics reader
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def main(job_path: str, out_path: str) -> int:
    with open(job_path) as f:
        job = json.load(f)
    threads = int(job.get("threads") or os.cpu_count() or 1)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{threads - 1}")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(job.get("kv_gib", 2)))
    from vllm import LLM, SamplingParams  # imported here: the env above must be set first
    import vllm

    kw = dict(
        model=job["target"],
        dtype=job["dtype"],
        max_model_len=int(job.get("max_model_len", 2048)),
        seed=0,
        enforce_eager=bool(job.get("enforce_eager", False)),
        disable_log_stats=False,
    )
    if job.get("speculative"):
        kw["speculative_config"] = job["speculative"]
    t0 = time.perf_counter()
    llm = LLM(**kw)
    load_s = time.perf_counter() - t0
    params = SamplingParams(temperature=0.0, max_tokens=int(job["max_new_tokens"]))
    prompts = [{"prompt_token_ids": ids} for ids in job["prompts"]]
    llm.generate(prompts[:1], params, use_tqdm=False)  # warm-up: first-call costs off the clock
    before = _metrics(llm)
    runs = []
    for p in prompts:
        t = time.perf_counter()
        res = llm.generate([p], params, use_tqdm=False)
        wall = time.perf_counter() - t
        runs.append({"tokens": list(res[0].outputs[0].token_ids), "wall_s": wall})
    result = {
        "vllm": vllm.__version__,
        "load_s": round(load_s, 1),
        "runs": runs,
        "metrics_before": before,
        "metrics": _metrics(llm),
        "speculative": job.get("speculative"),
    }
    with open(out_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":  # vLLM's CPU engine starts worker processes: the guard is required
    sys.exit(main(sys.argv[1], sys.argv[2]))
