"""A property claim searches the same prompts on every run of a suite (no CI profile, fresh runs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mitest as mt

PACKAGE_ROOT = str(Path(mt.__file__).resolve().parents[1])  # the subprocesses import this checkout's mitest

SUITE = """
import mitest as mt

def test_short_segments(mi):
    mt.expect_for_all(mt.zoo.induction.family(), lambda prompt: int(prompt.lengths[0]) < 27, examples=40)

def test_distinct_first_tokens(mi):
    mt.expect_for_all(mt.zoo.induction.family(), lambda prompt: int(prompt.ids[0, 1]) % 7 != 3, examples=40)
"""


def _claims(pytester, seed: int) -> list[tuple]:
    pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--mitest-seed={seed}")
    claims = json.loads((pytester.path / "reports" / "run.json").read_text())["claims"]
    return sorted((c["test"], c["outcome"], c["estimate"], c["n"], c["per_prompt"]["claim_value"]) for c in claims)


def test_two_fresh_runs_of_a_suite_search_the_same_prompts(pytester, monkeypatch):
    for name in ("CI", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")]))
    pytester.makepyfile(test_family=SUITE)
    first = _claims(pytester, 0)
    second = _claims(pytester, 0)  # the example database now holds the first run's counterexamples
    assert len(first) == 2 and first == second
    assert {outcome for _, outcome, *_ in first} == {"REFUTED"}
    other_seed = _claims(pytester, 1)
    assert [c[:2] for c in other_seed] == [c[:2] for c in first]
    assert other_seed != first  # the seed is the suite's: another seed searches other prompts
