"""The pytest plugin: options and profiles, the ``mi`` fixture, claim recording, INCONCLUSIVE
policy, baseline gating, reports and the terminal summary.

Registered through the ``pytest11`` entry point. Importing it imports neither torch nor
transformers; the claims layer is imported only when a test decides a claim, and the baseline
side (:mod:`mitest.gating`) when a claim is compared or the session ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from mitest.config import current, use
from mitest.errors import BaselineRegression, ClaimInconclusive, InconclusiveWarning, MitestError

if TYPE_CHECKING:  # the plugin imports no torch at run time
    from mitest.candidates import Candidates, Source
    from mitest.circuits import CircuitTest
    from mitest.claims import Effect
    from mitest.gating import Gate
    from mitest.model import Model

CLAIMS = "mitest_claims"  # key of the claim records in each report's user_properties
UNDECIDED = "mitest_undecided"  # key of the baseline claims a failing test no longer decided
TEST = "mitest_test"  # key of a test's module and name (for stale baseline entries)
MODELS = "mitest_models"  # key of the models under test a worker loaded so far
POLICIES = ("fail", "xfail", "warn")


@dataclass
class Options:
    """The resolved mitest options of one pytest run."""

    alpha: float
    correction: str
    seed: int
    n: int
    inconclusive: str
    report_dir: Path | None
    baseline_dir: Path | None
    update_baseline: bool
    profile: str
    margin: float
    gate: str
    max_bytes: int
    models: dict[str, str]


@dataclass
class State:
    options: Options
    gate: Gate
    candidates: Candidates
    records: list[dict[str, Any]] = field(default_factory=list)
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


STATE = pytest.StashKey[State]()
SCOPE = pytest.StashKey[contextlib.ExitStack]()  # the session's settings, left at unconfigure
PROFILE = pytest.StashKey["str | None"]()  # the Hypothesis profile to restore at unconfigure

_SETTINGS = [
    # (option, ini name, type, default, help)
    ("alpha", "mitest_alpha", float, 0.05, "family-wise alpha of the suite's claims (default 0.05)"),
    ("correction", "mitest_correction", str, "bonferroni", "bonferroni (default) or none"),
    ("seed", "mitest_seed", int, 0, "seed of bootstrap resampling (default 0)"),
    ("n", "mitest_n", int, 64, "default number of prompts a suite draws, as mi.n (default 64)"),
    ("inconclusive", "mitest_inconclusive", str, "fail", "what INCONCLUSIVE does: fail (default), xfail or warn"),
    ("report-dir", "mitest_report_dir", str, "reports", "where reports are written; '' for none (default reports)"),
    (
        "baseline-dir",
        "mitest_baseline_dir",
        str,
        "",
        "one folder for baselines (default: baselines/ by each test file)",
    ),
    ("profile", "mitest_profile", str, "", "default or ci (ci is used when the CI environment variable is set)"),
    ("margin", "mitest_margin", float, 0.2, "allowed relative drop of an effect against its baseline (default 0.2)"),
    (
        "gate",
        "mitest_gate",
        str,
        "evidence",
        "evidence (default: fail a claim when it stopped holding or the data show its effect fell by more than "
        "the margin) or prove (also fail when the data cannot show it fell by less)",
    ),
    ("baseline-max-mb", "mitest_baseline_max_mb", float, 64.0, "largest baseline file read, in MiB (default 64)"),
]
GATES = ("evidence", "prove")
_INI_TYPES: dict[type, Literal["string", "int", "float"]] = {str: "string", int: "int", float: "float"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mitest", "mechanistic-interpretability claims")
    for name, ini, kind, default, text in _SETTINGS:
        group.addoption(f"--mitest-{name}", dest=f"mitest_{name.replace('-', '_')}", type=kind, default=None, help=text)
        try:  # pytest >= 9 reads native TOML numbers for typed ini options
            parser.addini(ini, text, type=_INI_TYPES[kind], default=default)
        except (TypeError, ValueError):
            parser.addini(ini, text, default=str(default))
    group.addoption(
        "--mitest-update-baseline", action="store_true", default=False, help="rewrite the baselines from this run"
    )
    group.addoption(
        "--mitest-model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        dest="mitest_model",
        help="the model that mi.model(NAME, ...) returns: a saved model directory or a zoo name (repeatable)",
    )


def _resolve(config: pytest.Config) -> Options:
    values = {}
    for name, ini, kind, default, _ in _SETTINGS:
        value = config.getoption(f"mitest_{name.replace('-', '_')}")
        if value is None:
            raw = config.getini(ini)
            try:
                value = kind(raw) if raw not in ("", None) or kind is str else default
            except ValueError:
                raise pytest.UsageError(f"ini option {ini} = {raw!r} is not a valid {kind.__name__}") from None
        values[name] = value
    in_ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    profile = values["profile"] or ("ci" if in_ci else "default")
    if profile not in ("default", "ci"):
        raise pytest.UsageError(f"--mitest-profile must be 'default' or 'ci', got {profile!r}")
    if values["inconclusive"] not in POLICIES:
        raise pytest.UsageError(f"--mitest-inconclusive must be one of {', '.join(POLICIES)}")
    if values["correction"] not in ("bonferroni", "none"):
        raise pytest.UsageError("--mitest-correction must be 'bonferroni' or 'none'")
    if not 0 < values["alpha"] < 0.5:
        raise pytest.UsageError(f"--mitest-alpha must be in (0, 0.5), got {values['alpha']}")
    if not (math.isfinite(values["margin"]) and values["margin"] >= 0):
        raise pytest.UsageError(f"--mitest-margin must be a finite number >= 0, got {values['margin']}")
    if values["n"] < 1:
        raise pytest.UsageError(f"--mitest-n must be at least 1, got {values['n']}")
    if not (math.isfinite(values["baseline-max-mb"]) and values["baseline-max-mb"] > 0):
        raise pytest.UsageError(f"--mitest-baseline-max-mb must be a positive number, got {values['baseline-max-mb']}")
    if values["gate"] not in GATES:
        raise pytest.UsageError(f"--mitest-gate must be one of {', '.join(GATES)}, got {values['gate']!r}")
    from mitest.candidates import CandidateError, parse

    try:
        models = parse(config.getoption("mitest_model") or [], config.invocation_params.dir)
    except CandidateError as error:
        raise pytest.UsageError(str(error)) from None
    root = config.rootpath
    return Options(
        alpha=values["alpha"],
        correction=values["correction"],
        seed=values["seed"],
        n=values["n"],
        inconclusive=values["inconclusive"],
        report_dir=(root / values["report-dir"]) if values["report-dir"] else None,
        baseline_dir=(root / values["baseline-dir"]) if values["baseline-dir"] else None,
        update_baseline=config.getoption("mitest_update_baseline"),
        profile=profile,
        margin=values["margin"],
        gate=values["gate"],
        max_bytes=int(values["baseline-max-mb"] * 2**20),
        models=models,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mitest(inconclusive='fail|xfail|warn', margin=0.2, claims=1): per-test mitest settings; claims is how "
        "many claims the test decides (it sizes the Bonferroni family)",
    )
    options = _resolve(config)
    from mitest.candidates import Candidates
    from mitest.gating import Gate

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
    config.stash[PROFILE] = _hypothesis_profile(options.profile, config.getoption("hypothesis_profile", None))
    scope = contextlib.ExitStack()
    scope.enter_context(use(settings=replace(current(), alpha=options.alpha, seed=options.seed)))
    if config.getoption("verbose") < 0:  # -q: no progress bars (see mitest.progress for the whole policy)
        from mitest import progress

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


def _hypothesis_profile(profile: str, chosen: str | None) -> str | None:
    """Under mitest's ci profile, load Hypothesis's ``ci`` profile (derandomized, no example database)
    unless the user chose a Hypothesis profile; returns the profile to restore, or None when nothing
    changed. Hypothesis is imported only then."""
    if profile != "ci" or chosen:
        return None
    import hypothesis
    import hypothesis.errors

    previous = hypothesis.settings.get_current_profile_name()
    if previous != "default":  # chosen in code (settings.load_profile) or by Hypothesis itself
        return None
    try:
        hypothesis.settings.get_profile("ci")
    except hypothesis.errors.InvalidArgument:  # Hypothesis releases before its built-in ci profile
        hypothesis.settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
    hypothesis.settings.load_profile("ci")
    return previous


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The claim family: one claim per selected test that uses ``mi``, or as many as its
    ``@pytest.mark.mitest(claims=N)`` declares. Each claim is tested at alpha / family."""
    state = config.stash[STATE]
    for item in items:
        _check_marker(item)
    family = sum(_declared_claims(item) for item in items if _uses_mi(item))
    state.claim_suite = family > 0
    family_size = max(1, family) if state.options.correction == "bonferroni" else 1
    config.stash[SCOPE].enter_context(use(settings=replace(current(), family_size=family_size)))


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Modules with deselected tests are not collected whole: their baseline entries are never stale."""
    for item in items:
        state = item.config.stash.get(STATE, None)
        if state is not None:
            state.partial.add(Path(str(item.path)))


def _whole(item: pytest.Item, state: State) -> bool:
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


def _uses_mi(item: pytest.Item) -> bool:
    return "mi" in getattr(item, "fixturenames", ())


def _check_marker(item: pytest.Item) -> None:
    """``@pytest.mark.mitest(...)`` settings checked like their command-line options."""
    marker = item.get_closest_marker("mitest")
    if marker is None:
        return
    margin = marker.kwargs.get("margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (math.isfinite(margin) and margin >= 0):
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.mitest(margin={margin!r}) must be a finite number >= 0")
    policy = marker.kwargs.get("inconclusive", "fail")
    if policy not in POLICIES:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.mitest(inconclusive={policy!r}): use one of {', '.join(POLICIES)}"
        )
    unknown = set(marker.kwargs) - {"margin", "inconclusive", "claims"}
    if unknown or marker.args:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.mitest takes inconclusive=, margin= and claims=, got "
            f"{', '.join(sorted(unknown)) or 'positional arguments'}"
        )


def _declared_claims(item: pytest.Item) -> int:
    marker = item.get_closest_marker("mitest")
    claims = marker.kwargs.get("claims", 1) if marker else 1
    if not isinstance(claims, int) or claims < 1:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.mitest(claims=...) must be a positive int")
    return claims


class Mi:
    """The ``mi`` fixture: ``mt.measure`` bound to the session, plus the suite's settings.

    Models cache their clean runs and means, so every test that measures the same session-scoped
    model and prompts reuses them.
    """

    def __init__(self, state: State) -> None:
        self.alpha = state.options.alpha
        self.seed = state.options.seed
        self.n = state.options.n
        self._state = state

    def model(self, name: str, default: Source) -> Model:
        """The model under test called ``name``: the ``--mitest-model NAME=PATH`` candidate when one is
        given, else ``default`` (a zoo name, a saved model directory relative to the rootdir, or a
        function returning an ``mt.Model``). Loaded once per session."""
        return self._state.candidates.model(name, default)

    @contextlib.contextmanager
    def claim(self, name: str) -> Iterator[None]:
        """Name the claims decided inside the block, so the baseline matches them by name rather than
        by their place in the test (adding a claim above them then changes nothing)."""
        if not isinstance(name, str) or not name.strip() or name.strip().isdigit() or "::" in name or "#" in name:
            raise MitestError(f"mi.claim needs a name that is not a number and holds no '::' or '#', got {name!r:.80}")
        self._state.naming.append(name.strip())
        try:
            yield
        finally:
            self._state.naming.pop()

    def measure(self, model: Any, prompts: Any, intervention: Any, metric: Any, **kwargs: Any) -> Effect:
        """``mt.measure`` with the session's caches; claims on the result are recorded for reports."""
        from mitest.run import measure

        return measure(model, prompts, intervention, metric, **kwargs)

    def circuit(self, model: Any, prompts: Any, circuit: Any, metric: Any, **kwargs: Any) -> CircuitTest:
        """``mt.circuit`` with the session's caches; its claims are recorded for reports."""
        from mitest.circuits import circuit as circuit_test

        return circuit_test(model, prompts, circuit, metric, **kwargs)


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
    records: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    started = time.perf_counter()

    def listen(verdict: Any, effect: Any, per_prompt: Any) -> None:
        name = state.naming[-1] if state.naming else None
        if name is None:
            claim = str(sum(1 for record in records if record["name"] is None))
        else:
            names[name] = names.get(name, 0) + 1
            claim = name if names[name] == 1 else f"{name}#{names[name]}"
        record = _record(item, len(records), name, verdict, effect, per_prompt, state.options.seed)
        record["key"] = state.gate.key(item.path, _test_name(item), claim)
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
        item.user_properties.append((CLAIMS, json.dumps(_json_safe(records), allow_nan=False)))
        raise failure
    margin = float(overrides.get("margin", state.options.margin))
    problems = state.gate.check(records, item.path, margin)
    if failure is not None:
        decided = {record["key"] for record in records}
        lost = state.gate.undecided(item.path, _test_name(item), decided, type(failure).__name__)
        for entry in lost:
            entry["test"] = _test_id(item)
        item.user_properties.append((UNDECIDED, json.dumps(_json_safe(lost), allow_nan=False)))
        problems += [
            f"BASELINE REGRESSION: {entry['claim']}: held in the baseline (estimate {entry['old_estimate']:.4g}); "
            f"now the test raised {entry['error']} before deciding it"
            for entry in lost
        ]
    declared = _declared_claims(item)
    if len(records) > declared and state.options.correction == "bonferroni":
        problems.append(
            f"this test decided {len(records)} claims but the family counted {declared}; declare "
            f"@pytest.mark.mitest(claims={len(records)}) so each claim is tested at the right alpha"
        )
    item.user_properties.append((CLAIMS, json.dumps(_json_safe(records), allow_nan=False)))
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
        test = {"file": str(item.path), "test": _test_name(item), "whole": _whole(item, state)}
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


def _record(
    item: pytest.Item, index: int, name: str | None, verdict: Any, effect: Any, per_prompt: Any, seed: int
) -> dict:
    from mitest.baseline import definition

    identity = dict(effect.identity or {"values": "external", "n": effect.n})
    derived = identity.pop("derived", None) or {}
    identity.update(claim=verdict.claim, threshold=verdict.threshold, seed=seed)
    claim_definition = definition(identity, verdict.claim, verdict.threshold)
    data = verdict.to_dict()
    method = data.pop("test")
    groups = None if effect.groups is None else [str(g) for g in effect.groups]
    return {
        **data,
        "method": method,
        "test": _test_id(item),
        "index": index,
        "name": name,
        "identity": identity,
        "id": _digest(identity),
        "claim_key": _digest(claim_definition["parts"]),
        "definition": claim_definition,
        "derived": derived,
        "hooks": list(effect.hooks),
        "per_prompt": {
            "clean": effect.clean.tolist(),
            "intervened": effect.intervened.tolist(),
            "corrupted": None if effect.corrupted is None else effect.corrupted.tolist(),
            "group": groups,
            "claim_value": [float(v) for v in per_prompt],
        },
    }


def _test_name(item: pytest.Item) -> str:
    """The test's name within its module (``Class::test[param]``), without xdist's ``@group`` suffix."""
    return _test_id(item).split("::", 1)[1]


def _test_id(item: pytest.Item) -> str:
    """The node id without the ``@group`` suffix that ``--dist loadgroup`` appends."""
    marker = item.get_closest_marker("xdist_group")
    group = (marker.args[0] if marker.args else marker.kwargs.get("name")) if marker else None
    suffix = f"@{group}" if group else ""
    return item.nodeid[: -len(suffix)] if suffix and item.nodeid.endswith(suffix) else item.nodeid


def _json_safe(value: Any) -> Any:
    """Non-finite floats (an unbounded interval) become the strings "inf", "-inf" or "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def _digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
            _fail_on(session, state)
            return  # not a claims run: leave the report folder alone
        state.records.sort(key=lambda r: (r["test"], r["index"]))
        state.undecided.sort(key=lambda u: (u["test"], u["key"]))
        from mitest.atomic import hold_interrupts

        with hold_interrupts(deliver=False) as interrupted:  # Ctrl-C now would split baselines from reports
            self._write(session)
        if interrupted:
            state.problems.append("interrupted (Ctrl-C) while writing; the baselines and reports were finished first")
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        _fail_on(session, state)

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
            from mitest.report import build_run, write_reports

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


def _fail_on(session: pytest.Session, state: State) -> None:
    """A run that could not write its files, or that ignored a candidate model, does not pass."""
    if state.problems and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash[STATE]
    if not (state.records or state.undecided or state.problems or state.stale or state.orphans):
        return
    write = terminalreporter.write_line
    terminalreporter.section("mitest claims")
    if state.records or state.undecided:
        header = f"{'verdict':<13} {'estimate':>10} {'CI':>23} {'threshold':>10}  {'baseline':<10} claim"
        write(header)
    for record in state.records:
        base = record.get("baseline") or {}
        delta = ""
        if "old_estimate" in base:
            delta = f" ({record['estimate'] - base['old_estimate']:+.3g})"
        ci = f"[{float(record['low']):.3g}, {float(record['high']):.3g}]"
        if record.get("metric") == "property":  # searched, not estimated
            ci = f"{record['n']} tried"
        write(
            f"{record['outcome']:<13} {float(record['estimate']):>10.4g} {ci:>23} {float(record['threshold']):>10.4g}  "
            f"{base.get('status', ''):<10} {record['claim']}{delta}  [{record['test']}]"
        )
    for entry in state.undecided:
        write(f"{'UNDECIDED':<13} {'':>10} {'':>23} {'':>10}  {'regressed':<10} {entry['claim']}  [{entry['test']}]")
    if state.stale:
        done = "removed" if state.options.update_baseline else "kept; --mitest-update-baseline removes them"
        write(f"{len(state.stale)} stale baseline entr{'y' if len(state.stale) == 1 else 'ies'} ({done}):")
        for entry in state.stale:
            write(f"  {entry['key']}  [{entry['baseline_file']}]: {entry['reason']}")
    for orphan in state.orphans:
        write(f"baseline file {orphan} has no test module any more (renamed or deleted?); remove it with git rm")
    for problem in state.problems:
        terminalreporter.write_line(f"mitest error: {problem}", red=True, bold=True)
    if state.report_files:
        write(f"reports: {', '.join(str(path) for path in state.report_files)}")
