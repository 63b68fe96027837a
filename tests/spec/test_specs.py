"""Interventions, sites and metrics are frozen data with stable serialisation; Effect holds data."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import mitest as mt


def test_intervention_specs_are_frozen_and_serialise_to_json():
    iv = mt.ablate(mt.heads("1.4", "1.6").at("last"), "mean") + mt.patch(mt.mlp(0), source="corrupted")
    with pytest.raises(dataclasses.FrozenInstanceError):
        iv.parts()[0].method = "zero"
    data = json.loads(json.dumps(iv.to_dict()))
    assert data["type"] == "Combined"
    ablate = data["interventions"][0]
    assert ablate["method"] == "mean"
    assert ablate["sites"][0] == {
        "type": "Site",
        "name": "blocks.1.attn.hook_z",
        "index": [4, 6],
        "positions": {"type": "Positions", "kind": "last", "value": None},
        "direction": None,
        "derived": None,
    }


def test_keys_are_stable_and_distinguish_specs():
    a = mt.ablate(mt.heads("1.4"), "mean")
    assert a.key() == mt.ablate(mt.heads((1, 4)), "mean").key()
    assert a.key() != mt.ablate(mt.heads("1.4"), "zero").key()
    assert a.key() != mt.ablate(mt.heads("1.4").at("last"), "mean").key()
    assert mt.metrics.loss("second_half").key() != mt.metrics.loss().key()


def test_reference_prompts_are_identified_by_content():
    reference = mt.Prompts([[1, 2, 3]])
    data = mt.ablate(mt.mlp(0), "mean", reference=reference).to_dict()
    assert data["reference"] == {"prompts": reference.fingerprint}


def test_heads_of_one_layer_share_a_site():
    sites = mt.heads("1.4", "0.2", "1.6", "1.4")
    assert [(s.name, s.index) for s in sites] == [("blocks.1.attn.hook_z", (4, 6)), ("blocks.0.attn.hook_z", (2,))]


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: mt.heads("14"), mt.SiteError, "layer.head"),
        (lambda: mt.heads(), mt.SiteError, "at least one head"),
        (lambda: mt.resid(0, "middle"), mt.SiteError, "'pre', 'mid' or 'post'"),
        (lambda: mt.direction("blocks.0.hook_resid_post", [0.0, 0.0]), mt.SiteError, "non-zero"),
        (lambda: mt.ablate(mt.mlp(0), "gaussian"), mt.InterventionError, "zero, mean, resample"),
        (lambda: mt.ablate(mt.mlp(0), "zero", reference=mt.Prompts([[1]])), mt.InterventionError, "no reference"),
        (lambda: mt.patch(mt.mlp(0), source="other"), mt.InterventionError, "unknown patch source"),
        (lambda: mt.steer(mt.mlp(0), 2.0), mt.InterventionError, "mt.direction"),
        (lambda: mt.combine(mt.mlp(0)), mt.InterventionError, "takes interventions"),
    ],
)
def test_bad_specs_are_clear_errors(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_effect_from_values():
    effect = mt.Effect.from_values([1.0, 2.0, 3.0], [0.5, 2.5, 1.0], groups=["a", "a", "b"])
    np.testing.assert_array_equal(effect.delta, [-0.5, 0.5, -2.0])
    assert effect.per_prompt["group"].tolist() == ["a", "a", "b"]
    assert effect.n == 3 and effect.intervention is None


@pytest.mark.parametrize(
    ("clean", "intervened", "message"),
    [
        ([1.0, 2.0], [1.0], "pair them"),
        ([], [], "non-empty"),
        ([1.0, float("nan")], [1.0, 2.0], "finite"),
        (["a"], [1.0], "numbers"),
    ],
)
def test_effect_from_bad_values(clean, intervened, message):
    with pytest.raises(mt.MitestError, match=message):
        mt.Effect.from_values(clean, intervened)


def test_interventions_sum_into_one_combination():
    first, second = mt.ablate(mt.heads("0.1")), mt.patch(mt.heads("1.0"))
    assert sum([first, second]) == mt.combine(first, second)
    assert sum([first]) is first
    with pytest.raises(mt.InterventionError, match="combine"):
        3 + first


_SITE = mt.site("blocks.0.hook_resid_post")
_DIRECTION = mt.direction("blocks.0.hook_resid_post", [1.0, 0.0])


@pytest.mark.parametrize(
    "direct, factory",
    [
        (lambda: mt.Ablate(_SITE, method="bogus"), lambda: mt.ablate(_SITE, method="bogus")),
        (lambda: mt.Ablate(_SITE, reference="x"), lambda: mt.ablate(_SITE, reference="x")),
        (lambda: mt.Ablate(_SITE, seed=-1), lambda: mt.ablate(_SITE, seed=-1)),
        (lambda: mt.Ablate(_SITE, per_position="yes"), lambda: mt.ablate(_SITE, per_position="yes")),
        (lambda: mt.Patch(_SITE, source="other"), lambda: mt.patch(_SITE, source="other")),
        (lambda: mt.PathPatch(_SITE, []), lambda: mt.path_patch(_SITE, [])),
        (lambda: mt.PathPatch(_SITE, "logits", 3), lambda: mt.path_patch(_SITE, "logits", 3)),
        (lambda: mt.Steer(_SITE, 1.0), lambda: mt.steer(_SITE, 1.0)),
        (lambda: mt.Steer(_DIRECTION, float("nan")), lambda: mt.steer(_DIRECTION, float("nan"))),
        (lambda: mt.Scrub("not a hypothesis"), lambda: mt.scrub("not a hypothesis")),
    ],
)
def test_intervention_specs_built_directly_check_themselves_as_their_factories_do(direct, factory):
    with pytest.raises(mt.InterventionError) as from_factory:
        factory()
    with pytest.raises(mt.InterventionError) as built:
        direct()
    assert str(built.value) == str(from_factory.value)


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: mt.Site(3), mt.SiteError, "site names are strings"),
        (lambda: mt.Site("blocks.0.attn.hook_z", index=[]), mt.SiteError, "component indices"),
        (lambda: mt.Site("blocks.0.attn.hook_z", index=(1.5,)), mt.SiteError, "component index must be an int"),
        (lambda: mt.Site("blocks.0.hook_resid_post", positions="nowhere"), mt.PositionsError, "unknown position"),
        (lambda: mt.Site("blocks.0.hook_resid_post", direction=(0.0, 0.0)), mt.SiteError, "non-zero, finite"),
        (lambda: mt.Site("blocks.0.hook_resid_post", derived="recipe"), mt.SiteError, "give the direction too"),
        (lambda: mt.Positions("bogus"), mt.PositionsError, "not a position selection"),
        (lambda: mt.Positions("fixed", [1, 2]), mt.PositionsError, "not a position selection"),
    ],
)
def test_sites_and_positions_built_directly_refuse_bad_fields(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_sites_built_directly_are_normalised_like_those_from_factories():
    built = mt.Site("blocks.0.attn.hook_z", index=[1, 2], positions="last", direction=None)
    assert built == mt.site("blocks.0.attn.hook_z", [1, 2]).at("last") and built.index == (1, 2)
    assert mt.Site("blocks.0.hook_resid_post", direction=np.array([1, 2])).direction == (1.0, 2.0)
    assert mt.Ablate(_SITE).sites == mt.ablate(_SITE).sites  # a bare site becomes Sites


def test_effects_compare_by_identity_not_by_their_arrays():
    effect = mt.Effect.from_values([1.0, 2.0], [1.5, 2.5])
    twin = mt.Effect.from_values([1.0, 2.0], [1.5, 2.5])
    assert effect == effect and effect != twin  # no "truth value of an array is ambiguous"
    assert len({effect, twin}) == 2
