"""Circuit hypothesis tests, after Shi et al. (2024), "Hypothesis testing the circuit hypothesis in LLMs".

``mt.circuit(model, prompts, circuit, metric)`` states that a set of components (attention heads,
MLPs) is the circuit behind a behaviour. Components are drawn from a universe U (default: every
attention head and every MLP of the model). A component is *knocked out* by mean, zero or resample
ablation, or by patching in its activation from the corrupted prompts; knocking out a set is one
forward pass with all of its sites replaced. Three per-prompt metric vectors anchor the tests:
``full`` (nothing knocked out), ``alone`` (only the circuit kept: U minus the circuit knocked out)
and ``empty`` (all of U knocked out). The *faithfulness* of a kept set S is the ratio of means
``sum(m_S - empty) / sum(full - empty)``.

The claims, and what their randomness is over:

* ``effect.expect_recovery(at_least=r)``: the circuit alone recovers at least ``r`` of the
  full-empty gap. Over prompts (the paired test of :meth:`Effect.expect_recovery`).
* :meth:`CircuitTest.expect_sufficient`: the circuit alone is more faithful than the ``quantile``
  quantile of random circuits of its size. Over random circuits, with the prompt set held fixed:
  circuits are drawn iid from the uniform distribution over same-size subsets of U (so a small U,
  with fewer distinct subsets than draws, is fine: draws repeat, and each distinct one is measured
  once). The number k of random circuits strictly less faithful than the circuit is then exactly
  Binomial(samples, p), and the exact binomial test decides p > quantile. Ties, including draws of
  the circuit itself, count against it. The conclusion is about this prompt set and this U.
* :meth:`CircuitTest.expect_necessary`: knocking the circuit out (everything else intact) harms
  the behaviour more than knocking out the ``quantile`` quantile of random same-size sets; harm is
  ``sum(full - m_without_S) / sum(full - empty)``. Same binomial test. When each circuit component
  is essential on its own, every random set holding one of them harms at least as much as the
  circuit, so such a circuit is necessary at ``quantile`` only if more than that share of random
  sets miss it entirely: in a small universe, state a lower quantile.
* :meth:`CircuitTest.expect_minimal`: removing any one component from the circuit lowers its
  faithfulness by at least ``at_least``. Over prompts: a paired, cluster-aware test per component,
  Holm-corrected across the components.
* :meth:`CircuitTest.expect_equivalent`: the circuit alone matches the full model within
  ``±within`` on average. Over prompts: TOST on the paired values (:meth:`Effect.expect_no_change`).

The default number of random circuits is the fewest with ``quantile**samples <= alpha / 2``, so a
circuit beating all of them HOLDS with p at most half of alpha (the least that can HOLD would be
``quantile**samples < alpha``): enough for a clear verdict only when the circuit beats nearly
every draw. A circuit barely above the quantile, or a small universe (where draws of the circuit
itself tie with it), needs more: pass ``samples=``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from typing import Any

import numpy as np
from torch import nn

from mitest import progress
from mitest.claims import stats
from mitest.claims.decide import check_units, claim_interval, decide, paired_decision, pvalues
from mitest.claims.effect import Effect
from mitest.claims.verdict import Verdict
from mitest.config import claim_alpha, settings
from mitest.engine.measure import measure
from mitest.errors import InterventionError, MitestError, NoOpInterventionWarning, PromptsError, SiteError, closest
from mitest.model.model import Model
from mitest.spec.base import identity
from mitest.spec.hypothesis import Hypothesis, is_residual
from mitest.spec.interventions import Intervention, ablate, patch
from mitest.spec.positions import ALL
from mitest.spec.prompts import Prompts
from mitest.spec.sites import Site, as_sites, head, mlp

ABLATIONS = ("mean", "zero", "resample", "corrupted")
_RANDOM_CLAIMS = {
    "sufficiency": "the circuit alone beats the {:g} quantile of random same-size circuits (sufficiency)",
    "necessity": "knocking the circuit out harms more than the {:g} quantile of random same-size sets (necessity)",
}


def circuit(
    model: Model | nn.Module,
    prompts: Prompts,
    circuit: Any,
    metric: object,
    *,
    components: Any = None,
    ablation: str = "mean",
    seed: int | None = None,
    batch_size: int = 32,
) -> CircuitTest:
    """Measure a circuit hypothesis: the model with nothing, all but the circuit, and everything knocked out.

    Args:
        model: an :class:`mitest.Model` (a bare transformers model is wrapped).
        prompts: the prompt set the behaviour is measured on.
        circuit: the circuit's components: sites such as ``mt.heads("0.0", "1.0")``, ``mt.mlp(1)``
            or a list of them; each head is one component. A non-empty, strict subset of ``components``.
            An ``mt.Hypothesis`` stands for its head and MLP nodes (its edges and the embedding are not
            components: everything outside the circuit is knocked out whatever path it is on).
        metric: an ``mt.metrics`` metric or a callable ``(logits, prompts) -> tensor[n_prompts]``.
        components: the universe the circuit is drawn from (default: every attention head and
            every MLP), as sites; each head is one component.
        ablation: how a component is knocked out: ``"mean"`` (over the prompts), ``"zero"``,
            ``"resample"`` (seeded) or ``"corrupted"`` (patched from ``prompts.corrupted``).
        seed: seed of resample ablation (default ``mt.settings.seed``).
        batch_size: prompts per forward pass.

    Raises:
        SiteError: a circuit component is not in the universe.
        MitestError: the circuit is empty or is the whole universe.
    """
    model = model if isinstance(model, Model) else Model.from_hf(model)
    if not isinstance(prompts, Prompts):
        raise PromptsError(f"prompts must be mt.Prompts, got {type(prompts).__name__}")
    if ablation not in ABLATIONS:
        raise InterventionError(f"unknown ablation {ablation!r}; use one of {', '.join(ABLATIONS)}")
    if ablation == "corrupted" and prompts.corrupted is None:
        raise InterventionError(
            "ablation='corrupted' patches from the corrupted prompts; build Prompts(..., corrupted=...)"
        )
    universe = single(every_component(model) if components is None else components)
    return CircuitTest(
        model,
        prompts,
        universe,
        _kept(circuit, universe),
        metric,
        ablation=ablation,
        seed=settings.seed if seed is None else int(seed),
        batch_size=batch_size,
    )


def _kept(circuit: Any, universe: Sequence[Site]) -> frozenset[int]:
    """The circuit's components as indices into ``universe``; refuses an empty circuit or the whole universe."""
    kept = single(circuit)
    if not kept:
        raise MitestError("a circuit needs at least one component, e.g. mt.heads('0.0', '1.0')")
    labels = [label(site) for site in universe]
    for site in kept:
        if site not in universe:
            near = closest(label(site), labels) or labels[:5]
            raise SiteError(
                f"circuit component {label(site)} ({site}) is not among the {len(universe)} components it is "
                f"drawn from; closest: {', '.join(near)}. Pass components= to change the universe"
            )
    if len(kept) == len(universe):
        raise MitestError(
            f"the circuit holds all {len(universe)} components, so nothing is left to compare it with; "
            "pass a smaller circuit or a larger components="
        )
    return frozenset(universe.index(site) for site in kept)


def every_component(model: Model) -> list[Site]:
    """Every attention head (``blocks.L.attn.hook_z``, one per head) and every MLP output of ``model``."""
    if model.dims is None:
        raise MitestError(
            f"{type(model.hf_model).__name__} has no known layer layout; pass components= (e.g. mt.heads(...))"
        )
    return [
        site
        for layer in range(model.dims.n_layers)
        for site in (*(head(layer, h) for h in range(model.dims.n_heads)), mlp(layer))
    ]


class CircuitTest:
    """A circuit and the universe it is drawn from, measured on one prompt set; made by :func:`circuit`.

    Attributes:
        components: the universe U, one site per component.
        circuit: the circuit's components, in U's order.
        effect: ``Effect(clean=full, intervened=alone, corrupted=empty)``: ``effect.expect_recovery``
            is the faithfulness claim.
        key: a hash of the circuit, the universe, the ablation and its seed (part of claim identities).
    """

    def __init__(
        self,
        model: Model,
        prompts: Prompts,
        components: Sequence[Site],
        circuit: frozenset[int],
        metric: object,
        *,
        ablation: str,
        seed: int,
        batch_size: int,
        shared: tuple[Effect, dict[frozenset[int], np.ndarray]] | None = None,
    ) -> None:
        self.model, self.prompts, self.metric = model, prompts, metric
        self.components = tuple(components)
        self.circuit = tuple(self.components[i] for i in sorted(circuit))
        self.ablation, self.seed, self.batch_size = ablation, seed, batch_size
        self._kept = circuit
        self._all = frozenset(range(len(self.components)))
        spec = {
            "type": "CircuitTest",
            "circuit": [site.to_dict() for site in self.circuit],
            "components": [site.to_dict() for site in self.components],
            "ablation": ablation,
            "seed": seed,
        }
        circuit_identity = identity(spec)
        self.key = circuit_identity.key
        if shared is None:
            everything = self._measure(self._all)
            self._warn_unchanged(everything)
            shared = everything, {frozenset(): everything.clean, self._all: everything.intervened}
        everything, self._measured = shared
        self._shared = shared
        self.effect = Effect(
            clean=everything.clean,
            intervened=self._without(self._all - circuit),
            corrupted=everything.intervened,
            groups=prompts.groups,
            intervention=spec,
            metric=everything.metric,
            identity={
                **(everything.identity or {}),
                "intervention": f"circuit:{self.key}",
                "parameters": {f"circuit.{path}": value for path, value in circuit_identity.parameters.items()},
                "derived": circuit_identity.derived,
                "structure": {"intervention": circuit_identity.structure},
            },
        )

    def with_circuit(self, circuit: Any) -> CircuitTest:
        """The same universe, prompts and knockouts with another circuit; sets already measured are not run again."""
        return CircuitTest(
            self.model,
            self.prompts,
            self.components,
            _kept(circuit, self.components),
            self.metric,
            ablation=self.ablation,
            seed=self.seed,
            batch_size=self.batch_size,
            shared=self._shared,
        )

    @property
    def full(self) -> np.ndarray:
        """Per-prompt metric of the model with nothing knocked out."""
        return self.effect.clean

    @property
    def alone(self) -> np.ndarray:
        """Per-prompt metric with only the circuit kept (every other component knocked out)."""
        return self.effect.intervened

    @property
    def empty(self) -> np.ndarray:
        """Per-prompt metric with every component of the universe knocked out."""
        corrupted = self.effect.corrupted
        assert corrupted is not None  # set in __init__
        return corrupted

    # -- claims ----------------------------------------------------------------------------------

    def expect_sufficient(
        self, quantile: float = 0.9, *, samples: int | None = None, seed: int | None = None, alpha: float | None = None
    ) -> Verdict:
        """Claim: the circuit alone is more faithful than the ``quantile`` quantile of random same-size circuits.

        ``samples`` random circuits (default: the fewest that let the claim HOLD,
        ``quantile**samples <= alpha / 2``) are drawn with ``seed`` (default ``mt.settings.seed``);
        exact binomial test on how many are strictly less faithful than the circuit.
        """
        __tracebackhide__ = True
        return self._versus_random("sufficiency", quantile, samples, seed, alpha)

    def expect_necessary(
        self, quantile: float = 0.9, *, samples: int | None = None, seed: int | None = None, alpha: float | None = None
    ) -> Verdict:
        """Claim: knocking the circuit out harms more than the ``quantile`` quantile of random same-size knockouts.

        Harm of knocking out S (everything else intact) is ``sum(full - m_without_S) / sum(full - empty)``;
        the random sets and the test are those of :meth:`expect_sufficient`.
        """
        __tracebackhide__ = True
        return self._versus_random("necessity", quantile, samples, seed, alpha)

    def expect_minimal(self, at_least: float, *, alpha: float | None = None) -> Verdict:
        """Claim: removing any one component from the circuit lowers its faithfulness by at least ``at_least``.

        Per component c and prompt, the drop is ``alone - m_(circuit without c)`` in units of the mean
        full-empty gap. HOLDS when every component's Holm-adjusted p-value for "mean drop > at_least"
        is below alpha; REFUTED when some component's Holm-adjusted p-value for "< at_least" is.
        """
        __tracebackhide__ = True
        if not np.isfinite(at_least):
            raise MitestError(f"at_least must be a finite number, got {at_least}")
        a = claim_alpha(alpha)
        effect = self._claim_effect("minimality", self.alone)
        check_units(effect)
        sign, scale = self._gap
        members = sorted(self._kept)
        with progress.bar(members, desc="circuit without each component", unit="component") as left_out:
            drops = [sign * (self.alone - self._without(self._all - (self._kept - {c}))) / scale for c in left_out]
        margins = [stats.settle(d - at_least, np.abs(d) + abs(at_least)) for d in drops]
        decisions = [paired_decision(effect, margin, a) for margin in margins]
        tested = [pvalues(effect, margin, a) for margin in margins]  # a side that cannot be decided gets p = 1
        p_holds = stats.holm([p for p, _ in tested])
        p_refuted = stats.holm([p for _, p in tested])
        means = [float(d.mean()) for d in drops]
        weakest = int(np.argmin(means))
        drop = drops[weakest]
        lacking = [label(self.components[c]) for c, p in zip(members, p_refuted, strict=True) if p < a]
        notes = [f"removing {', '.join(lacking)} lowers faithfulness by less than {at_least:g}"] if lacking else []
        notes += [
            f"{label(self.components[c])}: mean drop {mean:.4g}, Holm p(holds) {ph:.2g}, p(refuted) {pr:.2g}"
            for c, mean, ph, pr in zip(members, means, p_holds, p_refuted, strict=True)
        ]
        notes += [
            f"{label(self.components[c])} not decided: {reason}"
            for c, decision in zip(members, decisions, strict=True)
            for reason in dict.fromkeys((*decision.refused_holds, *decision.refused_refuted))
            if "prompts is below" not in reason  # the rule on n is the same for every component: said once
        ]
        weakest_test = decisions[weakest]  # its rules on n and skew, and its power advice
        worst = np.argsort(drop, kind="stable")[:3]
        return decide(
            effect,
            claim=f"removing any of the circuit's {len(members)} components lowers its faithfulness by at least "
            f"{at_least:g} (minimality)",
            estimate=means[weakest],
            interval=claim_interval(effect, drop, np.ones(effect.n), a),
            threshold=float(at_least),
            p=(float(p_holds.max()), float(p_refuted.min())),
            alpha=a,
            decision=weakest_test,
            margins=margins[weakest],
            against=margins[weakest] < 0,
            gap=abs(means[weakest] - at_least),
            worst=[(int(i), float(drop[i])) for i in worst],
            per_prompt=drop,
            test=f"skew-adjusted paired t per component, Holm over {len(members)}"
            + (" on cluster units" if effect.groups is not None else ""),
            notes=notes,
        )

    def expect_equivalent(self, within: float, *, alpha: float | None = None) -> Verdict:
        """Claim: the circuit alone matches the full model within ``±within`` on average (TOST on paired values)."""
        __tracebackhide__ = True
        return self._claim_effect("equivalence", self.alone).expect_no_change(within=within, alpha=alpha)

    # -- machinery -------------------------------------------------------------------------------

    def _versus_random(
        self, kind: str, quantile: float, samples: int | None, seed: int | None, alpha: float | None
    ) -> Verdict:
        """The circuit's score against ``samples`` random same-size sets' scores: exact binomial test.

        Sufficiency scores a set by the faithfulness of keeping only it, necessity by the harm of
        knocking only it out.
        """
        __tracebackhide__ = True
        if not 0 < quantile < 1:
            raise MitestError(f"quantile must be in (0, 1), got {quantile}")
        a = claim_alpha(alpha)
        chosen = {} if samples is None else {"samples": samples}  # a default count follows alpha: no identity
        samples = _checked_samples(quantile, samples, a)
        seed = settings.seed if seed is None else int(seed)
        sufficiency = kind == "sufficiency"

        def knocked(chosen: frozenset[int]) -> frozenset[int]:
            return self._all - chosen if sufficiency else chosen

        def score(chosen: frozenset[int]) -> float:
            recovered = self._recovered(self._without(knocked(chosen)))
            return recovered if sufficiency else 1.0 - recovered

        own = score(self._kept)
        draws = _draw(len(self.components), len(self._kept), samples, seed)
        with progress.bar(draws, desc=f"random circuits ({kind})", unit="circuit") as drawn_sets:
            scores = np.array([score(drawn) for drawn in drawn_sets])
        k, p_holds, p_refuted = rank_test(own, scores, quantile)
        below = (scores < own).astype(float)
        word = "faithfulness" if sufficiency else "harm"
        notes = [
            f"circuit {word} {own:.4g}; random circuits: median {np.median(scores):.4g}, "
            f"{quantile:g} quantile {np.quantile(scores, quantile):.4g}; {k} of {samples} strictly below",
            f"{len(set(draws))} distinct random circuits of {len(self._kept)} from {len(self.components)} "
            f"components; the circuit itself was drawn {draws.count(self._kept)} times (ties count against it)",
        ]
        if min(p_holds, p_refuted) >= a:  # the verdict's power advice counts this test's units
            notes.append(f"the power advice counts random circuits, not prompts: raise samples= (now {samples})")
        intervened = self._without(knocked(self._kept))
        # Groups are dropped: the units of this test are random circuits, not prompts or clusters.
        effect = replace(self._claim_effect(kind, intervened, seed=seed, **chosen), groups=None)
        # Per-unit values are the random circuits' 0/1 "beaten" indicators: the scale of the estimate and its
        # gap, and paired across runs (the same seed draws the same circuits) for baseline comparisons.
        return decide(
            effect,
            claim=_RANDOM_CLAIMS[kind].format(quantile),
            estimate=k / samples,
            interval=stats.wilson_interval(k, samples, 1 - 2 * a),
            threshold=float(quantile),
            p=(p_holds, p_refuted),
            alpha=a,
            spread=below,
            gap=abs(k / samples - quantile),
            worst=[],
            per_prompt=below,
            test=f"binomial vs {samples} random circuits",
            notes=notes,
            kind="sampled",
        )

    def _recovered(self, values: np.ndarray) -> float:
        """Faithfulness of per-prompt values: ``sum(values - empty) / sum(full - empty)``."""
        sign, scale = self._gap
        return float(sign * (values - self.empty).mean() / scale)

    @cached_property
    def _gap(self) -> tuple[float, float]:
        """Sign and size of the mean full-minus-empty gap; refuses a gap indistinguishable from 0."""
        gap = self.full - self.empty
        units = stats.units(gap, self.prompts.groups)
        se = units.std(ddof=1) / math.sqrt(len(units)) if len(units) > 1 else 0.0
        if gap.mean() == 0 or abs(units.mean()) < 3 * se:
            raise MitestError(
                f"knocking out every component barely changes the metric (mean full - empty {gap.mean():.3g}, standard "
                f"error {se:.3g}); a circuit test needs a behaviour that the universe's components carry"
            )
        return float(np.sign(gap.mean())), float(abs(gap.mean()))

    def _claim_effect(self, kind: str, intervened: np.ndarray, **sampling: int) -> Effect:
        """The circuit's Effect with ``intervened`` values and an identity naming the claim ``kind``."""
        known = self.effect.identity or {}
        circuit = known["structure"]["intervention"]
        claim = {
            **known,
            "intervention": f"circuit-{kind}:{_digest([self.key, sampling])}",
            "structure": {"intervention": {**circuit, "claim": kind, **sampling}},
        }
        return replace(self.effect, intervened=intervened, identity=claim)

    def _without(self, knocked: frozenset[int]) -> np.ndarray:
        """Per-prompt metric with the components ``knocked`` knocked out (each set is measured once)."""
        if knocked not in self._measured:
            self._measured[knocked] = self._measure(knocked).intervened
        return self._measured[knocked]

    def _measure(self, knocked: frozenset[int]) -> Effect:
        intervention = self._knockout([self.components[i] for i in sorted(knocked)])
        with warnings.catch_warnings():  # a no-op component is reported once, by _warn_unchanged
            warnings.simplefilter("ignore", NoOpInterventionWarning)
            return measure(self.model, self.prompts, intervention, self.metric, batch_size=self.batch_size)

    def _knockout(self, sites: Sequence[Site]) -> Intervention:
        merged = _merged(sites)
        if self.ablation == "corrupted":
            return patch(merged, source="corrupted")
        return ablate(merged, self.ablation, seed=self.seed)

    def _warn_unchanged(self, everything: Effect) -> None:
        unchanged = [hook["site"] for hook in everything.hooks if not hook["changed"]]
        if unchanged:
            warnings.warn(
                NoOpInterventionWarning(
                    f"{self.ablation} ablation left {', '.join(unchanged)} unchanged on every prompt; knocking out "
                    "those components cannot matter"
                ),
                stacklevel=4,
            )

    def __repr__(self) -> str:
        kept = ", ".join(label(site) for site in self.circuit)
        return f"CircuitTest([{kept}] of {len(self.components)} components, {self.ablation} ablation, n={self.n})"

    @property
    def n(self) -> int:
        """Number of prompts."""
        return self.effect.n


def rank_test(score: float, random_scores: Sequence[float] | np.ndarray, quantile: float) -> tuple[int, float, float]:
    """Exact binomial test of P(random score < ``score``) against ``quantile``.

    Returns k (random scores strictly below ``score``), the p-value of P > quantile
    (``P(Binomial(N, quantile) >= k)``) and that of P < quantile (``P(Binomial(N, quantile) <= k)``).
    """
    scores = np.asarray(random_scores, dtype=np.float64)
    k, n = int((scores < score).sum()), len(scores)
    return k, stats.binomial_test(k, n, quantile, "greater").pvalue, stats.binomial_test(k, n, quantile, "less").pvalue


def default_samples(quantile: float, alpha: float) -> int:
    """The fewest random circuits N with ``quantile**N <= alpha / 2``: beating all of them then HOLDS."""
    n = 1
    while quantile**n > alpha / 2:
        n += 1
    return n


def _checked_samples(quantile: float, samples: int | None, alpha: float) -> int:
    if samples is None:
        return default_samples(quantile, alpha)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise MitestError(f"samples must be a positive int, got {samples!r}")
    if quantile**samples >= alpha:
        fewest = 1
        while quantile**fewest >= alpha:
            fewest += 1
        raise MitestError(
            f"with {samples} random circuits the smallest possible p-value is quantile**samples = "
            f"{quantile**samples:.3g}, not below alpha = {alpha:.3g}, so the claim could never hold; use samples >= "
            f"{fewest} (default {default_samples(quantile, alpha)})"
        )
    return samples


def _draw(size: int, k: int, samples: int, seed: int) -> list[frozenset[int]]:
    """``samples`` iid uniform k-subsets of ``range(size)``."""
    rng = np.random.default_rng(seed)
    return [frozenset(rng.choice(size, k, replace=False).tolist()) for _ in range(samples)]


def single(spec: Any) -> list[Site]:
    """Sites (or a hypothesis's head and MLP nodes) split into single components (one head or neuron
    each), duplicates dropped, order kept."""
    if isinstance(spec, Hypothesis):
        spec = [site for _, site in spec.nodes if site.name != "hook_embed" and not is_residual(site)]
    single: list[Site] = []
    for site in as_sites(spec):
        for part in [site] if site.index is None else [replace(site, index=(i,)) for i in site.index]:
            if part not in single:
                single.append(part)
    return single


def _merged(sites: Sequence[Site]) -> list[Site]:
    """One site per activation, as ``mt.heads`` builds them: heads (or neurons) of one site share it."""
    groups: list[tuple[Site, set[int] | None]] = []
    for site in sites:
        whole = replace(site, index=None)
        found = next((i for i, (other, _) in enumerate(groups) if other == whole), None)
        if found is None:
            groups.append((whole, None if site.index is None else set(site.index)))
        else:
            indices = groups[found][1]
            groups[found] = (whole, None if site.index is None or indices is None else indices | set(site.index))
    return [replace(whole, index=None if indices is None else tuple(sorted(indices))) for whole, indices in groups]


def label(site: Site) -> str:
    """A short name: ``1.4`` for a head, ``mlp 1`` for an MLP, else the site itself."""
    found = re.fullmatch(r"blocks\.(\d+)\.(attn\.hook_z|hook_mlp_out)", site.name)
    if found is None or site.positions != ALL or site.direction is not None:
        return str(site)
    if found.group(2) == "hook_mlp_out" and site.index is None:
        return f"mlp {found.group(1)}"
    if found.group(2) == "attn.hook_z" and site.index is not None and len(site.index) == 1:
        return f"{found.group(1)}.{site.index[0]}"
    return str(site)


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
