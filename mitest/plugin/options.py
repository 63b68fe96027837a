"""The plugin's options: command line, ini file and ``@pytest.mark.mitest``, each checked."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

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


_SETTINGS = [
    # (option, ini name, type, default, help)
    ("alpha", "mitest_alpha", float, 0.05, "family-wise alpha of the suite's claims (default 0.05)"),
    ("correction", "mitest_correction", str, "bonferroni", "bonferroni (default) or none"),
    ("seed", "mitest_seed", int, 0, "seed of bootstrap resampling and of property searches (default 0)"),
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


def add_options(parser: pytest.Parser) -> None:
    """The ``--mitest-*`` options and their ini twins."""
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


def resolve(config: pytest.Config) -> Options:
    """The options of this run, from the command line, then the ini file, then the defaults; checked."""
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
    from mitest.plugin.candidates import CandidateError, parse

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


def hypothesis_profile(profile: str, chosen: str | None) -> str | None:
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


def check_marker(item: pytest.Item) -> None:
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


def declared_claims(item: pytest.Item) -> int:
    marker = item.get_closest_marker("mitest")
    claims = marker.kwargs.get("claims", 1) if marker else 1
    if not isinstance(claims, int) or claims < 1:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.mitest(claims=...) must be a positive int")
    return claims
