"""Prompts about installed packages' code (tools/train/code_prompts.py): deterministic, deduplicated,
a held-out split disjoint by package, no absolute paths, within the character budget, and the
files and functions it must skip."""

import json
import sysconfig
import textwrap

import pytest

from tools.train import code_prompts as cp


@pytest.fixture(scope="module")
def packages():
    return cp.package_files()


def test_real_packages_deterministic_split_and_budget(packages, tmp_path):
    out = tmp_path / "p.jsonl"
    assert cp.main(["--out", str(out), "--n", "60", "--heldout", "20", "--seed", "3", "--max-chars", "700"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    held = [json.loads(x) for x in (tmp_path / "p.heldout.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and len(held) == 20
    again, held_again = cp.build(60, seed=3, heldout=20, max_chars=700, packages=packages)
    assert again == rows and held_again == held  # deterministic for a seed
    other, _ = cp.build(60, seed=4, heldout=20, max_chars=700, packages=packages)
    assert other != rows
    both = rows + held
    assert len({r["prompt"] for r in both}) == len(both) and len({r["source"] for r in both}) == len(both)
    assert not {cp.package_of(r["source"]) for r in rows} & {cp.package_of(r["source"]) for r in held}
    roots = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"]]
    for r in both:
        assert set(r) == {"image", "prompt", "source"} and r["image"] is None
        assert len(r["prompt"]) <= 700
        assert not r["source"].startswith("/") and ".py:" in r["source"]
        assert not any(root in json.dumps(r) for root in roots)
    kinds = {r["prompt"].split()[0] for r in rows}
    assert len(kinds) >= 5  # several kinds of prompt


def test_a_second_seed_keeps_off_the_first_seeds_functions_and_held_out_packages(packages, tmp_path):
    """--not-sources / --not-packages: another seed's prompts about new functions only, none from
    the packages of an earlier held-out set (red with either filter dropped)."""
    plain, _ = cp.build(300, seed=1, packages=packages)
    first, first_held = tmp_path / "a.jsonl", tmp_path / "a.heldout.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in plain[:50]))  # functions prompted before
    first_held.write_text(json.dumps(plain[-1]) + "\n")  # a package held out before
    held = cp.package_of(plain[-1]["source"])
    second = tmp_path / "b.jsonl"
    args = ["--out", str(second), "--n", "300", "--seed", "1", "--not-sources", str(first), "--not-packages", str(first_held)]
    assert cp.main(args) == 0
    rows = [json.loads(x) for x in second.read_text().splitlines()]
    seen = {r["source"] for r in plain[:50]}
    assert rows == [r for r in plain if r["source"] not in seen and cp.package_of(r["source"]) != held]
    assert len(rows) < len(plain) - 50


@pytest.mark.parametrize("content", [None, "not json\n", '{"prompt": "no source"}\n'])
def test_an_unreadable_file_to_keep_off_is_a_usage_error(tmp_path, capsys, content):
    bad = tmp_path / "bad.jsonl"
    if content is not None:
        bad.write_text(content)
    with pytest.raises(SystemExit) as e:
        cp.main(["--out", str(tmp_path / "b.jsonl"), "--n", "5", "--not-sources", str(bad)])
    assert e.value.code == 2 and "not a readable prompt file" in capsys.readouterr().err
    assert not (tmp_path / "b.jsonl").exists()


def _fn(name, body_lines, doc=None):
    body = "".join(f"    x{i} = {i} * 2\n" for i in range(body_lines))
    d = f'    """{doc}"""\n' if doc else ""
    return f"def {name}(a, b=1):\n{d}{body}    return a + b\n\n\n"


def test_skips_tiny_huge_non_utf8_and_duplicates(tmp_path):
    good = _fn("good", 6, "Add two numbers and keep some scratch values around for later.")
    (tmp_path / "m.py").write_text(good + _fn("tiny", 1) + _fn("huge", 200) + _fn("test_thing", 8))
    (tmp_path / "copy.py").write_text(good.replace("good", "renamed"))  # same code up to names
    (tmp_path / "latin.py").write_bytes(_fn("latin", 6).encode() + "# caf\xe9\n".encode("latin-1"))
    (tmp_path / "gen.py").write_text("# THIS FILE IS AUTO-GENERATED\n" + _fn("gen", 6))
    (tmp_path / "bad.py").write_text("def broken(:\n")
    pk = {"pkg": [(tmp_path / n, f"pkg/{n}") for n in ("bad.py", "copy.py", "gen.py", "latin.py", "m.py")]}
    rows, held = cp.build(50, seed=0, packages=pk, per_file=5)
    assert held == []
    assert len(rows) == 1 and rows[0]["source"] in ("pkg/pkg/m.py:good", "pkg/pkg/copy.py:renamed")


def test_docstring_prompt_hides_the_docstring_and_trims_long_code(tmp_path):
    doc = "Compute the thing from a and b. " * 3
    code = textwrap.dedent(_fn("fn", 40, doc))
    (tmp_path / "m.py").write_text(code)
    pk = {"pkg": [(tmp_path / "m.py", "pkg/m.py")]}
    seen = set()
    for seed in range(40):
        rows, _ = cp.build(1, seed=seed, packages=pk, max_chars=500)
        p = rows[0]["prompt"]
        assert len(p) <= 500
        if "```python" in p:
            assert p.rstrip("`\n").endswith("# ...")  # cut at a line, marked
        if p.startswith(("Add a docstring", "Write a concise docstring", "Document this")):
            assert "Compute the thing" not in p
        if p.startswith(("Write a Python function", "Implement", "I need", "Write `")):
            assert "`fn(a, b=1)`" in p and "Compute the thing from a and b." in p
        seen.add(p.split()[0])
    assert len(seen) >= 5


def test_reference_answers_are_the_files_own_code(packages, tmp_path):
    """``--answers reference``: only "write" and "add a docstring" prompts, each with the function's
    code as the file has it (docstring included) as its answer (the default rows have none: the
    first test); the held-out packages of the default split stay out of the training rows. Red if a
    "docstring" answer were the code shown (docstring removed)."""
    out = tmp_path / "r.jsonl"
    assert cp.main(["--out", str(out), "--n", "40", "--heldout", "20", "--seed", "3", "--answers", "reference"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 40
    kinds = set()
    for r in rows:
        assert set(r) == {"image", "prompt", "source", "answer"}
        assert r["answer"].startswith("```python\n") and r["answer"].endswith("\n```")
        code = r["answer"][len("```python\n") : -len("\n```")]
        name = r["source"].rsplit(":", 1)[1].rsplit(".", 1)[-1]
        assert f"def {name}(" in code
        if "```python" in r["prompt"]:  # add a docstring: the code shown lacks it, the answer has it
            kinds.add("docstring")
            shown = r["prompt"].split("```python\n", 1)[1].rsplit("\n```", 1)[0]
            assert shown != code and ('"""' in code or "'''" in code)
            assert [x for x in code.splitlines() if x.strip()][-1] == [x for x in shown.splitlines() if x.strip()][-1]
        else:
            kinds.add("write")
            assert r["prompt"].split("`")[1].split("(")[0] == name
    assert kinds == {"docstring", "write"}
    _, held = cp.build(60, seed=3, heldout=20, packages=packages)
    assert not {cp.package_of(r["source"]) for r in rows} & {cp.package_of(r["source"]) for r in held}
