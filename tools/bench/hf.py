"""transformers' own baselines next to our engine: plain ``generate``,
``generate(assistant_model=<the drafter's model>)`` and ``generate(prompt_lookup_num_tokens=...)``,
on the same encoded inputs."""

from __future__ import annotations

import contextlib
import time

import torch

from core.drafters import assistant_model
from core.errors import first_line
from core.kernels import stock
from .configs import Config
from .suites import Sample


def hf_generate(target, smp: Sample, temperature: float, max_new_tokens: int, seed: int, **extra):
    """transformers' ``generate`` on the same encoded inputs; the wall time includes encoding the
    prompt and image, as our engine's does."""
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
    inputs = target.generate_inputs(target.encode(smp.prompt, smp.image))
    with torch.inference_mode():
        out = target.model.generate(**inputs, **gen, **extra)
    wall = time.perf_counter() - t0
    n = int(inputs["input_ids"].shape[1])
    return out[0, n:].tolist(), wall


def assistant_for(pair) -> tuple[object, str | None]:
    """The drafter's transformers model for ``generate(assistant_model=...)`` (what its
    ``assistant_model()`` declares), or None and the reason why not."""
    model = assistant_model(pair.drafter)
    if model is None:
        name = getattr(pair.drafter, "name", pair.drafter)
        return None, f"{name} is not a standalone transformers model (its assistant_model() is None)"
    if model is pair.target.model:
        return None, "the drafter is the target itself"
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
        try:
            with contextlib.ExitStack() as models:
                if self.args.hf_kernels == "stock":  # transformers as its users run it
                    models.enter_context(stock(self.pair.target.model))
                    if self.assistant is not None:
                        models.enter_context(stock(self.assistant))
                toks, wall = hf_generate(self.pair.target, smp, self.cfg.temperature, self.args.max_new_tokens, seed, **extra)
        except Exception as e:
            if rec is not None:
                rec["errors"].setdefault(kind, f"{type(e).__name__}: {first_line(e)}")
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
