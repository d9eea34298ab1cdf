"""Every `# noqa` in the project names its rule and says why (ruff itself runs in scripts/test.sh)."""

from __future__ import annotations

import io
import re
import tokenize

from core.paths import ROOT

NOQA = re.compile(r"#\s*noqa\b(?P<rest>.*)$")
WITH_REASON = re.compile(r"^:\s*[A-Z]+[0-9]+(,\s*[A-Z]+[0-9]+)*\s+\S")


def bare_noqas(text: str) -> list[int]:
    """Line numbers of `# noqa` markers without a rule code and a reason after it."""
    bad = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        m = NOQA.search(tok.string) if tok.type == tokenize.COMMENT else None
        if m and not WITH_REASON.match(m.group("rest")):
            bad.append(tok.start[0])
    return bad


def test_the_rule_catches_a_bare_marker():
    assert bare_noqas("x = 1  # noqa\ny = 2  # noqa: E731\nz = 3  # noqa: E402  after the skip check\n") == [1, 2]


def test_every_noqa_says_why():
    skip = {".venv", "runs", "assets", ".git"}
    found = {}
    for path in ROOT.rglob("*.py"):
        if skip & set(path.relative_to(ROOT).parts):
            continue
        if lines := bare_noqas(path.read_text()):
            found[str(path.relative_to(ROOT))] = lines
    assert not found, f"`# noqa` without a reason: {found}"
