"""docs/prompts-and-answers.md's example runs as written and prints the tokens it shows."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "prompts-and-answers.md"


def test_the_prompts_page_example_runs_and_prints_what_it_shows():
    code = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S).group(1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(DOC), "exec"), {})  # noqa: S102 - our own docs
    shown = [ast.literal_eval(line[2:]) for line in code.splitlines() if line.startswith("# [")]
    lines = printed.getvalue().splitlines()
    assert ast.literal_eval(lines[0]) == shown[0]
    assert lines[1] == "(2, 2)"
