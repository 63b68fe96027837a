"""``mt.sweep``: one intervention over every cell of a set, with per-cell Effects and claims on the whole.

A sweep's values equal one ``mt.measure`` per cell (:mod:`mitest.engine.sweeping` runs them
together). Claims on a sweep test every cell they name, and every other cell, as one claim: the
cells' p-values are Holm-adjusted together, the claim HOLDS when every cell's adjusted p-value is
below alpha, and a failing claim names the cells that did not hold, with their numbers.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from mitest.claims import stats
from mitest.claims.decide import claim_interval, decide, paired_decision, pvalues
from mitest.claims.effect import Effect
from mitest.claims.verdict import Verdict
from mitest.config import claim_alpha
from mitest.engine.effects import claim_identity
from mitest.engine.measure import checked_inputs
from mitest.engine.runner import Engine
from mitest.engine.sweeping import measure_cells
from mitest.errors import MitestError, NoOpInterventionWarning, SiteError, closest
from mitest.model.model import Model
from mitest.spec.interventions import Intervention
from mitest.spec.metrics import as_metric
from mitest.spec.prompts import Prompts
from mitest.sweeps.cells import Cell, expand, position_of, with_site

_DIRECTIONS = {"decrease": -1.0, "increase": 1.0}


def sweep(
    model: Model | Any,
    prompts: Prompts,
    intervention: Intervention,
    metric: object,
    *,
    positions: str | None = None,
    batch_size: int = 32,
    memory: int | str | None = None,
    strict: bool = False,
    only: Sequence[str] | None = None,
) -> Sweep:
    """Run ``intervention`` once per cell of its sites and return the :class:`Sweep`.

    The cells are each head or neuron of the intervention's sites (``mt.heads("*")``: every head;
    ``mt.neurons(3)``: every neuron of layer 3), each whole site otherwise (``mt.mlp("*")``: every
    MLP layer), and with ``positions="each"`` each token position too. For ``mt.path_patch`` the
    cells are the sender's. ``memory`` caps the activations of one pass (bytes, or ``"512MB"``,
    ``"2GiB"``), which sets how many cells share it; ``strict`` raises when a cell changes nothing.
    """
    model = checked_inputs(model, prompts, batch_size)
    metric = as_metric(metric)
    cells = expand(intervention, model, prompts, positions)
    if only is not None:
        cells = select(cells, only)
    interventions = [with_site(intervention, cell.site) for cell in cells]
    eager = any(model.resolve(cell.site.name).kind == "pattern" for cell in cells)
    engine = Engine(model, batch_size, eager=eager)
    effects, hook_stats = measure_cells(engine, prompts, interventions, metric, memory=_bytes(memory))
    unchanged = [cell.name for cell, found in zip(cells, hook_stats, strict=True) if not any(s.changed for s in found)]
    if unchanged:
        message = (
            f"{len(unchanged)} of {len(cells)} cells changed nothing on any prompt ({', '.join(unchanged[:8])}"
            f"{', ...' if len(unchanged) > 8 else ''}); their effect is zero by construction"
        )
        if strict:
            raise MitestError(message)
        warnings.warn(NoOpInterventionWarning(message), stacklevel=2)
    identity = claim_identity(model.revision_at(engine.version), prompts, intervention.to_dict(), metric)
    return Sweep(intervention, tuple(cells), tuple(effects), identity)


def select(cells: list[Cell], names: Sequence[str]) -> list[Cell]:
    """The cells named in ``names``, in their set's order; an unknown name lists the closest."""
    known = [cell.name for cell in cells]
    wanted = [names] if isinstance(names, str) else list(names)
    for name in wanted:
        if name not in known:
            near = closest(str(name), known)
            hint = f"; closest: {', '.join(near)}" if near else ""
            raise SiteError(f"no cell {name!r} in this set{hint}. Cells are named like {known[0]!r}")
    if not wanted:
        raise SiteError("only= names no cell; name at least one, or leave it out to run every cell")
    chosen = set(wanted)
    return [cell for cell in cells if cell.name in chosen]


def t_interval(values: np.ndarray, groups: np.ndarray | None, level: float) -> tuple[float, float]:
    """The t interval at ``level`` of the mean of per-prompt ``values`` (on cluster units with groups)."""
    units = stats.units(values, groups)
    mean = float(units.mean())
    if len(units) < 2:
        return mean, mean
    half = float(scipy_stats.t.ppf(0.5 + level / 2, len(units) - 1) * units.std(ddof=1) / np.sqrt(len(units)))
    return mean - half, mean + half


def cell_frame(
    cells: Sequence[Cell], values: Sequence[np.ndarray], groups: np.ndarray | None, level: float
) -> pd.DataFrame:
    """One row per cell: its coordinates, the mean of its per-prompt ``values`` (``estimate``), their t
    interval at ``level`` (``low``, ``high``) and ``n``; coordinate columns no cell has are dropped."""
    rows = []
    for cell, per_prompt in zip(cells, values, strict=True):
        low, high = t_interval(per_prompt, groups, level)
        rows.append(
            {
                "cell": cell.name,
                "site": str(cell.site),
                "layer": cell.layer,
                "head": cell.head,
                "neuron": cell.neuron,
                "position": cell.position,
                "estimate": float(per_prompt.mean()),
                "low": low,
                "high": high,
                "n": len(per_prompt),
            }
        )
    frame = pd.DataFrame(rows).dropna(axis="columns", how="all")
    for column in {"layer", "head", "neuron", "position"} & set(frame.columns):
        frame[column] = frame[column].astype("Int64")  # whole numbers, missing where a cell has none
    return frame


@dataclass(frozen=True, eq=False)
class Sweep:
    """Per-cell Effects of one sweep. Index it by cell name (``sweep["1.4"]``) for a cell's Effect."""

    template: Intervention
    cells: tuple[Cell, ...]
    effects: tuple[Effect, ...]
    identity: dict[str, Any]

    def __len__(self) -> int:
        return len(self.cells)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __getitem__(self, name: str) -> Effect:
        return self.effects[self._index(name)]

    @property
    def names(self) -> list[str]:
        """The cell names, in sweep order."""
        return [cell.name for cell in self.cells]

    @property
    def deltas(self) -> np.ndarray:
        """``[cells, prompts]``: each cell's intervened minus clean metric per prompt."""
        return np.stack([effect.delta for effect in self.effects])

    def frame(self, level: float = 0.95) -> pd.DataFrame:
        """One row per cell: coordinates, mean change (``estimate``) and its t interval at ``level``."""
        return cell_frame(self.cells, [effect.delta for effect in self.effects], self.effects[0].groups, level)

    def grid(self, value: str = "estimate") -> pd.DataFrame:
        """The sweep as a table for a heatmap: layers as rows, heads, neurons or positions as columns.

        A sweep that mixes whole sites with heads or neurons (``[*mt.heads("1.*"), mt.resid("*", "post")]``) gets
        one column per site kind as well (``hook_resid_post``), so no cell is left out.
        """
        frame = self.frame()
        columns = [name for name in ("head", "neuron", "position") if name in frame]
        if "layer" not in frame or frame["layer"].isna().any() or not columns:
            return frame.set_index("cell")[[value]]
        whole = frame[columns].isna().all(axis="columns")
        if whole.any():  # one column label per cell: its coordinates, or its site's kind
            kinds = frame["site"].str.split(".").str[-1].str.replace(r"\[.*", "", regex=True)
            coordinates = frame[columns].astype("string").fillna("").agg("@".join, axis="columns").str.strip("@")
            frame = frame.assign(component=coordinates.where(~whole, kinds))
            columns = ["component"]
        return frame.pivot_table(index="layer", columns=columns, values=value, aggfunc="first")

    # -- claims ------------------------------------------------------------------------------------

    def expect_only(
        self,
        cells: Sequence[str],
        at_least: float,
        *,
        others_within: float,
        direction: str = "decrease",
        alpha: float | None = None,
    ) -> Verdict:
        """Claim: each named cell moves the metric in ``direction`` by at least ``at_least``, and every
        other cell changes it by less than ``others_within`` either way (one claim, Holm over all cells)."""
        __tracebackhide__ = True
        named = self._named(cells)
        sign = _sign(direction)
        tests = [self._beyond(i, sign, at_least, direction) for i in named]
        tests += [self._within(i, others_within) for i in range(len(self)) if i not in named]
        claim = (
            f"only {_listed(self, named)} matter: each {direction}s the metric by at least {at_least:g}, "
            f"every other of {len(self)} cells changes it by less than {others_within:g}"
        )
        return self._decide(claim, tests, named, alpha)

    def expect_none_outside(self, cells: Sequence[str], *, exceeds: float, alpha: float | None = None) -> Verdict:
        """Claim: no cell outside ``cells`` changes the metric by ``exceeds`` or more either way."""
        __tracebackhide__ = True
        named = self._named(cells, allow_empty=True)
        tests = [self._within(i, exceeds) for i in range(len(self)) if i not in named]
        if not tests:
            raise MitestError("expect_none_outside names every cell of the sweep; leave some cells outside")
        claim = f"no cell outside {_listed(self, named)} changes the metric by {exceeds:g} or more"
        return self._decide(claim, tests, named, alpha)

    def expect_top(self, cells: Sequence[str], *, direction: str = "decrease", alpha: float | None = None) -> Verdict:
        """Claim: the named cells are the top ``len(cells)``: each moves the metric in ``direction``
        more than every other cell does (paired per prompt, Holm over every named-other pair)."""
        __tracebackhide__ = True
        named = self._named(cells)
        if len(named) == len(self):
            raise MitestError("expect_top names every cell of the sweep; a top k needs cells outside it")
        sign = _sign(direction)
        tests = [self._ahead(i, j, sign) for i in named for j in range(len(self)) if j not in named]
        claim = f"{_listed(self, named)} are the top {len(named)} of {len(self)} cells by {direction}"
        return self._decide(claim, tests, named, alpha)

    # -- machinery ---------------------------------------------------------------------------------

    def _index(self, name: str) -> int:
        return position_of(name, self.names, "the sweep has no cell")

    def _named(self, cells: Sequence[str], *, allow_empty: bool = False) -> list[int]:
        if isinstance(cells, str):
            cells = [cells]
        named = [self._index(name) for name in cells]
        if len(set(named)) != len(named):
            raise MitestError(f"cells are named more than once: {list(cells)}")
        if not named and not allow_empty:
            raise MitestError("name at least one cell of the sweep")
        return named

    def _beyond(self, i: int, sign: float, at_least: float, direction: str) -> _Test:
        _finite(at_least, "at_least")
        change = sign * self.effects[i].delta
        margin = stats.settle(change - at_least, self._size(i) + abs(at_least))
        return _Test(i, margin, change, f"{direction} at least {at_least:g}", at_least)

    def _within(self, i: int, within: float) -> _Test:
        _finite(within, "the margin")
        if within <= 0:
            raise MitestError(f"the margin must be > 0, got {within}")
        delta = self.effects[i].delta
        size = self._size(i) + within
        above, below = stats.settle(delta + within, size), stats.settle(within - delta, size)
        return _Test(i, above, np.abs(delta), f"|change| below {within:g}", within, below)

    def _ahead(self, i: int, j: int, sign: float) -> _Test:
        gap = sign * (self.effects[i].delta - self.effects[j].delta)
        margin = stats.settle(gap, self._size(i) + self._size(j))
        return _Test(i, margin, gap, f"ahead of {self.cells[j].name}", 0.0, other=j)

    def _size(self, i: int) -> np.ndarray:
        effect = self.effects[i]
        return np.abs(effect.clean) + np.abs(effect.intervened)

    def _decide(self, claim: str, tests: list[_Test], named: list[int], alpha: float | None) -> Verdict:
        __tracebackhide__ = True
        a = claim_alpha(alpha)
        first = self.effects[tests[0].cell]
        p_pairs = [_pvalues(first, test, a) for test in tests]
        p_holds = stats.holm([p for p, _ in p_pairs])
        p_refuted = stats.holm([p for _, p in p_pairs])
        weakest = int(np.argmax(p_holds))
        test = tests[weakest]
        effect = replace(self.effects[test.cell], identity=self.identity, intervention=self.template.to_dict())
        failing = [k for k, p in enumerate(p_holds) if p >= a]
        notes = [
            f"{self._label(tests[k])}: mean {tests[k].values.mean():.4g} ({tests[k].wanted}), "
            f"Holm p(holds) {p_holds[k]:.2g}, p(refuted) {p_refuted[k]:.2g}"
            for k in failing[:10]
        ]
        if len(failing) > 10:
            notes.append(f"... and {len(failing) - 10} more cells or pairs not shown to hold")
        decision = paired_decision(effect, test.margin, a)
        worst = np.argsort(test.margin, kind="stable")[:3]
        estimate = float(test.values.mean())
        return decide(
            effect,
            claim=claim,
            estimate=estimate,
            interval=claim_interval(effect, test.values, np.ones(effect.n), a),
            threshold=float(test.threshold),
            p=(float(p_holds.max()), float(p_refuted.min())),
            alpha=a,
            decision=decision,
            margins=test.margin,
            against=test.margin < 0,
            gap=abs(estimate - test.threshold),
            worst=[(int(k), float(test.values[k])) for k in worst],
            per_prompt=test.values,
            test=f"skew-adjusted paired t per cell, Holm over {len(tests)}"
            + (" on cluster units" if effect.groups is not None else ""),
            notes=notes,
            sweep=self._record(
                named, {tests[k].cell for k in failing} | {o for k in failing if (o := tests[k].other) is not None}
            ),
        )

    def _label(self, test: _Test) -> str:
        return self.cells[test.cell].name + ("" if test.other is None else f" vs {self.cells[test.other].name}")

    def _record(self, named: list[int], failing: set[int]) -> dict[str, Any]:
        """The cells as plain data for reports: coordinates, estimate, interval, role, failing."""
        frame = self.frame()
        cells = []
        for i, row in enumerate(frame.to_dict("records")):
            cells.append(
                {
                    **{key: _plain(value) for key, value in row.items()},
                    "named": i in named,
                    "failing": i in failing,
                    "delta": [float(v) for v in self.effects[i].delta],
                }
            )
        columns = next((name for name in ("head", "neuron", "position") if name in frame), None)
        return {"rows": "layer" if "layer" in frame else None, "columns": columns, "cells": cells}


@dataclass(frozen=True)
class _Test:
    """One cell's part of a sweep claim: its margins (claim: mean > 0) and the values reported."""

    cell: int
    margin: np.ndarray
    values: np.ndarray
    wanted: str
    threshold: float
    below: np.ndarray | None = None  # the second one-sided margin of an equivalence
    other: int | None = None  # the cell it is compared with (top-k pairs)


def _cells_of(tests: list[_Test]) -> set[int]:
    """Every cell the tests involve (a top-k pair involves two)."""
    return {test.cell for test in tests} | {test.other for test in tests if test.other is not None}


def _pvalues(effect: Effect, test: _Test, alpha: float) -> tuple[float, float]:
    above = pvalues(effect, test.margin, alpha)
    if test.below is None:
        return above
    below = pvalues(effect, test.below, alpha)
    return max(above[0], below[0]), min(above[1], below[1])


def _sign(direction: str) -> float:
    if direction not in _DIRECTIONS:
        raise MitestError(f"direction must be 'decrease' or 'increase', got {direction!r}")
    return _DIRECTIONS[direction]


def _finite(value: float, what: str) -> None:
    if not isinstance(value, (int, float)) or not np.isfinite(value):
        raise MitestError(f"{what} must be a finite number, got {value!r}")


def _listed(sweep: Sweep, named: list[int]) -> str:
    names = [sweep.cells[i].name for i in named]
    return "{" + ", ".join(names) + "}"


def _plain(value: Any) -> Any:
    if value is pd.NA:
        return None
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    return None if isinstance(value, float) and np.isnan(value) else value


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KIB|MIB|GIB)?\s*$", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def _bytes(memory: int | str | None) -> int | None:
    """A memory budget in bytes from an int or a string such as ``"512MB"`` or ``"2GiB"``."""
    if memory is None:
        return None
    if isinstance(memory, bool) or not isinstance(memory, (int, str)):
        raise MitestError(f"memory must be bytes (an int) or a size such as '512MB', got {memory!r}")
    if isinstance(memory, str):
        match = _SIZE.match(memory)
        if match is None:
            raise MitestError(f"cannot read the memory budget {memory!r}; write e.g. '512MB' or '2GiB'")
        memory = int(float(match.group(1)) * _UNITS[(match.group(2) or "B").upper()])
    if memory <= 0:
        raise MitestError(f"the memory budget must be positive, got {memory}")
    return memory
