"""The release gate through pytest, as a user meets it: keys that survive invocations, named
changes, stale entries, named claims, candidate models and files the run cannot write."""

from __future__ import annotations

import json
import os
import shutil

import pytest

SUITE = """
import os
import numpy as np
import pytest
import mitest as mt

SHIFT = float(open("shift.txt").read()) if os.path.exists("shift.txt") else 1.5
THRESHOLD = float(os.environ.get("THRESHOLD", "1.0"))


def effect(shift, noise=0.3, n=80, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.normal(3, 1, n)
    return mt.Effect.from_values(clean, clean + shift + noise * rng.normal(size=n), metric="logit_diff")


def test_holds(mi):
    effect(SHIFT).expect_increase(at_least=THRESHOLD)


def test_irrelevant(mi):
    mt.Effect.from_values(np.arange(80.0), np.arange(80.0) + 0.001).expect_no_change(within=0.05)
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("THRESHOLD", raising=False)
    pytester.mkpydir("claims")
    (pytester.path / "claims" / "test_gate.py").write_text(SUITE)
    return pytester


def _run(pytester, *args):
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def _claims(pytester, folder="reports"):
    return json.loads((pytester.path / folder / "run.json").read_text())["claims"]


def _stored(pytester):
    return json.loads((pytester.path / "claims" / "baselines" / "test_gate.json").read_text())["claims"]


def test_keys_do_not_depend_on_the_rootdir_or_the_invocation(suite):
    """The issue's trap: an extra path argument moved rootdir to the parent folder, every claim showed
    'created' and the baseline gained duplicates. Keys are relative to the baseline file now."""
    _run(suite, "claims").assert_outcomes(passed=2)
    before = _stored(suite)
    assert sorted(before) == ["test_gate.py::test_holds::0", "test_gate.py::test_irrelevant::0"]
    os.chdir(suite.path / "claims")
    for args in (["test_gate.py"], ["test_gate.py", "--rootdir", str(suite.path.parent)], [str(suite.path / "claims")]):
        result = _run(suite, *args, "--mitest-report-dir", str(suite.path / "again"))
        result.assert_outcomes(passed=2)
        assert {claim["baseline"]["status"] for claim in _claims(suite, "again")} == {"same"}
        assert _stored(suite) == before


def test_a_missing_entry_in_ci_names_its_key(suite, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = _run(suite, "claims")
    result.stdout.fnmatch_lines(
        ["*NO BASELINE*has no baseline entry 'test_gate.py::test_holds::0' in claims/baselines*"]
    )


def test_a_changed_claim_names_what_changed(suite, monkeypatch):
    _run(suite, "claims")
    monkeypatch.setenv("THRESHOLD", "0.8")
    _run(suite, "claims")
    holds = next(c for c in _claims(suite) if c["test"].endswith("test_holds"))
    assert holds["baseline"]["status"] == "changed"
    assert holds["baseline"]["changes"] == ["threshold 1 -> 0.8"]


@pytest.mark.parametrize("gate", ["evidence", "prove"])
def test_an_improvement_and_a_wobbling_equivalence_claim_pass_the_gate(suite, gate):
    _run(suite, "claims")
    (suite.path / "shift.txt").write_text("1.6")
    _run(suite, "claims", f"--mitest-gate={gate}").assert_outcomes(passed=2)
    assert {claim["baseline"]["status"] for claim in _claims(suite)} == {"ok", "same"}


def test_a_real_drop_fails_both_gates(suite):
    _run(suite, "claims")
    (suite.path / "shift.txt").write_text("1.15")
    for gate in ("evidence", "prove"):
        result = _run(suite, "claims", f"--mitest-gate={gate}")
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(["*BASELINE REGRESSION*show a drop beyond the allowance*"])


def test_stale_entries_are_listed_and_removed_on_update(suite):
    _run(suite, "claims")
    (suite.path / "claims" / "test_gate.py").write_text(SUITE.replace("def test_irrelevant", "def test_unrelated"))
    result = _run(suite, "claims")
    result.stdout.fnmatch_lines(
        ["*1 stale baseline entry (kept; --mitest-update-baseline removes them):*", "*test_irrelevant::0*no collected*"]
    )
    assert "test_gate.py::test_irrelevant::0" in _stored(suite)
    assert "**Stale baseline entries** (1;" in (suite.path / "reports" / "summary.md").read_text()
    partial = _run(suite, "claims", "-k", "holds")
    assert (
        "stale baseline entr" not in partial.stdout.str()
    )  # a partial run cannot tell a stale entry from a deselected one
    result = _run(suite, "claims", "--mitest-update-baseline")
    result.stdout.fnmatch_lines(["*1 stale baseline entry (removed)*"])
    assert sorted(_stored(suite)) == ["test_gate.py::test_holds::0", "test_gate.py::test_unrelated::0"]


def test_named_claims_keep_their_entry_when_claims_are_added_around_them(suite):
    named = SUITE.replace(
        "    effect(SHIFT).expect_increase(at_least=THRESHOLD)",
        '    with mi.claim("shift"):\n        effect(SHIFT).expect_increase(at_least=THRESHOLD)',
    )
    (suite.path / "claims" / "test_gate.py").write_text(named)
    _run(suite, "claims").assert_outcomes(passed=2)
    assert "test_gate.py::test_holds::shift" in _stored(suite)
    grown = named.replace(
        '    with mi.claim("shift"):',
        '    effect(1.5, seed=1).expect_increase(at_least=1.0)\n    with mi.claim("shift"):',
    ).replace("def test_holds(mi):", "@pytest.mark.mitest(claims=2)\ndef test_holds(mi):")
    (suite.path / "claims" / "test_gate.py").write_text(grown)
    _run(suite, "claims").assert_outcomes(passed=2)
    statuses = {c["key"]: c["baseline"]["status"] for c in _claims(suite)}
    assert statuses["test_gate.py::test_holds::shift"] == "same"
    assert statuses["test_gate.py::test_holds::0"] == "created"


CANDIDATE_SUITE = """
import pytest
import mitest as mt
from tests_helpers import tiny_model_dir


@pytest.fixture(scope="session")
def model(mi):
    return mi.model("tiny", default=tiny_model_dir("reference"))


def test_the_model_under_test(model, mi):
    open("revision.txt", "w").write(model.revision)
"""


def _run_apart(pytester, *args):
    """A run in a subprocess: loading a model inside an in-process run would leave transformers'
    lazily imported modules half-removed for the tests that follow."""
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two tiny saved GPT-2s, built before pytester snapshots sys.modules (it drops modules first
    imported inside a test, which would leave transformers' lazy modules half-removed)."""
    import transformers

    folder = tmp_path_factory.mktemp("checkpoints")
    for name, seed in (("reference", 0), ("candidate", 1)):
        transformers.set_seed(seed)
        config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=8, n_positions=8, vocab_size=11)
        transformers.GPT2LMHeadModel(config).save_pretrained(folder / name)
    return folder


def test_a_candidate_model_replaces_the_default_and_an_unused_one_fails_the_run(suite, checkpoints):
    tmp_path = checkpoints
    suite.makepyfile(
        tests_helpers=f"def tiny_model_dir(name):\n    return {str(tmp_path)!r} + '/' + name\n",
        test_candidate=CANDIDATE_SUITE,
    )
    _run_apart(suite, "test_candidate.py").assert_outcomes(passed=1)
    reference = (suite.path / "revision.txt").read_text()
    _run_apart(suite, "test_candidate.py", "--mitest-model", f"tiny={tmp_path / 'candidate'}").assert_outcomes(passed=1)
    assert (suite.path / "revision.txt").read_text() != reference
    result = _run_apart(suite, "test_candidate.py", "--mitest-model", f"tnyi={tmp_path / 'candidate'}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*mitest error: --mitest-model tnyi=* no test asked for a model called 'tnyi'*"])
    result = _run_apart(suite, "test_candidate.py", "--mitest-model", "tiny")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mitest-model 'tiny' is not NAME=PATH*"])
    result = _run_apart(suite, "test_candidate.py", "--mitest-model", f"tiny={tmp_path / 'nowhere'}")
    result.stderr.fnmatch_lines(["*nowhere does not exist, and * is not a zoo model*"])


def test_unusable_folders_are_clear_errors_and_the_reports_are_still_written(suite):
    (suite.path / "claims" / "baselines").write_text("a file where the folder should be")
    result = _run(suite, "claims")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*mitest error: baselines not written: *claims/baselines*"])
    assert len(_claims(suite)) == 2  # the reports of the run are still written
    assert "**Problems**:\n\n- baselines not written: " in (suite.path / "reports" / "summary.md").read_text()
    (suite.path / "claims" / "baselines").unlink()
    (suite.path / "claims" / "baselines" / "test_gate.json").mkdir(parents=True)
    result = _run(suite, "claims")
    result.stdout.fnmatch_lines(["*BASELINE ERROR: baseline claims/baselines/test_gate.json is a folder*"])
    (suite.path / "claims" / "baselines" / "test_gate.json").rmdir()
    shutil.rmtree(suite.path / "reports")
    (suite.path / "reports").write_text("a file where the reports should be")
    result = _run(suite, "claims")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*mitest error: reports not written: *reports*"])
    assert set(_stored(suite)) == {"test_gate.py::test_holds::0", "test_gate.py::test_irrelevant::0"}


def test_paths_in_the_run_record_are_relative_to_the_suite(suite):
    _run(suite, "claims")
    run = json.loads((suite.path / "reports" / "run.json").read_text())
    assert {claim["baseline_file"] for claim in run["claims"]} == {"claims/baselines/test_gate.json"}
    assert str(suite.path) not in json.dumps(run)


STOPPING = """
import os
import numpy as np
import mitest as mt

def effect():
    rng = np.random.default_rng(0)
    clean = rng.normal(3, 1, 80)
    return mt.Effect.from_values(clean, clean + 1.5 + 0.3 * rng.normal(size=80))

def test_a(mi):
    effect().expect_increase(at_least=1.0)

def test_b(mi):
    assert not os.environ.get("BREAK"), "broken"
    effect().expect_increase(at_least=1.0)

def test_c(mi):
    effect().expect_increase(at_least=1.0)
"""


def test_a_run_stopped_early_lists_nothing_stale_and_keeps_every_entry(suite, monkeypatch):
    """Review finding: -x left test_c without a report, and --mitest-update-baseline deleted its entry."""
    (suite.path / "claims" / "test_gate.py").write_text(STOPPING)
    _run(suite, "claims").assert_outcomes(passed=3)
    monkeypatch.setenv("BREAK", "1")
    result = _run(suite, "claims", "-x", "--mitest-update-baseline")
    assert "stale baseline entr" not in result.stdout.str()
    assert sorted(_stored(suite)) == [f"test_gate.py::test_{name}::0" for name in "abc"]


def test_a_broken_file_is_replaced_only_by_an_update_of_its_whole_module(suite):
    _run(suite, "claims")
    before = _stored(suite)
    result = _run(suite, "claims", "-k", "holds", "--mitest-update-baseline", "--mitest-baseline-max-mb=0.0001")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*mitest error: claims/baselines/test_gate.json was not rewritten*whole module*"])
    assert _stored(suite) == before


def test_marker_settings_are_checked_like_options(suite):
    (suite.path / "claims" / "test_gate.py").write_text(
        SUITE.replace("def test_holds(mi):", "@pytest.mark.mitest(margin=float('nan'))\ndef test_holds(mi):")
    )
    result = _run(suite, "claims")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*@pytest.mark.mitest(margin=nan) must be a finite number >= 0*"])


def test_a_renamed_module_leaves_a_baseline_file_that_is_reported(suite):
    _run(suite, "claims")
    (suite.path / "claims" / "test_gate.py").rename(suite.path / "claims" / "test_renamed.py")
    result = _run(suite, "claims")
    result.stdout.fnmatch_lines(["*baseline file claims/baselines/test_gate.json has no test module any more*"])
    run = json.loads((suite.path / "reports" / "run.json").read_text())
    assert run["orphans"] == ["claims/baselines/test_gate.json"]


def test_a_claim_whose_numbers_would_overflow_never_reaches_the_baseline(suite):
    """Values whose differences overflow float64 are refused when the Effect is built (issue 14), so no
    non-finite number is decided or stored; the rest of the baseline is written as usual."""
    (suite.path / "claims" / "test_gate.py").write_text(
        SUITE + "\n\ndef test_overflow(mi):\n    c = np.full(8, 1e308) + np.arange(8) * 1e292\n"
        "    mt.Effect.from_values(c, -c).expect_increase(at_least=1.0)\n"
    )
    result = _run(suite, "claims")
    result.stdout.fnmatch_lines(["*MitestError: intervened - clean overflows float64*rescale the metric*"])
    assert sorted(_stored(suite)) == ["test_gate.py::test_holds::0", "test_gate.py::test_irrelevant::0"]
    _run(suite, "claims", "-k", "not overflow").assert_outcomes(passed=2)  # the file is still readable


def test_mitest_compare_counts_a_held_claim_the_new_run_lost(suite):
    from mitest.cli import main as cli

    _run(suite, "claims", "--mitest-report-dir", "old")
    (suite.path / "claims" / "test_gate.py").write_text(SUITE.replace("def test_holds", "def test_renamed"))
    _run(suite, "claims", "--mitest-report-dir", "new")
    assert cli(["compare", str(suite.path / "old" / "run.json"), str(suite.path / "new" / "run.json")]) == 1
