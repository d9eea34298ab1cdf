"""scripts/e3_data.sh keeps the EAGLE-3 training answers across machines: ~/.cache does not survive
a change of machine (the sixth, seventh and tenth sessions' answers were lost that way), so
``STAGES=keep`` copies them into the checkout and a fresh cache resumes from that copy."""

import gzip
import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "e3_data.sh"


def run(stages: str, cache: Path, keep: Path, py: str = "false", second_set: bool = True) -> subprocess.CompletedProcess:
    """The script on ``cache`` with ``PY=py`` (false: no Python stage may run; echo: print its
    commands), the first prompt set made already, the second too unless ``second_set`` is False."""
    cache.mkdir(exist_ok=True)
    (cache / "prompts.jsonl").write_text('{"prompt": "p"}\n')  # made already: no prompt generation
    if second_set:
        (cache / "prompts_s1.jsonl").write_text('{"prompt": "q"}\n')
    env = {**os.environ, "STAGES": stages, "R": str(cache), "KEEP": str(keep), "PY": py}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_answers_kept_in_the_checkout_seed_a_fresh_cache(tmp_path):
    answers = '{"prompt": "p", "answer": "a"}\n{"prompt": "q", "answer": "b"}\n'
    first, keep = tmp_path / "machine1", tmp_path / "checkout" / "answers.jsonl.gz"
    first.mkdir()
    (first / "train.jsonl").write_text(answers)
    r = run("keep", first, keep)
    assert r.returncode == 0, r.stderr
    assert gzip.decompress(keep.read_bytes()).decode() == answers and "kept 2 answers" in r.stdout
    fresh = tmp_path / "machine2"  # a new machine: an empty cache
    r = run("keep", fresh, keep)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout and (fresh / "train.jsonl").read_text() == answers


def test_a_cache_with_answers_is_not_overwritten_by_the_copy(tmp_path):
    keep = tmp_path / "answers.jsonl.gz"
    keep.write_bytes(gzip.compress(b'{"old": 1}\n'))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "train.jsonl").write_text('{"old": 1}\n{"new": 2}\n')
    r = run("keep", cache, keep)
    assert r.returncode == 0, r.stderr
    assert (cache / "train.jsonl").read_text().count("\n") == 2 and b"new" in gzip.decompress(keep.read_bytes())


def test_an_unknown_stage_is_refused(tmp_path):
    r = run("distil", tmp_path / "c", tmp_path / "k.gz")
    assert r.returncode == 2 and "unknown stage distil" in r.stderr


def test_the_distill_stage_takes_features_once_the_cache_exists(tmp_path):
    """Before the feature cache has its vocabulary (fixed from the first answers) the answers come
    alone; after, the distill stage writes their features into it as it decodes them."""
    cache = tmp_path / "cache"
    first = run("distill", cache, tmp_path / "k.gz", py="echo")
    assert first.returncode == 0, first.stderr
    assert "tools.train.distill" in first.stdout and "--features" not in first.stdout
    (cache / "feats").mkdir()
    (cache / "feats" / "vocab.json").write_text('{"draft_to_target": [0]}')
    later = run("distill", cache, tmp_path / "k.gz", py="echo")
    assert later.returncode == 0, later.stderr
    assert f"--features {cache / 'feats'}" in later.stdout


def test_the_second_prompt_set_keeps_off_the_first_and_is_distilled_after_it(tmp_path):
    """The seed-1 prompts are made from the first set's functions and held-out packages left out,
    and the distill stage answers both files, the first one first."""
    cache = tmp_path / "cache"
    r = run("distill", cache, tmp_path / "k.gz", py="echo", second_set=False)
    assert r.returncode == 0, r.stderr
    made = next(ln for ln in r.stdout.splitlines() if "prompts_s1.jsonl --n" in ln)
    assert f"--not-sources {cache / 'prompts.jsonl'}" in made and f"--not-packages {cache / 'prompts.heldout.jsonl'}" in made
    runs = [ln for ln in r.stdout.splitlines() if "tools.train.distill" in ln]
    assert [ln.split("--prompts ")[1].split()[0] for ln in runs] == [str(cache / "prompts.jsonl"), str(cache / "prompts_s1.jsonl")]
