"""Circuit hypothesis tests (mt.circuit) on the hand-planted induction model, and their statistics.

Ground truth (mitest.zoo.planted.induction): heads 0.0 (previous token) and 1.0 (induction) are the
circuit, each essential on its own; 0.1 is a distractor that LayerNorm removes; 0.2, 0.3 and 1.1-1.3
are exactly null; the MLPs output exactly zero.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

import mitest as mt
import mitest.circuits.circuit
from mitest.zoo import planted

ALPHA = 0.01
HEADS = mt.heads("0.0", "0.1", "0.2", "0.3", "1.0", "1.1", "1.2", "1.3")
CIRCUIT = mt.heads(planted.PREVIOUS_TOKEN_HEAD, planted.INDUCTION_HEAD)
LOSS = mt.metrics.loss("second_half")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def induction() -> planted.Planted:
    return planted.induction(16, length=7, n=48, seed=0)  # enough prompts to decide at ALPHA (min_prompts)


@pytest.fixture(scope="module")
def true_circuit(induction) -> mt.CircuitTest:
    return mt.circuit(*induction, CIRCUIT, LOSS, components=HEADS)


def _verdict(claim, *args, **kwargs) -> mt.Verdict:
    """The verdict of ``claim(*args, **kwargs)`` whatever its outcome."""
    try:
        return claim(*args, **kwargs)
    except (mt.ClaimRefuted, mt.ClaimInconclusive) as failed:
        return failed.verdict


# -- the planted circuit ---------------------------------------------------------------------------


@pytest.mark.parametrize("ablation", ["mean", "zero", "resample"])
def test_the_planted_circuit_is_faithful_sufficient_minimal_and_equivalent(induction, ablation):
    c = mt.circuit(*induction, CIRCUIT, LOSS, components=HEADS, ablation=ablation)
    assert c.effect.expect_recovery(at_least=0.9, alpha=ALPHA).estimate == pytest.approx(1.0, abs=1e-5)
    # 200 draws: 1 in 28 random pairs is the circuit itself (a tie), so the true rate is 27/28
    sufficient = c.expect_sufficient(0.9, samples=200, alpha=ALPHA)
    assert sufficient.holds and sufficient.estimate >= 0.95
    minimal = c.expect_minimal(at_least=0.5, alpha=ALPHA)
    assert minimal.holds and minimal.estimate > 0.6  # removing either head loses most of the behaviour
    assert c.expect_equivalent(within=1e-3, alpha=ALPHA).holds


def test_a_serial_circuit_in_a_small_universe_is_necessary_only_at_a_low_quantile(true_circuit):
    """Each planted head is essential on its own, so knocking out any random pair that holds one of
    them harms as much as (or more than) knocking out the circuit: only the 15 of 28 pairs of other
    heads harm less. Necessity against the 0.9 quantile is REFUTED; against the 0.4 quantile it HOLDS."""
    with pytest.raises(mt.ClaimRefuted) as refuted:
        true_circuit.expect_necessary(0.9, samples=200, alpha=ALPHA)
    assert refuted.value.verdict.estimate == pytest.approx(15 / 28, abs=0.1)
    assert true_circuit.expect_necessary(0.4, samples=200, alpha=ALPHA).holds


def test_one_head_alone_is_neither_sufficient_nor_equivalent(induction):
    c = mt.circuit(*induction, mt.heads(planted.PREVIOUS_TOKEN_HEAD), LOSS, components=HEADS)
    with pytest.raises(mt.ClaimRefuted):
        c.expect_sufficient(0.9, samples=100, alpha=ALPHA)
    with pytest.raises(mt.ClaimRefuted):
        c.expect_equivalent(within=0.1, alpha=ALPHA)  # the loss rises by about 2.2 nats


def test_a_null_head_makes_the_circuit_not_minimal(induction):
    c = mt.circuit(*induction, mt.heads("0.0", "1.0", "0.2"), LOSS, components=HEADS)
    with pytest.raises(mt.ClaimRefuted) as refuted:
        c.expect_minimal(at_least=0.5, alpha=ALPHA)
    verdict = refuted.value.verdict
    assert verdict.estimate == 0.0  # removing a null head changes no logit: the drop is exactly 0
    assert verdict.notes[0] == "removing 0.2 lowers faithfulness by less than 0.5"
    assert any(note.startswith("0.2: mean drop 0,") for note in verdict.notes)


def test_null_heads_are_never_necessary(induction):
    """Over every null head and the distractor, and several seeds of random sets, necessity never HOLDS."""
    outcomes = []
    for head in (planted.DISTRACTOR_HEAD, *planted.INDUCTION_NULL_HEADS):
        necessary = mt.circuit(*induction, mt.heads(head), LOSS, components=HEADS).expect_necessary
        outcomes += [_verdict(necessary, 0.9, seed=seed, alpha=ALPHA).outcome for seed in range(5)]
    assert outcomes == [mt.REFUTED] * 30


def test_patching_from_corrupted_prompts_makes_the_previous_token_head_redundant(induction):
    """Corrupted twins keep the first copy, where the induction head reads the previous-token head's
    output: patching that head from the corrupted run changes nothing the circuit needs."""
    c = mt.circuit(*induction, CIRCUIT, LOSS, components=HEADS, ablation="corrupted")
    with pytest.raises(mt.ClaimRefuted) as refuted:
        c.expect_minimal(at_least=0.5, alpha=ALPHA)
    assert refuted.value.verdict.notes[0] == "removing 0.0 lowers faithfulness by less than 0.5"


def test_the_default_universe_is_every_head_and_mlp(induction):
    with pytest.warns(mt.NoOpInterventionWarning, match="blocks.0.hook_mlp_out, blocks.1.hook_mlp_out"):
        c = mt.circuit(*induction, CIRCUIT, LOSS)  # the planted MLPs output exactly 0
    assert c.components == tuple(
        site for layer in (0, 1) for site in (*(mt.head(layer, h) for h in range(4)), mt.mlp(layer))
    )
    assert c.expect_sufficient(0.9, samples=200, alpha=ALPHA).holds


def test_each_knocked_out_set_is_measured_once(induction, monkeypatch):
    calls = []
    measure = mitest.circuits.circuit.measure

    def counting(model, prompts, intervention, metric, **kwargs):
        calls.append(intervention.key())
        return measure(model, prompts, intervention, metric, **kwargs)

    monkeypatch.setattr(mitest.circuits.circuit, "measure", counting)
    c = mt.circuit(*induction, CIRCUIT, LOSS, components=HEADS)
    for seed in (0, 1):
        _verdict(c.expect_sufficient, 0.9, samples=60, seed=seed, alpha=ALPHA)
    c.expect_minimal(at_least=0.5, alpha=ALPHA)
    # everything knocked out, at most the 28 pairs kept (the circuit alone among them), and each head alone
    assert len(calls) == len(set(calls)) <= 1 + 28 + 2
    assert len(calls) > 10


def test_grouped_prompts_are_clusters_for_prompt_claims_only(induction):
    model, prompts = induction
    grouped = mt.Prompts(prompts.ids, answers=prompts.answers, groups=np.arange(len(prompts)) % 4)
    c = mt.circuit(model, grouped, CIRCUIT, LOSS, components=HEADS)
    assert c.expect_minimal(at_least=0.5, alpha=ALPHA).clusters == 4
    assert c.expect_sufficient(0.9, samples=200, alpha=ALPHA).clusters is None  # its units are random circuits


# -- the statistics ----------------------------------------------------------------------------------


def test_the_binomial_decision_keeps_false_holds_within_alpha():
    """Random circuit scores are N(0, 1). At the boundary (the circuit beats exactly 90% of random
    circuits) and for a circuit that is an ordinary draw, 'beats the 0.9 quantile' HOLDS at most
    alpha of the time."""
    alpha, quantile, samples, trials = 0.05, 0.9, 100, 2000
    rng = np.random.default_rng(0)
    boundary = sps.norm.ppf(quantile)
    ordinary = rng.normal(size=trials)
    held_at_boundary = held_ordinary = 0
    for trial in range(trials):
        scores = rng.normal(size=samples)
        held_at_boundary += mitest.circuits.circuit.rank_test(boundary, scores, quantile)[1] < alpha
        # a false HOLDS: the circuit does not truly beat the quantile (its true rank is at most 0.9)
        false = sps.norm.cdf(ordinary[trial]) <= quantile
        held_ordinary += false and mitest.circuits.circuit.rank_test(ordinary[trial], scores, quantile)[1] < alpha
    tolerance = 3 * math.sqrt(alpha * (1 - alpha) / trials)
    assert held_at_boundary / trials <= alpha + tolerance
    assert held_ordinary / trials <= alpha + tolerance
    # not vacuous: at the boundary it HOLDS exactly when k >= 96, P(Binomial(100, 0.9) >= 96) = 0.024
    assert abs(held_at_boundary / trials - sps.binom.sf(95, samples, quantile)) <= tolerance


def test_rank_test_p_values_are_exact_binomial_tails():
    k, p_holds, p_refuted = mitest.circuits.circuit.rank_test(1.0, np.zeros(30), 0.9)
    assert k == 30 and p_holds == pytest.approx(0.9**30) and p_refuted == pytest.approx(1.0)
    k, p_holds, p_refuted = mitest.circuits.circuit.rank_test(0.0, [-1.0, 0.0, 0.0, 1.0], 0.5)  # ties count against
    assert k == 1 and p_refuted == pytest.approx(5 / 16) and p_holds == pytest.approx(15 / 16)


@pytest.mark.parametrize(("quantile", "alpha"), [(0.9, 0.05), (0.9, 0.01), (0.5, 0.001), (0.99, 0.05 / 40)])
def test_default_samples_make_holds_reachable(quantile, alpha):
    n = mitest.circuits.circuit.default_samples(quantile, alpha)
    assert quantile**n <= alpha / 2 < quantile ** (n - 1)


def test_too_few_samples_are_refused(true_circuit):
    with pytest.raises(mt.MitestError, match=r"could never hold; use samples >= 44 \(default 51\)"):
        true_circuit.expect_sufficient(0.9, samples=40, alpha=ALPHA)
    with pytest.raises(mt.MitestError, match="samples >= 44"):
        true_circuit.expect_necessary(0.9, samples=43, alpha=ALPHA)


def test_an_undecided_binomial_claim_says_its_units_are_random_circuits(true_circuit):
    with pytest.raises(mt.ClaimInconclusive) as undecided:  # 59 of 60 below: p = 0.014 at alpha 0.01
        true_circuit.expect_sufficient(0.9, samples=60, seed=0, alpha=ALPHA)
    assert undecided.value.verdict.notes[-1].startswith("the power advice counts random circuits, not prompts")


# -- bad input -----------------------------------------------------------------------------------------


def test_an_unknown_component_names_the_universe(induction):
    with pytest.raises(mt.SiteError, match=r"circuit component 2\.0 .* closest: .*0\.0"):
        mt.circuit(*induction, mt.heads("0.0", "2.0"), LOSS, components=HEADS)
    with pytest.raises(mt.SiteError, match="mlp 1"):
        mt.circuit(*induction, [mt.mlp(1)], LOSS, components=HEADS)


@pytest.mark.parametrize(("circuit", "message"), [([], "at least one component"), (HEADS, "holds all 8 components")])
def test_an_empty_or_whole_circuit_is_refused(induction, circuit, message):
    with pytest.raises(mt.MitestError, match=message):
        mt.circuit(*induction, circuit, LOSS, components=HEADS)


def test_a_universe_that_carries_no_behaviour_is_refused(induction):
    c = mt.circuit(*induction, mt.heads("0.2"), LOSS, components=mt.heads(*planted.INDUCTION_NULL_HEADS))
    assert c.expect_equivalent(within=1e-6, alpha=ALPHA).holds  # full and empty are bit-identical
    with pytest.raises(mt.MitestError, match="knocking out every component barely changes the metric"):
        c.expect_sufficient(alpha=ALPHA)


def test_bad_arguments_are_refused(induction, true_circuit):
    model, prompts = induction
    with pytest.raises(mt.InterventionError, match="unknown ablation"):
        mt.circuit(model, prompts, CIRCUIT, LOSS, components=HEADS, ablation="noise")
    bare = mt.Prompts(prompts.ids, answers=prompts.answers)
    with pytest.raises(mt.InterventionError, match="corrupted"):
        mt.circuit(model, bare, CIRCUIT, LOSS, components=HEADS, ablation="corrupted")
    for quantile in (0.0, 1.0):
        with pytest.raises(mt.MitestError, match="quantile must be in"):
            true_circuit.expect_sufficient(quantile, alpha=ALPHA)
    with pytest.raises(mt.MitestError, match="positive margin"):
        true_circuit.expect_equivalent(within=0.0)


# -- recorded by the pytest plugin -------------------------------------------------------------------


def test_circuit_claims_are_recorded_with_their_notes(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(
        test_inner_circuit="""
import pytest
import mitest as mt
from mitest.zoo import planted

HEADS = mt.heads("0.0", "0.1", "0.2", "0.3", "1.0", "1.1", "1.2", "1.3")

@pytest.mark.mitest(claims=2)
def test_induction_circuit(mi):
    model, prompts = planted.induction(16, length=7, n=40, seed=0)
    c = mi.circuit(model, prompts, mt.heads("0.0", "1.0"), mt.metrics.loss("second_half"), components=HEADS)
    c.expect_minimal(at_least=0.5)
    c.expect_sufficient(0.9, samples=200)
"""
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    claims = json.loads((pytester.path / "reports" / "run.json").read_text())["claims"]
    assert [claim["outcome"] for claim in claims] == [mt.HOLDS, mt.HOLDS]
    minimal, sufficient = claims
    assert minimal["notes"][0].startswith("0.0: mean drop 1.")
    assert sufficient["method"] == "binomial vs 200 random circuits"
    assert minimal["identity"]["intervention"].startswith("circuit-minimality:")
    assert sufficient["identity"]["intervention"].startswith("circuit-sufficiency:")
    assert minimal["identity"]["model"] and len(minimal["per_prompt"]["claim_value"]) == 40
    # A random-circuit claim's units are its 200 draws: 0/1 "beaten" indicators on the estimate's scale,
    # kept in run.json; the per-prompt CSV still holds its prompts' values.
    assert len(sufficient["per_prompt"]["claim_value"]) == 200
    assert np.mean(sufficient["per_prompt"]["claim_value"]) == pytest.approx(sufficient["estimate"])
    rows = (pytester.path / "reports" / "per_prompt.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 40
