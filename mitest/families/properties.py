"""Per-prompt property claims over a prompt family, searched and shrunk by Hypothesis.

``mt.expect_for_all(family, prop)`` claims that ``prop(prompt)`` holds for *every* prompt of the
family. Hypothesis searches the family for a prompt that breaks it; a counterexample is shrunk to
the simplest one (first vocabulary entries, smallest numbers, lowest tokens) and the claim is
REFUTED with that prompt in the message and the report. The search is seeded from the suite seed
and the claim's identity, so a suite searches the same prompts, and finds the same counterexample,
on every run and clone; a seeded search needs no example database, and Hypothesis uses none for it.
A search that finds nothing is evidence, not proof: the claim HOLDS "on N examples".
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import numpy as np
from hypothesis import HealthCheck, find
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import NoSuchExample

from mitest import progress
from mitest.claims.decide import publish
from mitest.claims.effect import Effect
from mitest.claims.verdict import HOLDS, REFUTED, Verdict
from mitest.config import current, use
from mitest.errors import ClaimInconclusive, MitestError
from mitest.families.strategies import Family
from mitest.model.model import Model
from mitest.spec.base import source_key
from mitest.spec.prompts import Prompts

Property = Callable[[Prompts], object]


def expect_for_all(
    family: Family, prop: Property, *, examples: int | None = None, model: Model | None = None
) -> Verdict:
    """Claim: ``prop(prompt)`` holds for every prompt of ``family``.

    ``prop`` gets a one-prompt ``mt.Prompts`` (with its answer, wrong answer and corrupted twin) and
    fails by returning False or raising ``AssertionError`` (a plain ``assert``); any other exception
    is an error in the property and propagates. Statistical claims (``expect_*``) need many prompts
    and do not belong in a property; one run inside it is not recorded as a claim. ``examples`` caps the search
    (default: the Hypothesis profile's ``max_examples``, 100 unless configured). ``model``, the
    model the property runs, is recorded with the claim (reports and baselines name its revision).

    Returns the HOLDS verdict; raises :class:`mitest.ClaimRefuted` naming the shrunk counterexample.
    """
    __tracebackhide__ = True
    if not isinstance(family, Family):
        raise MitestError(
            "expect_for_all takes an mt.strategies family (template(...), induction(), ...), "
            f"got {type(family).__name__}"
        )
    if not callable(prop):
        raise MitestError("expect_for_all needs a property: a function of one prompt returning True when it holds")
    if examples is not None and (not isinstance(examples, int) or isinstance(examples, bool) or examples < 1):
        raise MitestError(f"examples must be a positive int, got {examples!r}")
    held: list[bool] = []

    def breaks(prompt: Prompts) -> bool:
        searching.update()
        outcome = _judge(prop, prompt)[0]
        held.append(outcome)
        return not outcome

    search = hypothesis_settings(
        hypothesis_settings.default,
        max_examples=examples or hypothesis_settings().max_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    name = getattr(prop, "__name__", type(prop).__name__)
    key = hashlib.sha256(f"mitest|{family.key()}|{source_key(prop)}".encode()).digest()
    identity = {"family": family.key(), "property": key.hex()[:16]}
    if model is not None:
        identity["model"] = model.revision
    searching = progress.bar(total=search.max_examples, desc=f"searching prompts against {name}", unit="prompt")
    with searching, use(recorder=_ignore):  # claims a property decides on one prompt are not the suite's claims
        counterexample = _search(family, breaks, search, key)
    if counterexample is None:
        return _decide(HOLDS, family, name, identity, held, notes=())
    with use(recorder=_ignore):
        _, why = _judge(prop, counterexample)
    notes = (f"counterexample (shrunk): {family.describe(counterexample)}" + (f"; {why}" if why else ""),)
    return _decide(REFUTED, family, name, identity, held, notes)  # raises ClaimRefuted


def _search(
    family: Family, breaks: Callable[[Prompts], bool], search: hypothesis_settings, key: bytes
) -> Prompts | None:
    """The shrunk counterexample, or None, of the seeded search (Hypothesis keeps no database for it)."""
    try:
        return find(family.strategy(), breaks, settings=search, database_key=key, random=_seeded(key))
    except NoSuchExample:
        return None


def _seeded(claim: bytes) -> random.Random:
    """The search's random source: the suite seed and the claim's identity (family and property source),
    so the same suite searches the same prompts on every run and every clone."""
    return random.Random(hashlib.sha256(f"{current().seed}|".encode() + claim).digest())


def _ignore(verdict: Verdict, effect: Effect, per_prompt: np.ndarray) -> None:
    """A listener that records nothing."""


def _judge(prop: Property, prompt: Prompts) -> tuple[bool, str]:
    """Whether ``prop`` holds on ``prompt``, and the first line of its failure message."""
    try:
        result = prop(prompt)
    except ClaimInconclusive:
        raise MitestError(
            "a claim inside the property was INCONCLUSIVE: that is not a counterexample; state the property "
            "with a plain comparison on this prompt's numbers"
        ) from None
    except AssertionError as error:
        return False, str(error).splitlines()[0] if str(error) else type(error).__name__
    if getattr(result, "ndim", None) == 0 and hasattr(result, "item"):  # a 0-d tensor or array
        result = result.item()
    if not isinstance(result, (bool, np.bool_)):
        raise MitestError(f"a property returns True or False (or raises AssertionError), got {type(result).__name__}")
    return bool(result), "" if result else "the property returned False"


def _decide(
    outcome: str, family: Family, name: str, identity: dict[str, str], held: list[bool], notes: tuple[str, ...]
) -> Verdict:
    """The verdict on a searched property, published like any claim (its units are the examples tried):
    returned when it HOLDS, raised as ClaimRefuted when a counterexample was found."""
    tried = len(held)
    share = float(np.mean(held)) if held else 1.0
    verdict = Verdict(
        outcome=outcome,
        claim=f"{name} holds on every prompt of {family.name}",
        metric="property",
        estimate=share,
        low=share,
        high=share,
        level=1.0,
        threshold=1.0,
        pvalue=0.0 if outcome == HOLDS else 1.0,
        pvalue_refuted=0.0 if outcome == REFUTED else 1.0,
        alpha=0.0,
        n=tried,
        clusters=None,
        test=f"property search (Hypothesis): {tried} examples"
        + (", no counterexample" if outcome == HOLDS else ", counterexample shrunk"),
        gap=0.0,
        power=None,
        mde=None,
        n_needed=None,
        worst=(),
        notes=notes,
        kind="property",
    )
    values = np.asarray(held, dtype=float) if held else np.ones(1)
    # The examples tried are the claim's units: each held (1) or not (0).
    tried_examples = Effect(clean=np.ones(len(values)), intervened=values, metric="property", identity=identity)
    return publish(verdict, tried_examples, values)
