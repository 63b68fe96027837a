"""docs/sweeps.md's example runs as written and prints the heatmap it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

DOC = Path(__file__).resolve().parents[2] / "docs" / "sweeps.md"


def test_the_sweeps_page_example_runs_and_matches_its_printed_grid():
    text = DOC.read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)  # noqa: S102 - our own docs
    shown = [line[2:].split() for line in code.splitlines() if re.match(r"# \d ", line)]
    printed = pd.DataFrame([[float(v) for v in row[1:]] for row in shown])
    grid = scope["sweep"].grid().round(2).to_numpy()
    assert (abs(printed.to_numpy() - grid) <= 0.011).all()
