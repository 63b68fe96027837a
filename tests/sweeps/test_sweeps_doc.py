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


def test_the_readme_sweep_snippet_holds():
    import mitest as mt

    readme = (DOC.parents[1] / "README.md").read_text(encoding="utf-8")
    snippet = readme.split("## Sweeps", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    model, prompts = mt.zoo.load("induction")
    scope = {"mt": mt, "model": model, "prompts": prompts}
    exec(compile(snippet, "README.md", "exec"), scope)  # noqa: S102 - our own README
    verdict = scope["sweep"].expect_only(
        ["0.0", "1.0", "1.1", "1.2", "1.3"], 0.1, others_within=0.05, direction="increase"
    )
    assert verdict.outcome == mt.HOLDS
