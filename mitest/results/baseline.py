"""Baselines: each claim's last accepted result, as diffable JSON next to the suite, and the
comparison that turns a model release's regression into a failing test.

A claim is matched to its baseline entry by a key that says where it is written: its test file's
path relative to the baseline folder's parent, the test's name, and the claim's place among the
test's unnamed claims (or its explicit name). Then its definition is compared:

* structure (prompts, intervention, metric, kind of claim) or numbers (threshold, coefficients,
  directions, beyond a relative 1e-6) differ: ``changed``, naming what changed, and not compared;
* it HELD in the baseline and does not now: ``regressed``;
* the ``evidence`` gate (default): the paired per-prompt values show, at the claim's alpha, that
  the effect fell by more than ``margin`` of the room it had above the claim's boundary:
  ``regressed``. Improvements and unchanged effects never fail;
* the ``prove`` gate: also ``regressed`` unless the data show that it fell by less;
* otherwise ``same`` (identical values) or ``ok``.

Vectors derived from the model under test (``mt.direction(..., derived=...)``) are never matched
on: they are recorded, and the comparison reports their cosine to the baseline's.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mitest.errors import BaselineError, DuplicateKeyError

SCHEMA, VERSION = "mitest.baseline", 2
OUTCOMES = ("HOLDS", "REFUTED", "INCONCLUSIVE")
GATES = ("evidence", "prove")
MAX_BYTES = 64 * 2**20  # a baseline larger than this is refused (--mitest-baseline-max-mb raises it)
RELATIVE_TOLERANCE = 1e-6  # numbers of a definition that differ by less are the same number
SEARCHED = ("property", "sampled")  # claim kinds whose units are not the prompts


# -- keys ------------------------------------------------------------------------------------------


def key(test_file: str | os.PathLike, anchor: str | os.PathLike, test: str, claim: str) -> str:
    """The key of one claim: ``<test file relative to anchor>::<test name>::<claim>``. The anchor is
    the folder that holds the baseline folder (or the suite's root, see :func:`anchor`), so the key
    names no rootdir and no absolute path: every checkout, machine and invocation finds the same entry."""
    relative = Path(os.path.relpath(os.path.abspath(test_file), os.path.abspath(anchor))).as_posix()
    return f"{relative}::{test}::{claim}"


def anchor(test_file: str | os.PathLike, baseline_file: str | os.PathLike, root: str | os.PathLike) -> Path:
    """What a key's file part is relative to: the baseline folder's parent when it lies inside the
    suite's ``root`` (always, with baselines/ beside each test file), else ``root`` itself (a shared
    baseline folder outside the checkout must not put the checkout's name into the keys)."""
    parent = Path(os.path.abspath(baseline_file)).parent.parent
    root = Path(os.path.abspath(root))
    return parent if parent == root or root in parent.parents else root


def test_of(entry_key: str) -> str:
    """The ``<file>::<test name>`` part of a key."""
    return entry_key.rsplit("::", 1)[0]


# -- files -----------------------------------------------------------------------------------------


def load(path: Path, *, max_bytes: int = MAX_BYTES) -> dict[str, dict[str, Any]]:
    """The claims stored in a baseline file ({} when the file does not exist)."""
    fix = "fix it, restore it from version control, or rewrite it with --mitest-update-baseline"
    if not os.path.lexists(path):
        return {}
    if path.is_dir():
        raise BaselineError(f"baseline {path} is a folder, not a file; move it away so mitest can write the file")
    try:
        size = path.stat().st_size
    except OSError as error:
        reason = error.strerror or error
        raise BaselineError(f"cannot read baseline {path} ({reason}); it must be a readable file") from None
    if size > max_bytes:
        raise BaselineError(
            f"baseline {path} is {size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit; split the "
            "suite into smaller test modules, or raise the limit with --mitest-baseline-max-mb"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except DuplicateKeyError as duplicate:
        raise BaselineError(f"baseline {path} holds the key {duplicate.args[0]!r} twice; {fix}") from None
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
    if version == 1:
        raise BaselineError(
            f"baseline {path} was written by an older mitest (schema version 1), whose claim keys depended on "
            "pytest's rootdir and on float values computed at run time. Rewrite it from the model it was "
            "accepted on: check out the commit that last updated it, run `python -m pytest <suite> "
            "--mitest-update-baseline` there, and review the diff (verdicts and estimates should not move)"
        )
    if type(version) is not int or version != VERSION:
        raise BaselineError(f"baseline {path} has version {version!r}; this mitest reads version {VERSION}")
    for entry_key, stored in data["claims"].items():
        problem = entry_problem(entry_key, stored)
        if problem:
            raise BaselineError(f"baseline {path}: claim {entry_key!r:.200} {problem}; {fix}")
    return data["claims"]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that refuses a repeated key (json keeps the last one silently)."""
    data: dict[str, Any] = {}
    for name, value in pairs:
        if name in data:
            raise DuplicateKeyError(name)
        data[name] = value
    return data


def entry_problem(entry_key: str, stored: Any) -> str | None:
    """What is wrong with one stored claim, or None when compare() can use it."""
    if entry_key.count("::") < 2:
        return "has a key that is not <file>::<test>::<claim>"
    if not isinstance(stored, dict):
        return f"is a {type(stored).__name__}, not an object"
    missing = [f for f in ("claim_key", "definition", "outcome", "estimate", "gap", "claim_value") if f not in stored]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not isinstance(stored["claim_key"], str):
        return "has a claim_key that is not a string"
    problem = definition_problem(stored["definition"], stored.get("derived", {}))
    if problem:
        return f"has {problem}"
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


def definition_problem(definition: Any, derived: Any) -> str | None:
    """What is wrong with a stored definition and its derived vectors, or None."""
    if not (
        isinstance(definition, dict)
        and isinstance(definition.get("parts"), dict)
        and isinstance(definition.get("parameters"), dict)
        and all(_numbers(v) for v in definition["parameters"].values())
    ):
        return "a definition that is not {parts: {...}, parameters: {name: number or list of numbers}}"
    if not isinstance(derived, dict) or not all(isinstance(v, list) and _numbers(v) for v in derived.values()):
        return "derived vectors that are not lists of finite numbers"
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(value: Any) -> bool:
    return _finite(value) or (isinstance(value, list) and bool(value) and all(_finite(v) for v in value))


def render(claims: dict[str, dict[str, Any]]) -> str:
    """A baseline file's text: sorted and indented so that diffs stay readable."""
    return json.dumps({"schema": SCHEMA, "version": VERSION, "claims": claims}, indent=1, sort_keys=True) + "\n"


def entry(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a baseline keeps of a claim record."""
    return {
        "claim": record["claim"],
        "claim_key": record["claim_key"],
        "definition": record["definition"],
        "derived": record.get("derived") or {},
        "kind": record.get("kind", "effect"),
        "model": record["identity"].get("model"),
        "outcome": record["outcome"],
        "estimate": record["estimate"],
        "threshold": record["threshold"],
        "gap": record["gap"],
        "claim_value": record["per_prompt"]["claim_value"],
        "group": record["per_prompt"].get("group"),
    }


# -- definitions -----------------------------------------------------------------------------------


def definition(identity: dict[str, Any], claim: str, threshold: float) -> dict[str, Any]:
    """A claim's definition: ``parts`` that must be equal (hashes and names; the claim's wording with
    its numbers taken out) and ``parameters`` that must be equal up to a relative 1e-6 (the threshold
    and every float of the intervention and metric). The model and the suite's seed are not part of it."""
    parts = {
        name: value
        for name, value in identity.items()
        if name not in ("model", "seed", "parameters", "derived", "structure", "claim", "threshold")
    }
    parts["claim"] = _NUMBER.sub("#", claim)
    return {
        "parts": parts,
        "parameters": {"threshold": float(threshold), **identity.get("parameters", {})},
        "spec": identity.get("structure", {}),  # the structures behind the hashes, to say what changed
    }


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?%?")


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two definitions, in words (empty when they define the same claim)."""
    found = []
    old_parts, new_parts = old["parts"], new["parts"]
    for name in sorted(set(old_parts) | set(new_parts)):
        if old_parts.get(name) != new_parts.get(name):
            spelled = _differences(name, old.get("spec", {}).get(name), new.get("spec", {}).get(name))
            found.extend(spelled or [_part_change(name, old_parts.get(name), new_parts.get(name))])
    old_numbers, new_numbers = old["parameters"], new["parameters"]
    for name in sorted(set(old_numbers) | set(new_numbers)):
        if name not in old_numbers or name not in new_numbers:
            found.append(f"{name} {'added' if name not in old_numbers else 'removed'}")
        elif not _close(old_numbers[name], new_numbers[name]):
            change = f"{name} {_shown(old_numbers[name])} -> {_shown(new_numbers[name])}"
            if isinstance(new_numbers[name], list):
                change += (
                    " (a vector computed from the model under test belongs in mt.direction(..., derived=...) "
                    "or mt.mean_difference, which are compared across releases instead)"
                )
            found.append(change)
    return found


def _differences(path: str, old: Any, new: Any, limit: int = 5) -> list[str]:
    """The leaves in which two spec structures differ, as ``path old -> new`` (at most ``limit``)."""
    if old is None or new is None or old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            found += _differences(f"{path}.{key}", old.get(key), new.get(key), limit)
        return found[:limit]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        found = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            found += _differences(f"{path}.{i}", a, b, limit)
        return found[:limit]
    return [f"{path} {json.dumps(old, default=str):.80} -> {json.dumps(new, default=str):.80}"]


def _part_change(name: str, old: Any, new: Any) -> str:
    what = {"prompts": "the prompt set", "intervention": "the intervention", "metric": "the metric"}.get(name, name)
    if old is None or new is None:
        return f"{what} {'added' if old is None else 'removed'}"
    if name == "claim":
        return f"the claim ({old!r} -> {new!r})"
    return f"{what} ({old} -> {new})"


def _close(old: Any, new: Any) -> bool:
    a, b = np.atleast_1d(np.asarray(old, dtype=float)), np.atleast_1d(np.asarray(new, dtype=float))
    if a.shape != b.shape:
        return False
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()))
    return bool(np.all(np.abs(a - b) <= RELATIVE_TOLERANCE * scale))


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return f"a vector of {len(value)} (norm {float(np.linalg.norm(value)):.4g})"
    return f"{value:.6g}"


def drift(old: dict[str, list[float]], new: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per derived vector both runs have: its cosine to the baseline's and the ratio of their norms."""
    moved = {}
    for name in sorted(set(old) & set(new)):
        a, b = np.asarray(old[name], dtype=float), np.asarray(new[name], dtype=float)
        if a.shape != b.shape:
            continue
        norms = float(np.linalg.norm(a)) * float(np.linalg.norm(b))
        moved[name] = {
            "cosine": float(a @ b / norms) if norms > 0 else 0.0,
            "norm_ratio": float(np.linalg.norm(b) / np.linalg.norm(a)) if np.linalg.norm(a) > 0 else math.inf,
        }
    return moved


def derived_changes(old: dict[str, list[float]], new: dict[str, list[float]]) -> list[str]:
    """Derived vectors that one run has and the other lacks, or whose length changed (a different claim)."""
    found = [f"derived vector {name!r:.120} {'added' if name in new else 'removed'}" for name in set(old) ^ set(new)]
    for name in set(old) & set(new):
        if len(old[name]) != len(new[name]):
            found.append(f"derived vector {name!r:.120} has {len(new[name])} entries, the baseline's {len(old[name])}")
    return sorted(found)


# -- the gate --------------------------------------------------------------------------------------


def compare(
    old: dict[str, Any] | None, record: Mapping[str, Any], *, margin: float, alpha: float, gate: str = "evidence"
) -> dict[str, Any]:
    """Compare a claim record with its baseline entry; returns status, message and the numbers."""
    if gate not in GATES:
        raise BaselineError(f"gate must be one of {', '.join(GATES)}, got {gate!r}")
    if old is None:
        return {"status": "new", "message": "no baseline for this claim"}
    changed = changes(old["definition"], record["definition"])
    changed += derived_changes(old.get("derived", {}), record.get("derived") or {})
    if changed:
        return {
            "status": "changed",
            "changes": changed,
            "message": f"the claim changed since its baseline ({'; '.join(changed)}); not compared "
            "(update the baseline to accept the new claim)",
        }
    old_values = np.asarray(old["claim_value"], dtype=float)
    new_values = np.asarray(record["per_prompt"]["claim_value"], dtype=float)
    result: dict[str, Any] = {
        "old_outcome": old["outcome"],
        "old_estimate": old["estimate"],
        "old_model": old.get("model"),
    }
    moved = drift(old.get("derived", {}), record.get("derived") or {})
    if moved:
        result["derived"] = moved
    if old.get("kind") in SEARCHED and old.get("kind") == record.get("kind") and old_values.shape != new_values.shape:
        # A searched property's units are the examples tried, a random-circuit claim's its draws (their
        # number follows the claim's alpha): without the same units, compare the outcomes.
        regressed = old["outcome"] == "HOLDS" and record["outcome"] != "HOLDS"
        status = "regressed" if regressed else "same" if np.array_equal(old_values, new_values) else "ok"
        message = "held in the baseline; now " + record["outcome"] if regressed else f"baseline {old['outcome']}"
        return {**result, "status": status, "message": message}
    if old_values.shape != new_values.shape:
        return {
            **result,
            "status": "error",
            "message": f"the baseline holds {old_values.size} per-prompt values but this run has {new_values.size} "
            "for the same prompt set; the baseline was edited or corrupted: restore it or rewrite it with "
            "--mitest-update-baseline",
        }
    before = _state(old["outcome"], old["estimate"], old.get("model"))
    now = _state(record["outcome"], record["estimate"], record["identity"].get("model"))
    note = _drift_note(moved)
    if old["outcome"] == "HOLDS" and record["outcome"] != "HOLDS":
        return {**result, "status": "regressed", "message": f"held in the baseline ({before}); now {now}{note}"}
    if np.array_equal(old_values, new_values):
        return {**result, "status": "same", "message": f"identical to the baseline{note}"}
    if old["outcome"] != "HOLDS" or old.get("kind") == "equivalence":
        # An equivalence claim that still holds is within its margin, shown by its own test.
        return {**result, "status": "ok", "message": f"baseline {before}{note}"}
    return {**result, **_gate(old_values, new_values, old, margin, alpha, gate, before, note)}


def _state(outcome: str, estimate: float, model: str | None) -> str:
    return f"{outcome} with estimate {estimate:.4g}" + (f" on model {model}" if model else "")


def _gate(
    old_values: np.ndarray,
    new_values: np.ndarray,
    old: dict[str, Any],
    margin: float,
    alpha: float,
    gate: str,
    before: str,
    note: str,
) -> dict[str, Any]:
    """Whether the paired values show (evidence) or fail to rule out (prove) a drop beyond the allowance."""
    allowed = margin * abs(float(old["gap"]))  # the share of its room above the boundary a claim may lose
    drops = old_values - new_values
    drop = float(drops.mean())
    fell = f"effect went from {old_values.mean():.4g} to {new_values.mean():.4g}"
    fell += f" (drop {drop:.4g}, allowed {allowed:.4g})"
    scale = max(float(np.abs(old_values).max()), float(np.abs(new_values).max()), 1e-300)
    if float(np.ptp(drops)) <= RELATIVE_TOLERANCE * scale:  # every prompt dropped by the same amount: decided exactly
        p_beyond = 0.0 if drop - allowed > RELATIVE_TOLERANCE * scale else 1.0
        p_within = 0.0 if allowed - drop > RELATIVE_TOLERANCE * scale or drop <= 0 else 1.0
    else:
        p_beyond = _drop_p(drops - allowed, old.get("group"))
        p_within = _drop_p(allowed - drops, old.get("group"))
    numbers = {"drop": drop, "allowed": allowed, "p_beyond": p_beyond, "p_within": p_within, "gate": gate}
    if p_beyond < alpha:
        return {
            **numbers,
            "status": "regressed",
            "message": f"{fell}: the paired per-prompt values show a drop beyond the allowance (p = {p_beyond:.2g} "
            f"< {alpha:.2g}); baseline {before}{note}",
        }
    if gate == "prove" and p_within >= alpha:
        return {
            **numbers,
            "status": "regressed",
            "message": f"{fell}: the prove gate needs the data to show a drop below the allowance, and they do not "
            f"(p = {p_within:.2g}, alpha {alpha:.2g}); baseline {before}{note}",
        }
    return {**numbers, "status": "ok", "message": f"{fell}; no evidence of a drop beyond it (p = {p_beyond:.2g}){note}"}


def _drop_p(margins: np.ndarray, groups: list[Any] | None) -> float:
    """p-value of ``mean(margins) > 0``: the claims' paired test (CR2 with Bell-McCaffrey df when grouped)."""
    from mitest.claims.stats import cluster_test, mean_test

    if groups is not None:
        return float(cluster_test(margins, groups, "greater").pvalue)
    return float(mean_test(margins, "greater").pvalue)


def _drift_note(moved: dict[str, dict[str, float]]) -> str:
    if not moved:
        return ""
    shown = ", ".join(f"{name.split(':', 1)[0]} cosine {m['cosine']:.4f}" for name, m in moved.items())
    return f"; derived directions moved: {shown}"


# -- stale entries ---------------------------------------------------------------------------------


def stale(stored: dict[str, Any], decided: set[str], ran: dict[str, bool], whole: Iterable[str]) -> dict[str, str]:
    """Entries no test stands for any more, with the reason: ``whole`` are the ``<file>::`` prefixes of
    modules collected in full, ``ran`` maps each collected test (``<file>::<test>``) to whether it
    passed, ``decided`` holds the keys decided in this run."""
    prefixes = tuple(whole)
    found = {}
    for entry_key in sorted(stored):
        test = test_of(entry_key)
        if entry_key in decided or not test.startswith(prefixes):
            continue
        if test not in ran:
            found[entry_key] = "no collected test has this name"
        elif ran[test]:
            found[entry_key] = "the test passed without deciding this claim"
    return found
