"""docs/attribution.md's Edges example runs as written and prints what it shows."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import mitest as mt

DOC = Path(__file__).resolve().parents[2] / "docs" / "attribution.md"


def test_the_edges_example_runs_and_prints_what_it_shows():
    text = DOC.read_text(encoding="utf-8").split("\n## Edges\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    shown = "\n".join(line[2:] for line in code.splitlines() if line.startswith("# "))
    printed = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
        warnings.simplefilter("ignore", mt.NoOpInterventionWarning)  # heads 0.1-0.3 write nothing
        exec(compile(code, str(DOC), "exec"), {})  # noqa: S102 - our own docs
    lines = [line for line in printed.getvalue().splitlines() if line.strip() != "edge"]
    assert [line.split() for line in lines] == [line.split() for line in shown.splitlines()]
