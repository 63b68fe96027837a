"""mt.head_scores on the zoo induction model: head 0.0 is the previous-token head, 1.0-1.3 induction heads."""

from __future__ import annotations

import numpy as np
import pytest

import mitest as mt


@pytest.fixture(scope="module")
def zoo():
    model, prompts = mt.zoo.load("induction")
    return model, prompts["repeated"]


@pytest.fixture(scope="module")
def scores(zoo):
    model, prompts = zoo
    return {kind: mt.head_scores(model, prompts, kind) for kind in ("previous_token", "induction", "duplicate_token")}


def test_measured_scores(scores):
    """The numbers docs/features.md and the model card show."""
    previous, induction = scores["previous_token"].table, scores["induction"].table
    assert previous.shape == (2, 4) and list(previous.index) == [0, 1]
    assert previous.loc[0, 0] == pytest.approx(0.800, abs=0.001)
    assert (previous.loc[1] < 0.005).all() and (previous.loc[0, 1:] < 0.09).all()
    assert np.allclose(induction.loc[1], [0.421, 0.607, 0.986, 0.455], atol=0.001)
    assert (induction.loc[0] < 0.05).all()
    assert (scores["duplicate_token"].table < 0.05).all().all()  # no duplicate-token head


def test_the_zoo_helper_reads_the_same_scores(zoo, scores):
    from mitest.zoo import induction

    helper = induction.head_scores(zoo[0])
    assert helper["1.1"]["induction"] == round(float(scores["induction"].table.loc[1, 1]), 3)
    assert helper["0.0"]["previous_token"] == round(float(scores["previous_token"].table.loc[0, 0]), 3)


def test_single_head_claims(scores):
    assert scores["previous_token"].expect_score("0.0", at_least=0.75).outcome == mt.HOLDS
    assert scores["induction"].expect_score("1.2", at_least=0.9).outcome == mt.HOLDS
    with pytest.raises(mt.ClaimRefuted):
        scores["induction"].expect_score("1.0", at_least=0.5)  # 0.42: not an induction score of 0.5
    with pytest.raises(mt.SiteError, match="closest"):
        scores["induction"].expect_score("1.9", at_least=0.5)


def test_only_claims_over_every_head(scores):
    verdict = scores["induction"].expect_only(["1.0", "1.1", "1.2", "1.3"], above=0.3)
    assert verdict.outcome == mt.HOLDS and "Holm over 8" in verdict.test
    assert scores["previous_token"].expect_only(["0.0"], above=0.3).outcome == mt.HOLDS
    with pytest.raises(mt.ClaimRefuted) as refused:
        scores["induction"].expect_only(["1.0", "1.1", "1.2"], above=0.3)  # 1.3 (0.46) is left out
    assert any(note.startswith("1.3:") for note in refused.value.verdict.notes)


def test_unknown_kind(zoo):
    with pytest.raises(mt.MitestError, match="previous_token"):
        mt.head_scores(zoo[0], zoo[1], "copying")


def test_a_claim_over_every_head_has_one_identity_whichever_head_decides_it(scores):
    recorded = []
    from mitest import config

    with config.use(recorder=lambda verdict, effect, per_prompt: recorded.append(effect.identity)):
        scores["induction"].expect_only(["1.0", "1.1", "1.2", "1.3"], above=0.3)
        scores["induction"].expect_only(["1.0", "1.1", "1.2", "1.3"], above=0.1)  # another weakest head
        scores["induction"].expect_score("1.1", at_least=0.5)
        scores["induction"].expect_score("1.2", at_least=0.5)
    assert recorded[0]["reading"] == recorded[1]["reading"]
    assert len({identity["reading"] for identity in recorded}) == 3  # single-head claims name their head
