"""The pytest plugin: options and profiles, the ``mi`` fixture, claim recording, INCONCLUSIVE
policy, baseline gating, reports and the terminal summary.

Registered through the ``pytest11`` entry point. Importing it imports neither torch nor
transformers; the claims layer is imported only when a test decides a claim.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CLAIMS = "mitest_claims"  # key of the claim records in each report's user_properties
UNDECIDED = "mitest_undecided"  # key of the baseline claims a failing test no longer decided
POLICIES = ("fail", "xfail", "warn")


class BaselineRegression(AssertionError):
    """A claim that held in the baseline no longer holds, or its effect fell beyond its margin."""


class InconclusiveWarning(UserWarning):
    """An INCONCLUSIVE claim under the ``warn`` policy."""


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


@dataclass
class State:
    options: Options
    records: list[dict[str, Any]] = field(default_factory=list)
    undecided: list[dict[str, Any]] = field(default_factory=list)  # held in the baseline, not decided now
    baselines: dict[Path, dict[str, dict[str, Any]]] = field(default_factory=dict)
    report_files: list[Path] = field(default_factory=list)
    claim_suite: bool = False


STATE = pytest.StashKey[State]()
SAVED = pytest.StashKey[tuple]()

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
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mitest", "mechanistic-interpretability claims")
    for name, ini, kind, default, text in _SETTINGS:
        group.addoption(f"--mitest-{name}", dest=f"mitest_{name.replace('-', '_')}", type=kind, default=None, help=text)
        try:  # pytest >= 9 reads native TOML numbers for typed ini options
            parser.addini(ini, text, type=kind.__name__ if kind is not str else "string", default=default)
        except (TypeError, ValueError):
            parser.addini(ini, text, default=str(default))
    group.addoption(
        "--mitest-update-baseline", action="store_true", default=False, help="rewrite the baselines from this run"
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
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mitest(inconclusive='fail|xfail|warn', margin=0.2, claims=1): per-test mitest settings; claims is how "
        "many claims the test decides (it sizes the Bonferroni family)",
    )
    options = _resolve(config)
    config.stash[STATE] = State(options)
    recorder = Recorder(config.stash[STATE], is_worker=hasattr(config, "workerinput"))
    config.pluginmanager.register(recorder, "mitest-recorder")
    from mitest.config import settings

    profile = _hypothesis_profile(options.profile, config.getoption("hypothesis_profile", None))
    config.stash[SAVED] = (settings.alpha, settings.seed, settings.family_size, profile)
    settings.alpha, settings.seed = options.alpha, options.seed


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give back the process-wide settings (pytester runs nested sessions in one process)."""
    from mitest.config import settings

    if SAVED in config.stash:
        settings.alpha, settings.seed, settings.family_size, profile = config.stash[SAVED]
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
    from mitest.config import settings

    state = config.stash[STATE]
    family = sum(_declared_claims(item) for item in items if _uses_mi(item))
    state.claim_suite = family > 0
    settings.family_size = max(1, family) if state.options.correction == "bonferroni" else 1


def _uses_mi(item: pytest.Item) -> bool:
    return "mi" in getattr(item, "fixturenames", ())


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

    def __init__(self, options: Options) -> None:
        self.alpha = options.alpha
        self.seed = options.seed
        self.n = options.n

    def measure(self, model: Any, prompts: Any, intervention: Any, metric: Any, **kwargs: Any) -> Any:
        """``mt.measure`` with the session's caches; claims on the result are recorded for reports."""
        from mitest.run import measure

        return measure(model, prompts, intervention, metric, **kwargs)

    def circuit(self, model: Any, prompts: Any, circuit: Any, metric: Any, **kwargs: Any) -> Any:
        """``mt.circuit`` with the session's caches; its claims are recorded for reports."""
        from mitest.circuits import circuit as circuit_test

        return circuit_test(model, prompts, circuit, metric, **kwargs)


@pytest.fixture(scope="session")
def mi(request: pytest.FixtureRequest) -> Mi:
    """mitest bound to the session: ``mi.measure(...)``, ``mi.alpha``, ``mi.seed``, ``mi.n``."""
    return Mi(request.config.stash[STATE].options)


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
    from mitest.config import listeners

    state = item.config.stash[STATE]
    marker = item.get_closest_marker("mitest")
    overrides = marker.kwargs if marker else {}
    records: list[dict[str, Any]] = []
    started = time.perf_counter()

    def listen(verdict: Any, effect: Any, per_prompt: Any) -> None:
        records.append(_record(item, len(records), verdict, effect, per_prompt, state.options.seed))
        records[-1]["seconds"] = round(time.perf_counter() - started, 4)

    listeners.append(listen)
    failure: BaseException | None = None
    try:
        result = yield
    except BaseException as error:  # noqa: BLE001 - re-raised below, after recording
        failure = error
        result = None
    finally:
        listeners.remove(listen)
    if isinstance(failure, _PASS_THROUGH):  # Ctrl-C, exit, skip, xfail: not a verdict on any claim
        item.user_properties.append((CLAIMS, json.dumps(_json_safe(records), allow_nan=False)))
        raise failure
    problems = _check_baselines(item, records, state, overrides)
    if failure is not None:
        lost = _undecided(item, len(records), failure, state)
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
        if type(failure).__name__ == "ClaimInconclusive" and not problems:
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


def _inconclusive(error: BaseException, policy: str) -> None:
    if policy not in POLICIES:
        raise pytest.UsageError(f"@pytest.mark.mitest(inconclusive={policy!r}): use one of {', '.join(POLICIES)}")
    if policy == "xfail":
        pytest.xfail(str(error))
    if policy == "warn":
        warnings.warn(InconclusiveWarning(str(error)), stacklevel=1)
        return None
    raise error


def _record(item: pytest.Item, index: int, verdict: Any, effect: Any, per_prompt: Any, seed: int) -> dict:
    identity = dict(effect.identity or {"values": "external", "n": effect.n})
    identity.update(claim=verdict.claim, threshold=verdict.threshold, seed=seed)
    comparable = {key: value for key, value in identity.items() if key not in ("model", "seed")}
    data = verdict.to_dict()
    method = data.pop("test")
    groups = None if effect.groups is None else [str(g) for g in effect.groups]
    return {
        **data,
        "method": method,
        "test": _test_id(item),
        "index": index,
        "identity": identity,
        "id": _digest(identity),
        "claim_key": _digest(comparable),
        "hooks": list(effect.hooks),
        "per_prompt": {
            "clean": effect.clean.tolist(),
            "intervened": effect.intervened.tolist(),
            "corrupted": None if effect.corrupted is None else effect.corrupted.tolist(),
            "group": groups,
            "claim_value": [float(v) for v in per_prompt],
        },
    }


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


def _baseline_path(item: pytest.Item, options: Options) -> Path:
    path = Path(str(item.path))
    folder = options.baseline_dir or path.parent / "baselines"
    return folder / f"{path.stem}.json"


def _check_baselines(item: pytest.Item, records: list[dict], state: State, overrides: dict) -> list[str]:
    """Compare each claim with its baseline; returns the messages of claims that must fail the test."""
    from mitest import baseline

    if not records:
        return []
    path = _baseline_path(item, state.options)
    for record in records:
        record["baseline_file"] = str(path)
    if state.options.update_baseline:
        for record in records:
            record["baseline"] = {"status": "updated", "message": "baseline rewritten from this run"}
        return []
    if path not in state.baselines:
        try:
            state.baselines[path] = baseline.load(path)
        except baseline.BaselineError as error:
            for record in records:
                record["baseline"] = {"status": "error", "message": str(error)}
            return [f"BASELINE ERROR: {error}"]
    stored = state.baselines[path]
    problems = []
    for record in records:
        key = f"{record['test']}::{record['index']}"
        comparison = baseline.compare(
            stored.get(key), record, margin=float(overrides.get("margin", state.options.margin)), alpha=record["alpha"]
        )
        record["baseline"] = comparison
        if comparison["status"] == "regressed":
            problems.append(f"BASELINE REGRESSION: {record['claim']}: {comparison['message']}")
        elif comparison["status"] in ("new", "changed") and state.options.profile == "ci":
            what = "has no baseline" if comparison["status"] == "new" else "changed since its baseline"
            problems.append(
                f"NO BASELINE: {record['claim']} {what} in {path}; the ci profile does not write baselines. "
                "Run the suite with --mitest-update-baseline locally and commit the file."
            )
            comparison["message"] += " (ci profile: not written)"
    return problems


def _undecided(item: pytest.Item, decided: int, failure: BaseException, state: State) -> list[dict[str, Any]]:
    """Claims that held in the baseline but were not decided because the test raised before them."""
    from mitest import baseline

    if state.options.update_baseline:
        return []
    path = _baseline_path(item, state.options)
    if path not in state.baselines:
        try:
            state.baselines[path] = baseline.load(path)
        except baseline.BaselineError:
            return []  # reported by _check_baselines when the test decided any claim
    stored = state.baselines[path]
    prefix = f"{_test_id(item)}::"
    lost = [
        (key, entry)
        for key, entry in sorted(stored.items())
        if key.startswith(prefix)
        and key[len(prefix) :].isdigit()
        and int(key[len(prefix) :]) >= decided
        and entry["outcome"] == "HOLDS"
    ]
    return [
        {
            "test": _test_id(item),
            "index": int(key[len(prefix) :]),
            "claim": entry.get("claim", "claim"),
            "old_estimate": entry["estimate"],
            "error": type(failure).__name__,
            "baseline_file": str(path),
        }
        for key, entry in lost
    ]


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
        """Take the claim records off the report (so JUnit XML does not carry per-prompt arrays)."""
        if report.when != "call" or self.is_worker:
            return
        kept = []
        for name, value in getattr(report, "user_properties", ()):
            if name == CLAIMS:
                self.state.records.extend(json.loads(value))
            elif name == UNDECIDED:
                self.state.undecided.extend(json.loads(value))
            else:
                kept.append((name, value))
        report.user_properties = kept

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """On the controller: write baselines and reports (an interrupted run keeps the old reports)."""
        state = self.state
        if self.is_worker or exitstatus == pytest.ExitCode.INTERRUPTED:
            return
        if not (state.records or state.undecided or state.claim_suite):
            return  # not a claims run: leave the report folder alone
        state.records.sort(key=lambda r: (r["test"], r["index"]))
        state.undecided.sort(key=lambda u: (u["test"], u["index"]))
        _write_baselines(state)
        if state.options.report_dir is None:
            return
        from mitest.report import build_run, write_reports

        options = state.options
        run = build_run(
            state.records,
            undecided=state.undecided,
            alpha=options.alpha,
            correction=options.correction,
            seed=options.seed,
            profile=options.profile,
        )
        state.report_files = write_reports(run, options.report_dir)


def _write_baselines(state: State) -> None:
    from mitest import baseline

    options = state.options
    by_file: dict[Path, list[dict]] = {}
    for record in state.records:
        status = (record.get("baseline") or {}).get("status")
        if options.update_baseline or (status == "new" and options.profile != "ci"):
            by_file.setdefault(Path(record["baseline_file"]), []).append(record)
    for path, records in by_file.items():
        try:
            stored = baseline.load(path)
        except baseline.BaselineError:
            if not options.update_baseline:
                continue
            stored = {}  # --mitest-update-baseline replaces a broken file
        for record in records:
            stored[f"{record['test']}::{record['index']}"] = baseline.entry(record)
            if record["baseline"]["status"] == "new":
                record["baseline"] = {"status": "created", "message": f"baseline created in {path}"}
        baseline.save(path, stored)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash[STATE]
    if not (state.records or state.undecided):
        return
    write = terminalreporter.write_line
    terminalreporter.section("mitest claims")
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
    if state.report_files:
        write(f"reports: {', '.join(str(path) for path in state.report_files)}")
