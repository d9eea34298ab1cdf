"""The CLI contract: JSON output shape, compare, and one-line errors for user mistakes."""

import json
import os
import subprocess
import sys

import pytest

from core.trace import SCHEMA
from tools.tiny import tiny_image, tiny_model_dir

pytestmark = pytest.mark.slow  # a minute or more: scheduled first (tests/conftest.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, timeout=120):
    """A real ``python -m core`` process (exit status, stdout and stderr as a shell sees them)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", SPECSCOPE_THREADS="1")
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def main_here(capsys, *args) -> subprocess.CompletedProcess:
    """``core.cli.main`` (what ``python -m core`` calls) in this process, read as ``cli`` reads a
    process: a new process costs CI about ten seconds of imports (the tests above keep the real one)."""
    from core.cli import main

    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["python", "-m", "core", *args], rc, out, err)


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("img") / "x.png"
    tiny_image().save(p)
    return str(p)


def test_run_json(image_path):
    r = cli("run", "--target", tiny_model_dir("llava"), "--image", image_path, "--prompt", "hi", "--max-new-tokens", "8", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= {"text", "token_ids", "summary"}
    assert len(out["token_ids"]) == out["summary"]["new_tokens"] == 8
    assert out["summary"]["target_forwards"] == 8 and out["summary"]["tau"] == 1.0
    assert {"wall_s", "tokens_per_s"} <= set(out["summary"])


def test_compare_json_text_only(tmp_path, capsys):
    trace = tmp_path / "t.json"
    r = main_here(
        capsys,
        "compare",
        "--target",
        tiny_model_dir("llama"),
        "--drafter",
        "layerskip:1",
        "--strategy",
        "dynamic",
        "--prompt",
        "hello hello",
        "--max-new-tokens",
        "12",
        "--json",
        "--trace",
        str(trace),
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["identical"] is True and out["ar"]["token_ids"] == out["spec"]["token_ids"]
    assert out["speedup"] > 0 and out["spec"]["summary"]["tau"] >= 1.0
    saved = json.loads(trace.read_text())
    assert saved["schema"] == SCHEMA and saved["output"] == out["spec"]["token_ids"]


def test_separate_drafter_model(image_path, capsys):
    r = main_here(
        capsys,
        "compare",
        "--target",
        tiny_model_dir("qwen2_vl"),
        "--drafter",
        tiny_model_dir("qwen2_vl", num_layers=1, seed=1),
        "--strategy",
        "tree",
        "--image",
        image_path,
        "--prompt",
        "what is this",
        "--max-new-tokens",
        "10",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["identical"] is True


@pytest.fixture(scope="module")
def other_tokenizer_model(tmp_path_factory):
    """The tiny llama with a different (word-level) tokenizer of the same size."""
    import shutil

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    src = tiny_model_dir("llama")
    dst = tmp_path_factory.mktemp("other") / "m"
    shutil.copytree(src, dst)
    for f in dst.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            f.unlink()
    vocab = {f"w{i}": i for i in range(400)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="w2", unk_token="w0").save_pretrained(dst)
    return str(dst)


def one_line_error(r: subprocess.CompletedProcess, needle: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and needle in lines[-1].lower(), r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--target", "/no/such/dir"], "cannot load"),
        (["--target", "{llama}", "--temperature", "nan"], "temperature"),
        (["--target", "{llama}", "--drafter", "ngram", "--strategy", "tree", "--branching", "2,x"], "branching"),
        (["--target", "{llama}", "--drafter", "ngram", "--gamma", "0"], "gamma"),
        (["--target", "{llama}", "--max-new-tokens", "0"], "max_new_tokens"),
        (["--target", "{llama}", "--image", "/no/such.png"], "image"),
        (["--target", "{llama}", "--drafter", "nosuchmodule:Thing"], "cannot import"),
        (["--target", "{llama}", "--drafter", "{other}"], "different tokenizer"),
    ],
)
def test_user_errors_are_one_line(args, needle, other_tokenizer_model, capsys):
    """In this process (a process each would cost CI ten seconds of imports per case): the exit
    status and stderr a user sees."""
    args = [a.format(llama=tiny_model_dir("llama"), other=other_tokenizer_model) for a in args]
    one_line_error(main_here(capsys, "run", "--prompt", "hi", *args), needle)


def test_a_user_error_is_one_line_from_the_command_line_too():
    one_line_error(cli("run", "--prompt", "hi", "--target", tiny_model_dir("llama"), "--max-new-tokens", "0"), "max_new_tokens")


def test_trust_remote_code_refused_without_operator_opt_in():
    r = cli("run", "--target", tiny_model_dir("llama"), "--prompt", "hi", "--trust-remote-code")
    assert r.returncode == 2 and "trust_remote_code is disabled" in r.stderr


def test_visual_prints_per_token_classes_and_the_split(image_path, tmp_path, capsys):
    import re

    trace = tmp_path / "t.json"
    r = main_here(
        capsys,
        "visual",
        "--target",
        tiny_model_dir("llava"),
        "--drafter",
        tiny_model_dir("llava", num_layers=1, seed=1),
        "--strategy",
        "chain",
        "--image",
        image_path,
        "--prompt",
        "Describe the picture.",
        "--max-new-tokens",
        "10",
        "--trace",
        str(trace),
    )
    assert r.returncode == 0, r.stderr
    saved = json.loads(trace.read_text())
    vis = saved["visual"]
    assert len(vis["tokens"]) == len(saved["output"]) == 10 and saved["meta"]["image"] == image_path
    rows = [ln.split() for ln in r.stdout.splitlines() if re.match(r"^\s*\d+\s+'", ln)]
    assert len(rows) == 10
    for row, rec in zip(rows, vis["tokens"]):
        assert int(row[0]) == rec["index"] and float(row[-4]) == pytest.approx(rec["kl"], abs=1e-4)
        assert row[-3] == ("yes" if rec["changed"] else "no")
        assert row[-1] == ("image-dependent" if rec["image_dependent"] else "other")
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("image-dependent tokens:"))
    assert re.match(
        r"image-dependent tokens: (\d+%|n/a \(none drafted\)) of drafts accepted; "
        r"other tokens: (\d+%|n/a \(none drafted\))",
        line,
    ), line
    from core import visual
    from core.trace import Trace

    split = visual.split_acceptance(Trace.from_json(trace.read_text()))
    assert f"{split['image_dependent']['tried']} of {split['image_dependent']['positions']} image-dependent" in line
    r = main_here(capsys, "visual", "--target", tiny_model_dir("llava"), "--prompt", "hi")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: visual needs --image")


def test_the_draft_shape_flags_default_to_draftspec():
    """core/cli/shape.py: one definition of the shape flags, shared with the bench; defaults from DraftSpec."""
    from core.cli.parser import parser
    from core.cli.shape import spec_from_flags
    from core.drafters import DEFAULT_CHAIN, DEFAULT_DYNAMIC, DraftSpec
    from tools.bench.cli import parser as bench_parser

    args = parser().parse_args(["run", "--prompt", "x"])
    assert spec_from_flags(args, "chain") == DEFAULT_CHAIN and spec_from_flags(args, "dynamic") == DEFAULT_DYNAMIC
    assert spec_from_flags(args, "tree") == DraftSpec("tree")
    bench = bench_parser().parse_args([])
    for flag in ("gamma", "branching", "depth", "top_k", "budget", "min_prob"):
        assert getattr(bench, flag) == getattr(args, flag), flag


def test_the_drafter_probe_says_what_is_wrong_with_a_missing_drafter(tmp_path):
    from tools import drafter_probe

    with pytest.raises(SystemExit) as e:
        drafter_probe.main([str(tmp_path / "nowhere"), "eager", "--threads", "1"])
    assert str(e.value).startswith("drafter_probe: cannot load model config"), e.value
