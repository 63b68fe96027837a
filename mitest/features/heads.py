"""``mt.head_scores``: the standard head detectors, per head and per prompt, and claims on them.

Each score is an attention mass (:mod:`mitest.features.attention`) averaged over a prompt's queries:

- ``previous_token``: from every token whose previous token is not the first (position 0 is an
  attention sink that many heads use) to its previous token;
- ``induction``: from every token that occurred earlier to the token that followed its earlier
  occurrence (on repeated random tokens ``r + r``: from the second copy's ``r[i]`` to ``r[i + 1]``);
- ``duplicate_token``: from every token that occurred earlier to its earlier occurrences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mitest.claims.effect import Effect
from mitest.claims.levels import Level, expect_levels, reading
from mitest.claims.verdict import Verdict
from mitest.engine.measure import checked_inputs
from mitest.errors import MitestError, SiteError, closest
from mitest.features.attention import attention_mass, patterns
from mitest.features.readings import reading_identity
from mitest.model.model import Model
from mitest.spec.positions import ALL, Positions
from mitest.spec.prompts import Prompts

KINDS = {"previous_token": "previous", "induction": "induction", "duplicate_token": "duplicate"}


def head_scores(model: Model | Any, prompts: Prompts, kind: str, *, batch_size: int = 32) -> HeadScores:
    """Every head's ``kind`` score (``"previous_token"``, ``"induction"``, ``"duplicate_token"``) on each prompt."""
    if kind not in KINDS:
        raise MitestError(f"unknown head score {kind!r}; use one of {', '.join(map(repr, KINDS))}")
    model = checked_inputs(model, prompts, batch_size)
    layers = list(range(model.layout()[1].n_layers))
    found, revision = patterns(model, prompts, layers, batch_size)
    queries = _after_first(prompts) if kind == "previous_token" else ALL
    values = np.stack(
        [attention_mass(pattern, KINDS[kind], queries, prompts).numpy() for pattern in found], axis=1
    ).astype(np.float64)
    return HeadScores(kind, values, prompts, revision)


def _after_first(prompts: Prompts) -> Positions:
    """Positions 2 onwards of each prompt: the queries whose previous token is not position 0."""
    return Positions("per_prompt", tuple(tuple(range(2, int(length))) for length in prompts.lengths))


@dataclass(frozen=True, eq=False)
class HeadScores:
    """One head detector's scores: ``values[prompt, layer, head]``; :attr:`table` is their mean per head."""

    kind: str
    values: np.ndarray
    prompts: Prompts
    revision: str

    @property
    def table(self) -> pd.DataFrame:
        """Mean score per head: one row per layer, one column per head."""
        frame = pd.DataFrame(self.values.mean(0))
        frame.index.name, frame.columns.name = "layer", "head"
        return frame

    @property
    def names(self) -> list[str]:
        """Every head, ``"layer.head"``, in layer order."""
        layers, count = self.values.shape[1:]
        return [f"{layer}.{head}" for layer in range(layers) for head in range(count)]

    def reading(self, head: str, *, claim: dict[str, Any] | None = None) -> Effect:
        """One head's per-prompt scores as an Effect of readings; ``claim`` (a claim over several heads)
        replaces the head in the reading's identity, so that claim's identity is the same whichever
        head decides it."""
        layer, index = self._coordinates(head)
        spec = {"reading": "head score", "kind": self.kind, **(claim or {"head": head})}
        return reading(
            self.values[:, layer, index],
            metric=f"{self.kind} score of {head}",
            groups=self.prompts.groups,
            identity=reading_identity(self.revision, self.prompts, spec),
            spec=spec,
        )

    def expect_score(self, head: str, *, at_least: float, alpha: float | None = None) -> Verdict:
        """Claim: head ``head``'s mean score is at least ``at_least``."""
        __tracebackhide__ = True
        claim = f"head {head} has {self.kind} score at least {at_least:g}"
        return expect_levels([Level(self.reading(head), at_least, label=head)], claim=claim, alpha=alpha)

    def expect_only(self, heads: Sequence[str], *, above: float, alpha: float | None = None) -> Verdict:
        """Claim: the named heads score above ``above`` and every other head below it (Holm over all heads)."""
        __tracebackhide__ = True
        named = [heads] if isinstance(heads, str) else list(heads)
        for head in named:
            self._coordinates(head)
        if not named or len(set(named)) != len(named):
            raise MitestError(f"name each head once, at least one: {named}")
        whole = {"only": sorted(named), "of": len(self.names)}
        levels = [Level(self.reading(head, claim=whole), above, above=head in named, label=head) for head in self.names]
        claim = f"{', '.join(named)} are the only heads with {self.kind} score above {above:g}"
        return expect_levels(levels, claim=claim, alpha=alpha)

    def _coordinates(self, head: str) -> tuple[int, int]:
        if head not in self.names:
            near = closest(str(head), self.names)
            hint = f"; closest: {', '.join(near)}" if near else ""
            raise SiteError(f"no head {head!r} in this model{hint}; heads are named 'layer.head', e.g. '0.0'")
        layer, index = head.split(".")
        return int(layer), int(index)
