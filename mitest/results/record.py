"""The claim record: one decided claim as the plain, JSON-ready data every result file holds.

:func:`build_record` makes it from a verdict and the Effect behind it; run files, baselines and
every renderer read these fields and nothing else. :func:`run_problem` is the one check of records
read back from disk (the first field a renderer or the gate could not use).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from mitest.results.baseline import definition, definition_problem

if TYPE_CHECKING:
    from mitest.claims.effect import Effect
    from mitest.claims.verdict import Verdict

Kind = Literal["effect", "equivalence", "property", "sampled"]


class PerPrompt(TypedDict):
    """The values behind a claim, one per prompt (``claim_value``: one per unit the test used)."""

    clean: list[float]
    intervened: list[float]
    corrupted: list[float] | None
    group: list[str] | None
    claim_value: list[float]


class _SweepCellFields(TypedDict):
    cell: str
    site: str
    estimate: float
    low: float
    high: float
    n: int
    named: bool
    failing: bool
    delta: list[float]


class SweepCell(_SweepCellFields, total=False):
    """One cell of a sweep claim: its name and site, coordinates (only those the sweep has), mean change
    with its interval, whether the claim names it, whether it (or a pair it is in) failed, and its
    per-prompt intervened-minus-clean values."""

    layer: int | None
    head: int | None
    neuron: int | None
    position: int | None


class SweepRecord(TypedDict):
    """A sweep claim's cells; ``rows`` and ``columns`` name the coordinates of a heatmap (None: a list)."""

    rows: Literal["layer"] | None
    columns: Literal["head", "neuron", "position"] | None
    cells: list[SweepCell]


class CurvePoint(TypedDict):
    """One point of a faithfulness curve: the fraction, its k, the faithfulness and its interval."""

    fraction: float
    k: int
    estimate: float
    low: float
    high: float


class CurveRecord(TypedDict):
    """A faithfulness-curve claim's points, its area with interval, and the fraction a point claim is about."""

    points: list[CurvePoint]
    auc: dict[str, float]
    at_fraction: float | None


class AgreementPoint(TypedDict):
    """One checked unit of an attribution claim: its mean estimate, its mean exact change, whether it was
    among the estimate's top units (else sampled)."""

    unit: str
    attribution: float
    exact: float
    top: bool


class AgreementRecord(TypedDict):
    """An attribution-agreement claim's checked units (cells or edges), its method and Spearman's rho."""

    unit: str
    method: str
    rank_correlation: float
    points: list[AgreementPoint]


class ClaimRecord(TypedDict, total=False):
    """One decided claim. The verdict's numbers, where the claim lives, what produced it, and after
    the gate its ``baseline`` comparison; a run adds the suite-wide adjusted ``p_holm`` and ``p_bh``."""

    # the verdict (:class:`mitest.Verdict`); ``method`` is the test it used
    outcome: Literal["HOLDS", "REFUTED", "INCONCLUSIVE"]
    claim: str
    metric: str
    kind: Kind
    estimate: float
    low: float
    high: float
    level: float
    threshold: float
    pvalue: float
    pvalue_refuted: float
    alpha: float
    n: int
    clusters: int | None
    method: str
    gap: float
    power: float | None
    mde: float | None
    n_needed: int | None
    worst: list[list[float]]
    notes: list[str]
    # where it lives: the test's node id, its place among the test's claims, its baseline key
    test: str
    index: int
    name: str | None
    key: str
    baseline_file: str  # relative to the suite root
    seconds: float
    # what produced it: hashes of everything but floats, the float parameters, model-derived vectors
    identity: dict[str, Any]
    id: str
    claim_key: str
    definition: dict[str, Any]
    derived: dict[str, list[float]]
    hooks: list[dict[str, Any]]
    per_prompt: PerPrompt
    sweep: SweepRecord  # sweep claims only
    curve: CurveRecord  # faithfulness-curve claims only
    agreement: AgreementRecord  # attribution-agreement claims only
    # added later
    baseline: dict[str, Any]
    p_holm: float
    p_bh: float


def build_record(
    verdict: Verdict, effect: Effect, per_prompt: Any, *, test: str, index: int, name: str | None, seed: int
) -> ClaimRecord:
    """The record of ``verdict``, decided on ``effect``'s values (``per_prompt``: the claim's units)."""
    identity = dict(effect.identity or {"values": "external", "n": effect.n})
    derived = identity.pop("derived", None) or {}
    identity.update(claim=verdict.claim, threshold=verdict.threshold, seed=seed)
    claim_definition = definition(identity, verdict.claim, verdict.threshold)
    data = verdict.to_dict()
    method = data.pop("test")
    for field in ("sweep", "curve", "agreement"):
        if data.get(field) is None:
            data.pop(field, None)
    groups = None if effect.groups is None else [str(g) for g in effect.groups]
    record: dict[str, Any] = {
        **data,
        "method": method,
        "test": test,
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
    return record  # type: ignore[return-value]


def json_safe(value: Any) -> Any:
    """Non-finite floats (an unbounded interval) become the strings "inf", "-inf" or "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


def _digest(data: dict) -> str:
    """A short hash of JSON data (identities hold no floats, so it is machine-independent)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- checking records read from disk ---------------------------------------------------------------

# Fields the renderers and ``mitest compare`` read, and the kind of value each must hold.
_RUN_FIELDS = {"created": "text", "settings": "object", "summary": "object"}
_SETTINGS_FIELDS = {"alpha": "finite", "correction": "text", "seed": "integer"}
_SUMMARY_FIELDS = {name: "integer" for name in ("claims", "holds", "refuted", "inconclusive", "regressions")}
_CLAIM_FIELDS = {
    **{name: "text" for name in ("claim", "claim_key", "key", "test", "metric")},
    **{name: "number" for name in ("estimate", "low", "high", "threshold", "pvalue")},
    **{name: "finite" for name in ("alpha", "gap")},
    "outcome": "outcome",
    "index": "integer",
    "n": "integer",
    "identity": "object",
    "definition": "object",
    "per_prompt": "object",
}
_UNDECIDED_FIELDS = {"claim": "text", "test": "text", "error": "text", "old_estimate": "number"}
_OUTCOMES = ("HOLDS", "REFUTED", "INCONCLUSIVE")


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_KINDS: dict[str, Callable[[Any], bool]] = {
    "text": lambda value: isinstance(value, str),
    # mitest writes a non-finite float (an unbounded interval) as the string "inf", "-inf" or "nan"
    "number": lambda value: _real(value) or value in ("inf", "-inf", "nan"),
    "finite": lambda value: _real(value) and math.isfinite(value),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "object": lambda value: isinstance(value, dict),
    "outcome": lambda value: value in _OUTCOMES,
    "flag": lambda value: isinstance(value, bool),
}
_DESCRIPTIONS = {
    "text": "a string",
    "number": "a number",
    "finite": "a finite number",
    "integer": "an integer",
    "object": "an object",
    "outcome": "one of " + ", ".join(_OUTCOMES),
    "flag": "true or false",
}


def run_problem(run: dict) -> str | None:
    """The first thing in a run record that the renderers could not use, or None."""
    problem = (
        _fields_problem(run, _RUN_FIELDS, "the run")
        or _fields_problem(run["settings"], _SETTINGS_FIELDS, "settings")
        or _fields_problem(run["summary"], _SUMMARY_FIELDS, "summary")
    )
    if problem:
        return problem
    for i, claim in enumerate(run["claims"]):
        problem = _fields_problem(claim, _CLAIM_FIELDS, f"claim {i}") or _claim_problem(claim, i)
        if problem:
            return problem
    undecided = run.get("undecided") or []
    if not isinstance(undecided, list):
        return "undecided is not a list"
    for i, entry in enumerate(undecided):
        problem = _fields_problem(entry, _UNDECIDED_FIELDS, f"undecided claim {i}")
        if problem:
            return problem
    return _listings_problem(run)


def _listings_problem(run: dict) -> str | None:
    """Problems in the run's lists of problems, orphaned and stale baseline entries."""
    for name in ("problems", "orphans", "stale"):
        entries = run.get(name) or []
        if not isinstance(entries, list):
            return f"{name} is not a list"
        if name != "stale" and not all(isinstance(entry, str) for entry in entries):
            return f"{name} is not a list of strings"
    for i, entry in enumerate(run.get("stale") or []):
        if not (isinstance(entry, dict) and all(isinstance(entry.get(key), str) for key in ("key", "reason"))):
            return f"stale entry {i} is not an object with a 'key' and a 'reason' string"
    return None


def _claim_problem(claim: dict, i: int) -> str | None:
    """Problems in a claim's per-prompt values, baseline comparison and notes."""
    values = claim["per_prompt"]
    lengths = set()
    for name in ("clean", "intervened", "corrupted", "claim_value"):
        if values.get(name) is None and name != "claim_value":
            continue
        if not isinstance(values.get(name), list) or not all(_KINDS["finite"](v) for v in values[name]):
            return f"claim {i}: per_prompt.{name} is not a list of finite numbers"
        if name != "claim_value":
            lengths.add(len(values[name]))
    if len(lengths) > 1:
        return f"claim {i}: per_prompt clean, intervened and corrupted have different lengths"
    group = values.get("group")
    if group is not None and (not isinstance(group, list) or len(group) != len(values["claim_value"])):
        return f"claim {i}: per_prompt.group is not one label per claim value"
    baseline = claim.get("baseline")
    if baseline is not None and not (
        isinstance(baseline, dict)
        and isinstance(baseline.get("status"), str)
        and isinstance(baseline.get("message", ""), str)
    ):
        return f"claim {i}: baseline is not an object with a status and a message"
    notes = claim.get("notes")
    if notes is not None and (not isinstance(notes, list) or not all(isinstance(note, str) for note in notes)):
        return f"claim {i}: notes is not a list of text"
    problem = definition_problem(claim["definition"], claim.get("derived", {}))
    if problem:
        return f"claim {i} has {problem}"
    problem = sweep_problem(claim["sweep"]) if claim.get("sweep") is not None else None
    if problem:
        return f"claim {i}: sweep {problem}"
    problem = curve_problem(claim["curve"]) if claim.get("curve") is not None else None
    if problem:
        return f"claim {i}: curve {problem}"
    problem = agreement_problem(claim["agreement"]) if claim.get("agreement") is not None else None
    return f"claim {i}: agreement {problem}" if problem else None


_SWEEP_ROWS, _SWEEP_COLUMNS = (None, "layer"), (None, "head", "neuron", "position")
_CELL_FIELDS = {
    "cell": "text",
    "site": "text",
    **{name: "number" for name in ("estimate", "low", "high")},
    "n": "integer",
    **{name: "flag" for name in ("named", "failing")},
}


def sweep_problem(sweep: Any) -> str | None:
    """The first thing in a claim's sweep field that the renderers could not use, or None."""
    if not isinstance(sweep, dict):
        return f"is a {type(sweep).__name__}, not an object"
    if sweep.get("rows") not in _SWEEP_ROWS:
        return f"rows is {sweep.get('rows')!r:.40}, not 'layer' or null"
    if sweep.get("columns") not in _SWEEP_COLUMNS:
        return f"columns is {sweep.get('columns')!r:.40}, not 'head', 'neuron', 'position' or null"
    cells = sweep.get("cells")
    if not isinstance(cells, list) or not cells:
        return "cells is not a non-empty list"
    for j, cell in enumerate(cells):
        problem = _fields_problem(cell, _CELL_FIELDS, f"cell {j}") or _cell_problem(cell, j)
        if problem:
            return problem
    return None


_POINT_FIELDS = {"fraction": "finite", "k": "integer", **{name: "number" for name in ("estimate", "low", "high")}}
_AREA_FIELDS = {name: "number" for name in ("estimate", "low", "high")}


def curve_problem(curve: Any) -> str | None:
    """The first thing in a claim's curve field that the renderers could not use, or None."""
    if not isinstance(curve, dict):
        return f"is a {type(curve).__name__}, not an object"
    points = curve.get("points")
    if not isinstance(points, list) or len(points) < 2:
        return "points is not a list of at least two points"
    for j, point in enumerate(points):
        problem = _fields_problem(point, _POINT_FIELDS, f"point {j}")
        if problem:
            return problem
    fractions = [float(point["fraction"]) for point in points]
    if any(b <= a for a, b in zip(fractions, fractions[1:], strict=False)):
        return "points are not in increasing fraction order"
    at = curve.get("at_fraction")
    if at is not None and not _KINDS["finite"](at):
        return f"at_fraction is {at!r:.40}, not a finite number or null"
    return _fields_problem(curve.get("auc"), _AREA_FIELDS, "auc")


_AGREEMENT_FIELDS = {"unit": "text", "attribution": "number", "exact": "number", "top": "flag"}


def agreement_problem(agreement: Any) -> str | None:
    """The first thing in a claim's agreement field that the renderers could not use, or None."""
    if not isinstance(agreement, dict):
        return f"is a {type(agreement).__name__}, not an object"
    for name in ("unit", "method"):
        if not isinstance(agreement.get(name), str):
            return f"{name} is {agreement.get(name)!r:.40}, not text"
    if not _KINDS["number"](agreement.get("rank_correlation")):
        return f"rank_correlation is {agreement.get('rank_correlation')!r:.40}, not a number"
    points = agreement.get("points")
    if not isinstance(points, list) or len(points) < 2:
        return "points is not a list of at least two points"
    for j, point in enumerate(points):
        problem = _fields_problem(point, _AGREEMENT_FIELDS, f"point {j}")
        if problem:
            return problem
    return None


def _cell_problem(cell: dict, j: int) -> str | None:
    """Problems in a sweep cell's coordinates and per-prompt changes."""
    for name in ("layer", "head", "neuron", "position"):
        value = cell.get(name)
        if value is not None and not (_KINDS["finite"](value) and float(value).is_integer()):
            return f"cell {j}: {name} is {value!r:.40}, not a whole number"
    delta = cell.get("delta")
    if not isinstance(delta, list) or not all(_KINDS["number"](v) for v in delta):
        return f"cell {j}: delta is not a list of numbers"
    return None


def _fields_problem(data: Any, fields: dict[str, str], where: str) -> str | None:
    if not isinstance(data, dict):
        return f"{where} is a {type(data).__name__}, not an object"
    for name, kind in fields.items():
        if name not in data:
            return f"{where} lacks {name!r}"
        if not _KINDS[kind](data[name]):
            return f"{where}: {name} is {data[name]!r:.40}, not {_DESCRIPTIONS[kind]}"
    return None
