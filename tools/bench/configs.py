"""The configurations a benchmark measures: drafter x strategy x temperature, from the flags."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from core.paths import SHIPPED_DRAFTERS
from core.cli.shape import spec_from_flags
from core.drafters import DraftSpec, parse_drafter
from core.sampling import SamplingConfig
from .errors import BenchError

STRATEGIES = ("auto", "chain", "tree", "dynamic")


@dataclass
class Config:
    drafter: str
    strategy: str
    spec: DraftSpec
    temperature: float

    @property
    def drafter_label(self) -> str:
        name = self.drafter
        if os.sep in name or name.startswith("."):
            return os.path.basename(name.rstrip(os.sep)) or name
        return name

    @property
    def strategy_label(self) -> str:
        spec = self.spec
        prune = f",p>={spec.min_prob:g}" if spec.min_prob > 0 else ""
        if spec.adaptive:
            return f"auto(cap={spec.gamma}{prune})"
        if self.strategy == "chain":
            return f"chain(g={spec.gamma}{prune})"
        if self.strategy == "tree":
            return "tree(" + "-".join(str(b) for b in spec.branching) + prune + ")"
        return f"dynamic(d={spec.depth},k={spec.top_k},n={spec.budget}{prune})"

    @property
    def id(self) -> str:
        return f"{self.drafter_label} {self.strategy_label} T={self.temperature:g}"

    def sampling(self, seed: int) -> SamplingConfig:
        """The sampling settings of one run of this configuration."""
        return SamplingConfig(temperature=self.temperature, seed=seed)


def _csv(text: str, what: str) -> list[str]:
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    if not items:
        raise BenchError(f"{what} is empty")
    return items


def check_ref(name: str, what: str) -> str:
    """A model given as a local path must exist (otherwise transformers would try the Hub); a
    drafter name is read by core's one parser (a shipped drafter not trained yet fails later,
    with its own message)."""
    ref = name
    if what == "drafter":
        d = parse_drafter(name)
        ref = d.ref if d is not None and d.kind in ("eagle3", "msd", "model") and not d.shipped else ""
    if ref.startswith(("/", "./", "../", "~")) and not os.path.exists(os.path.expanduser(ref)):
        raise BenchError(f"{what} not found: {ref}")
    return name


def default_drafters() -> list[str]:
    return [k for k, path in SHIPPED_DRAFTERS.items() if path.exists()] + ["ngram", "layerskip"]


def build_configs(args) -> list[Config]:
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
    for d in drafters:
        if parse_drafter(d) is None:
            raise BenchError("--drafters lists drafters; the AR baseline is always run")
        check_ref(d, "drafter")
    configs = []
    for d in drafters:
        strats = strategies
        if args.quick:  # one strategy per drafter
            strats = [strategies[0]] if args.strategies else ["auto"]
        for s in strats:
            try:
                spec = spec_from_flags(args, s)
            except ValueError as e:
                raise BenchError(str(e)) from None
            for t in temps:
                configs.append(Config(d, s, spec, t))
    return configs
