"""The pytest plugin: options and profiles, the ``mi`` fixture, claim recording, INCONCLUSIVE
policy, baseline gating, reports and the terminal summary.

Registered through the ``pytest11`` entry point. Importing it imports neither torch nor
transformers; the claims layer is imported only when a test decides a claim, and the baseline
side (:mod:`mitest.results.gating`) when a claim is compared or the session ends.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mitest import progress
from mitest.config import current, use
from mitest.errors import BaselineRegression, ClaimInconclusive, InconclusiveWarning, MitestError
from mitest.plugin.fixture import Mi
from mitest.plugin.options import (
    POLICIES,
    add_options,
    check_marker,
    declared_claims,
    hypothesis_profile,
    resolve,
)
from mitest.plugin.session import CLAIMS, MODELS, TEST, UNDECIDED, Recorder, State, collected_whole, test_id, test_name
from mitest.plugin.summary import write_summary

if TYPE_CHECKING:
    from mitest.results.record import ClaimRecord

STATE = pytest.StashKey[State]()
SCOPE = pytest.StashKey[contextlib.ExitStack]()  # the session's settings, left at unconfigure
PROFILE = pytest.StashKey["str | None"]()  # the Hypothesis profile to restore at unconfigure


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mitest(inconclusive='fail|xfail|warn', margin=0.2, claims=1): per-test mitest settings; claims is how "
        "many claims the test decides (it sizes the Bonferroni family)",
    )
    options = resolve(config)
    from mitest.plugin.candidates import Candidates
    from mitest.results.gating import Gate

    gate = Gate(
        root=config.rootpath,
        folder=options.baseline_dir,
        update=options.update_baseline,
        profile=options.profile,
        gate=options.gate,
        max_bytes=options.max_bytes,
    )
    config.stash[STATE] = State(options, gate, Candidates(options.models, config.rootpath))
    recorder = Recorder(config.stash[STATE], is_worker=hasattr(config, "workerinput"))
    config.pluginmanager.register(recorder, "mitest-recorder")
    config.stash[PROFILE] = hypothesis_profile(options.profile, config.getoption("hypothesis_profile", None))
    scope = contextlib.ExitStack()
    scope.enter_context(use(settings=replace(current(), alpha=options.alpha, seed=options.seed)))
    if config.getoption("verbose") < 0:  # -q: no progress bars (see mitest.progress for the whole policy)
        scope.enter_context(progress.use(False))
    config.stash[SCOPE] = scope


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave the session's settings and profile (pytester runs nested sessions in one process)."""
    if SCOPE in config.stash:
        config.stash[SCOPE].close()
    profile = config.stash.get(PROFILE, None)
    if profile is not None:
        import hypothesis

        hypothesis.settings.load_profile(profile)


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The claim family: one claim per selected test that uses ``mi``, or as many as its
    ``@pytest.mark.mitest(claims=N)`` declares. Each claim is tested at alpha / family."""
    state = config.stash[STATE]
    for item in items:
        check_marker(item)
    family = sum(declared_claims(item) for item in items if _uses_mi(item))
    state.claim_suite = family > 0
    family_size = max(1, family) if state.options.correction == "bonferroni" else 1
    config.stash[SCOPE].enter_context(use(settings=replace(current(), family_size=family_size)))


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Modules with deselected tests are not collected whole: their baseline entries are never stale."""
    for item in items:
        state = item.config.stash.get(STATE, None)
        if state is not None:
            state.partial.add(Path(str(item.path)))


def _uses_mi(item: pytest.Item) -> bool:
    return "mi" in getattr(item, "fixturenames", ())


@pytest.fixture(scope="session")
def mi(request: pytest.FixtureRequest) -> Mi:
    """mitest bound to the session: ``mi.measure(...)``, ``mi.model(...)``, ``mi.claim(...)``, ``mi.alpha``,
    ``mi.seed``, ``mi.n``."""
    return Mi(request.config.stash[STATE])


# Exceptions that end a test without judging its claims; they propagate untouched.
_PASS_THROUGH = (
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
    pytest.skip.Exception,
    pytest.xfail.Exception,
    pytest.exit.Exception,
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Record the claims of tests that use ``mi``, apply the INCONCLUSIVE policy, gate on baselines."""
    __tracebackhide__ = True
    if not _uses_mi(item):
        return (yield)
    state = item.config.stash[STATE]
    marker = item.get_closest_marker("mitest")
    overrides = marker.kwargs if marker else {}
    from mitest.results.record import build_record, json_safe

    records: list[ClaimRecord] = []
    names: dict[str, int] = {}
    started = time.perf_counter()

    def listen(verdict: Any, effect: Any, per_prompt: Any) -> None:
        name = state.naming[-1] if state.naming else None
        if name is None:
            claim = str(sum(1 for record in records if record["name"] is None))
        else:
            names[name] = names.get(name, 0) + 1
            claim = name if names[name] == 1 else f"{name}#{names[name]}"
        record = build_record(
            verdict, effect, per_prompt, test=test_id(item), index=len(records), name=name, seed=state.options.seed
        )
        record["key"] = state.gate.key(item.path, test_name(item), claim)
        if any(earlier["key"] == record["key"] for earlier in records):
            raise MitestError(f"two claims of this test would share the baseline key {record['key']!r}")
        record["seconds"] = round(time.perf_counter() - started, 4)
        records.append(record)

    failure: BaseException | None = None
    with use(recorder=listen):
        try:
            result = yield
        except BaseException as error:  # noqa: BLE001 - re-raised below, after recording
            failure = error
            result = None
    if isinstance(failure, _PASS_THROUGH):  # Ctrl-C, exit, skip, xfail: not a verdict on any claim
        item.user_properties.append((CLAIMS, json.dumps(json_safe(records), allow_nan=False)))
        raise failure
    margin = float(overrides.get("margin", state.options.margin))
    problems = state.gate.check(records, item.path, margin)
    if failure is not None:
        decided = {record["key"] for record in records}
        lost = state.gate.undecided(item.path, test_name(item), decided, type(failure).__name__)
        for entry in lost:
            entry["test"] = test_id(item)
        item.user_properties.append((UNDECIDED, json.dumps(json_safe(lost), allow_nan=False)))
        problems += [
            f"BASELINE REGRESSION: {entry['claim']}: held in the baseline (estimate {entry['old_estimate']:.4g}); "
            f"now the test raised {entry['error']} before deciding it"
            for entry in lost
        ]
    declared = declared_claims(item)
    if len(records) > declared and state.options.correction == "bonferroni":
        problems.append(
            f"this test decided {len(records)} claims but the family counted {declared}; declare "
            f"@pytest.mark.mitest(claims={len(records)}) so each claim is tested at the right alpha"
        )
    item.user_properties.append((CLAIMS, json.dumps(json_safe(records), allow_nan=False)))
    if failure is not None:
        if isinstance(failure, ClaimInconclusive) and not problems:
            return _inconclusive(failure, overrides.get("inconclusive", state.options.inconclusive))
        if problems:
            # Same traceback as the failure (ending at the user's line), the regression added to its message.
            stated = str(failure) if isinstance(failure, AssertionError) else f"{type(failure).__name__}: {failure}"
            regression = BaselineRegression(stated + "\n" + "\n".join(problems))
            raise regression.with_traceback(failure.__traceback__) from None
        raise failure
    if problems:
        raise BaselineRegression("\n".join(problems))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Tell the controller each test's module and name (stale entries) and the models loaded so far."""
    report = yield
    state = item.config.stash.get(STATE, None)
    if state is None:
        return report
    if call.when == "setup":
        test = {"file": str(item.path), "test": test_name(item), "whole": collected_whole(item, state)}
        report.user_properties.append((TEST, json.dumps(test)))
    if state.candidates.loaded:  # every phase: a model first loaded in a test body still reaches the controller
        report.user_properties.append((MODELS, json.dumps(state.candidates.record())))
    return report


def _inconclusive(error: BaseException, policy: str) -> None:
    if policy not in POLICIES:
        raise pytest.UsageError(f"@pytest.mark.mitest(inconclusive={policy!r}): use one of {', '.join(POLICIES)}")
    if policy == "xfail":
        pytest.xfail(str(error))
    if policy == "warn":
        warnings.warn(InconclusiveWarning(str(error)), stacklevel=1)
        return None
    raise error


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    write_summary(terminalreporter, config.stash[STATE])
