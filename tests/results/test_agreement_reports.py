"""Attribution-agreement claims in the reports: the checked units' estimates beside exact patching in
run.json, the scatter in report.html, and run_problem's check of the field."""

from __future__ import annotations

import json
import warnings

import pytest

import mitest as mt
from mitest.results.record import build_record, json_safe, run_problem
from mitest.results.report import build_run
from mitest.results.report.html import render_html
from mitest.zoo import planted


@pytest.fixture(scope="module")
def agreement_verdict():
    model, prompts = planted.saturated_attention()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mt.NoOpInterventionWarning)
        attribution = mt.attribute(
            model, prompts, mt.patch(mt.heads("*", kind="k")), mt.metrics.logit_diff, method="ig"
        )
        agreement = attribution.verify(top_k=1)
        verdict = agreement.expect_agrees(rank_correlation_at_least=0.8)
    return agreement, verdict


def _run(verdict: mt.Verdict) -> dict:
    effect = mt.Effect.from_values([1.0] * 40, [2.0] * 40)
    record = build_record(verdict, effect, effect.delta, test="t.py::test_atp", index=0, name=None, seed=0)
    run = build_run([dict(record, key="atp/0")], alpha=0.05, correction="holm", seed=0, profile="default")
    return json.loads(json.dumps(json_safe(run), allow_nan=False))


def test_the_verdict_carries_each_checked_units_estimate_and_exact_change(agreement_verdict):
    agreement, verdict = agreement_verdict
    field = verdict.agreement
    frame = agreement.frame()
    assert field["unit"] == "cell" and field["method"] == "ig"
    assert field["rank_correlation"] == pytest.approx(agreement.rank_correlation)
    assert [p["unit"] for p in field["points"]] == list(frame["cell"])
    assert [p["attribution"] for p in field["points"]] == pytest.approx(list(frame["attribution"]))
    assert [p["exact"] for p in field["points"]] == pytest.approx(list(frame["exact"]))
    assert sum(p["top"] for p in field["points"]) == 1


def test_the_report_draws_one_dot_per_checked_unit_with_the_top_ones_filled(agreement_verdict):
    agreement, verdict = agreement_verdict
    run = _run(verdict)
    assert run_problem(run) is None and run["claims"][0]["agreement"] == json_safe(verdict.agreement)
    document = render_html(run).split('<tr class="agreement">')[1]
    assert document.count("<circle") == len(agreement.names)
    assert document.count('fill="#0969da"') == 1  # the one top cell
    first = verdict.agreement["points"][0]
    assert f"cell {first['unit']}: attribution {first['attribution']:.4g}, exact {first['exact']:.4g}" in document


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda a: a.update(points=[]), "points is not a list of at least two points"),
        (lambda a: a["points"][1].update(top="yes"), "point 1"),
        (lambda a: a.update(rank_correlation=None), "rank_correlation"),
        (lambda a: a.update(method=3), "method"),
    ],
)
def test_a_malformed_agreement_field_is_a_run_problem_not_a_crash(agreement_verdict, change, problem):
    run = _run(agreement_verdict[1])
    change(run["claims"][0]["agreement"])
    assert problem in run_problem(run)
