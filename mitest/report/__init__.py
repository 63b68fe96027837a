"""One result schema, many renderers: JSON (the record), Markdown, HTML and per-prompt CSV.

A run is a plain dict (``build_run``); every renderer reads only that dict, so ``mitest report
RUN.json`` re-renders any earlier run. The four files are written all-or-nothing, as one write.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..atomic import write_files
from ..errors import ReportError

SCHEMA, VERSION = "mitest.run", 2


def build_run(
    claims: Sequence[dict[str, Any]],
    *,
    alpha: float,
    correction: str,
    seed: int,
    profile: str,
    undecided: Sequence[dict[str, Any]] = (),
    gate: str = "evidence",
    models: dict[str, dict[str, str]] | None = None,
    stale: Sequence[dict[str, Any]] = (),
    orphans: Sequence[str] = (),
    problems: Sequence[str] = (),
) -> dict:
    """The run record: settings, a summary, every claim with Holm and BH adjusted p-values, the
    ``undecided`` claims (held in the baseline, not decided now because their test raised first:
    each is a regression), the models under test, ``stale`` baseline entries, ``orphans`` (baseline
    files whose test module is gone) and the ``problems``
    that made the run fail although its claims passed (files not written, unused candidates)."""
    from ..stats import benjamini_hochberg, holm

    claims = [dict(claim) for claim in claims]
    pvalues = [claim["pvalue"] for claim in claims]
    for claim, p_holm, p_bh in zip(claims, holm(pvalues), benjamini_hochberg(pvalues), strict=True):
        claim["p_holm"], claim["p_bh"] = float(p_holm), float(p_bh)
    outcomes = [claim["outcome"] for claim in claims]
    regressed = sum(1 for claim in claims if (claim.get("baseline") or {}).get("status") == "regressed")
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"alpha": alpha, "correction": correction, "seed": seed, "profile": profile, "gate": gate},
        "summary": {
            "claims": len(claims),
            "holds": outcomes.count("HOLDS"),
            "refuted": outcomes.count("REFUTED"),
            "inconclusive": outcomes.count("INCONCLUSIVE"),
            "undecided": len(undecided),
            "regressions": regressed + len(undecided),
            "stale": len(stale),
            "problems": len(problems),
        },
        "models": dict(models or {}),
        "claims": claims,
        "undecided": [dict(entry) for entry in undecided],
        "stale": [dict(entry) for entry in stale],
        "orphans": list(orphans),
        "problems": list(problems),
    }


def load_run(path: str | Path) -> dict:
    """Read and check a run file written by mitest."""
    try:
        run = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ReportError(f"cannot read run file {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ReportError(f"run file {path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except RecursionError:
        raise ReportError(f"run file {path} is nested too deeply to be a mitest run record") from None
    except ValueError as error:  # json.JSONDecodeError, or an integer too long to convert
        raise ReportError(f"run file {path} is not valid JSON: {error}") from None
    if not isinstance(run, dict) or run.get("schema") != SCHEMA or not isinstance(run.get("claims"), list):
        raise ReportError(f"{path} is not a mitest run record (expected schema {SCHEMA!r})")
    if type(run.get("version")) is not int or run["version"] != VERSION:
        raise ReportError(f"{path} has run schema version {run.get('version')!r}; this mitest reads version {VERSION}")
    problem = _run_problem(run)
    if problem:
        raise ReportError(f"{path} is not a well-formed mitest run record: {problem}; was it written by mitest?")
    return run


def write_reports(run: dict, directory: str | Path) -> list[Path]:
    """Write run.json, summary.md, report.html and per_prompt.csv into ``directory``.

    Every file is rendered before any is written, and all four are one all-or-nothing write (which
    first finishes or undoes a write interrupted earlier in ``directory``), so the folder holds
    either the earlier reports or these. Raises :class:`~mitest.WriteError` when it cannot.
    """
    from .html import render_html
    from .markdown import render_markdown
    from .table import per_prompt_csv

    directory = Path(directory)
    texts = {
        "run.json": json.dumps(run, indent=1, sort_keys=True, allow_nan=False),
        "summary.md": render_markdown(run),
        "report.html": render_html(run),
        "per_prompt.csv": per_prompt_csv(run),
    }
    return write_files({directory / name: text for name, text in texts.items()})


# -- checking a run read from disk ---------------------------------------------------------------

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
}
_DESCRIPTIONS = {
    "text": "a string",
    "number": "a number",
    "finite": "a finite number",
    "integer": "an integer",
    "object": "an object",
    "outcome": "one of " + ", ".join(_OUTCOMES),
}


def _run_problem(run: dict) -> str | None:
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
    from ..baseline import definition_problem

    problem = definition_problem(claim["definition"], claim.get("derived", {}))
    return f"claim {i} has {problem}" if problem else None


def _fields_problem(data: Any, fields: dict[str, str], where: str) -> str | None:
    if not isinstance(data, dict):
        return f"{where} is a {type(data).__name__}, not an object"
    for name, kind in fields.items():
        if name not in data:
            return f"{where} lacks {name!r}"
        if not _KINDS[kind](data[name]):
            return f"{where}: {name} is {data[name]!r:.40}, not {_DESCRIPTIONS[kind]}"
    return None
