"""mitest.errors owns every exception and warning; user mistakes raise mitest errors that keep their builtin."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import mitest as mt
from mitest import config, errors, plugin
from mitest.claims import stats
from mitest.plugin import candidates
from mitest.results import baseline, report
from mitest.spec import hypothesis

PACKAGE = Path(mt.__file__).parent


def _error_classes() -> list[type[BaseException]]:
    """Every exception and warning a user can meet (``ReadsDone`` is the engine's own signal, caught
    where it is raised)."""
    return [
        value
        for value in vars(errors).values()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
        and value is not errors.ReadsDone
    ]


def test_no_module_but_errors_defines_an_exception_or_warning_class():
    bases = {"Exception", "Warning", "UserWarning", "ValueError", "TypeError", "AssertionError", "RuntimeError"}
    bases |= {cls.__name__ for cls in _error_classes()}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                names = {base.id if isinstance(base, ast.Name) else getattr(base, "attr", "") for base in node.bases}
                if names & bases:
                    found.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    assert found == []


def test_every_warning_derives_from_mitest_warning():
    warnings = [cls for cls in _error_classes() if issubclass(cls, Warning)]
    assert {cls.__name__ for cls in warnings} >= {"NoOpInterventionWarning", "InconclusiveWarning", "ResampleWarning"}
    assert all(issubclass(cls, errors.MitestWarning) for cls in warnings)
    assert issubclass(errors.MitestWarning, UserWarning)


def test_every_exception_derives_from_mitest_error_or_claim_failure():
    exceptions = [cls for cls in _error_classes() if not issubclass(cls, Warning)]
    assert all(issubclass(cls, (errors.MitestError, errors.ClaimFailure)) for cls in exceptions)
    for cls in (errors.ClaimRefuted, errors.ClaimInconclusive, errors.BaselineRegression):
        assert issubclass(cls, errors.ClaimFailure) and issubclass(cls, AssertionError)


def test_the_old_import_locations_give_the_same_classes():
    assert plugin.BaselineRegression is mt.BaselineRegression is errors.BaselineRegression
    assert plugin.InconclusiveWarning is errors.InconclusiveWarning
    assert baseline.BaselineError is errors.BaselineError
    assert report.ReportError is errors.ReportError
    assert hypothesis.HypothesisError is mt.HypothesisError is errors.HypothesisError
    assert candidates.CandidateError is errors.CandidateError
    assert stats.ResampleWarning is errors.ResampleWarning


def test_every_error_and_warning_is_exported_as_mt_name():
    assert {cls.__name__ for cls in _error_classes()} - set(mt.__all__) == {"DuplicateKeyError"}


def test_a_refuted_claim_is_a_claim_failure_with_its_verdict():
    effect = mt.Effect.from_values([1.0, 1.1, 0.9, 1.0], [1.0, 1.1, 0.9, 1.0])
    with pytest.raises(errors.ClaimFailure) as caught:
        effect.expect_decrease(at_least=0.5)
    assert isinstance(caught.value, mt.ClaimRefuted | mt.ClaimInconclusive)
    assert caught.value.verdict.outcome in (mt.REFUTED, mt.INCONCLUSIVE)


def test_a_bad_claim_alpha_raises_a_settings_error_that_is_a_value_error():
    with pytest.raises(mt.SettingsError, match=r"alpha must be in \(0, 0.5\), got 0.7") as caught:
        config.claim_alpha(0.7)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, mt.MitestError)


def test_an_unknown_alternative_raises_a_stats_error_that_is_a_value_error():
    with pytest.raises(mt.StatsError, match="alternative must be 'greater' or 'less', got 'both'") as caught:
        stats.mean_test([1.0, 2.0, 3.0], alternative="both")
    assert isinstance(caught.value, ValueError)


def test_an_unknown_gate_raises_a_baseline_error_that_is_a_value_error():
    with pytest.raises(mt.BaselineError, match="gate must be one of evidence, prove, got 'strict'") as caught:
        baseline.compare(None, {}, margin=0.2, alpha=0.05, gate="strict")
    assert isinstance(caught.value, ValueError)


def test_wrapping_something_that_is_not_a_module_raises_a_model_error_that_is_a_type_error():
    with pytest.raises(mt.ModelError, match="Model wraps a torch nn.Module") as caught:
        mt.Model(object())
    assert isinstance(caught.value, TypeError)
