"""A real faithfulness curve through the plugin: its points reach run.json and report.html, and the
second run finds its baselines unchanged. Runs in subprocesses: loading a model inside an in-process run
would leave transformers' lazily imported modules half-removed for the next run."""

from __future__ import annotations

import json

SUITE = """
import pytest
import mitest as mt


@pytest.fixture(scope="module")
def curve():
    model, sets = mt.zoo.load("induction")
    ranking = ["0.0", "1.0", "1.3", "1.2", "1.1", "0.1", "0.2", "0.3"]
    return mt.faithfulness_curve(model, sets["repeated"], ranking, mt.metrics.loss("second_half"),
                                 fractions=[k / 8 for k in range(1, 9)])


def test_top_five(mi, curve):
    curve.expect_recovers(at_fraction=0.625, at_least=0.95)


def test_area(mi, curve):
    curve.expect_auc(at_least=0.9)
"""


def test_a_curve_claim_reaches_the_reports_and_its_baseline(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_inner_curve=SUITE)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1, failed=1)
    run = json.loads((pytester.path / "reports" / "run.json").read_text())
    top, area = sorted(run["claims"], key=lambda claim: claim["test"], reverse=True)
    assert (top["outcome"], area["outcome"]) == ("HOLDS", "REFUTED")  # the area is 0.785
    assert [point["k"] for point in top["curve"]["points"]] == list(range(1, 9))
    assert top["curve"]["at_fraction"] == 0.625 and area["curve"]["at_fraction"] is None
    html = (pytester.path / "reports" / "report.html").read_text()
    assert html.count('<polyline class="curve"') == 2 and html.count('<polygon class="band"') == 2
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1, failed=1)
    again = json.loads((pytester.path / "reports" / "run.json").read_text())
    assert {claim["baseline"]["status"] for claim in again["claims"]} == {"same"}
