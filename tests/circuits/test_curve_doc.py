"""docs/circuits.md's faithfulness-curve example runs as written and prints the numbers it shows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mitest import config

DOC = Path(__file__).resolve().parents[2] / "docs" / "circuits.md"


def test_the_faithfulness_curve_example_runs_and_prints_its_table_and_area():
    section = DOC.read_text(encoding="utf-8").split("## Faithfulness curves", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    with config.use(settings=config.Settings()):  # the page's numbers: alpha 0.05, one claim at a time
        exec(compile(code, str(DOC), "exec"), scope)  # noqa: S102 - our own docs
        frame = scope["curve"].frame().drop(columns="components").round(3)
        auc = scope["curve"].auc
    shown = [line[2:].split() for line in code.splitlines() if re.match(r"#\s+\d", line)]
    assert np.allclose(np.array(shown, dtype=float), frame.to_numpy(dtype=float), rtol=0, atol=0.0011)
    printed = re.search(r"# AUC (\S+) \[(\S+), (\S+)\]", code).groups()
    assert np.allclose([float(v) for v in printed], [auc.estimate, auc.low, auc.high], rtol=0, atol=0.0011)
