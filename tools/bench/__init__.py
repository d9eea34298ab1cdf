"""Benchmark: speculative vs autoregressive decoding of the same target, plus transformers' own
baselines, over a suite of inputs.

    python -m tools.bench --quick                                   # default pair, < 1 minute
    python -m tools.bench --suite scenes --n 40 --drafters msd,ngram --strategies chain,dynamic \\
        --temperatures 0,1 --out results.json --html report.html
    python -m tools.bench --suite folder --images DIR --prompts FILE.jsonl --target DIR --drafters DIR
    python -m tools.bench --suite text --prompts FILE.jsonl
    python -m tools.bench --profile --drafters layerskip --strategies dynamic   # where a step's time goes

For every configuration (drafter x strategy x temperature) the AR and the speculative run of each
sample are INTERLEAVED (AR, spec, AR, spec, ...) after warm-up, so machine drift hits both alike.
See docs/benchmark.md for the columns, the JSON schema and how the "ideal" bound is computed.

One idea per module: ``suites`` (the inputs), ``configs`` (drafter x strategy x temperature),
``measure`` (running a configuration through core/api.py), ``hf`` (transformers' baselines),
``aggregate`` (runs -> metrics), ``report`` (markdown / HTML), ``profiling`` (``--profile``),
``cli`` (flags, the whole run, the output files).
"""

from __future__ import annotations

from .aggregate import aggregate, aggregate_hf, aggregate_visual, pool_visual, summarize
from .cli import QUICK, SCHEMA, bench, main, parse_args, parser
from .configs import STRATEGIES, Config, build_configs, default_drafters
from .errors import BenchError
from .hf import HFRunner, assistant_for, hf_generate
from .measure import divergence, run_config, run_record, visual_counts, visual_meta
from .profiling import PhaseTimes, print_profile, profile, profile_config
from .report import COLUMNS, VISUAL_TITLE, cpu_info, environment, markdown_table, table_rows, visual_section, write_html
from .suites import (
    BUILTIN_TEXT_PROMPTS,
    DESCRIPTION_TASKS,
    GROUNDED_TASKS,
    Sample,
    folder_samples,
    groups_of,
    load_suite,
    scene_samples,
    text_samples,
)

__all__ = [
    "BUILTIN_TEXT_PROMPTS",
    "COLUMNS",
    "DESCRIPTION_TASKS",
    "GROUNDED_TASKS",
    "QUICK",
    "SCHEMA",
    "STRATEGIES",
    "BenchError",
    "Config",
    "HFRunner",
    "PhaseTimes",
    "Sample",
    "aggregate",
    "aggregate_hf",
    "assistant_for",
    "bench",
    "build_configs",
    "cpu_info",
    "default_drafters",
    "divergence",
    "environment",
    "folder_samples",
    "groups_of",
    "hf_generate",
    "load_suite",
    "main",
    "markdown_table",
    "parse_args",
    "parser",
    "print_profile",
    "profile",
    "profile_config",
    "run_config",
    "run_record",
    "scene_samples",
    "summarize",
    "table_rows",
    "text_samples",
    "write_html",
    "VISUAL_TITLE",
    "aggregate_visual",
    "pool_visual",
    "visual_counts",
    "visual_meta",
    "visual_section",
]
