"""A real sweep through the plugin: its cells reach run.json, report.html, per_prompt.csv and summary.md."""

from __future__ import annotations

import json

import pandas as pd

SUITE = """
import pytest
import mitest as mt


@pytest.fixture(scope="module")
def heads():
    model, sets = mt.zoo.load("induction")
    return mt.sweep(model, sets["repeated"], mt.ablate(mt.heads("*")), mt.metrics.loss())


def test_top(mi, heads):
    heads.expect_top(["0.0"], direction="increase")


def test_only(mi, heads):
    heads.expect_only(["1.0", "1.1"], at_least=0.1, others_within=0.05, direction="increase")
"""


def test_a_sweep_claim_reaches_every_report(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_inner_sweep=SUITE)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1, failed=1)
    reports = pytester.path / "reports"
    run = json.loads((reports / "run.json").read_text())
    top, only = sorted(run["claims"], key=lambda claim: claim["test"], reverse=True)
    assert (top["outcome"], only["outcome"]) == ("HOLDS", "REFUTED")
    assert top["sweep"]["rows"] == "layer" and top["sweep"]["columns"] == "head"
    assert [cell["cell"] for cell in top["sweep"]["cells"] if cell["named"]] == ["0.0"]
    failing = {cell["cell"] for cell in only["sweep"]["cells"] if cell["failing"]}
    assert {"0.0", "1.1"} <= failing
    html = (reports / "report.html").read_text()
    assert html.count('<g class="cell') == 16 and html.count('<g class="cell named') == 3
    table = pd.read_csv(reports / "per_prompt.csv")
    assert len(table.dropna(subset=["cell"])) == 2 * 8 * top["n"]
    summary = (reports / "summary.md").read_text()
    assert summary.count("**Sweep**") == 2 and "| `0.0` | `blocks.0.attn.hook_z[0]` | other, **not shown" in summary
