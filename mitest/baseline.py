"""Baselines: each claim's last accepted result, as diffable JSON next to the suite, and the
comparison that turns a model release's regression into a failing test.

A run is compared claim by claim with the stored baseline:

* the claim's identity (prompts, intervention, metric, claim and threshold) changed: reported as
  ``changed`` and not compared;
* it HELD in the baseline and does not now: ``regressed``;
* it HELD and still holds, but a paired non-inferiority test on the same prompts (cluster-aware
  when prompts have groups) cannot show that the effect lost less than ``margin`` of the room it
  had above the claim's boundary: ``regressed``;
* otherwise ``same`` (identical values) or ``ok``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_text
from .errors import MitestError

SCHEMA, VERSION = "mitest.baseline", 1


class BaselineError(MitestError, ValueError):
    """A baseline file is missing pieces, hand-broken or from another schema."""


OUTCOMES = ("HOLDS", "REFUTED", "INCONCLUSIVE")


def load(path: Path) -> dict[str, dict[str, Any]]:
    """The claims stored in a baseline file ({} when the file does not exist)."""
    if not path.exists():
        return {}
    fix = "fix it, restore it from version control, or rewrite it with --mitest-update-baseline"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        reason = error.strerror or error
        raise BaselineError(f"cannot read baseline {path} ({reason}); it must be a readable file") from None
    except UnicodeDecodeError as error:
        where = f"{error.reason} at byte {error.start}"
        raise BaselineError(f"baseline {path} is not UTF-8 text ({where}); {fix}") from None
    except RecursionError:
        raise BaselineError(f"baseline {path} is nested too deeply to be a mitest baseline; {fix}") from None
    except ValueError as error:  # json.JSONDecodeError, or an integer too long to convert
        raise BaselineError(f"baseline {path} is not valid JSON ({error}); {fix}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("claims"), dict):
        raise BaselineError(f"baseline {path} is not a mitest baseline (expected schema {SCHEMA!r})")
    version = data.get("version")
    if type(version) is not int or version != VERSION:
        raise BaselineError(f"baseline {path} has version {version!r}; this mitest reads version {VERSION}")
    for key, stored in data["claims"].items():
        problem = _entry_problem(stored)
        if problem:
            raise BaselineError(f"baseline {path}: claim {key!r} {problem}; {fix}")
    return data["claims"]


def _entry_problem(stored: Any) -> str | None:
    """What is wrong with one stored claim, or None when compare() can use it."""
    if not isinstance(stored, dict):
        return f"is a {type(stored).__name__}, not an object"
    missing = [f for f in ("claim_key", "outcome", "estimate", "gap", "claim_value") if f not in stored]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not isinstance(stored["claim_key"], str):
        return "has a claim_key that is not a string"
    if stored["outcome"] not in OUTCOMES:
        return f"has outcome {stored['outcome']!r:.40}, not one of {', '.join(OUTCOMES)}"
    for name in ("estimate", "gap"):
        if not _finite(stored[name]):
            return f"has {name} {stored[name]!r:.40}, not a finite number"
    values = stored["claim_value"]
    if not isinstance(values, list) or not values or not all(_finite(v) for v in values):
        return "has claim_value that is not a non-empty list of finite numbers"
    group = stored.get("group")
    if group is not None and (
        not isinstance(group, list)
        or len(group) != len(values)
        or not all(isinstance(g, str) or _finite(g) for g in group)
    ):
        return "has group that is not one label (a string or number) per claim value"
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def save(path: Path, claims: dict[str, dict[str, Any]]) -> None:
    """Write the baseline file atomically, sorted and indented so diffs stay readable."""
    text = json.dumps({"schema": SCHEMA, "version": VERSION, "claims": claims}, indent=1, sort_keys=True)
    write_text(path, text + "\n")


def entry(record: dict[str, Any]) -> dict[str, Any]:
    """What a baseline keeps of a claim record."""
    return {
        "claim": record["claim"],
        "claim_key": record["claim_key"],
        "model": record["identity"].get("model"),
        "outcome": record["outcome"],
        "estimate": record["estimate"],
        "threshold": record["threshold"],
        "gap": record["gap"],
        "claim_value": record["per_prompt"]["claim_value"],
        "group": record["per_prompt"].get("group"),
    }


def compare(old: dict[str, Any] | None, record: dict[str, Any], *, margin: float, alpha: float) -> dict[str, Any]:
    """Compare a claim record with its baseline entry; returns status, message and the numbers."""
    from .stats import mean_test, units

    if old is None:
        return {"status": "new", "message": "no baseline for this claim"}
    if old["claim_key"] != record["claim_key"]:
        return {
            "status": "changed",
            "message": "the claim's prompts, intervention, metric or threshold changed since the baseline; "
            "not compared (update the baseline to accept the new claim)",
        }
    before = f"{old['outcome']} with estimate {old['estimate']:.4g} on model {old.get('model')}"
    now = f"{record['outcome']} with estimate {record['estimate']:.4g} on model {record['identity'].get('model')}"
    result = {"old_outcome": old["outcome"], "old_estimate": old["estimate"], "old_model": old.get("model")}
    if old["outcome"] == "HOLDS" and record["outcome"] != "HOLDS":
        return {**result, "status": "regressed", "message": f"held in the baseline ({before}); now {now}"}
    old_values = np.asarray(old["claim_value"], dtype=float)
    new_values = np.asarray(record["per_prompt"]["claim_value"], dtype=float)
    if old_values.shape == new_values.shape and np.array_equal(old_values, new_values):
        return {**result, "status": "same", "message": "identical to the baseline"}
    if old["outcome"] != "HOLDS" or old_values.shape != new_values.shape:
        return {**result, "status": "ok", "message": f"baseline {before}"}
    # The effect may lose at most `margin` of the room it had above the claim's boundary.
    allowed = margin * abs(float(old.get("gap", 0.0)))
    difference = units(new_values - old_values + allowed, old.get("group"))
    p_noninferior = float(mean_test(difference, "greater").pvalue)
    result["p_noninferior"] = p_noninferior
    if p_noninferior >= alpha:
        drop = float(old_values.mean() - new_values.mean())
        return {
            **result,
            "status": "regressed",
            "message": f"effect fell from {old_values.mean():.4g} to {new_values.mean():.4g} (drop {drop:.4g}); "
            f"the paired non-inferiority test cannot show a drop below the allowed {allowed:.4g} "
            f"(p = {p_noninferior:.2g}); baseline {before}",
        }
    return {**result, "status": "ok", "message": f"non-inferior to the baseline (p = {p_noninferior:.2g})"}
