"""docs/statistics.md's example for two-sided changes and recovery upper bounds runs and prints what it says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "statistics.md"


def test_the_two_sided_change_example_prints_its_comments():
    section = DOC.read_text(encoding="utf-8").split("## Two-sided changes and upper bounds on recovery", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(DOC), "exec"), {})  # noqa: S102 - our own docs
    assert printed.getvalue().split() == ["HOLDS", "HOLDS"]
