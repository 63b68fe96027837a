"""The bundled suite (the README's main command) and its release-gate walkthrough, run as a user would.

Both runs use the ci profile (baselines read-only) and write their reports to a temporary folder,
so the repository's baselines and reports are never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Claims about the induction circuit: each must fail as a regression on the pre-circuit checkpoint.
CIRCUIT_TESTS = {
    "hypotheses/test_induction_necessity.py::test_the_model_reads_the_first_copy",
    "hypotheses/test_induction_necessity.py::test_induction_heads_are_necessary",
    "hypotheses/test_induction_necessity.py::test_each_induction_head_contributes",
    "hypotheses/test_induction_necessity.py::test_previous_token_head_is_necessary",
    "hypotheses/test_induction_composition.py::test_previous_token_head_is_needed_at_the_keys",
    "hypotheses/test_induction_composition.py::test_previous_token_head_is_irrelevant_at_the_queries",
    "hypotheses/test_induction_sufficiency.py::test_induction_heads_recover_the_answer",
    "hypotheses/test_induction_sufficiency.py::test_the_strongest_induction_head_alone_recovers_a_share",
    "hypotheses/test_induction_circuit.py::test_the_induction_circuit_explains_the_repeat_loss",
    "hypotheses/test_induction_circuit.py::test_the_previous_token_head_reaches_the_answer_through_the_keys",
    "hypotheses/test_induction_circuit.py::test_the_previous_token_head_is_not_read_at_the_queries",
    "hypotheses/test_prompt_families.py::test_the_model_completes_every_repeat",
    "hypotheses/test_prompt_families.py::test_ablating_the_induction_heads_lowers_every_answer",
    "hypotheses/test_prompt_families.py::test_induction_heads_are_necessary_across_the_family",
}


def _run_suite(report_dir: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    command = [sys.executable, "-m", "pytest", "hypotheses", "-p", "no:cacheprovider", "-q", "-rfx"]
    command += ["--mitest-report-dir", str(report_dir), *args]
    env = {**os.environ, "CI": "true"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    return result, json.loads((report_dir / "run.json").read_text())


def test_the_bundled_suite_passes_against_its_committed_baselines(tmp_path):
    result, run = _run_suite(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert run["summary"]["regressions"] == 0 and run["summary"]["refuted"] == 2  # the deliberately false ones
    assert {claim["baseline"]["status"] for claim in run["claims"]} <= {"same", "ok"}
    assert "2 xfailed" in result.stdout


def test_the_release_gate_walkthrough_fails_every_circuit_claim(tmp_path):
    result, run = _run_suite(tmp_path, "--model", "induction-early")
    assert result.returncode == 1
    failed = {line.split(" ")[1] for line in result.stdout.splitlines() if line.startswith("FAILED ")}
    assert failed == CIRCUIT_TESTS
    assert result.stdout.count("BASELINE REGRESSION") >= len(CIRCUIT_TESTS)
    regressed = {claim["test"] for claim in run["claims"] if claim["baseline"]["status"] == "regressed"}
    regressed |= {claim["test"] for claim in run["undecided"]}  # e.g. recovery with no gap left to recover
    assert regressed == CIRCUIT_TESTS
    assert "XFAIL" in result.stdout  # the deliberately false claim is still refuted


def test_the_readme_tour_runs_as_written(pytester, monkeypatch):
    """The README's 'claim in 20 lines', saved as test_my_claims.py and run with pytest, passes."""
    monkeypatch.delenv("CI", raising=False)  # a newcomer's first run writes its baselines
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme.split("## A claim in 20 lines", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert len(tour.strip().splitlines()) <= 25
    pytester.makepyfile(test_my_claims=tour)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_my_claims.py")
    result.assert_outcomes(passed=2)
    assert (pytester.path / "baselines" / "test_my_claims.json").is_file()
    assert (pytester.path / "reports" / "summary.md").is_file()


def test_the_readme_circuit_claim_holds_with_the_quoted_numbers():
    """The README's scrubbing snippet runs as written and its quoted recovery and interval are current."""
    import mitest as mt

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Circuit claims", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    model, prompts = mt.zoo.load("induction")
    scope = {
        "mt": mt,
        "mi": mt,
        "model": model,
        "prompts": prompts,
        "INDUCTION_HEADS": mt.heads("1.0", "1.1", "1.2", "1.3"),
    }
    exec(compile(snippet, "README.md", "exec"), scope)  # noqa: S102 - our own README
    verdict = scope["effect"].expect_recovery(at_least=0.9, alpha=0.05 / 33)  # the bundled suite: 33 claims
    quoted = snippet.split("# HOLDS: recovers ", 1)[1].split("\n", 1)[0]
    assert quoted == (f"{verdict.estimate:.3f}, {verdict.level * 100:.1f}% CI [{verdict.low:.3f}, {verdict.high:.3f}]")
