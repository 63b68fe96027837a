"""The plugin's session: what one run collects (claim records, tests, models) and writes at the end."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mitest.errors import MitestError
from mitest.plugin.options import Options

if TYPE_CHECKING:
    from mitest.plugin.candidates import Candidates
    from mitest.results.gating import Gate
    from mitest.results.record import ClaimRecord

CLAIMS = "mitest_claims"  # key of the claim records in each report's user_properties
UNDECIDED = "mitest_undecided"  # key of the baseline claims a failing test no longer decided
TEST = "mitest_test"  # key of a test's module and name (for stale baseline entries)
MODELS = "mitest_models"  # key of the models under test a worker loaded so far


@dataclass
class State:
    options: Options
    gate: Gate
    candidates: Candidates
    records: list[ClaimRecord] = field(default_factory=list)
    undecided: list[dict[str, Any]] = field(default_factory=list)  # held in the baseline, not decided now
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)  # node id -> key prefix, module, whole, passed
    models: dict[str, dict[str, str]] = field(default_factory=dict)  # models under test, merged from workers
    stale: list[dict[str, str]] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # baseline files whose test module is gone
    problems: list[str] = field(default_factory=list)  # files the run could not write, unused candidates
    report_files: list[Path] = field(default_factory=list)
    claim_suite: bool = False
    partial: set[Path] = field(default_factory=set)  # modules with deselected tests
    naming: list[str] = field(default_factory=list)  # the names of the enclosing mi.claim() blocks


def collected_whole(item: pytest.Item, state: State) -> bool:
    """Whether the item's module was collected whole (no -k/-m, no ``file.py::test`` selection of it)."""
    config = item.config
    if config.getoption("keyword", "") or config.getoption("markexpr", ""):
        return False
    path = Path(str(item.path))
    if path in state.partial:
        return False
    for arg in config.args:
        where, _, inside = str(arg).partition("::")
        if inside and (config.invocation_params.dir / where).resolve() == path.resolve():
            return False
    return True


def test_name(item: pytest.Item) -> str:
    """The test's name within its module (``Class::test[param]``), without xdist's ``@group`` suffix."""
    return test_id(item).split("::", 1)[1]


def test_id(item: pytest.Item) -> str:
    """The node id without the ``@group`` suffix that ``--dist loadgroup`` appends."""
    marker = item.get_closest_marker("xdist_group")
    group = (marker.args[0] if marker.args else marker.kwargs.get("name")) if marker else None
    suffix = f"@{group}" if group else ""
    return item.nodeid[: -len(suffix)] if suffix and item.nodeid.endswith(suffix) else item.nodeid


class Recorder:
    """Collects claim records from test reports and writes baselines and reports at the end.

    Registered once per run; on an xdist controller it receives every worker's reports, so the
    merged records, the baselines and the reports are written in one place.
    """

    def __init__(self, state: State, is_worker: bool) -> None:
        self.state = state
        self.is_worker = is_worker  # an xdist worker must pass the records on to the controller

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Take mitest's data off the report (so JUnit XML does not carry per-prompt arrays)."""
        if self.is_worker:
            return
        kept = []
        for name, value in getattr(report, "user_properties", ()):
            if name == CLAIMS and report.when == "call":
                self.state.records.extend(json.loads(value))
            elif name == UNDECIDED and report.when == "call":
                self.state.undecided.extend(json.loads(value))
            elif name == TEST:
                test = json.loads(value)
                prefix = self.state.gate.key(test["file"], test["test"], "").removesuffix("::")
                self.state.tests[report.nodeid] = {"prefix": prefix, "file": test["file"], "whole": test["whole"]}
            elif name == MODELS:
                self.state.models.update(json.loads(value))
            elif name not in (CLAIMS, UNDECIDED):
                kept.append((name, value))
        report.user_properties = kept
        test = self.state.tests.get(report.nodeid)
        if test is not None:
            test["passed"] = test.get("passed", True) and not (report.failed or report.skipped)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """On the controller: write baselines and reports (an interrupted run keeps the old ones)."""
        state = self.state
        if self.is_worker or exitstatus == pytest.ExitCode.INTERRUPTED:
            return
        state.models.update(state.candidates.record())
        unused = sorted(set(state.options.models) - set(state.models))
        for name in unused:
            state.problems.append(
                f"--mitest-model {name}={state.options.models[name]} was given, but no test asked for a model called "
                f"{name!r}: the suite ran its default models. Load it with mi.model({name!r}, default=...) in a "
                "fixture, or check the name"
            )
        if not (state.records or state.undecided or state.claim_suite):
            fail_on(session, state)
            return  # not a claims run: leave the report folder alone
        state.records.sort(key=lambda r: (r["test"], r["index"]))
        state.undecided.sort(key=lambda u: (u["test"], u["key"]))
        from mitest.results.atomic import hold_interrupts

        with hold_interrupts(deliver=False) as interrupted:  # Ctrl-C now would split baselines from reports
            self._write(session)
        if interrupted:
            state.problems.append("interrupted (Ctrl-C) while writing; the baselines and reports were finished first")
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        fail_on(session, state)

    def _write(self, session: pytest.Session) -> None:
        """Stale entries, then the baselines and the reports, each an all-or-nothing write."""
        state = self.state
        decided = {record["key"] for record in state.records} | {entry["key"] for entry in state.undecided}
        # A run stopped early (-x, --maxfail, --sw) did not reach every collected test: nothing is stale.
        complete = not (session.shouldstop or session.shouldfail) and len(state.tests) >= session.testscollected
        tests = {test["prefix"]: test for test in state.tests.values() if complete}
        try:
            state.stale = state.gate.stale(tests, decided)
            state.orphans = state.gate.orphans(tests)
            whole = {test["file"] for test in tests.values() if test["whole"]}
            state.problems += state.gate.write(state.records, state.stale, whole)
        except (MitestError, OSError) as error:
            state.problems.append(f"baselines not written: {self._shown(error)}")
        options = state.options
        if options.report_dir is not None:
            from mitest.results.report import build_run, write_reports

            run = build_run(
                state.records,
                undecided=state.undecided,
                alpha=options.alpha,
                correction=options.correction,
                seed=options.seed,
                profile=options.profile,
                gate=options.gate,
                models=state.models,
                stale=state.stale,
                orphans=state.orphans,
                problems=state.problems,
            )
            try:
                state.report_files = write_reports(run, options.report_dir)
            except (MitestError, OSError) as error:
                state.problems.append(f"reports not written: {self._shown(error)}")

    def _shown(self, error: BaseException) -> str:
        """An error's message with paths inside the suite written relative to it."""
        return str(error).replace(f"{self.state.gate.root}{os.sep}", "")


def fail_on(session: pytest.Session, state: State) -> None:
    """A run that could not write its files, or that ignored a candidate model, does not pass."""
    if state.problems and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
