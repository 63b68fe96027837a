"""The pytest plugin, exercised on real inner suites with pytester."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

SUITE = '''
import numpy as np
import pytest
import mitest as mt

SHIFT = float(open("shift.txt").read()) if __import__("os").path.exists("shift.txt") else 1.5


def effect(shift, noise=0.3, n=80):
    rng = np.random.default_rng(0)
    clean = rng.normal(3, 1, n)
    return mt.Effect.from_values(clean, clean + shift + noise * rng.normal(size=n), metric="logit_diff")


def test_holds(mi):
    """Ablation raises the metric by at least 1."""
    effect(SHIFT).expect_increase(at_least=1.0)


def test_refuted(mi):
    """A deliberately false claim."""
    effect(0.2).expect_increase(at_least=1.0)


def test_inconclusive(mi):
    effect(1.05, noise=1.0, n=12).expect_increase(at_least=1.0)


@pytest.mark.mitest(inconclusive="warn")
def test_inconclusive_warned(mi):
    effect(1.05, noise=1.0, n=12).expect_increase(at_least=1.0)
'''


@pytest.fixture
def suite(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)  # inner runs use the default profile unless a test sets CI
    pytester.makepyfile(test_inner_claims=SUITE)
    return pytester


def _run(pytester, *args):
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def test_verdicts_fail_the_right_items_with_readable_messages(suite):
    result = _run(suite, "--junitxml=junit.xml")
    result.assert_outcomes(passed=2, failed=2, warnings=1)
    result.stdout.fnmatch_lines(["*_ test_refuted _*", "*REFUTED: mean increase of at least 1*", "*mitest claims*"])
    # The traceback ends at the user's claim line; mitest's own frames are hidden.
    result.stdout.fnmatch_lines(["*effect(0.2).expect_increase(at_least=1.0)", "E *REFUTED*"])
    assert "def _conclude" not in result.stdout.str() and "mitest/claims.py" not in result.stdout.str()
    junit = (suite.path / "junit.xml").read_text()
    assert 'name="test_refuted"' in junit and "ClaimRefuted" in junit and "ClaimInconclusive" in junit


def test_inconclusive_policy_from_the_command_line(suite):
    _run(suite, "--mitest-inconclusive=xfail").assert_outcomes(passed=2, failed=1, xfailed=1, warnings=1)
    _run(suite, "--mitest-inconclusive=warn").assert_outcomes(passed=3, failed=1, warnings=2)


def test_reports_are_written_and_parse(suite):
    _run(suite)
    reports = suite.path / "reports"
    run = json.loads((reports / "run.json").read_text())
    assert run["schema"] == "mitest.run" and run["version"] == 2
    assert run["summary"] == {
        "claims": 4,
        "holds": 1,
        "refuted": 1,
        "inconclusive": 2,
        "undecided": 0,
        "regressions": 0,
        "stale": 0,
        "problems": 0,
    }
    claim = next(c for c in run["claims"] if c["test"].endswith("test_refuted"))
    for field in (
        "id",
        "estimate",
        "low",
        "high",
        "pvalue",
        "p_holm",
        "p_bh",
        "method",
        "n",
        "power",
        "mde",
        "worst",
        "identity",
        "baseline",
        "seconds",
    ):
        assert field in claim
    assert claim["alpha"] == pytest.approx(0.05 / 4)  # Bonferroni over the 4 collected claims
    markdown = (reports / "summary.md").read_text()
    assert "**REFUTED**" in markdown and "4 claims" in markdown
    html = (reports / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") >= 8 and "http" not in html
    frame = pd.read_csv(reports / "per_prompt.csv")
    assert len(frame) == 80 * 2 + 12 * 2 and {"clean", "intervened", "claim_value"} <= set(frame.columns)


def test_an_interrupted_run_keeps_the_previous_report(suite):
    _run(suite)
    before = (suite.path / "reports" / "run.json").read_text()
    suite.makepyfile(test_zz_interrupt="def test_stop(mi):\n    raise KeyboardInterrupt\n")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")  # an interrupt must not stop this session
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert (suite.path / "reports" / "run.json").read_text() == before
    assert not list((suite.path / "reports").glob("*.tmp"))


@pytest.mark.parametrize(
    ("body", "outcome"),
    [("raise KeyboardInterrupt", "interrupted"), ("pytest.skip('no GPU here')", "skipped")],
)
def test_interrupts_and_skips_pass_through_a_test_with_a_baseline(suite, body, outcome):
    """Ctrl-C stops the run and a skip stays a skip, even when the test's baseline claim held."""
    gated = "import os, pytest\n" + SUITE.split("def test_refuted")[0]
    gated += "\n\ndef test_gated(mi):\n    if os.path.exists('stop.txt'):\n        " + body
    gated += "\n    effect(1.5).expect_increase(at_least=1.0)\n"
    suite.makepyfile(test_gated=gated)
    _run(suite, "test_gated.py").assert_outcomes(passed=2)
    before = (suite.path / "reports" / "run.json").read_text()
    (suite.path / "stop.txt").write_text("")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "test_gated.py")
    assert "BaselineRegression" not in result.stdout.str()
    if outcome == "interrupted":
        assert result.ret == pytest.ExitCode.INTERRUPTED
        assert (suite.path / "reports" / "run.json").read_text() == before
    else:
        result.assert_outcomes(passed=1, skipped=1)


def test_a_baseline_regression_fails_the_right_item(suite):
    _run(suite)  # creates baselines/test_inner_claims.json locally
    baseline_file = suite.path / "baselines" / "test_inner_claims.json"
    assert "test_holds::0" in baseline_file.read_text()
    _run(suite).assert_outcomes(passed=2, failed=2, warnings=1)  # unchanged: same verdicts
    (suite.path / "shift.txt").write_text("1.15")  # the new "model release": the effect shrinks but still holds
    result = _run(suite)
    result.assert_outcomes(passed=1, failed=3, warnings=1)
    result.stdout.fnmatch_lines(["*_ test_holds _*", "*BASELINE REGRESSION*effect went from 1.4* to 1.1*"])
    run = json.loads((suite.path / "reports" / "run.json").read_text())
    assert run["summary"]["regressions"] == 1


def test_a_claim_that_held_and_now_cannot_be_decided_is_a_regression(suite):
    """A release that breaks a claim's premise (here: recovery with no clean-base gap) must not pass
    as a plain error: the failure names the baseline claim it lost."""
    suite.makepyfile(
        test_recovery="""
import os
import numpy as np
import mitest as mt

def test_recovers(mi):
    rng = np.random.default_rng(0)
    clean = rng.normal(3, 1, 80)
    base = clean - (0.0 if os.path.exists("broken.txt") else 2.0)
    patched = base + 0.95 * (clean - base) + 0.01 * rng.normal(size=80)
    mt.Effect.from_values(clean, patched, corrupted=base).expect_recovery(at_least=0.9)
"""
    )
    _run(suite, "test_recovery.py").assert_outcomes(passed=1)
    (suite.path / "broken.txt").write_text("")
    result = _run(suite, "test_recovery.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*BaselineRegression: MitestError: the clean-minus-base gap is too small*",
            "*BASELINE REGRESSION: recovers at least 0.9 of the clean-base gap: held in the baseline*"
            "now the test raised MitestError before deciding it*",
        ]
    )
    run = json.loads((suite.path / "reports" / "run.json").read_text())
    assert run["summary"]["undecided"] == 1 and run["summary"]["regressions"] == 1
    assert run["undecided"][0]["test"].endswith("test_recovers") and run["undecided"][0]["error"] == "MitestError"
    assert "Not decided" in (suite.path / "reports" / "summary.md").read_text()
    assert "were not decided" in (suite.path / "reports" / "report.html").read_text()
    result.stdout.fnmatch_lines(["UNDECIDED * regressed * recovers at least 0.9*test_recovers]"])
    result = _run(suite, "test_recovery.py", "--mitest-update-baseline")  # accepting it is possible
    result.assert_outcomes(failed=1)
    assert "BASELINE REGRESSION" not in result.stdout.str()


def test_a_claim_that_held_and_now_fails_is_a_regression(suite):
    _run(suite)
    (suite.path / "shift.txt").write_text("0.5")
    result = _run(suite)
    result.stdout.fnmatch_lines(["*_ test_holds _*", "*REFUTED*"])
    run = json.loads((suite.path / "reports" / "run.json").read_text())
    holds = next(c for c in run["claims"] if c["test"].endswith("test_holds"))
    assert holds["baseline"]["status"] == "regressed" and "held in the baseline" in holds["baseline"]["message"]


def test_a_changed_claim_is_reported_not_compared(suite):
    _run(suite)
    suite.makepyfile(
        test_inner_claims=SUITE.replace(
            "expect_increase(at_least=1.0)\n\n\ndef test_refuted", "expect_increase(at_least=0.8)\n\n\ndef test_refuted"
        )
    )
    _run(suite)
    run = json.loads((suite.path / "reports" / "run.json").read_text())
    holds = next(c for c in run["claims"] if c["test"].endswith("test_holds"))
    assert holds["baseline"]["status"] == "changed"


def test_update_baseline_rewrites_and_passes(suite):
    _run(suite)
    (suite.path / "shift.txt").write_text("1.2")
    _run(suite, "--mitest-update-baseline").assert_outcomes(passed=2, failed=2, warnings=1)
    _run(suite).assert_outcomes(passed=2, failed=2, warnings=1)


def test_the_ci_profile_reports_missing_baselines_and_writes_none(suite, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = _run(suite)
    result.stdout.fnmatch_lines(["*NO BASELINE*--mitest-update-baseline*"])
    assert not (suite.path / "baselines").exists()


def test_a_hand_broken_baseline_is_a_clear_error(suite):
    (suite.path / "baselines").mkdir()
    (suite.path / "baselines" / "test_inner_claims.json").write_text('{"schema": "mitest.baseline", "version": 1, "cla')
    result = _run(suite)
    result.stdout.fnmatch_lines(["*BASELINE ERROR: baseline *test_inner_claims.json is not valid JSON*"])
    result.assert_outcomes(failed=4)
    assert json.loads((suite.path / "reports" / "run.json").read_text())["summary"]["claims"] == 4
    _run(suite, "--mitest-update-baseline").assert_outcomes(passed=2, failed=2, warnings=1)
    _run(suite).assert_outcomes(passed=2, failed=2, warnings=1)


def test_xdist_merges_worker_results_into_the_same_report(suite):
    serial = _run(suite, "--mitest-report-dir=serial")
    parallel = suite.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--mitest-report-dir=parallel")
    serial.assert_outcomes(passed=2, failed=2, warnings=1)
    parallel.assert_outcomes(passed=2, failed=2)

    def claims(folder):
        run = json.loads((suite.path / folder / "run.json").read_text())
        drop = {"seconds", "baseline"}
        return [{k: v for k, v in c.items() if k not in drop} for c in run["claims"]]

    assert claims("parallel") == claims("serial")


def test_the_plugin_imports_without_torch():
    code = "import sys, mitest.plugin; print('torch' in sys.modules, 'transformers' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False", "False"]


def test_markdown_is_size_capped_at_a_row_boundary():
    from mitest.results.report.markdown import render_markdown

    claim = {
        "outcome": "HOLDS",
        "claim": "x" * 200,
        "test": "t",
        "estimate": 1.0,
        "low": 0.5,
        "high": 1.5,
        "threshold": 0.1,
        "pvalue": 0.01,
    }
    run = {
        "summary": {"claims": 500, "holds": 500, "refuted": 0, "inconclusive": 0, "regressions": 0},
        "settings": {"alpha": 0.05, "correction": "bonferroni"},
        "claims": [claim] * 500,
    }
    text = render_markdown(run, max_chars=5000)
    assert len(text) <= 5000 and text.rstrip().endswith("see run.json or report.html._")
    assert all(line.startswith("|") or not line.startswith("| ") for line in text.splitlines())


def test_atomic_writes_leave_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    from mitest.results import atomic

    target = tmp_path / "run.json"
    target.write_text("old")

    def broken_replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_the_command_line_reports_and_compares_runs(suite):
    _run(suite, "--mitest-report-dir=before")
    (suite.path / "shift.txt").write_text("0.5")
    _run(suite, "--mitest-report-dir=after")
    before, after = suite.path / "before" / "run.json", suite.path / "after" / "run.json"

    def mitest(*args):
        return subprocess.run([sys.executable, "-m", "mitest.cli", *args], capture_output=True, text=True)

    same = mitest("compare", str(before), str(before))
    assert same.returncode == 0 and "0 regression(s)" in same.stdout
    worse = mitest("compare", str(before), str(after))
    assert worse.returncode == 1 and "regressed" in worse.stdout and "held in the baseline" in worse.stdout
    rendered = mitest("report", str(after), "--out", str(suite.path / "again"))
    assert rendered.returncode == 0 and (suite.path / "again" / "report.html").exists()
    broken = suite.path / "broken.json"
    broken.write_text("{}")
    bad = mitest("report", str(broken))
    assert bad.returncode == 2 and "not a mitest run record" in bad.stderr


def test_loadgroup_runs_use_the_same_baseline_keys(suite):
    grouped = SUITE.replace("def test_holds(mi):", '@pytest.mark.xdist_group("model")\ndef test_holds(mi):')
    suite.makepyfile(test_inner_claims=grouped)
    _run(suite)  # serial run creates the baselines
    parallel = suite.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup", "-k", "holds")
    parallel.assert_outcomes(passed=1)
    stored = json.loads((suite.path / "baselines" / "test_inner_claims.json").read_text())["claims"]
    assert not [key for key in stored if "@" in key]


def test_seed_changes_do_not_hide_regressions(suite):
    _run(suite)
    (suite.path / "shift.txt").write_text("1.15")
    _run(suite, "--mitest-seed=7").stdout.fnmatch_lines(["*BASELINE REGRESSION*"])


def test_equivalence_claims_may_wobble_within_their_room(suite, monkeypatch):
    suite.makepyfile(
        test_inner_claims="""
import os
import numpy as np
import mitest as mt

def test_irrelevant(mi):
    rng = np.random.default_rng(0)
    clean = rng.normal(3, 1, 80)
    noise = float(os.environ.get("NOISE", "0"))
    mt.Effect.from_values(clean, clean + noise * rng.normal(size=80)).expect_no_change(within=0.05)
"""
    )
    _run(suite).assert_outcomes(passed=1)
    monkeypatch.setenv("NOISE", "0.001")
    _run(suite).assert_outcomes(passed=1)  # a tiny numerical change stays well within the claim's room


def test_the_ci_profile_fails_changed_claims_and_ci_false_is_not_ci(suite, monkeypatch):
    _run(suite)
    suite.makepyfile(
        test_inner_claims=SUITE.replace(
            "expect_increase(at_least=1.0)\n\n\ndef test_refuted", "expect_increase(at_least=0.8)\n\n\ndef test_refuted"
        )
    )
    monkeypatch.setenv("CI", "false")
    _run(suite).assert_outcomes(passed=2, failed=2, warnings=1)
    monkeypatch.setenv("CI", "true")
    _run(suite).stdout.fnmatch_lines(["*changed since its baseline*--mitest-update-baseline*"])


def test_several_claims_in_one_test_must_be_declared(suite):
    suite.makepyfile(
        test_inner_claims="""
import numpy as np
import pytest
import mitest as mt

def effect():
    rng = np.random.default_rng(0)
    clean = rng.normal(3, 1, 80)
    return mt.Effect.from_values(clean, clean + 2 + 0.3 * rng.normal(size=80))

def test_undeclared(mi):
    effect().expect_increase(at_least=1.0)
    effect().expect_increase(at_least=1.5)

@pytest.mark.mitest(claims=2)
def test_declared(mi):
    assert effect().expect_increase(at_least=1.0).alpha == pytest.approx(0.05 / 3)
    effect().expect_increase(at_least=1.5)
"""
    )
    result = _run(suite)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*decided 2 claims but the family counted 1*claims=2*"])


def test_reports_keep_the_files_readable_by_others(suite):
    import stat

    _run(suite)
    mode = stat.S_IMODE((suite.path / "reports" / "run.json").stat().st_mode)
    assert mode & 0o044 == 0o044
