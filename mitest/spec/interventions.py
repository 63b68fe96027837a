"""Intervention specs: what to change, as frozen, serialisable data that checks itself on construction.

Each spec validates and normalises its fields in ``__post_init__``, so ``mt.Ablate(..., method="bogus")``
fails as ``mt.ablate`` does. Compiling a spec to hook edits lives in :mod:`mitest.engine.compile`.

* :func:`ablate` — replace sites by zero, their mean over a reference set, or values resampled
  from other prompts. On a direction site, zero ablation projects the direction out.
* :func:`patch` — activation patching between the clean and the corrupted (or any aligned) run.
* :func:`path_patch` — patching along direct residual paths only, from senders to receivers.
* :func:`scrub` — causal scrubbing of a circuit :class:`~mitest.spec.hypothesis.Hypothesis`.
* :func:`steer` — add ``coef * vector`` along a direction.
* :func:`combine` (or ``a + b``) — several interventions in one forward pass.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mitest.errors import InterventionError
from mitest.spec.base import Spec
from mitest.spec.hypothesis import Hypothesis
from mitest.spec.prompts import Prompts
from mitest.spec.sites import Site, Sites, as_sites

ABLATION_METHODS = ("zero", "mean", "resample")
PATCH_SOURCES = ("corrupted", "clean")


class Intervention(Spec):
    """Base of all intervention specs.

    ``combines`` says how its edits meet another edit of the same activation entries in a combination:
    ``"replace"`` (it sets them, so a repeat is a no-op), ``"add"`` (it adds to them; additions
    commute) or ``"ordered"`` (anything else: the order would decide the result, so any overlap is
    refused). See :mod:`mitest.engine.combining`.
    """

    combines: ClassVar[str] = "ordered"

    @property
    def runs_on(self) -> str:
        """Which input the intervened forward pass reads: ``"clean"`` or ``"corrupted"`` prompts."""
        return "clean"

    def parts(self) -> tuple[Intervention, ...]:
        """The atomic interventions this one consists of."""
        return (self,)

    def __add__(self, other: Intervention) -> Combined:
        return combine(self, other)

    def __radd__(self, other: object) -> Intervention:
        """``sum([a, b, c])`` combines them: the sum starts from 0."""
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return combine(other, self)  # type: ignore[arg-type]  # Combined names a non-intervention in its error


@dataclass(frozen=True)
class Ablate(Intervention):
    """Replace ``sites`` by zero, a mean, or resampled values (see :func:`ablate`)."""

    combines: ClassVar[str] = "replace"

    sites: Sites
    method: str = "zero"
    reference: Prompts | str | None = None
    per_position: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        method, reference = self.method, self.reference
        if method not in ABLATION_METHODS:
            raise InterventionError(f"unknown ablation method {method!r}; use one of {', '.join(ABLATION_METHODS)}")
        if reference is not None and method == "zero":
            raise InterventionError("zero ablation takes no reference prompts; use method='mean' or 'resample'")
        if isinstance(reference, str) and (reference != "corrupted" or method != "resample"):
            raise InterventionError(
                f"reference={reference!r} is not understood; pass a Prompts set, or 'corrupted' with method='resample'"
            )
        if reference is not None and not isinstance(reference, (Prompts, str)):
            raise InterventionError(f"reference must be a Prompts set, got {type(reference).__name__}")
        if not isinstance(self.per_position, (bool, np.bool_)):
            raise InterventionError(f"per_position must be True or False, got {self.per_position!r}")
        _set(self, sites=as_sites(self.sites), per_position=bool(self.per_position), seed=_seed(self.seed, "ablate"))


@dataclass(frozen=True)
class Patch(Intervention):
    """Overwrite ``sites`` with their values from another run of token-aligned prompts."""

    combines: ClassVar[str] = "replace"

    sites: Sites
    source: Prompts | str = "corrupted"

    def __post_init__(self) -> None:
        _check_source(self.source, "patch")
        _set(self, sites=as_sites(self.sites))

    @property
    def runs_on(self) -> str:
        return "corrupted" if self.source == "clean" else "clean"


@dataclass(frozen=True)
class PathPatch(Intervention):
    """Let ``sender``'s value from another run reach only ``receivers`` (see :func:`path_patch`)."""

    sender: Sites
    receivers: Sites
    source: Prompts | str = "corrupted"

    def __post_init__(self) -> None:
        _check_source(self.source, "path_patch")
        senders, targets = as_sites(self.sender), as_sites(self.receivers)
        if not senders or not targets:
            raise InterventionError("path_patch needs at least one sender and one receiver")
        if any(site.direction is not None for site in (*senders, *targets)):
            raise InterventionError("path_patch senders and receivers are whole sites; drop the direction")
        _set(self, sender=senders, receivers=targets)

    @property
    def runs_on(self) -> str:
        return "corrupted" if self.source == "clean" else "clean"


@dataclass(frozen=True)
class Scrub(Intervention):
    """Causal scrubbing of ``hypothesis`` with seeded resampling (see :func:`scrub`)."""

    hypothesis: Hypothesis
    seed: int = 0
    tolerance: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.hypothesis, Hypothesis):
            raise InterventionError(
                f"scrub() takes an mt.Hypothesis(nodes, edges, features), got {type(self.hypothesis).__name__}"
            )
        tolerance = self.tolerance
        if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not tolerance > 0:
            raise InterventionError(f"scrub tolerance must be a positive fraction of the gap, got {tolerance!r}")
        _set(self, seed=_seed(self.seed, "scrub"), tolerance=float(tolerance))


@dataclass(frozen=True)
class Steer(Intervention):
    """Add ``coef`` times a direction to its site."""

    combines: ClassVar[str] = "add"

    direction: Site
    coef: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.direction, Site) or self.direction.direction is None:
            raise InterventionError(
                "steer() needs mt.direction(site, vector), "
                "e.g. mt.steer(mt.direction('blocks.3.hook_resid_post', v), coef=4.0)"
            )
        coef: Any = self.coef
        if hasattr(coef, "ndim") and coef.ndim == 0 and hasattr(coef, "item"):  # a 0-d tensor or array, e.g. v.norm()
            coef = coef.item()
        if not isinstance(coef, numbers.Real) or isinstance(coef, bool) or not math.isfinite(coef):
            raise InterventionError(f"steer coef must be a finite number, got {coef!r}")
        _set(self, coef=float(coef))


@dataclass(frozen=True)
class Combined(Intervention):
    """Several interventions applied in the same forward pass, in order."""

    interventions: tuple[Intervention, ...]

    def __post_init__(self) -> None:
        if not self.interventions:
            raise InterventionError("combine() needs at least one intervention, e.g. combine(ablate(a), steer(d))")
        for item in self.interventions:
            if not isinstance(item, Intervention):
                raise InterventionError(
                    f"combine() takes interventions (ablate, patch, steer), got {type(item).__name__}"
                )
        alone = [part for part in self.parts() if isinstance(part, (PathPatch, Scrub))]
        if alone and len(self.parts()) > 1:
            name = "path_patch" if isinstance(alone[0], PathPatch) else "scrub"
            raise InterventionError(
                f"{name} runs passes of its own and cannot be combined with other interventions; measure it alone"
            )
        if len({part.runs_on for part in self.parts()}) > 1:
            raise InterventionError(
                "cannot combine a patch from the clean run (which runs the corrupted prompts) with interventions "
                "that run the clean prompts; state both relative to the same input"
            )

    @property
    def runs_on(self) -> str:
        inputs = {part.runs_on for part in self.parts()}
        return inputs.pop() if inputs else "clean"

    def parts(self) -> tuple[Intervention, ...]:
        return tuple(atom for part in self.interventions for atom in part.parts())


def ablate(
    sites: Any,
    method: str = "zero",
    *,
    reference: Prompts | str | None = None,
    per_position: bool = True,
    seed: int = 0,
) -> Ablate:
    """Ablate ``sites``.

    Args:
        sites: a site, site name, or list of them (``mt.heads("1.4", "1.6")``).
        method: ``"zero"``; ``"mean"`` over ``reference`` prompts (default: the measured prompts);
            ``"resample"``: each prompt gets the activation of another, seeded, prompt of the same
            length — from ``reference`` when given, or its own counterfactual with ``reference="corrupted"``.
        per_position: for mean ablation, average per position (``True``) or over all positions.
        seed: seed of the resampling permutation.
    """
    return Ablate(sites, method, reference, per_position, seed)


def patch(sites: Any, source: Prompts | str = "corrupted") -> Patch:
    """Activation patching of ``sites``.

    ``source="corrupted"`` runs the clean prompts with the corrupted run's activations patched in
    (clean -> corrupted, 'noising'); ``source="clean"`` runs the corrupted prompts with the clean
    activations patched in ('denoising'); a Prompts set patches from those aligned prompts.
    """
    return Patch(sites, source)


def path_patch(sender: Any, receivers: Any, source: Prompts | str = "corrupted") -> PathPatch:
    """Path patching (Wang et al. 2022): ``sender``'s source value reaches only ``receivers``.

    The clean prompts run with each receiver's input recomputed from the residual stream in which
    the sender's output alone is taken from the ``source`` run (``"corrupted"`` twins, or an aligned
    Prompts set); every other head, MLP and the embedding keep their clean values, so no path through
    another component carries the change. Downstream of the receivers everything is recomputed.
    Exact: LayerNorms see the whole modified residual; nothing is linearised.

    Args:
        sender: heads (``mt.heads("0.1")``), an MLP (``mt.mlp(0)``) or ``"hook_embed"``, with
            optional ``.at(positions)``.
        receivers: head inputs (``mt.heads("1.2", kind="k")``; a head with ``kind="z"`` means its
            q, k and v), MLPs (``mt.mlp(1)``: its input), residual points (``mt.resid(1, "mid")``) or
            ``"logits"`` (the residual stream's end: the sender's direct effect on the logits), with
            optional ``.at(positions)``.
        source: ``"corrupted"``, or ``"clean"`` to run the corrupted prompts with the sender's clean
            value (denoising), or a token-aligned Prompts set.
    """
    return PathPatch(sender, receivers, source)


def scrub(hypothesis: Hypothesis, *, seed: int = 0, tolerance: float = 0.1) -> Scrub:
    """Causal scrubbing (Chan et al. 2022) of a circuit hypothesis, measured with ``mt.measure``.

    Every activation the hypothesis does not claim is resampled from a random other prompt, and
    every claimed node's input is computed, recursively along the claimed edges, on a prompt that
    agrees with its reference on that node's feature. Each path of the treeified hypothesis draws
    its own prompts (seeded by ``seed``); prompts only ever trade activations with prompts of the
    same length. The Effect's ``intervened`` values are the scrubbed metric and its ``corrupted``
    values the metric with everything resampled, so ``expect_recovery(at_least=0.9)`` is the
    fraction of the behaviour the hypothesis explains.

    ``tolerance`` sets the cancellation check: when more than 5% of prompts end up above the clean
    model by ``tolerance`` times the clean-minus-resampled gap and more than 5% below it by as much,
    every verdict on the Effect carries a note with the counts (Scheurer et al. 2023).
    """
    return Scrub(hypothesis, seed, tolerance)


def steer(direction: Site, coef: float = 1.0) -> Steer:
    """Add ``coef * vector`` at a direction site made by :func:`mitest.direction`."""
    return Steer(direction, coef)


def combine(*interventions: Intervention) -> Combined:
    """Apply several interventions in one forward pass (later ones see earlier ones' edits)."""
    return Combined(tuple(interventions))


def _seed(seed: Any, caller: str) -> int:
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise InterventionError(f"{caller} seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _check_source(source: Any, caller: str) -> None:
    if isinstance(source, str) and source not in PATCH_SOURCES:
        raise InterventionError(f"unknown {caller} source {source!r}; use 'corrupted', 'clean' or a Prompts set")
    if not isinstance(source, (str, Prompts)):
        raise InterventionError(
            f"{caller} source must be 'corrupted', 'clean' or a Prompts set, got {type(source).__name__}"
        )


def _set(spec: Intervention, **values: Any) -> None:
    """Store normalised field values on a frozen spec (only from its ``__post_init__``)."""
    for name, value in values.items():
        object.__setattr__(spec, name, value)
