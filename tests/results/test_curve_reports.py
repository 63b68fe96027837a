"""Faithfulness-curve claims in the reports: the curve with its band in report.html, the field as is in
run.json, and run_problem's check of it."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

import mitest as mt
from mitest.results.record import build_record, json_safe, run_problem
from mitest.results.report import build_run, write_reports
from mitest.results.report.curve import render_curve
from mitest.results.report.html import render_html

CLAIM_PROMPTS = 32


def curve_field(at_fraction: float | None = 0.25) -> dict:
    points = [
        {"fraction": p, "k": k, "estimate": e, "low": e - 0.05, "high": min(e + 0.05, 1.0)}
        for p, k, e in [(0.125, 1, 0.1), (0.25, 2, 0.4), (0.5, 4, 0.9), (1.0, 8, 1.0)]
    ]
    return {"points": points, "auc": {"estimate": 0.7, "low": 0.65, "high": 0.75}, "at_fraction": at_fraction}


def curve_run(curve: dict) -> dict:
    """A run read back from run.json with one ordinary claim and one faithfulness-curve claim."""
    clean = np.linspace(1.0, 2.0, CLAIM_PROMPTS)
    effect = mt.Effect.from_values(clean, clean - 0.5 - 0.1 * np.sin(clean))
    verdict = effect.expect_decrease(at_least=0.1)
    plain = build_record(verdict, effect, -effect.delta, test="t.py::test_plain", index=0, name=None, seed=0)
    curved = replace(verdict, claim="the top 0.25 recover at least 0.3", threshold=0.3, curve=curve)
    record = build_record(curved, effect, -effect.delta, test="t.py::test_curve", index=0, name=None, seed=0)
    run = build_run(
        [dict(plain, key="plain/0"), dict(record, key="curve/0")],
        alpha=0.05,
        correction="holm",
        seed=0,
        profile="default",
    )
    return json.loads(json.dumps(json_safe(run), allow_nan=False))


def test_records_of_other_claims_have_no_curve_field_and_curve_records_keep_it_as_is():
    run = curve_run(curve_field())
    assert "curve" not in run["claims"][0]
    assert run["claims"][1]["curve"] == curve_field()
    assert run_problem(run) is None


def test_the_report_draws_the_curve_with_its_band_threshold_and_claimed_point():
    document = render_html(curve_run(curve_field()))
    assert document.count('class="curve"') == 2  # the row and the polyline
    line = re.search(r'<polyline class="curve" points="([^"]+)"', document).group(1)
    band = re.search(r'<polygon class="band" points="([^"]+)"', document).group(1)
    assert len(line.split()) == 4 and len(band.split()) == 8  # high forwards, low backwards
    assert document.count('class="point"') == 4 and document.count('r="6.5"') == 1  # 0.25 is ringed
    assert "fraction 0.25, k=2: faithfulness 0.4, interval [0.35, 0.45]" in document
    assert 'stroke-dasharray="3,2"' in document.split('class="curve"')[1]  # the threshold 0.3
    assert "AUC 0.7 [0.65, 0.75]" in document
    assert "http" not in document.split("<body>")[1].replace("http-equiv", "")  # nothing fetched


def test_an_unbounded_interval_is_drawn_clipped():
    curve = curve_field(None)
    curve["points"][0].update(low="-inf", high="inf")
    svg = render_curve(curve)
    drawn = re.findall(r'(?:points|cx|cy|x|y|x1|x2|y1|y2)="([^"]*)"', svg)
    numbers = [float(v) for value in drawn for pair in value.split() for v in pair.split(",")]
    assert numbers and np.isfinite(numbers).all()
    assert "interval [-inf, inf]" in svg and 'r="6.5"' not in svg  # the tooltip says so; no point is claimed


def test_reports_write_and_run_json_reads_back(tmp_path):
    write_reports(curve_run(curve_field()), tmp_path)
    assert json.loads((tmp_path / "run.json").read_text())["claims"][1]["curve"] == curve_field()
    assert (tmp_path / "report.html").read_text().count('class="point"') == 4


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda c: c.update(points=c["points"][:1]), "claim 1: curve points is not a list of at least two points"),
        (lambda c: c["points"][1].pop("k"), "curve point 1 lacks 'k'"),
        (lambda c: c["points"][0].update(fraction="x"), "curve point 0: fraction is 'x', not a finite number"),
        (lambda c: c["points"].reverse(), "curve points are not in increasing fraction order"),
        (lambda c: c.update(at_fraction="half"), "curve at_fraction is 'half', not a finite number or null"),
        (lambda c: c.pop("auc"), "curve auc is a NoneType, not an object"),
        (lambda c: c["auc"].pop("low"), "curve auc lacks 'low'"),
    ],
)
def test_run_problem_names_a_malformed_curve_field(change, problem):
    run = curve_run(curve_field())
    change(run["claims"][1]["curve"])
    assert problem in (run_problem(run) or "")
