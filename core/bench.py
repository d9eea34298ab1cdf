"""Benchmark: speculative vs autoregressive decoding of the same target, plus transformers' own
baselines, over a suite of inputs.

    python -m core.bench --quick                                   # default pair, < 1 minute
    python -m core.bench --suite scenes --n 40 --drafters msd,ngram --strategies chain,dynamic \\
        --temperatures 0,1 --out results.json --html report.html
    python -m core.bench --suite folder --images DIR --prompts FILE.jsonl --target DIR --drafters DIR
    python -m core.bench --suite text --prompts FILE.jsonl
    python -m core.bench --profile --drafters layerskip --strategies dynamic   # where a step's time goes

For every configuration (drafter x strategy x temperature) the AR and the speculative run of each
sample are INTERLEAVED (AR, spec, AR, spec, ...) after warm-up, so machine drift hits both alike.
See docs/benchmark.md for the columns, the JSON schema and how the "ideal" bound is computed.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import os
import platform
import pstats
import sys
import time
import warnings
from dataclasses import dataclass

SCHEMA = "specscope.bench/1"
GROUNDED_TASKS = ("count", "attribute", "spatial", "reading")
DESCRIPTION_TASKS = ("describe", "caption")
STRATEGIES = ("auto", "chain", "tree", "dynamic")
BUILTIN_TEXT_PROMPTS = [
    "Explain in two sentences what speculative decoding is.",
    "Write a short story about a red fox and a blue bird.",
    "List the numbers from one to twenty, separated by commas.",
    "Repeat after me: the quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog.",
]
QUICK = dict(n=2, max_new_tokens=24, repeats=1, warmup=1, temperatures="0")


class BenchError(Exception):
    """A user-facing, one-line error (exit status 2)."""


# =========================================================================================
# inputs
# =========================================================================================
@dataclass
class Sample:
    id: str
    prompt: str
    image: object = None          # PIL image or None
    group: str = "all"
    task: str | None = None
    source: str | None = None     # image file name / scene seed

    def describe(self) -> dict:
        return {"id": self.id, "group": self.group, "task": self.task, "prompt": self.prompt,
                "image": self.source if self.image is not None else None}


def scene_samples(n: int, start: int = 0) -> list[Sample]:
    """``n`` held-out scene samples, alternating description and grounded questions."""
    try:
        from .scenes.generator import heldout_seeds
        from .scenes.tasks import make_sample
    except ImportError as e:  # the scenes package is owned elsewhere and may be mid-change
        raise BenchError(f"the scenes suite is unavailable: {e}") from None
    out = []
    for i, seed in enumerate(heldout_seeds(n, start)):
        if i % 2 == 0:
            want = DESCRIPTION_TASKS[(i // 2) % len(DESCRIPTION_TASKS)]
        else:
            want = GROUNDED_TASKS[(i // 2) % len(GROUNDED_TASKS)]
        try:
            s = make_sample(seed, want)
        except TypeError:        # older / newer signature without ``task``
            s = make_sample(seed)
        task = s.get("task")
        group = "description" if task in DESCRIPTION_TASKS else "grounded" if task in GROUNDED_TASKS \
            else "text"
        out.append(Sample(f"scene-{seed}", s["prompt"], s.get("image"), group, task, f"seed {seed}"))
    return out


def _read_jsonl(path: str) -> list:
    if not os.path.isfile(path):
        raise BenchError(f"prompts file not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise BenchError(f"{path}:{ln}: not valid JSON ({e.msg})") from None
    if not rows:
        raise BenchError(f"{path} holds no prompts")
    return rows


def _prompt_of(row, where: str) -> str:
    p = row if isinstance(row, str) else row.get("prompt") if isinstance(row, dict) else None
    if not isinstance(p, str) or not p.strip():
        raise BenchError(f"{where}: needs a non-empty \"prompt\" string")
    return p


def folder_samples(images: str | None, prompts: str | None) -> list[Sample]:
    if not images or not prompts:
        raise BenchError("--suite folder needs --images DIR and --prompts FILE.jsonl")
    if not os.path.isdir(images):
        raise BenchError(f"images directory not found: {images}")
    from .adapters import InputError
    from .images import load_image
    out = []
    for i, row in enumerate(_read_jsonl(prompts)):
        where = f"{prompts} line {i + 1}"
        prompt = _prompt_of(row, where)
        img_name = row.get("image") if isinstance(row, dict) else None
        image = None
        if img_name:
            try:
                image = load_image(os.path.join(images, img_name))
            except InputError as e:
                raise BenchError(f"{where}: {e}") from None
        group = str(row.get("group") or "folder") if isinstance(row, dict) else "folder"
        out.append(Sample(f"{i}:{img_name or 'text'}", prompt, image, group, None, img_name))
    return out


def text_samples(prompts: str | None) -> list[Sample]:
    rows = _read_jsonl(prompts) if prompts else BUILTIN_TEXT_PROMPTS
    out = []
    for i, row in enumerate(rows):
        group = str(row.get("group") or "text") if isinstance(row, dict) else "text"
        out.append(Sample(f"text-{i}", _prompt_of(row, f"{prompts} line {i + 1}"), None, group, "text"))
    return out


def load_suite(args) -> list[Sample]:
    if args.suite == "scenes":
        samples = scene_samples(args.n or 20, args.scene_start)
    elif args.suite == "folder":
        samples = folder_samples(args.images, args.prompts)
    else:
        samples = text_samples(args.prompts)
    if args.n:
        samples = samples[: args.n]
    if not samples:
        raise BenchError("the suite is empty")
    return samples


# =========================================================================================
# configurations
# =========================================================================================
@dataclass
class Config:
    drafter: str
    strategy: str
    spec: object             # DraftSpec
    temperature: float

    @property
    def drafter_label(self) -> str:
        d = self.drafter
        if os.sep in d or d.startswith("."):
            return os.path.basename(d.rstrip(os.sep)) or d
        return d

    @property
    def strategy_label(self) -> str:
        s = self.spec
        prune = f",p>={s.min_prob:g}" if s.min_prob > 0 else ""
        if s.adaptive:
            return f"auto(cap={s.gamma}{prune})"
        if self.strategy == "chain":
            return f"chain(g={s.gamma}{prune})"
        if self.strategy == "tree":
            return "tree(" + "-".join(str(b) for b in s.branching) + prune + ")"
        return f"dynamic(d={s.depth},k={s.top_k},n={s.budget}{prune})"

    @property
    def id(self) -> str:
        return f"{self.drafter_label} {self.strategy_label} T={self.temperature:g}"


def _csv(text: str, what: str) -> list[str]:
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    if not items:
        raise BenchError(f"{what} is empty")
    return items


def _check_ref(name: str, what: str) -> str:
    """A model given as a local path must exist (otherwise transformers would try the Hub)."""
    ref = name[4:] if name.lower().startswith("msd:") else name
    if ref.startswith(("/", "./", "../", "~")) and not os.path.exists(os.path.expanduser(ref)):
        raise BenchError(f"{what} not found: {ref}")
    return name


def default_drafters() -> list[str]:
    from .api import SHIPPED_DRAFTERS
    return [k for k, p in SHIPPED_DRAFTERS.items() if p.exists()] + ["ngram", "layerskip"]


def build_configs(args) -> list[Config]:
    from .drafters import spec_for
    drafters = _csv(args.drafters, "--drafters") if args.drafters else default_drafters()
    strategies = _csv(args.strategies, "--strategies") if args.strategies else list(STRATEGIES)
    for s in strategies:
        if s not in STRATEGIES:
            raise BenchError(f"unknown strategy {s!r}; choose from {', '.join(STRATEGIES)}")
    try:
        temps = [float(t) for t in _csv(args.temperatures, "--temperatures")]
    except ValueError:
        raise BenchError(f"--temperatures takes comma-separated numbers, got {args.temperatures!r}") from None
    for t in temps:
        if not math.isfinite(t) or t < 0:
            raise BenchError(f"temperatures must be finite and >= 0, got {t}")
    try:
        branching = tuple(int(b) for b in _csv(args.branching, "--branching"))
    except ValueError:
        raise BenchError(f"--branching takes comma-separated integers, got {args.branching!r}") from None
    for d in drafters:
        if d.lower() in ("none", "ar"):
            raise BenchError("--drafters lists drafters; the AR baseline is always run")
    for d in drafters:
        _check_ref(d, "drafter")
    configs = []
    for d in drafters:
        strats = strategies
        if args.quick:  # one strategy per drafter
            strats = [strategies[0]] if args.strategies else ["auto"]
        for s in strats:
            try:
                spec = spec_for(s, args.gamma, branching, args.depth, args.top_k, args.budget, args.min_prob)
            except ValueError as e:
                raise BenchError(str(e)) from None
            for t in temps:
                configs.append(Config(d, s, spec, t))
    return configs


# =========================================================================================
# measuring our engine
# =========================================================================================
def _run_record(trace) -> dict:
    """The numbers of one run the aggregation needs (the trace itself is not kept)."""
    steps = trace.steps
    max_d = max((max(s.depths, default=0) for s in steps), default=0)
    acc = [len(s.accepted) for s in steps]
    tried = [sum(1 for s in steps if max(s.depths, default=0) >= d) for d in range(1, max_d + 1)]
    ok = [sum(1 for a in acc if a >= d) for d in range(1, max_d + 1)]
    n = len(trace.output)
    return {
        "tokens": list(trace.output), "new_tokens": n, "steps": len(steps),
        "forwards": (1 + len(steps)) if n else 0, "accepted": sum(acc),
        "drafted": sum(len(s.tokens) for s in steps), "depth_tried": tried, "depth_ok": ok,
        "wall_s": trace.wall_s, "prefill_s": trace.t_prefill,
        "draft_s": sum(s.t_draft for s in steps), "verify_s": sum(s.t_verify for s in steps),
        "other_s": sum(s.t_other for s in steps), "trace_s": trace.t_trace, "text": trace.text,
        "stop_reason": trace.stop_reason,
    }


def _sampling(cfg: Config, seed: int):
    from .sampling import SamplingConfig
    return SamplingConfig(temperature=cfg.temperature, seed=seed)


def _log(args, msg: str) -> None:
    if not args.silent:
        print(msg, file=sys.stderr, flush=True)


def run_config(pair, cfg: Config, samples: list[Sample], args, lookup_cache: dict | None = None) -> list[dict]:
    """Per sample: AR, spec (and transformers' plain / assisted / prompt-lookup generate) back to
    back, ``repeats`` times, after warm-up, so drift hits all alike. One record per sample."""
    from .api import run
    kw = dict(max_new_tokens=args.max_new_tokens, detail=args.detail)
    hf = HFRunner(pair, cfg, args, lookup_cache if lookup_cache is not None else {}) if args.hf != "none" else None
    base = None   # --baseline-dtype: the same target's AR in another dtype, interleaved too
    if getattr(args, "baseline_dtype", None) and args.baseline_dtype != args.dtype:
        from .api import load_pair
        base = load_pair(args.target, None, dtype=args.baseline_dtype, device=args.device)
    first = samples[0]
    for _ in range(args.warmup):
        run(pair, first.prompt, first.image, cfg.spec, _sampling(cfg, args.seed), speculative=False, **kw)
        run(pair, first.prompt, first.image, cfg.spec, _sampling(cfg, args.seed), **kw)
        if base is not None:
            run(base, first.prompt, first.image, cfg.spec, _sampling(cfg, args.seed), speculative=False, **kw)
        if hf is not None:
            hf.warmup(first)
    records = []
    for i, smp in enumerate(samples):
        ar_runs, sp_runs, base_runs = [], [], []
        hrec = hf.new_record(smp) if hf is not None else None
        for r in range(args.repeats):
            seed = args.seed + 1000 * i + r
            ar = run(pair, smp.prompt, smp.image, cfg.spec, _sampling(cfg, seed), speculative=False, **kw)
            sp = run(pair, smp.prompt, smp.image, cfg.spec, _sampling(cfg, seed), **kw)
            ar_runs.append(_run_record(ar))
            sp_runs.append(_run_record(sp))
            if base is not None:
                b = run(base, smp.prompt, smp.image, cfg.spec, _sampling(cfg, seed), speculative=False, **kw)
                base_runs.append(_run_record(b))
            if hf is not None:
                hf.run(hrec, smp, seed)
        exact = None
        if cfg.temperature == 0:
            exact = all(a["tokens"] == s["tokens"] for a, s in zip(ar_runs, sp_runs))
        records.append({"sample": smp, "ar": ar_runs, "spec": sp_runs, "exact": exact, "hf": hrec,
                        "base": base_runs or None})
    if hf is not None:
        hf.finish([r["hf"] for r in records])
    return records


def _divergence(pair, smp: Sample, ar: list[int], sp: list[int]) -> dict:
    """Where a T=0 speculative output first left the AR output, and how close the target's
    top-2 logits were there (a near-tie points at numerics, a wide margin at a bug)."""
    import torch
    pos = next((i for i, (a, b) in enumerate(zip(ar, sp)) if a != b), min(len(ar), len(sp)))
    out = {"sample": smp.id, "position": pos, "ar_token": ar[pos] if pos < len(ar) else None,
           "spec_token": sp[pos] if pos < len(sp) else None, "top2_margin": None}
    try:
        tgt = pair.target
        with torch.inference_mode():
            sess, logits, _ = tgt.prefill(tgt.encode(smp.prompt, smp.image))
            row = logits if pos == 0 else tgt.forward(sess, ar[:pos])[0][-1]
            top = torch.topk(row.float(), 2).values
        out["top2_margin"] = round(float(top[0] - top[1]), 6)
    except Exception as e:  # a diagnostic only
        out["margin_error"] = _first_line(e)
    return out


# =========================================================================================
# transformers baselines
# =========================================================================================
def _hf_inputs(target, smp: Sample) -> dict:
    import torch
    enc = target.encode(smp.prompt, smp.image)
    kw = dict(enc.extra)
    if target.family in ("qwen2_vl", "qwen2_5_vl") and enc.has_image:
        kw["mm_token_type_ids"] = (enc.input_ids == target.model.config.image_token_id).long()
    return dict(input_ids=enc.input_ids, attention_mask=torch.ones_like(enc.input_ids), **kw)


def _hf_generate(target, smp: Sample, temperature: float, max_new_tokens: int, seed: int, **extra):
    """transformers' ``generate`` on the same encoded inputs; the wall time includes encoding the
    prompt and image, as our engine's does."""
    import torch
    tok = target.tokenizer
    eos = sorted(target.eos_ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (eos[0] if eos else 0)
    gen = dict(max_new_tokens=max_new_tokens, min_new_tokens=0, eos_token_id=eos or None, pad_token_id=pad)
    if temperature > 0:
        gen.update(do_sample=True, temperature=temperature, top_k=None, top_p=None)
        torch.manual_seed(seed)
    else:
        gen.update(do_sample=False)
    t0 = time.perf_counter()
    inputs = _hf_inputs(target, smp)
    with torch.inference_mode():
        out = target.model.generate(**inputs, **gen, **extra)
    wall = time.perf_counter() - t0
    n = int(inputs["input_ids"].shape[1])
    return out[0, n:].tolist(), wall


def assistant_for(pair) -> tuple[object, str | None]:
    """The drafter's transformers model for ``generate(assistant_model=...)``, or a reason why not."""
    d = pair.drafter
    lm = getattr(d, "lm", None)
    model = getattr(lm, "model", None)
    if model is None:
        return None, f"{getattr(d, 'name', d)} is not a standalone transformers model"
    if model is pair.target.model:
        return None, "the drafter is the target itself"
    if getattr(d, "use_image", True) is False and getattr(lm, "is_multimodal", False):
        return None, "text-only drafter mode: transformers would show the assistant the image"
    return model, None


class HFRunner:
    """transformers' own baselines for one configuration, run inside the per-sample loop:
    plain ``generate``, ``generate(assistant_model=<drafter model>)`` and
    ``generate(prompt_lookup_num_tokens=...)``. Failures are recorded with their reason, never raised.
    Prompt lookup does not depend on the drafter: it is measured with the first configuration of
    each temperature and reused (with the plain runs it was timed against) by the others."""

    def __init__(self, pair, cfg: Config, args, lookup_cache: dict):
        self.pair, self.cfg, self.args, self.cache = pair, cfg, args, lookup_cache
        if args.hf == "all":
            self.assistant, self.skip = assistant_for(pair)
            self.do_lookup = cfg.temperature not in lookup_cache
        else:
            self.assistant, self.skip, self.do_lookup = None, "--hf plain", False
        self.lookup_kw = dict(prompt_lookup_num_tokens=args.prompt_lookup_tokens)

    def _attempt(self, rec: dict | None, kind: str, smp: Sample, seed: int, **extra):
        from .kernels import stock
        try:
            with contextlib.ExitStack() as models:
                if self.args.hf_kernels == "stock":     # transformers as its users run it
                    models.enter_context(stock(self.pair.target.model))
                    if self.assistant is not None:
                        models.enter_context(stock(self.assistant))
                toks, wall = _hf_generate(self.pair.target, smp, self.cfg.temperature, self.args.max_new_tokens,
                                          seed, **extra)
        except Exception as e:
            if rec is not None:
                rec["errors"].setdefault(kind, f"{type(e).__name__}: {_first_line(e)}")
            return
        if rec is not None:
            rec[kind].append({"tokens": toks, "wall_s": wall})

    def warmup(self, smp: Sample) -> None:
        self._attempt(None, "plain", smp, self.args.seed)
        if self.assistant is not None:
            self._attempt(None, "assisted", smp, self.args.seed, assistant_model=self.assistant)

    def new_record(self, smp: Sample) -> dict:
        return {"sample": smp.id, "plain": [], "assisted": [], "lookup": [], "errors": {}}

    def run(self, rec: dict, smp: Sample, seed: int) -> None:
        self._attempt(rec, "plain", smp, seed)
        if self.assistant is not None:
            self._attempt(rec, "assisted", smp, seed, assistant_model=self.assistant)
        if self.do_lookup:
            self._attempt(rec, "lookup", smp, seed, **self.lookup_kw)

    def finish(self, recs: list[dict]) -> None:
        for rec in recs:
            if self.skip:
                rec["errors"]["assisted_skipped"] = self.skip
        if self.args.hf != "all":
            for rec in recs:
                rec["errors"]["lookup_skipped"] = "--hf plain"
        elif self.do_lookup:
            self.cache[self.cfg.temperature] = recs
        else:
            for rec, old in zip(recs, self.cache[self.cfg.temperature]):
                rec["lookup"], rec["lookup_plain"] = old["lookup"], old["plain"]
                if "lookup" in old["errors"]:
                    rec["errors"]["lookup"] = old["errors"]["lookup"]


# =========================================================================================
# aggregation
# =========================================================================================
def _r(x, nd=4):
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return round(float(x), nd)


def _ratio(a, b):
    return a / b if b else None


def aggregate(records: list[dict], hf: list[dict] | None, temperature: float) -> dict:
    ar = [x for r in records for x in r["ar"]]
    sp = [x for r in records for x in r["spec"]]
    S = lambda runs, k: sum(x[k] for x in runs)  # noqa: E731
    ar_wall, sp_wall = S(ar, "wall_s"), S(sp, "wall_s")
    ar_tok, sp_tok = S(ar, "new_tokens"), S(sp, "new_tokens")
    steps, fwd = S(sp, "steps"), S(sp, "forwards")
    depth = max((len(x["depth_tried"]) for x in sp), default=0)
    tried = [sum(x["depth_tried"][d] for x in sp if d < len(x["depth_tried"])) for d in range(depth)]
    ok = [sum(x["depth_ok"][d] for x in sp if d < len(x["depth_ok"])) for d in range(depth)]
    tau = _ratio(sp_tok, fwd)
    c_ar = _ratio(S(ar, "verify_s"), S(ar, "steps"))
    c_sp = _ratio(S(sp, "draft_s") + S(sp, "verify_s") + S(sp, "other_s"), steps)
    ideal = tau * c_ar / c_sp if (tau and c_ar and c_sp) else None
    per_sample = [_ratio(sum(a["wall_s"] for a in r["ar"]), sum(s["wall_s"] for s in r["spec"]))
                  for r in records]
    per_sample = [x for x in per_sample if x]
    m = {
        "n": len(records), "runs": len(sp),
        "tau": _r(tau), "accepted_per_step": _r(_ratio(S(sp, "accepted"), steps)),
        "drafted_per_step": _r(_ratio(S(sp, "drafted"), steps)),
        "acceptance_by_depth": [_r(_ratio(o, t)) for o, t in zip(ok, tried)],
        "new_tokens_ar": ar_tok, "new_tokens_spec": sp_tok,
        "wall_s_ar": _r(ar_wall, 6), "wall_s_spec": _r(sp_wall, 6),
        "tokens_per_s_ar": _r(_ratio(ar_tok, ar_wall), 3), "tokens_per_s_spec": _r(_ratio(sp_tok, sp_wall), 3),
        "speedup": _r(_ratio(ar_wall, sp_wall)),
        "speedup_mean_of_ratios": _r(sum(per_sample) / len(per_sample)) if per_sample else None,
        "throughput_ratio": _r(_ratio(_ratio(sp_tok, sp_wall), _ratio(ar_tok, ar_wall))),
        "ideal_speedup": _r(ideal),
        "step_cost_ar_ms": _r(c_ar * 1e3 if c_ar else None),
        "step_cost_spec_ms": _r(c_sp * 1e3 if c_sp else None),
        "steps_spec": steps, "steps_ar": S(ar, "steps"),
        "time_split_spec_s": {k: _r(S(sp, k + "_s"), 6) for k in ("prefill", "draft", "verify", "other")},
        "time_split_ar_s": {k: _r(S(ar, k + "_s"), 6) for k in ("prefill", "draft", "verify", "other")},
        "time_per_step_spec_ms": {k: _r(_ratio(S(sp, k + "_s"), steps) * 1e3 if steps else None)
                                  for k in ("draft", "verify", "other")},
        "trace_overhead": _r(_ratio(S(sp, "trace_s"), sp_wall), 5),
        "exact": None,
    }
    if temperature == 0:
        m["exact"] = {"matched": sum(1 for r in records if r["exact"]), "n": len(records)}
    if all(r.get("base") for r in records):
        # the same target's AR in --baseline-dtype (e.g. float32 AR vs bfloat16 speculative):
        # what a user switching both gains; its outputs may differ from the spec run's dtype
        b = [x for r in records for x in r["base"]]
        m["tokens_per_s_ar_baseline_dtype"] = _r(_ratio(S(b, "new_tokens"), S(b, "wall_s")), 3)
        m["speedup_vs_baseline_dtype"] = _r(_ratio(_ratio(sp_tok, sp_wall), _ratio(S(b, "new_tokens"), S(b, "wall_s"))))
    if hf is not None:
        m.update(_aggregate_hf(hf, records, temperature))
    return m


def _aggregate_hf(hf: list[dict], records: list[dict], temperature: float) -> dict:
    """transformers baselines over the same samples as ``records`` (aligned by index)."""
    plain = [x for h in hf for x in h["plain"]]
    errors: dict = {}
    for h in hf:
        errors.update(h["errors"])
    p_tps = _ratio(sum(len(x["tokens"]) for x in plain), sum(x["wall_s"] for x in plain))
    ar_runs = [x for r in records for x in r["ar"]]
    ar_tps = _ratio(sum(x["new_tokens"] for x in ar_runs), sum(x["wall_s"] for x in ar_runs))

    def speedup(kind, base_key):
        ok = [h for h in hf if h[kind] and (h.get(base_key) or h["plain"])]
        if not ok:
            if errors.get(kind):
                return {"speedup": None, "error": errors[kind], "failed": len(hf), "n": len(hf)}
            return {"speedup": None, "skipped": errors.get(kind + "_skipped") or "not run", "n": len(hf)}
        base = [x for h in ok for x in (h.get(base_key) or h["plain"])]
        runs = [x for h in ok for x in h[kind]]
        wall = sum(x["wall_s"] for x in runs)
        res = {"speedup": _r(_ratio(sum(x["wall_s"] for x in base), wall)), "failed": len(hf) - len(ok),
               "n": len(hf), "tokens_per_s": _r(_ratio(sum(len(x["tokens"]) for x in runs), wall), 3)}
        if temperature == 0:  # does transformers' own speculative output equal its plain output?
            res["exact"] = {"matched": sum(1 for h in ok if h[kind][0]["tokens"]
                                           == (h.get(base_key) or h["plain"])[0]["tokens"]), "n": len(ok)}
        if errors.get(kind):
            res["error"] = errors[kind]
        return res

    out = {
        "hf_plain_tokens_per_s": _r(p_tps, 3),
        "ar_vs_hf_plain": _r(_ratio(ar_tps, p_tps)),   # >= 1: our AR loop is at least as fast
        "hf_plain_error": errors.get("plain"),
        "hf_plain_matches_ar": None,
        "hf_assisted": speedup("assisted", "plain"),
        "hf_prompt_lookup": speedup("lookup", "lookup_plain"),
    }
    if temperature == 0:
        pairs = [(h["plain"][0]["tokens"], r["ar"][0]["tokens"]) for h, r in zip(hf, records) if h["plain"]]
        if pairs:
            out["hf_plain_matches_ar"] = {"matched": sum(1 for a, b in pairs if a == b), "n": len(pairs)}
    out["hf_assisted_speedup"] = out["hf_assisted"]["speedup"]
    out["hf_prompt_lookup_speedup"] = out["hf_prompt_lookup"]["speedup"]
    return out


def groups_of(samples: list[Sample]) -> list[str]:
    names = list(dict.fromkeys(s.group for s in samples))
    return names + ["all"] if len(names) > 1 else names


def summarize(cfg: Config, records: list[dict]) -> dict:
    samples = [r["sample"] for r in records]
    hf = [r["hf"] for r in records] if all(r.get("hf") for r in records) else None
    res = {"id": cfg.id, "drafter": cfg.drafter, "strategy": cfg.strategy, "temperature": cfg.temperature,
           "spec": {"gamma": cfg.spec.gamma, "branching": list(cfg.spec.branching), "depth": cfg.spec.depth,
                    "top_k": cfg.spec.top_k, "budget": cfg.spec.budget},
           "groups": {}, "samples": [], "divergences": []}
    for g in groups_of(samples):
        idx = [i for i, s in enumerate(samples) if g == "all" or s.group == g]
        res["groups"][g] = aggregate([records[i] for i in idx], [hf[i] for i in idx] if hf else None,
                                     cfg.temperature)
    for i, r in enumerate(records):
        a, s = r["ar"], r["spec"]
        res["samples"].append({
            "id": r["sample"].id, "group": r["sample"].group, "task": r["sample"].task, "exact": r["exact"],
            "ar_wall_s": _r(sum(x["wall_s"] for x in a), 6), "spec_wall_s": _r(sum(x["wall_s"] for x in s), 6),
            "ar_new_tokens": a[0]["new_tokens"], "spec_new_tokens": s[0]["new_tokens"],
            "tau": _r(_ratio(sum(x["new_tokens"] for x in s), sum(x["forwards"] for x in s))),
            "spec_text": s[0]["text"][:300], "stop_reason": s[0]["stop_reason"],
        })
    return res


# =========================================================================================
# reporting
# =========================================================================================
COLUMNS = ["config", "tau", "acc/step", "tok/s AR", "tok/s spec", "speedup", "ideal", "exact",
           "HF plain tok/s", "HF assisted speedup", "HF prompt-lookup speedup"]


def _f(x, fmt="{:.2f}", none="-"):
    return none if x is None else fmt.format(x)


def _hf_cell(d: dict | None) -> str:
    if not d:
        return "-"
    if d.get("speedup") is None:
        return "failed" if d.get("error") else "skipped"
    cell = f"{d['speedup']:.2f}x"
    if d.get("failed"):
        cell += f" ({d['failed']}/{d['n']} failed)"
    return cell


def table_rows(results: dict) -> list[tuple[str, list[str]]]:
    rows = []
    for c in results["configs"]:
        for g, m in c["groups"].items():
            label = c["id"] if len(c["groups"]) == 1 else f"{c['id']} [{g}]"
            ex = m["exact"]
            speed = _f(m["speedup"], "{:.2f}x")
            if m["new_tokens_ar"] != m["new_tokens_spec"] and m["speedup"] is not None:
                speed += "*"
            hf_plain = "-"
            if m.get("hf_plain_tokens_per_s") is not None:
                hf_plain = f"{m['hf_plain_tokens_per_s']:.1f}"
                if m.get("ar_vs_hf_plain") is not None:
                    hf_plain += f" (AR {m['ar_vs_hf_plain']:.2f}x)"
            elif m.get("hf_plain_error"):
                hf_plain = "failed"
            rows.append((label, [
                label, _f(m["tau"]), _f(m["accepted_per_step"]), _f(m["tokens_per_s_ar"], "{:.1f}"),
                _f(m["tokens_per_s_spec"], "{:.1f}"), speed, _f(m["ideal_speedup"], "{:.2f}x"),
                f"{ex['matched']}/{ex['n']}" if ex else "n/a", hf_plain,
                _hf_cell(m.get("hf_assisted")), _hf_cell(m.get("hf_prompt_lookup"))]))
    return rows


def markdown_table(results: dict) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|"]
    for _, cells in table_rows(results):
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    notes = ["tau = tokens per target forward (incl. bonus); acc/step = accepted draft tokens per step "
             "(excl. bonus); speedup = total AR wall / total spec wall (* = AR and spec produced different "
             "token counts; see throughput_ratio); ideal = tau x AR step cost / spec step cost; "
             "HF plain: (AR n.nnx) = our AR tok/s / transformers generate() tok/s."]
    meta = results.get("meta", {})
    if meta.get("env"):
        cpu = meta["env"].get("cpu") or {}
        notes.insert(0, f"machine: {cpu.get('model', '?')} ({' '.join(cpu.get('flags', [])) or 'no flags read'}), "
                        f"{meta['env'].get('torch_threads')} torch threads, dtype {meta.get('dtype')}, "
                        f"device {meta.get('device', 'cpu')}; our kernels: {(meta.get('kernels') or {}).get('target')}; "
                        f"transformers baselines on the {(meta.get('kernels') or {}).get('hf_baselines', 'stock')} model")
    bd = meta.get("baseline_dtype")
    if bd and bd != meta.get("dtype"):
        notes.append(f"AR in {bd} (same target, interleaved), speculative tok/s over it: " + ", ".join(
            f"{c['id']} {_f(m.get('tokens_per_s_ar_baseline_dtype'), '{:.1f}')} tok/s -> "
            f"{_f(m.get('speedup_vs_baseline_dtype'), '{:.2f}x')}"
            for c in results["configs"] for m in [c["groups"].get("all") or next(iter(c["groups"].values()))]))
    seen = set()
    for c in results["configs"]:
        m = c["groups"].get("all") or next(iter(c["groups"].values()))
        for kind, label in (("hf_assisted", "HF assisted"), ("hf_prompt_lookup", "HF prompt-lookup")):
            d = m.get(kind) or {}
            msg = d.get("error") or d.get("skipped")
            if msg and (label, msg) not in seen:
                seen.add((label, msg))
                who = c["drafter_label"] if kind == "hf_assisted" else f"T={c['temperature']:g}"
                notes.append(f"{label} ({who}) {'failed' if d.get('error') else 'skipped'}: {msg}")
        for dv in c["divergences"][:3]:
            notes.append(f"{c['id']}: spec left AR on {dv['sample']} at token {dv['position']} "
                         f"(target top-2 margin {dv['top2_margin']})")
    split = ["| config | draft ms/step | verify ms/step | other ms/step | spec step ms | AR step ms "
             "| prefill s (spec) | trace overhead |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in results["configs"]:
        m = c["groups"].get("all") or next(iter(c["groups"].values()))
        t = m["time_per_step_spec_ms"]
        split.append(f"| {c['id']} | {_f(t['draft'])} | {_f(t['verify'])} | {_f(t['other'])} | "
                     f"{_f(m['step_cost_spec_ms'])} | {_f(m['step_cost_ar_ms'])} | "
                     f"{_f(m['time_split_spec_s']['prefill'], '{:.3f}')} | {_f(m['trace_overhead'], '{:.2%}')} |")
    return ("\n".join(lines) + "\n\n" + "\n".join("- " + n for n in notes) + "\n\n"
            + "Time per speculative step (all samples):\n\n" + "\n".join(split) + "\n")


def write_html(results: dict, path: str, plotlyjs: str = "inline") -> None:
    import html as H

    import plotly.graph_objects as go
    rows = table_rows(results)
    labels = [label for label, _ in rows]
    metrics = [m for c in results["configs"] for m in c["groups"].values()]
    figs = []
    f1 = go.Figure()
    f1.add_bar(name="achieved", x=labels, y=[m["speedup"] for m in metrics])
    f1.add_bar(name="ideal (from step costs)", x=labels, y=[m["ideal_speedup"] for m in metrics])
    f1.add_bar(name="HF assisted", x=labels, y=[(m.get("hf_assisted") or {}).get("speedup") for m in metrics])
    f1.add_bar(name="HF prompt lookup", x=labels,
               y=[(m.get("hf_prompt_lookup") or {}).get("speedup") for m in metrics])
    f1.add_hline(y=1.0, line_dash="dot", line_color="gray")
    f1.update_layout(title="Speedup over autoregressive decoding (same target)", barmode="group",
                     yaxis_title="speedup (x)")
    figs.append(f1)
    f2 = go.Figure()
    f2.add_bar(name="tau: tokens per target forward (incl. bonus)", x=labels, y=[m["tau"] for m in metrics])
    f2.add_bar(name="accepted draft tokens per step (excl. bonus)", x=labels,
               y=[m["accepted_per_step"] for m in metrics])
    f2.update_layout(title="Acceptance", barmode="group")
    figs.append(f2)
    f3 = go.Figure()
    for label, m in zip(labels, metrics):
        acc = m["acceptance_by_depth"]
        if acc:
            f3.add_scatter(name=label, x=list(range(1, len(acc) + 1)), y=acc, mode="lines+markers")
    f3.update_layout(title="Acceptance by depth: P(accepted >= d | drafted to depth >= d)",
                     xaxis_title="draft depth d", yaxis_title="acceptance", yaxis_range=[0, 1.05])
    figs.append(f3)
    f4 = go.Figure()
    for part in ("draft", "verify", "other"):
        f4.add_bar(name=part, x=labels, y=[m["time_per_step_spec_ms"][part] for m in metrics])
    f4.add_scatter(name="AR step (verify)", x=labels, y=[m["step_cost_ar_ms"] for m in metrics], mode="markers",
                   marker=dict(symbol="line-ew-open", size=36, color="black", line=dict(width=3)))
    f4.update_layout(title="Time per speculative step (ms)", barmode="stack", yaxis_title="ms")
    figs.append(f4)
    parts = []
    for i, f in enumerate(figs):
        inc = (True if plotlyjs == "inline" else "cdn") if i == 0 else False
        parts.append(f.to_html(full_html=False, include_plotlyjs=inc))
    head = "".join(f"<th>{H.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{H.escape(x)}</td>" for x in cells) + "</tr>" for _, cells in rows)
    meta = results["meta"]
    info = (f"target <code>{H.escape(str(meta['target']))}</code>, dtype {H.escape(meta['dtype'])}, "
            f"device {H.escape(meta.get('device', 'cpu'))}, "
            f"suite {H.escape(meta['suite'])} ({meta['n_samples']} samples), "
            f"max_new_tokens {meta['max_new_tokens']}, repeats {meta['repeats']}, warm-up {meta['warmup']}, "
            f"torch threads {meta['env']['torch_threads']}, {H.escape(meta['created'])}")
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>SpecScope benchmark</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}} td:first-child{{text-align:left}}</style>
</head><body><h1>SpecScope benchmark</h1><p>{info}</p>
<table><tr>{head}</tr>{body}</table>
<p>tau = tokens per target forward (incl. bonus). acc/step = accepted draft tokens per step (excl. bonus).
speedup = total AR wall time / total speculative wall time, AR and speculative runs interleaved per sample.
ideal = tau &times; (AR step cost) / (speculative step cost), from the measured per-step times.</p>
{''.join(parts)}</body></html>"""
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc)


def _env() -> dict:
    import torch
    import transformers
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "cpu": cpu_info()}


def cpu_info() -> dict:
    """The CPU's model name and the instruction-set flags that decide which kernels are fast."""
    from .tune import _cpu_name
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo") as f:
            line = next((ln for ln in f if ln.startswith("flags")), "")
        have = set(line.split(":", 1)[-1].split())
        flags = [f for f in ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16",
                             "amx_tile") if f in have]
    except OSError:
        pass
    return {"model": _cpu_name(), "flags": flags}


# =========================================================================================
# profile mode
# =========================================================================================
def profile_config(pair, cfg: Config, smp: Sample, args) -> dict:
    """One speculative run with every phase of a step timed separately, then cProfile and
    torch.profiler views of the same run."""
    import torch

    from . import engine
    from .api import run
    kw = dict(max_new_tokens=args.max_new_tokens, detail=args.detail)
    sampling = _sampling(cfg, args.seed)
    for _ in range(max(1, args.warmup)):
        run(pair, smp.prompt, smp.image, cfg.spec, sampling, speculative=False, **kw)
        run(pair, smp.prompt, smp.image, cfg.spec, sampling, **kw)
    ar = run(pair, smp.prompt, smp.image, cfg.spec, sampling, speculative=False, **kw)

    timers: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timers[name] = timers.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    tgt, d = pair.target, pair.drafter
    saved = {"greedy": engine.accept_greedy, "sampling": engine.accept_sampling}
    engine.accept_greedy = timed("accept", saved["greedy"])
    engine.accept_sampling = timed("accept", saved["sampling"])
    tgt.keep = timed("kv", tgt.keep)
    d.propose = timed("propose", d.propose)
    d.commit = timed("commit", d.commit)
    try:
        tr = run(pair, smp.prompt, smp.image, cfg.spec, sampling, **kw)
    finally:
        engine.accept_greedy, engine.accept_sampling = saved["greedy"], saved["sampling"]
        for obj, name in ((tgt, "keep"), (d, "propose"), (d, "commit")):
            obj.__dict__.pop(name, None)
    s = tr.summary()
    steps = max(1, len(tr.steps))
    ts = s["time_split"]
    parts = {
        "draft: propose": timers.get("propose", 0.0),
        "draft: commit (drafter cache update)": timers.get("commit", 0.0),
        "verify (target forward)": ts["verify"],
        "accept (acceptance rule)": timers.get("accept", 0.0),
        "KV compaction (adapter.keep)": timers.get("kv", 0.0),
        "trace recording": tr.t_trace,
    }
    parts["other (bookkeeping)"] = max(0.0, ts["draft"] + ts["verify"] + ts["other"] - sum(parts.values()))
    step_total = sum(parts.values())
    a = ar.summary()
    ar_steps = max(1, len(ar.steps))

    prof = cProfile.Profile()
    prof.enable()
    run(pair, smp.prompt, smp.image, cfg.spec, sampling, **kw)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(args.profile_top)
    cprof = buf.getvalue()

    torch_table = ""
    try:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as p:
            run(pair, smp.prompt, smp.image, cfg.spec, sampling, **kw)
        torch_table = p.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_top)
    except Exception as e:  # the profiler is optional
        torch_table = f"(torch.profiler unavailable: {_first_line(e)})"

    return {
        "config": cfg.id, "sample": smp.id, "steps": len(tr.steps), "new_tokens": s["new_tokens"],
        "tau": s["tau"], "wall_s": round(tr.wall_s, 6), "prefill_s": round(tr.t_prefill, 6),
        "per_step_ms": {k: round(v / steps * 1e3, 4) for k, v in parts.items()},
        "share": {k: round(v / step_total, 4) if step_total else None for k, v in parts.items()},
        "ar": {"steps": len(ar.steps), "verify_ms_per_step": round(a["time_split"]["verify"] / ar_steps * 1e3, 4),
               "other_ms_per_step": round(a["time_split"]["other"] / ar_steps * 1e3, 4),
               "wall_s": round(ar.wall_s, 6)},
        "cprofile": cprof, "torch_profiler": torch_table,
    }


def print_profile(p: dict, out=None) -> None:
    out = out or sys.stdout
    print(f"\n## profile: {p['config']} on {p['sample']}", file=out)
    print(f"{p['new_tokens']} tokens in {p['steps']} steps (tau {p['tau']}), wall {p['wall_s'] * 1e3:.1f} ms, "
          f"prefill {p['prefill_s'] * 1e3:.1f} ms", file=out)
    print("\n| part of a step | ms/step | share |\n|---|---:|---:|", file=out)
    for k, v in p["per_step_ms"].items():
        sh = p["share"][k]
        print(f"| {k} | {v:.3f} | {'-' if sh is None else f'{sh:.1%}'} |", file=out)
    print(f"| **step total** | {sum(p['per_step_ms'].values()):.3f} | |", file=out)
    print(f"\nAR step for comparison: verify {p['ar']['verify_ms_per_step']:.3f} ms + other "
          f"{p['ar']['other_ms_per_step']:.3f} ms ({p['ar']['steps']} steps)", file=out)
    print("\n### cProfile (top functions by own time)\n```", file=out)
    print("\n".join(ln for ln in p["cprofile"].splitlines() if ln.strip())[:6000], file=out)
    print("```\n\n### torch.profiler (top ops by self CPU time)\n```", file=out)
    print(p["torch_profiler"], file=out)
    print("```", file=out)


# =========================================================================================
# CLI
# =========================================================================================
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (via BenchError)
        raise BenchError(message)


def parser() -> argparse.ArgumentParser:
    from .tune import DEFAULT_CHAIN, DEFAULT_DYNAMIC   # the app's untuned shapes too
    p = _Parser(prog="python -m core.bench", description="Benchmark speculative vs autoregressive decoding.")
    p.add_argument("--suite", choices=["scenes", "folder", "text"], default="scenes",
                   help="scenes: held-out scene samples (grounded / description); folder: --images + --prompts; "
                        "text: text-only prompts (--prompts or built-ins)")
    p.add_argument("--images", help="folder suite: directory of images")
    p.add_argument("--prompts", help="JSONL: {\"image\": \"name.png\", \"prompt\": \"...\"} per line (folder), "
                                     "{\"prompt\": \"...\"} (text)")
    p.add_argument("--scene-start", type=int, default=0, help="scenes: offset into the held-out seeds")
    p.add_argument("--target", default="default", help="Hub id, directory, or 'default' (assets/target)")
    p.add_argument("--drafters", default=None,
                   help="comma-separated registry names (ngram, layerskip[:K], msd, a model dir, module:Class); "
                        "default: the shipped drafters that exist + ngram + layerskip")
    p.add_argument("--drafter-mode", choices=["multimodal", "text-only"], default="multimodal")
    p.add_argument("--strategies", default=None,
                   help="comma-separated subset of auto,chain,tree,dynamic (default all; auto = the adaptive "
                        "chain the cost model sizes at every step)")
    p.add_argument("--gamma", type=int, default=None,
                   help=f"chain: tokens drafted per step (default {DEFAULT_CHAIN.gamma}); auto: the cap (default 16)")
    p.add_argument("--branching", default="3,2,2,1", help="static tree: children per node at each depth")
    p.add_argument("--depth", type=int, default=DEFAULT_DYNAMIC.depth, help="dynamic tree: depth")
    p.add_argument("--top-k", type=int, default=DEFAULT_DYNAMIC.top_k, help="dynamic tree: expansions per depth")
    p.add_argument("--budget", type=int, default=DEFAULT_DYNAMIC.budget, help="dynamic tree: node budget (sized for CPUs; see python -m core.tune)")
    p.add_argument("--min-prob", type=float, default=0.0,
                   help="prune: don't expand draft nodes whose cumulative draft probability is below this")
    p.add_argument("--temperatures", default=None, help="comma-separated, e.g. 0,1 (default 0)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default 64 (quick: 24)")
    p.add_argument("--baseline-dtype", choices=["float32", "bfloat16"], default=None,
                   help="also time the target's AR in this dtype, interleaved (e.g. float32 AR vs "
                        "bfloat16 speculative: the gain of switching both)")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="auto (default): bfloat16 where the CPU/GPU computes it natively, else "
                        "float32. AR and speculative runs always share the dtype")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default=None,
                   help="where the target and drafters run (default: $SPECSCOPE_DEVICE, else cpu); "
                        "auto = cuda if a CUDA GPU is visible. Recorded in meta.device")
    p.add_argument("--n", type=int, default=None, help="number of samples (scenes default 20; quick 2)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per sample (default 1)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up runs per configuration (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's / SPECSCOPE_THREADS)")
    p.add_argument("--hf", choices=["all", "plain", "none"], default="all",
                   help="transformers baselines: all = plain + assisted + prompt lookup")
    p.add_argument("--hf-kernels", choices=["stock", "same"], default="stock",
                   help="transformers baselines on the stock model (default: as a transformers user runs "
                        "it) or on the same models with our measured product paths (core.kernels)")
    p.add_argument("--kernels", choices=["auto", "stock", "dense", "onednn"], default=None,
                   help="our engine's product paths (default: $SPECSCOPE_KERNELS, else auto = measured)")
    p.add_argument("--prompt-lookup-tokens", type=int, default=10,
                   help="prompt_lookup_num_tokens for the transformers prompt-lookup baseline")
    p.add_argument("--detail", action="store_true",
                   help="record target probabilities of drafted tokens in the traces (costs time)")
    p.add_argument("--quick", action="store_true",
                   help="2 samples, 24 new tokens, one strategy per drafter, T=0: under a minute")
    p.add_argument("--profile", action="store_true", help="print where a step's time goes (one run per config)")
    p.add_argument("--profile-top", type=int, default=15, help="profile: rows of the cProfile / torch tables")
    p.add_argument("--out", default=None, help="write the results JSON here")
    p.add_argument("--html", default=None, help="write a self-contained plotly HTML report here")
    p.add_argument("--plotlyjs", choices=["inline", "cdn"], default="inline",
                   help="inline embeds plotly.js (~4.5 MB, works offline); cdn loads it from the web")
    p.add_argument("--silent", action="store_true", help="no progress lines on stderr")
    return p


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
    for name, lo in (("n", 1), ("max_new_tokens", 1), ("repeats", 1), ("warmup", 0), ("threads", 1),
                     ("prompt_lookup_tokens", 1), ("profile_top", 1)):
        v = getattr(args, name)
        if v is not None and v < lo:
            raise BenchError(f"--{name.replace('_', '-')} must be >= {lo}, got {v}")
    if args.suite == "folder" and (not args.images or not args.prompts):
        raise BenchError("--suite folder needs --images DIR and --prompts FILE.jsonl")
    if args.images and args.suite != "folder":
        raise BenchError("--images is only used by --suite folder")
    from .adapters import resolve_dtype
    from .api import default_device
    args.device = default_device(args.device)             # None -> $SPECSCOPE_DEVICE or cpu (in meta)
    args.dtype = resolve_dtype(args.dtype, args.device)   # "auto" -> the dtype actually measured (in meta)
    return args


def bench(args) -> dict:
    """Run the whole benchmark; returns the results dict (the JSON)."""
    from . import api
    configs = build_configs(args)
    target_name = api.resolve_target(_check_ref(args.target, "target"))
    samples = load_suite(args)
    results = {"schema": SCHEMA, "meta": {}, "suite": {}, "configs": []}
    lookup_cache: dict = {}
    t_start = time.perf_counter()
    for k, cfg in enumerate(configs):
        pair = api.load_pair(args.target, cfg.drafter, dtype=args.dtype, mode=args.drafter_mode,
                             device=args.device, kernels=args.kernels)
        _log(args, f"[{k + 1}/{len(configs)}] {cfg.id}: {len(samples)} samples x {args.repeats} "
                   f"(AR + spec interleaved)")
        records = run_config(pair, cfg, samples, args, lookup_cache)
        res = summarize(cfg, records)
        res["drafter_label"] = cfg.drafter_label
        res["drafter_name"] = getattr(pair.drafter, "name", cfg.drafter)
        for r in records:
            if r["exact"] is False:
                a, sp = next((a, sp) for a, sp in zip(r["ar"], r["spec"]) if a["tokens"] != sp["tokens"])
                res["divergences"].append(_divergence(pair, r["sample"], a["tokens"], sp["tokens"]))
        results["configs"].append(res)
        m = res["groups"].get("all") or next(iter(res["groups"].values()))
        _log(args, f"    tau {m['tau']}  speedup {m['speedup']}  ideal {m['ideal_speedup']}  "
                   f"exact {m['exact']['matched'] if m['exact'] else 'n/a'}"
                   f"{'/' + str(m['exact']['n']) if m['exact'] else ''}")
    tgt = api.load_target(args.target, args.dtype, device=args.device, kernels=args.kernels)
    from .kernels import describe
    results["meta"] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "target": target_name,
        "target_family": tgt.family, "dtype": args.dtype, "device": args.device, "baseline_dtype": args.baseline_dtype, "suite": args.suite, "n_samples": len(samples),
        "max_new_tokens": args.max_new_tokens, "repeats": args.repeats, "warmup": args.warmup,
        "seed": args.seed, "quick": args.quick, "hf": args.hf, "detail": args.detail,
        "prompt_lookup_tokens": args.prompt_lookup_tokens, "seconds": round(time.perf_counter() - t_start, 2),
        "env": _env(),
        "kernels": {"target": describe(tgt.kernels), "target_paths": tgt.kernels.get("paths"),
                    "hf_baselines": args.hf_kernels},
        "columns": {"tau": "tokens per target forward (incl. bonus)",
                    "accepted_per_step": "accepted draft tokens per step (excl. bonus)",
                    "speedup": "total AR wall / total speculative wall (same samples, interleaved)",
                    "ideal_speedup": "tau * AR step cost / speculative step cost (measured step times)"},
    }
    results["suite"] = {"name": args.suite, "n": len(samples),
                        "groups": {g: sum(1 for s in samples if s.group == g) for g in groups_of(samples)
                                   if g != "all"},
                        "samples": [s.describe() for s in samples]}
    return results


def profile(args) -> list[dict]:
    from . import api
    configs = build_configs(args)
    api.resolve_target(_check_ref(args.target, "target"))
    samples = load_suite(args)
    out = []
    for cfg in configs:
        pair = api.load_pair(args.target, cfg.drafter, dtype=args.dtype, mode=args.drafter_mode,
                             device=args.device, kernels=args.kernels)
        p = profile_config(pair, cfg, samples[0], args)
        print_profile(p)
        out.append(p)
    return out


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:300]


def main(argv=None) -> int:
    from .adapters import InputError, ModelLoadError
    try:
        args = parse_args(argv)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _main(args)
    except (BenchError, InputError, ModelLoadError, ValueError, OSError) as e:
        print(f"error: {_first_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _main(args) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import transformers
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:
        pass
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    else:
        from .api import threads_from_env
        threads_from_env()
    if args.profile:
        prof = profile(args)
        if args.out:
            _write(args.out, json.dumps({"schema": SCHEMA + "+profile", "profiles": prof}, indent=1))
        return 0
    results = bench(args)
    print(markdown_table(results))
    if args.out:
        _write(args.out, json.dumps(results, indent=1))
        _log(args, f"wrote {args.out}")
    if args.html:
        write_html(results, args.html, args.plotlyjs)
        _log(args, f"wrote {args.html}")
    return 0


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise BenchError(f"cannot write {path}: {e.strerror}") from None


if __name__ == "__main__":
    sys.exit(main())
