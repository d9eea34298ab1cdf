"""The command line of ``python -m tools.bench``: flags, the whole run, the output files."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import torch
import transformers

from core import api, paths
from core.device import draft_weights_default, head_screen_default, resolve_dtype
from core.drafters.base import rounded_copies
from core.errors import run_command
from core.kernels import describe
from core.cli.shape import add_shape_flags
from .aggregate import summarize
from .configs import build_configs, check_ref
from .errors import BenchError
from .bound import bandwidth, bound as plain_bound, macs_per_token, product_rate, run_bound, run_bound_like
from .measure import divergence, log, run_config, visual_meta
from .peers import peer_ks, peer_prompts, vllm_peers, vllm_python
from .profiling import profile
from .report import environment, markdown_table, write_html
from .suites import groups_of, load_suite

SCHEMA = "specscope.bench/1"
QUICK = dict(n=2, max_new_tokens=24, repeats=1, warmup=1, temperatures="0")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (via BenchError)
        raise BenchError(message)


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m tools.bench", description="Benchmark speculative vs autoregressive decoding.")
    ap.add_argument(
        "--suite",
        choices=["scenes", "folder", "text"],
        default="scenes",
        help="scenes: held-out scene samples (grounded / description); folder: --images + --prompts; "
        "text: text-only prompts (--prompts or built-ins)",
    )
    ap.add_argument("--images", help="folder suite: directory of images")
    ap.add_argument(
        "--prompts", help="JSONL: {\"image\": \"name.png\", \"prompt\": \"...\"} per line (folder), {\"prompt\": \"...\"} (text)"
    )
    ap.add_argument("--scene-start", type=int, default=0, help="scenes: offset into the held-out seeds")
    ap.add_argument("--target", default="default", help="Hub id, directory, or 'default' (assets/target)")
    ap.add_argument(
        "--drafters",
        default=None,
        help="comma-separated registry names (ngram, layerskip[:K], msd, a model dir, module:Class); "
        "default: the shipped drafters that exist + ngram + layerskip",
    )
    ap.add_argument("--drafter-mode", choices=["multimodal", "text-only"], default="multimodal")
    ap.add_argument(
        "--strategies",
        default=None,
        help="comma-separated subset of auto,chain,tree,dynamic (default all; auto = the adaptive "
        "chain the cost model sizes at every step)",
    )
    add_shape_flags(ap)  # --gamma --branching --depth --top-k --budget --min-prob, as python -m core
    ap.add_argument("--temperatures", default=None, help="comma-separated, e.g. 0,1 (default 0)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default 64 (quick: 24)")
    ap.add_argument(
        "--baseline-dtype",
        choices=["float32", "bfloat16"],
        default=None,
        help="also time the target's AR in this dtype, interleaved (e.g. float32 AR vs bfloat16 speculative: the gain of switching both)",
    )
    ap.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="auto (default): bfloat16 where the CPU/GPU computes it natively, else "
        "float32. AR and speculative runs always share the dtype",
    )
    ap.add_argument(
        "--device",
        choices=["cpu", "cuda", "auto"],
        default=None,
        help="where the target and drafters run (default: $SPECSCOPE_DEVICE, else cpu); "
        "auto = cuda if a CUDA GPU is visible. Recorded in meta.device",
    )
    ap.add_argument("--n", type=int, default=None, help="number of samples (scenes default 20; quick 2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per sample (default 1)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up runs per configuration (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's / SPECSCOPE_THREADS)")
    ap.add_argument(
        "--hf", choices=["all", "plain", "none"], default="all", help="transformers baselines: all = plain + assisted + prompt lookup"
    )
    ap.add_argument(
        "--hf-kernels",
        choices=["stock", "same"],
        default="stock",
        help="transformers baselines on the stock model (default: as a transformers user runs "
        "it) or on the same models with our measured product paths (core.kernels)",
    )
    ap.add_argument(
        "--kernels",
        choices=["auto", "stock", "dense", "onednn", "packed", "rowdot", "rowil"],
        default=None,
        help="our engine's product paths (default: $SPECSCOPE_KERNELS, else auto = measured)",
    )
    ap.add_argument(
        "--draft-weights",
        choices=["fastest", "own"],
        default=None,
        help="a drafter's products on copies of its weights rounded to bfloat16 / int8 where measured faster "
        "(fastest), or on its own weights, for its own acceptance (own); default: $SPECSCOPE_DRAFT_WEIGHTS, else fastest",
    )
    ap.add_argument(
        "--prompt-lookup-tokens", type=int, default=10, help="prompt_lookup_num_tokens for the transformers prompt-lookup baseline"
    )
    ap.add_argument("--detail", action="store_true", help="record target probabilities of drafted tokens in the traces (costs time)")
    ap.add_argument(
        "--visual",
        action="store_true",
        help="also split acceptance into image-dependent vs other output tokens (core/visual.py: two "
        "extra target forwards per distinct output, untimed; samples with an image only)",
    )
    ap.add_argument("--quick", action="store_true", help="2 samples, 24 new tokens, one strategy per drafter, T=0: under a minute")
    ap.add_argument("--profile", action="store_true", help="print where a step's time goes (one run per config)")
    ap.add_argument("--profile-top", type=int, default=15, help="profile: rows of the cProfile / torch tables")
    ap.add_argument("--out", default=None, help="write the results JSON here")
    ap.add_argument("--html", default=None, help="write a self-contained plotly HTML report here")
    ap.add_argument(
        "--plotlyjs",
        choices=["inline", "cdn"],
        default="inline",
        help="inline embeds plotly.js (~4.5 MB, works offline); cdn loads it from the web",
    )
    ap.add_argument(
        "--peers",
        choices=["none", "vllm"],
        default="none",
        help="also run vLLM (plain and speculative, same prompt ids) from its own virtualenv (scripts/vllm_venv.sh); text suites",
    )
    ap.add_argument("--peer-k", default="4", help="--peers: draft lengths for vLLM's speculative runs, comma-separated")
    ap.add_argument("--no-bound", action="store_true", help="skip measuring the memory bandwidth (the plain-decoding bound)")
    ap.add_argument("--silent", action="store_true", help="no progress lines on stderr")
    return ap


def parse_args(argv=None):
    args = parser().parse_args(argv)
    q = args.quick
    if args.n is None:
        args.n = QUICK["n"] if q else None
    if args.max_new_tokens is None:
        args.max_new_tokens = QUICK["max_new_tokens"] if q else 64
    if args.repeats is None:
        args.repeats = QUICK["repeats"] if q else 1
    if args.warmup is None:
        args.warmup = QUICK["warmup"] if q else 1
    if args.temperatures is None:
        args.temperatures = QUICK["temperatures"] if q else "0"
    for name, lo in (
        ("n", 1),
        ("max_new_tokens", 1),
        ("repeats", 1),
        ("warmup", 0),
        ("threads", 1),
        ("prompt_lookup_tokens", 1),
        ("profile_top", 1),
    ):
        v = getattr(args, name)
        if v is not None and v < lo:
            raise BenchError(f"--{name.replace('_', '-')} must be >= {lo}, got {v}")
    if args.suite == "folder" and (not args.images or not args.prompts):
        raise BenchError("--suite folder needs --images DIR and --prompts FILE.jsonl")
    if args.images and args.suite != "folder":
        raise BenchError("--images is only used by --suite folder")
    if args.peers == "vllm":
        vllm_python()  # before any model work: no venv is a one-line error now, not after our runs
        peer_ks(args.peer_k)
        if args.suite != "text":
            raise BenchError("--peers vllm runs text suites only (--suite text; vLLM's draft-model path refuses multimodal targets)")
    args.device = api.default_device(args.device)  # None -> $SPECSCOPE_DEVICE or cpu (in meta)
    args.dtype = resolve_dtype(args.dtype, args.device)  # "auto" -> the dtype actually measured (in meta)
    return args


def _resident_gb() -> float | None:
    """This process's resident memory (Linux), None where /proc does not say."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _head_meta(tgt, forward: dict, bound: dict | None) -> None:
    """The lm_head as the compiled forward settled it: screened at these row counts where greedy
    (core/screen.py), the timing behind it, and the bytes our plain step then reads."""
    fast = tgt.compiled
    if tgt.path != "compiled" or fast is None or not fast.ready:
        return
    forward["head"] = {"screen_rows": sorted(fast.screen_rows), "seconds": fast.head_seconds, "why_not": fast.head_why}
    if 1 in fast.screen_rows and bound:
        head = tgt.model.lm_head.weight
        bound["bytes_per_step_screened"] = bound["bytes_per_step"] - head.numel() * head.element_size() + fast.screen.nbytes


def bench(args) -> dict:
    """Run the whole benchmark; returns the results dict (the JSON)."""
    configs = build_configs(args)
    target_name = paths.resolve_target(check_ref(args.target, "target"))
    samples = load_suite(args)
    results = {"schema": SCHEMA, "meta": {}, "suite": {}, "configs": []}
    lookup_cache: dict = {}
    visual_cache = None
    visual_off = {"enabled": False}
    if getattr(args, "visual", False):
        if not any(s.image is not None for s in samples):
            visual_off = {"enabled": False, "note": f"--visual: no-op, the {args.suite} suite has no images"}
            print(visual_off["note"], file=sys.stderr)
        else:
            visual_cache = api.VisualCache()
    t_start = time.perf_counter()
    first_records = None
    reads = []  # the read bandwidth, sampled between the runs (the bound takes the fastest)
    for k, cfg in enumerate(configs):
        if not args.no_bound:
            reads.append(bandwidth())
        pair = api.load_pair(args.target, cfg.drafter, dtype=args.dtype, mode=args.drafter_mode, device=args.device, kernels=args.kernels)
        log(args, f"[{k + 1}/{len(configs)}] {cfg.id}: {len(samples)} samples x {args.repeats} (AR + spec interleaved)")
        records = run_config(pair, cfg, samples, args, lookup_cache, visual_cache)
        first_records = first_records or records
        res = summarize(cfg, records)
        res["drafter_label"] = cfg.drafter_label
        res["drafter_name"] = getattr(pair.drafter, "name", cfg.drafter)
        lm = getattr(pair.drafter, "lm", None)
        model = lm is not None and lm is not pair.target  # a model drafter: its own forward, and the timing behind it
        if model or isinstance(getattr(pair.drafter, "kernels", None), dict):  # or a head's own products (EAGLE-3)
            res["drafter_forward"] = {
                "path": lm.path if model else "eager",
                "kernels": describe(getattr(pair.drafter, "kernels", None)),
                "weights": draft_weights_default(),
                "rounded": rounded_copies(pair.drafter),
            }
        if model:
            fast = getattr(lm, "compiled", None)
            res["drafter_forward"].update(
                products=fast.products if fast is not None and fast.ready else None,
                compile_s=getattr(fast, "compile_s", None),
                failed=getattr(fast, "failed", None),
                draft_seconds=dict(getattr(lm, "draft_seconds", None) or {}),
            )
        for r in records:
            if r["exact"] is False:
                a, sp = next((a, sp) for a, sp in zip(r["ref"], r["spec"]) if a["tokens"] != sp["tokens"])
                res["divergences"].append(divergence(pair, r["sample"], a, sp))
        results["configs"].append(res)
        m = res["groups"].get("all") or next(iter(res["groups"].values()))
        log(
            args,
            f"    tau {m['tau']}  speedup {m['speedup']}  ideal {m['ideal_speedup']}  "
            f"exact {m['exact']['matched'] if m['exact'] else 'n/a'}"
            f"{'/' + str(m['exact']['n']) if m['exact'] else ''}",
        )
        if m.get("visual"):
            v = m["visual"]
            log(
                args,
                "    "
                + "; ".join(
                    f"{label}: {v[k]['accepted']}/{v[k]['tried']} drafted positions accepted"
                    for k, label in (("image", "image-dependent"), ("other", "other"))
                ),
            )
    tgt = api.load_target(args.target, args.dtype, device=args.device, kernels=args.kernels)
    if not args.no_bound:
        reads.append(bandwidth())
        results["bound"] = plain_bound(tgt.model, max(reads))
        results["bound"]["bandwidth_samples_gbs"] = [round(r / 1e9, 2) for r in reads]
        runs = [(x["prompt_tokens"], x["new_tokens"]) for r in first_records or [] for x in r["ar"]]
        rate = product_rate(tgt.model)
        if rate:  # the bound of whole runs, prompts included (bound.run_bound)
            b = results["bound"]
            b["run"] = run_bound(runs, b["bytes_per_step"], max(reads), macs_per_token(tgt.model), rate)
        log(
            args,
            f"bound: {results['bound']['bound_tok_s']} tok/s ({results['bound']['bandwidth_gbs']} GB/s over {results['bound']['bytes_per_step'] / 1e9:.2f} GB per step; "
            f"the fastest of {len(reads)} reads between the runs: {', '.join(f'{r / 1e9:.1f}' for r in reads)} GB/s)",
        )
    family, kern = tgt.family, tgt.kernels
    forward = {
        "target": tgt.path,
        "compile_s": getattr(tgt.compiled, "compile_s", None),
        "compile_failed": getattr(tgt.compiled, "failed", None),
        "prefill": "compiled" if tgt.path == "compiled" and tgt.compiled_prefill else "eager",
        "prefill_seconds": dict(tgt.prefill_seconds),  # the timing behind that choice (settle_path)
    }
    _head_meta(tgt, forward, results.get("bound"))  # a helper: no local of bench() may hold the model (released below)
    if args.peers == "vllm":
        if args.out:  # our runs, kept before vLLM loads (a peer that runs the machine out of memory
            # may take this process with it): the full file replaces this one at the end
            _write(args.out, json.dumps({**results, "partial": "our runs only: the vLLM peers had not finished"}, indent=1))
        ours_plain = [r["ar"][0]["tokens"] if r["ar"] else [] for r in first_records]
        prompts = peer_prompts(tgt, samples)
        del pair, tgt  # our models leave memory before vLLM loads its own copies
        api.release_models()  # collects and hands freed pages back (core.pairs.release)
        held = _resident_gb()
        if held is not None:
            log(args, f"our models released: this process holds {held:.1f} GB before vLLM loads")
            results["resident_gb_before_peers"] = round(held, 2)
        results["peers"] = vllm_peers(args, str(target_name), prompts, ours_plain, lambda s: log(args, s))
        for p in results["peers"]:  # each peer's own bound of whole runs: its prompts and output lengths
            if p.get("lengths") and results.get("bound"):
                p["run_bound_tok_s"] = run_bound_like([tuple(x) for x in p["lengths"]], results["bound"])
    results["meta"] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": target_name,
        "target_family": family,
        "dtype": args.dtype,
        "device": args.device,
        "baseline_dtype": args.baseline_dtype,
        "suite": args.suite,
        "n_samples": len(samples),
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "seed": args.seed,
        "quick": args.quick,
        "hf": args.hf,
        "detail": args.detail,
        "prompt_lookup_tokens": args.prompt_lookup_tokens,
        "peers": args.peers,
        "seconds": round(time.perf_counter() - t_start, 2),
        "env": environment(),
        "visual": visual_meta(visual_cache) if visual_cache is not None else visual_off,
        "kernels": {"target": describe(kern), "target_paths": kern.get("paths"), "hf_baselines": args.hf_kernels},
        "draft_weights": draft_weights_default(),
        "forward": forward,
        "columns": {
            "tau": "tokens per speculative step (incl. bonus, excl. prefill)",
            "accepted_per_step": "accepted draft tokens per step (excl. bonus)",
            "speedup": "total AR wall / total speculative wall (same samples, interleaved)",
            "ideal_speedup": "tau * AR step cost / speculative step cost (measured step times)",
        },
    }
    results["suite"] = {
        "name": args.suite,
        "n": len(samples),
        "groups": {g: sum(1 for s in samples if s.group == g) for g in groups_of(samples) if g != "all"},
        "samples": [s.describe() for s in samples],
    }
    return results


def main(argv=None) -> int:
    return run_command(lambda: _quiet(parse_args(argv)), user_errors=(BenchError, OSError))


def _quiet(args) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _main(args)


def _main(args) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.draft_weights:  # read where drafters load (core.device.draft_weights_default)
        os.environ["SPECSCOPE_DRAFT_WEIGHTS"] = args.draft_weights
    draft_weights_default()  # a bad $SPECSCOPE_DRAFT_WEIGHTS / HEAD_SCREEN: one line, before any model loads
    head_screen_default()
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        api.threads_from_env()
    if args.profile:
        profiles = profile(args)
        if args.out:
            _write(args.out, json.dumps({"schema": SCHEMA + "+profile", "profiles": profiles}, indent=1))
        return 0
    results = bench(args)
    print(markdown_table(results))
    if args.out:
        _write(args.out, json.dumps(results, indent=1))
        log(args, f"wrote {args.out}")
    if args.html:
        write_html(results, args.html, args.plotlyjs)
        log(args, f"wrote {args.html}")
    return 0


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise BenchError(f"cannot write {path}: {e.strerror}") from None
