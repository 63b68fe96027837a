"""The bundled suite (the README's main command) and its release-gate workflow, run as a user would.

Both runs use the ci profile (baselines read-only) and write their reports to a temporary folder,
so the repository's baselines and reports are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import mitest as mt

ROOT = Path(__file__).resolve().parents[1]

# Claims about the induction circuit: each must fail as a regression on the pre-circuit checkpoint.
# The two claims that head 0.0 is not read at the queries still hold there (nothing reads it), and
# equivalence claims that still hold pass the gate.
CIRCUIT_TESTS = {
    "hypotheses/test_induction_necessity.py::test_the_model_reads_the_first_copy",
    "hypotheses/test_induction_necessity.py::test_induction_heads_are_necessary",
    "hypotheses/test_induction_necessity.py::test_each_induction_head_contributes",
    "hypotheses/test_induction_necessity.py::test_previous_token_head_is_necessary",
    "hypotheses/test_induction_composition.py::test_previous_token_head_is_needed_at_the_keys",
    "hypotheses/test_induction_sufficiency.py::test_induction_heads_recover_the_answer",
    "hypotheses/test_induction_sufficiency.py::test_the_strongest_induction_head_alone_recovers_a_share",
    "hypotheses/test_induction_circuit.py::test_the_induction_circuit_explains_the_repeat_loss",
    "hypotheses/test_induction_circuit.py::test_the_previous_token_head_reaches_the_answer_through_the_keys",
    "hypotheses/test_induction_sweep.py::test_only_the_circuit_heads_matter",
    "hypotheses/test_prompt_families.py::test_the_model_completes_every_repeat",
    "hypotheses/test_prompt_families.py::test_ablating_the_induction_heads_lowers_every_answer",
    "hypotheses/test_prompt_families.py::test_induction_heads_are_necessary_across_the_family",
}


def _run_suite(report_dir: Path, *args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    command = [sys.executable, "-m", "pytest", "hypotheses", "-p", "no:cacheprovider", "-q", "-rfx"]
    command += ["--mitest-report-dir", str(report_dir), *args]
    env = {**(env or os.environ), "CI": "true"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    return result, json.loads((report_dir / "run.json").read_text())


def test_the_bundled_suite_passes_against_its_committed_baselines(tmp_path):
    result, run = _run_suite(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert run["summary"]["regressions"] == 0 and run["summary"]["refuted"] == 2  # the deliberately false ones
    assert {claim["baseline"]["status"] for claim in run["claims"]} <= {"same", "ok"}
    assert "2 xfailed" in result.stdout


@pytest.mark.slow
def test_the_committed_baselines_do_not_depend_on_the_machine_that_wrote_them(tmp_path):
    """Every weight perturbed by a relative 1e-6 (more than other CPU kernels change computed floats):
    no claim changes its identity or regresses, so the baselines hold on any machine."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "plugins"), os.environ.get("PYTHONPATH", "")]),
    }
    result, run = _run_suite(tmp_path, "-p", "perturbed_weights", env=env)
    assert result.returncode == 0, result.stdout[-3000:]
    statuses = {claim["baseline"]["status"] for claim in run["claims"]}
    assert statuses <= {"same", "ok"} and "ok" in statuses  # the perturbation reached the numbers
    moved = [claim["baseline"]["derived"] for claim in run["claims"] if claim["baseline"].get("derived")]
    assert moved and all(0.999999 < m["cosine"] <= 1 + 1e-12 for drift in moved for m in drift.values())


def test_the_ci_workflow_gates_a_candidate_checkpoint(tmp_path):
    """docs/ci-workflow.yml's command, run as written on a copy of the suite with the pre-circuit
    checkpoint as the candidate: every claim about the induction circuit fails as a regression."""
    workflow = yaml.safe_load((ROOT / "docs" / "ci-workflow.yml").read_text())
    steps = {step.get("name"): step for step in workflow["jobs"]["claims"]["steps"]}
    command = steps["Decide the claims"]["run"]
    for name in ("hypotheses", "conftest.py", "pyproject.toml"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, tmp_path / name)
    shutil.copytree(mt.zoo.path("induction-early"), tmp_path / "candidate")
    env = {**os.environ, "CI": "true", "CANDIDATE": str(tmp_path / "candidate")}
    result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 1, result.stdout[-3000:]
    run = json.loads((tmp_path / "reports" / "run.json").read_text())
    assert (
        run["models"]["induction"]["source"] == "--mitest-model" and run["models"]["induction"]["path"] == "candidate"
    )
    regressed = {claim["test"] for claim in run["claims"] if claim["baseline"]["status"] == "regressed"}
    regressed |= {claim["test"] for claim in run["undecided"]}  # e.g. recovery with no gap left to recover
    assert regressed == CIRCUIT_TESTS
    failed = {
        case.get("classname") + "::" + case.get("name") for case in _failed_cases(tmp_path / "reports" / "junit.xml")
    }
    assert {test.replace("/", ".").replace(".py::", "::") for test in CIRCUIT_TESTS} == failed
    assert {claim["baseline"]["status"] for claim in run["claims"]} <= {"same", "ok", "regressed"}


def _failed_cases(junit: Path) -> list:
    import xml.etree.ElementTree as ElementTree

    cases = ElementTree.parse(junit).getroot().iter("testcase")
    return [case for case in cases if case.find("failure") is not None]


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
    verdict = scope["effect"].expect_recovery(at_least=0.9, alpha=0.05 / 34)  # the bundled suite: 34 claims
    quoted = snippet.split("# HOLDS: recovers ", 1)[1].split("\n", 1)[0]
    assert quoted == (f"{verdict.estimate:.3f}, {verdict.level * 100:.1f}% CI [{verdict.low:.3f}, {verdict.high:.3f}]")
