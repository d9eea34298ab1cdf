"""Production engines as peers of the bench (``--peers vllm``).

vLLM runs in its own virtualenv (``scripts/vllm_venv.sh``; it pins other transformers / torch
builds than the project), one process per configuration, through ``tools/bench/vllm_worker.py``:
the same prompt token ids our engine feeds the target, greedy, batch 1, one warm-up request off
the clock. Configurations: plain, and each speculative method the bench's drafters map to
(a model folder -> vLLM's draft-model method; ``ngram`` -> vLLM's n-gram lookup), at each
``--peer-k`` draft length. Reported per configuration: tok/s, whether its outputs equal vLLM's own
plain run (its losslessness by its own numerics), the equality with our plain output, and for
speculative runs vLLM's mean accepted length and acceptance per draft position.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from .errors import BenchError

WORKER = Path(__file__).with_name("vllm_worker.py")
VENV_SCRIPT = "scripts/vllm_venv.sh"


def vllm_python() -> Path:
    venv = Path(os.environ.get("SPECSCOPE_VLLM_VENV", Path.home() / ".cache" / "specscope" / "vllm-venv"))
    py = venv / "bin" / "python"
    if not py.exists():
        raise BenchError(f"--peers vllm: no vLLM virtualenv at {venv}; make it with `bash {VENV_SCRIPT}` (about 3.5 GB, a few minutes)")
    return py


def peer_configs(drafters: list[str], ks: list[int]) -> list[dict]:
    """[{"id", "speculative"}]: plain first, then every (drafter, k) vLLM can run."""
    out = [{"id": "vllm plain", "speculative": None}]
    from core.drafters.eagle3_files import is_eagle3_dir

    for d in drafters:
        folder = Path(os.path.expanduser(d.removeprefix("eagle3:")))
        if d == "ngram":
            kind, base = "ngram", {"method": "ngram", "prompt_lookup_max": 4, "prompt_lookup_min": 2}
        elif folder.is_dir() and is_eagle3_dir(str(folder)):  # an EAGLE-3 head: vLLM drafts with it over the target's layers
            kind, base = "eagle3", {"method": "eagle3", "model": str(folder.resolve())}
        elif folder.is_dir() and not d.startswith("eagle3:"):
            kind, base = "draft model", {"model": str(folder.resolve())}
        else:
            continue  # our own heads (msd, layerskip, ...) have no vLLM counterpart
        out += [{"id": f"vllm {kind} k={k}", "speculative": {**base, "num_speculative_tokens": k}} for k in ks]
    return out


def run_vllm(job: dict, timeout: float = 3600) -> dict:
    """One worker process for ``job``; its result dict, or {"error": ...} (never raises on the
    peer's own failures: a peer that cannot run is reported, the bench goes on)."""
    py = vllm_python()
    with tempfile.TemporaryDirectory(prefix="specscope-vllm-") as d:
        jp, op = Path(d) / "job.json", Path(d) / "out.json"
        jp.write_text(json.dumps(job))
        try:
            proc = subprocess.run([str(py), str(WORKER), str(jp), str(op)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not op.exists():
            tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()][-3:]
            return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
        return json.loads(op.read_text())


SHOWN_POSITIONS = 4  # draft positions in the table when no peer ran (vLLM's: its k)


def summarize_peer(res: dict, plain: dict | None, ours_plain: list[list[int]] | None) -> dict:
    if "error" in res:
        return {"error": res["error"]}
    runs = res["runs"]
    toks = sum(len(r["tokens"]) for r in runs)
    wall = sum(r["wall_s"] for r in runs)
    out = {
        "vllm": res.get("vllm"),
        "load_s": res.get("load_s"),
        "new_tokens": toks,
        "wall_s": round(wall, 4),
        "tokens_per_s": round(toks / wall, 3) if wall else None,
        "n": len(runs),
    }
    if ours_plain is not None:
        out["same_as_ours_plain"] = sum(r["tokens"] == o for r, o in zip(runs, ours_plain))
    if plain is not None and "error" not in plain:
        out["same_as_vllm_plain"] = sum(r["tokens"] == p["tokens"] for r, p in zip(runs, plain["runs"]))
    m, b = res.get("metrics") or {}, res.get("metrics_before") or {}
    drafts = _delta(m, b, "num_drafts")
    acc = _delta(m, b, "num_accepted_tokens")
    if drafts:
        out["mean_accepted_length"] = round(1 + acc / drafts, 3)
        pos = m.get("num_accepted_tokens_per_pos")
        pos0 = b.get("num_accepted_tokens_per_pos") or [0] * len(pos or [])
        if isinstance(pos, list):
            out["acceptance_by_position"] = [round((x - y) / drafts, 3) for x, y in zip(pos, pos0)]
    return out


def _delta(m: dict, b: dict, key: str) -> float:
    x, y = m.get(key), b.get(key) or 0
    return float(x - y) if isinstance(x, (int, float)) else 0.0


def peer_ks(text: str) -> list[int]:
    """``--peer-k``: comma-separated draft lengths >= 1."""
    try:
        ks = [int(k) for k in str(text).split(",") if k.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise BenchError(f"--peer-k must be draft lengths >= 1, comma-separated (e.g. 2,4), got {text!r}")
    return ks


def peer_prompts(target, samples) -> list[list[int]]:
    """The token ids our engine feeds the target for each sample (chat template included; the
    text suite: no images)."""
    return [target.encode(s.prompt, None).input_ids[0].tolist() for s in samples]


def vllm_peers(args, target: str, prompts: list[list[int]], ours_plain: list[list[int]] | None, log) -> list[dict]:
    """Every vLLM configuration on these prompt ids for ``target`` (a folder or Hub id); [{"id", ...summary}]."""
    drafters = [d.strip() for d in (args.drafters or "").split(",") if d.strip()]
    folder = Path(os.path.expanduser(target))
    base = {
        "target": str(folder.resolve()) if folder.is_dir() else target,  # a folder, or a Hub id as given
        "dtype": args.dtype,
        "max_new_tokens": args.max_new_tokens,
        "prompts": prompts,
        "threads": args.threads or os.cpu_count(),
    }
    out, plain = [], None
    for cfg in peer_configs(drafters, peer_ks(args.peer_k)):
        log(f"[peer] {cfg['id']}: {len(prompts)} prompts (own process; loading takes a while)")
        res = run_vllm({**base, "speculative": cfg["speculative"]})
        if cfg["speculative"] is None:
            plain = res
        s = {"id": cfg["id"], **summarize_peer(res, plain if cfg["speculative"] else None, ours_plain)}
        if "error" not in s:  # (prompt tokens, new tokens) a run: its own bound of whole runs (bench.bound)
            s["lengths"] = [[len(p), len(r["tokens"])] for p, r in zip(prompts, res["runs"])]
        log(f"    failed: {s['error']}" if "error" in s else f"    {s['tokens_per_s']} tok/s")
        out.append(s)
    return out


def markdown(peers: list[dict], ours: dict, bound: dict | None) -> str:
    """The peers' table: tok/s, share of the bound, ratios to ours, identity, and acceptance as vLLM
    counts it (``ours["spec"]``: our configurations' metrics, ``aggregate.by_position``)."""
    lines = [
        "| decoder | tok/s | share of bound | of its runs' bound | vs our plain | same as its plain | same as our plain | mean accepted length | accepted by position |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    bt = (bound or {}).get("bound_tok_s")
    ours_run = ((bound or {}).get("run") or {}).get("tok_s")
    shown = max([len(p.get("acceptance_by_position") or []) for p in peers] or [0]) or SHOWN_POSITIONS

    def row(name, tps, same_own="", same_ours="", acc=None, run_bt=None):
        share = f"{tps / bt:.0%}" if (tps and bt) else ""
        whole = f"{tps / run_bt:.0%}" if (tps and run_bt) else ""
        rel = f"{tps / ours['plain']:.2f}x" if (tps and ours.get("plain")) else ""
        acc = acc or {}
        mal = acc.get("mean_accepted_length")
        mal = "" if mal is None else f"{mal:.2f}"
        pos = " ".join(f"{x:.2f}" for x in (acc.get("acceptance_by_position") or [])[:shown])
        lines.append(
            f"| {name} | {tps:.2f} | {share} | {whole} | {rel} | {same_own} | {same_ours} | {mal} | {pos} |"
            if tps
            else f"| {name} | failed |  |  |  |  |  |  |  |"
        )

    row("ours, plain", ours.get("plain"), run_bt=ours_run)
    for cid, m in ours.get("spec", {}).items():
        ex = m.get("exact") or {}
        same = ex and ex["matched"] == ex["n"]  # outputs equal to plain: the plain runs' lengths, their bound
        row(f"ours, {cid}", m.get("tokens_per_s_spec"), acc=m, run_bt=ours_run if same else None)
    for p in peers:
        if "error" in p:
            lines.append(f"| {p['id']} | failed: {p['error'][:120]} |  |  |  |  |  |  |  |")
            continue
        own = f"{p['same_as_vllm_plain']}/{p['n']}" if "same_as_vllm_plain" in p else ""
        ours_same = f"{p['same_as_ours_plain']}/{p['n']}" if "same_as_ours_plain" in p else ""
        row(p["id"], p["tokens_per_s"], own, ours_same, p, p.get("run_bound_tok_s"))
    return "\n".join(lines)
