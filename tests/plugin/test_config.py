"""Settings and claim recording are scoped: ``use`` sets them for a block, ``mt.settings`` reads the current ones."""

from __future__ import annotations

import contextvars
import dataclasses

import numpy as np
import pytest

import mitest as mt
from mitest import config


def _holding_effect() -> mt.Effect:
    return mt.Effect.from_values(np.zeros(80), np.linspace(2.0, 3.0, 80))  # enough prompts at alpha 0.05 / 50


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.current().alpha = 0.01  # type: ignore[misc]


def test_use_makes_settings_current_inside_the_block_only():
    before = config.current()
    with config.use(settings=config.Settings(alpha=0.01, family_size=4, seed=7)) as inside:
        assert (mt.settings.alpha, mt.settings.family_size, mt.settings.seed) == (0.01, 4, 7)
        assert inside is config.current()
        assert config.claim_alpha() == pytest.approx(0.0025)
    assert config.current() is before


def test_assigning_a_field_of_mt_settings_lasts_until_the_enclosing_block_ends():
    with config.use(settings=config.Settings()):
        outer = config.current()
        mt.settings.family_size = 50
        assert config.current().family_size == 50 and outer.family_size == 1
        assert _holding_effect().expect_increase(at_least=1.0).alpha == pytest.approx(0.001)
    assert mt.settings.family_size == config.current().family_size == 1


def test_mt_settings_has_no_other_fields():
    with pytest.raises(AttributeError):
        mt.settings.alhpa = 0.01  # type: ignore[attr-defined]


def test_a_decided_claim_reaches_the_innermost_recorder_only():
    outer: list[str] = []
    inner: list[str] = []
    with config.use(recorder=lambda verdict, effect, per_prompt: outer.append(verdict.outcome)):
        with config.use(recorder=lambda verdict, effect, per_prompt: inner.append(verdict.outcome)):
            _holding_effect().expect_increase(at_least=1.0)
        _holding_effect().expect_increase(at_least=1.0)
    _holding_effect().expect_increase(at_least=1.0)
    assert (outer, inner) == (["HOLDS"], ["HOLDS"])
    assert config.current_recorder() is None


def test_settings_changed_in_another_context_are_not_seen_here():
    def elsewhere() -> float:
        mt.settings.alpha = 0.2
        return mt.settings.alpha

    alpha = mt.settings.alpha
    assert contextvars.copy_context().run(elsewhere) == 0.2
    assert mt.settings.alpha == alpha


def test_a_pytest_session_scopes_the_suite_settings_to_itself(pytester):
    pytester.makepyfile(
        """
        import mitest as mt

        def test_one(mi):
            assert (mt.settings.alpha, mt.settings.seed, mt.settings.family_size) == (0.01, 3, 2)

        def test_two(mi):
            assert mt.settings.alpha == mi.alpha == 0.01
        """
    )
    before = config.current()
    result = pytester.runpytest("--mitest-alpha=0.01", "--mitest-seed=3", "--mitest-report-dir=")
    result.assert_outcomes(passed=2)
    assert config.current() is before
