"""Faithfulness curves (mt.faithfulness_curve): exact points, known circuits found, intervals, bad input.

Ground truth: on mitest.zoo.planted.induction heads 0.0 and 1.0 are the circuit; on the zoo's trained
induction model, heads 0.0 and 1.0-1.3 (docs/zoo.md).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import mitest as mt
import mitest.circuits.circuit
from mitest import config
from mitest.zoo import planted

ALPHA = 0.01
NAMES = ["0.0", "0.1", "0.2", "0.3", "1.0", "1.1", "1.2", "1.3"]
HEADS = mt.heads(*NAMES)
LOSS = mt.metrics.loss("second_half")
EIGHTHS = tuple(k / 8 for k in range(1, 9))  # one point per k on 8 heads
PLANTED_FIRST = ["0.0", "1.0", "0.1", "0.2", "0.3", "1.1", "1.2", "1.3"]
ZOO_CIRCUIT = {"0.0", "1.0", "1.1", "1.2", "1.3"}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def induction() -> planted.Planted:
    return planted.induction(16, length=7, n=48, seed=0)


@pytest.fixture(scope="module")
def zoo():
    model, sets = mt.zoo.load("induction")
    return model, sets["repeated"]


@pytest.fixture(scope="module")
def zoo_sweep(zoo) -> mt.Sweep:
    return mt.sweep(*zoo, mt.ablate(mt.heads("*"), method="mean"), LOSS)


def _verdict(claim, *args, **kwargs) -> mt.Verdict:
    try:
        return claim(*args, **kwargs)
    except (mt.ClaimRefuted, mt.ClaimInconclusive) as failed:
        return failed.verdict


def _scores(sweep: mt.Sweep):
    """Each head's exact single-head ablation effect (mean change of the metric), by name."""
    frame = sweep.frame()
    return frame.set_index("cell")["estimate"]


def _auroc(scores, truth: set[str]) -> float:
    """Area under the ROC curve of |score| against membership in ``truth`` (Mann-Whitney U / n1 n0)."""
    inside = [abs(v) for name, v in scores.items() if name in truth]
    outside = [abs(v) for name, v in scores.items() if name not in truth]
    u = sps.mannwhitneyu(inside, outside, alternative="greater").statistic
    return float(u / (len(inside) * len(outside)))


# -- exactness ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ablation", ["mean", "zero"])
def test_each_point_is_mt_circuits_faithfulness_of_its_top_k(induction, ablation):
    ranking = ["1.0", "0.1", "0.0", "1.2", "0.3", "0.2", "1.1", "1.3"]
    curve = mt.faithfulness_curve(*induction, ranking, LOSS, components=HEADS, ablation=ablation)
    frame = curve.frame(alpha=ALPHA)
    assert list(frame["k"]) == [1, 1, 1, 1, 1, 1, 1, 2, 4, 8]  # ceil(p * 8) on the default fractions
    for row in frame.itertuples():
        if row.k == 8:
            assert (row.estimate, row.low, row.high) == (1.0, 1.0, 1.0)  # the full model: nothing knocked out
            continue
        test = mt.circuit(*induction, mt.heads(*ranking[: row.k]), LOSS, components=HEADS, ablation=ablation)
        faithfulness = _verdict(test.effect.expect_recovery, 0.5, alpha=ALPHA)
        assert row.estimate == pytest.approx(faithfulness.estimate, abs=1e-6)
        assert (row.low, row.high) == pytest.approx((faithfulness.low, faithfulness.high), abs=1e-6)
        assert row.components == tuple(ranking[: row.k]) and row.n == 48


def test_fractions_with_one_k_share_one_measurement(induction, monkeypatch):
    calls = []
    measure = mitest.circuits.circuit.measure

    def counting(model, prompts, intervention, metric, **kwargs):
        calls.append(intervention.key())
        return measure(model, prompts, intervention, metric, **kwargs)

    monkeypatch.setattr(mitest.circuits.circuit, "measure", counting)
    curve = mt.faithfulness_curve(*induction, PLANTED_FIRST, LOSS, components=HEADS)
    assert len(calls) == len(set(calls)) == 1 + 3  # everything knocked out, then k = 1, 2 and 4 (k = 8 is clean)
    frame = curve.frame()
    assert frame.loc[frame["k"] == 1, ["estimate", "low", "high"]].nunique().tolist() == [1, 1, 1]


def test_the_claim_at_a_point_is_the_circuit_faithfulness_claim(induction):
    curve = mt.faithfulness_curve(*induction, PLANTED_FIRST, LOSS, components=HEADS)
    point = curve.expect_recovers(at_fraction=0.2, at_least=0.9, alpha=ALPHA)
    assert point.claim.startswith("the top 0.2 of the ranking (2 of 8 components) recover at least 0.9")
    same = mt.circuit(*induction, mt.heads("0.0", "1.0"), LOSS, components=HEADS).effect.expect_recovery(
        at_least=0.9, alpha=ALPHA
    )
    assert (point.outcome, point.estimate, point.pvalue, point.low) == (
        same.outcome,
        same.estimate,
        same.pvalue,
        same.low,
    )
    refuted = _verdict(curve.expect_recovers, at_fraction=0.1, at_least=0.5, alpha=ALPHA)  # 0.0 alone
    assert refuted.outcome == mt.REFUTED and refuted.high < 0.5


# -- known circuits --------------------------------------------------------------------------------


def test_the_planted_circuit_first_reaches_one_at_its_size(induction):
    curve = mt.faithfulness_curve(*induction, PLANTED_FIRST, LOSS, components=HEADS, fractions=EIGHTHS)
    estimates = curve.frame().set_index("k")["estimate"]
    assert estimates[1] < 0.5
    assert np.allclose(estimates.loc[2:], 1.0, rtol=0, atol=1e-5)


def test_the_zoo_circuit_first_reaches_one_at_its_size(zoo, zoo_sweep):
    ranking = ["0.0", "1.0", "1.3", "1.2", "1.1", "0.1", "0.2", "0.3"]
    frame = mt.faithfulness_curve(*zoo, ranking, LOSS, fractions=EIGHTHS).frame().set_index("k")
    assert frame.loc[5, "estimate"] == pytest.approx(1.0, abs=0.01)
    assert frame.loc[4, "estimate"] < 0.97  # head 1.1 still carries some of the behaviour


def test_single_head_ablation_effects_rank_the_known_circuits_first(induction, zoo, zoo_sweep):
    model, prompts = induction
    planted_sweep = mt.sweep(model, prompts, mt.ablate(HEADS, method="mean"), LOSS)
    assert _auroc(_scores(planted_sweep), {"0.0", "1.0"}) == 1.0
    assert _auroc(_scores(zoo_sweep), ZOO_CIRCUIT) == 1.0
    curve = mt.faithfulness_curve(*zoo, _scores(zoo_sweep), LOSS, fractions=EIGHTHS)  # a Series, ranked by |score|
    assert {mt.circuits.circuit.label(site) for site in curve.ranking[:5]} == ZOO_CIRCUIT
    assert curve.frame().set_index("k").loc[5, "estimate"] == pytest.approx(1.0, abs=0.01)


def test_a_reversed_ranking_has_a_much_lower_area_and_its_auc_claim_is_refuted(zoo, zoo_sweep):
    scores = _scores(zoo_sweep)
    best_first = list(scores.abs().sort_values(ascending=False, kind="stable").index)
    forward = mt.faithfulness_curve(*zoo, best_first, LOSS, fractions=EIGHTHS)
    backward = mt.faithfulness_curve(*zoo, best_first[::-1], LOSS, fractions=EIGHTHS)
    assert forward.auc.estimate > 0.7 > 0.3 > backward.auc.estimate
    assert forward.expect_auc(at_least=0.5, alpha=ALPHA).holds
    refuted = _verdict(backward.expect_auc, at_least=0.5, alpha=ALPHA)
    assert refuted.outcome == mt.REFUTED and refuted.high < 0.5


def test_a_ranking_can_be_any_object_with_a_ranking_method(induction):
    class Scores:
        def ranking(self) -> list[str]:
            return PLANTED_FIRST

    by_method = mt.faithfulness_curve(*induction, Scores(), LOSS, components=HEADS).frame()
    by_names = mt.faithfulness_curve(
        *induction, [mt.head(0, 0), mt.head(1, 0), *PLANTED_FIRST[2:]], LOSS, components=HEADS
    ).frame()
    assert by_method.equals(by_names)


# -- intervals ---------------------------------------------------------------------------------------


def _doubled(prompts: mt.Prompts, groups) -> mt.Prompts:
    """Every prompt twice (the repeat loss reads no answers)."""
    return mt.Prompts(np.concatenate([prompts.ids.numpy()] * 2), groups=groups)


SPREAD = ["1.1", "0.0", "1.2", "1.0", "1.3", "0.1", "0.2", "0.3"]  # partial circuits: faithfulness varies by prompt


def test_grouped_prompts_get_the_cluster_bootstrap(zoo):
    """Every prompt twice: as one cluster per pair the interval is the single copy's; ungrouped it is narrower."""
    model, prompts = zoo
    n = len(prompts)
    once = mt.faithfulness_curve(model, prompts, SPREAD, LOSS, fractions=EIGHTHS)
    pairs = mt.faithfulness_curve(
        model, _doubled(prompts, np.r_[np.arange(n), np.arange(n)]), SPREAD, LOSS, fractions=EIGHTHS
    )
    loose = mt.faithfulness_curve(model, _doubled(prompts, None), SPREAD, LOSS, fractions=EIGHTHS)
    a, b, c = (curve.frame(alpha=ALPHA).set_index("k") for curve in (once, pairs, loose))
    assert np.allclose(a[["estimate", "low", "high"]], b[["estimate", "low", "high"]], rtol=0, atol=1e-6)
    width = (a["high"] - a["low"]).loc[1:4]  # from k = 5 on every circuit head is kept: exactly 1
    assert (width > 0.005).all()
    assert ((c["high"] - c["low"]).loc[1:4] < 0.8 * width).all()  # copies counted as independent evidence
    assert pairs.auc.high - pairs.auc.low == pytest.approx(once.auc.high - once.auc.low, abs=1e-6)
    assert loose.auc.high - loose.auc.low < 0.8 * (once.auc.high - once.auc.low)


def test_intervals_are_seeded(zoo):
    first = mt.faithfulness_curve(*zoo, SPREAD, LOSS, fractions=EIGHTHS)
    again = mt.faithfulness_curve(*zoo, SPREAD, LOSS, fractions=EIGHTHS)
    assert first.frame().equals(again.frame()) and first.auc == again.auc
    with config.use(settings=config.Settings(seed=1)):
        other = first.frame()
    assert np.array_equal(other["estimate"], first.frame()["estimate"])
    assert not np.array_equal(other["low"], first.frame()["low"])


def test_the_auc_interval_bootstraps_the_whole_curve(zoo):
    """The area's interval matches resampling prompts once for every point and taking each resample's area."""
    model, prompts = zoo
    fractions = (0.125, 0.25, 0.5, 1.0)
    curve = mt.faithfulness_curve(model, prompts, SPREAD, LOSS, fractions=fractions)
    frame = curve.frame()
    x = np.asarray(fractions)
    assert curve.auc.estimate == pytest.approx(np.trapezoid(frame["estimate"], x) / (x[-1] - x[0]), abs=1e-12)
    tests = [mt.circuit(model, prompts, mt.heads(*SPREAD[:k]), LOSS, components=HEADS) for k in frame["k"][:-1]]
    full, empty = tests[0].full, tests[0].empty
    alone = np.stack([test.alone for test in tests] + [full])  # the last point is the full model
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(4000):
        rows = rng.integers(0, len(prompts), len(prompts))
        points = (alone[:, rows] - empty[rows]).sum(1) / (full[rows] - empty[rows]).sum()
        areas.append(np.trapezoid(points, x) / (x[-1] - x[0]))
    level = curve.auc.level
    low, high = np.quantile(areas, [(1 - level) / 2, (1 + level) / 2])
    width = high - low
    assert width > 0.005
    assert curve.auc.low == pytest.approx(low, abs=0.15 * width)
    assert curve.auc.high == pytest.approx(high, abs=0.15 * width)
    assert curve.auc.low <= curve.auc.estimate <= curve.auc.high


# -- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ranking", "kwargs", "error", "match"),
    [
        ([], {}, mt.CurveError, r"the ranking is empty; pass the components best first"),
        (["0.0", "9.9"], {}, mt.SiteError, r"'9.9' is not a component of the model; components are named like"),
        (["0.0", "1.0", "0.0"], {}, mt.CurveError, r"0.0 is ranked twice; rank each component once"),
        (PLANTED_FIRST, {"fractions": (0.0, 0.5, 1.0)}, mt.CurveError, r"fractions must lie in \(0, 1\], got 0"),
        (PLANTED_FIRST, {"fractions": (0.5, 1.5)}, mt.CurveError, r"must lie in \(0, 1\], got 1.5"),
        (PLANTED_FIRST, {"fractions": (0.5, 0.2, 1.0)}, mt.CurveError, r"strictly increasing.*sort them"),
        (PLANTED_FIRST, {"fractions": (0.5,)}, mt.CurveError, r"at least two fractions"),
        (
            ["0.0", "1.0", "0.1"],
            {"components": mt.heads("0.0", "1.0")},
            mt.SiteError,
            r"ranked 0.1 is a component of the model but not one of the 2 components .* pass components=",
        ),
        (["0.0", "mlp 0"], {}, mt.SiteError, r"ranked mlp 0 is a component of the model but not one of the 8"),
        (
            ["0.0", "1.0"],
            {"fractions": (0.25, 0.5, 1.0)},
            mt.CurveError,
            r"fraction 0.5 keeps the top 4 of 8 components, but the ranking holds only 2; rank more components",
        ),
        ({"0.0": 1.0, "1.0": float("nan")}, {}, mt.CurveError, r"the score of '1.0' is nan; every score must be"),
    ],
)
def test_bad_input_is_refused_with_the_fix(induction, ranking, kwargs, error, match):
    with pytest.raises(error, match=match):
        mt.faithfulness_curve(*induction, ranking, LOSS, **kwargs)


def test_a_claim_at_a_fraction_the_curve_lacks_is_refused(induction):
    curve = mt.faithfulness_curve(*induction, PLANTED_FIRST, LOSS, components=HEADS, fractions=EIGHTHS)
    with pytest.raises(mt.CurveError, match=r"no point at fraction 0.05; its fractions are 0.125, 0.25"):
        curve.expect_recovers(at_fraction=0.05)


def test_a_series_is_ranked_by_absolute_score(induction):
    scores = {"1.0": -3.0, "0.0": 5.0, **{name: 0.0 for name in PLANTED_FIRST[2:]}}
    curve = mt.faithfulness_curve(*induction, pd.Series(scores), LOSS, components=HEADS)
    assert [mt.circuits.circuit.label(site) for site in curve.ranking[:2]] == ["0.0", "1.0"]
    assert math.isclose(curve.frame().set_index("k").loc[2, "estimate"], 1.0, abs_tol=1e-5)


def test_a_curve_claim_carries_its_points_and_area_to_the_record(induction):
    curve = mt.faithfulness_curve(*induction, PLANTED_FIRST, LOSS, components=HEADS, fractions=EIGHTHS)
    records = []
    with config.use(recorder=lambda verdict, effect, units: records.append(verdict)):
        point = curve.expect_recovers(at_fraction=0.25, at_least=0.9, alpha=ALPHA)
        area = _verdict(curve.expect_auc, at_least=0.5, alpha=ALPHA)
    assert records == [point, area]
    frame = curve.frame(alpha=ALPHA)
    assert [p["estimate"] for p in point.curve["points"]] == frame["estimate"].tolist()
    assert [p["k"] for p in point.curve["points"]] == list(range(1, 9))
    assert point.curve["at_fraction"] == 0.25 and area.curve["at_fraction"] is None
    assert area.curve["auc"]["estimate"] == area.estimate and (area.low, area.high) == (
        area.curve["auc"]["low"],
        area.curve["auc"]["high"],
    )
    assert point.to_dict()["curve"] == point.curve
    assert _verdict(mt.Effect.from_values([1.0, 2.0], [0.0, 1.0]).expect_decrease, at_least=0.5).curve is None


def test_a_claims_identity_is_its_curve_and_point_not_the_ranking(induction):
    """A ranking is usually derived from the model under test (attribution scores): a new release that
    reorders it states the same claim, and the verdict's note names the circuit it was decided on."""
    effects = []
    with config.use(recorder=lambda verdict, effect, units: effects.append((verdict, effect))):
        for ranking in (PLANTED_FIRST, PLANTED_FIRST[::-1]):
            curve = mt.faithfulness_curve(*induction, ranking, LOSS, components=HEADS, fractions=EIGHTHS)
            _verdict(curve.expect_recovers, at_fraction=0.25, at_least=0.9, alpha=ALPHA)
            _verdict(curve.expect_recovers, at_fraction=0.5, at_least=0.9, alpha=ALPHA)
    keys = [(effect.identity["intervention"], effect.identity["parameters"]) for _, effect in effects]
    assert keys[0] == keys[2] and keys[1] == keys[3] and keys[0] != keys[1]
    assert effects[0][0].notes[0] == "the circuit: 0.0, 1.0" and effects[2][0].notes[0] == "the circuit: 1.3, 1.2"


def test_mlps_are_ranked_by_label_or_site_name(induction):
    universe = [*HEADS, mt.mlp(0), mt.mlp(1)]
    ranking = ["0.0", "1.0", "mlp 1", "blocks.0.hook_mlp_out"]
    with pytest.warns(mt.NoOpInterventionWarning, match="blocks.0.hook_mlp_out, blocks.1.hook_mlp_out"):
        curve = mt.faithfulness_curve(*induction, ranking, LOSS, components=universe, fractions=(0.2, 0.4, 1.0))
    assert curve.ranking == (mt.head(0, 0), mt.head(1, 0), mt.mlp(1), mt.mlp(0))
    assert curve.frame()["k"].tolist() == [2, 4, 10]
    assert np.allclose(curve.frame()["estimate"], 1.0, rtol=0, atol=1e-5)  # the planted MLPs output exactly 0
