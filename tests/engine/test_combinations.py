"""Combinations whose parts edit the same activation entries: refused, deduplicated, or added up,
and the no-op check judges what the edits of a hook point did together."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import mitest as mt
from tests.builders import build, random_prompts

pytestmark = pytest.mark.usefixtures("one_thread")

D_MODEL = 32  # the GPT-2 of tests.builders


@pytest.fixture(scope="module")
def gpt2() -> mt.Model:
    return mt.Model.from_hf(build("gpt2"))


@pytest.fixture(scope="module")
def data() -> mt.Prompts:
    return random_prompts(n=6)


def _measure(model, prompts, intervention, **kwargs) -> tuple[np.ndarray, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        effect = mt.measure(model, prompts, intervention, metric=mt.metrics.logit_diff, **kwargs)
    return effect.intervened, [str(w.message) for w in caught if issubclass(w.category, mt.MitestWarning)]


def _direction(seed: int = 0) -> mt.Site:
    vector = torch.randn(D_MODEL, generator=torch.Generator().manual_seed(seed))
    return mt.direction("blocks.0.hook_resid_post", vector)


@pytest.mark.parametrize(
    "combination",
    [
        mt.ablate(mt.head(1, 0)) + mt.patch(mt.head(1, 0)),
        mt.patch(mt.heads("1.0", "1.2")) + mt.ablate(mt.head(1, 2), method="mean"),
        mt.ablate(mt.resid(0)) + mt.steer(_direction(), 3.0),
        mt.ablate(mt.resid(0).at("last")) + mt.patch(mt.resid(0)),
        mt.ablate(mt.direction("blocks.0.hook_resid_post", [1.0] * D_MODEL))
        + mt.ablate(mt.direction("blocks.0.hook_resid_post", [1.0, -1.0] * (D_MODEL // 2))),
    ],
    ids=["ablate+patch", "patch+mean", "ablate+steer", "positions-overlap", "two-projections"],
)
def test_parts_that_edit_the_same_entries_are_refused_naming_both(gpt2, data, combination):
    with pytest.raises(mt.InterventionError, match="edit the same entries") as refusal:
        mt.measure(gpt2, data, combination, metric=mt.metrics.logit_diff)
    first, second = combination.parts()
    assert type(first).__name__.lower() in str(refusal.value) and type(second).__name__.lower() in str(refusal.value)


@pytest.mark.parametrize(
    ("combination", "alone"),
    [
        (mt.ablate([mt.head(1, 0), mt.head(1, 0)]), mt.ablate(mt.head(1, 0))),
        (mt.ablate(mt.head(1, 0)) + mt.ablate(mt.head(1, 0)), mt.ablate(mt.head(1, 0))),
        (mt.patch(mt.resid(0)) + mt.patch(mt.resid(0)), mt.patch(mt.resid(0))),
        (mt.ablate(mt.heads("1.0", "1.1")) + mt.ablate(mt.head(1, 1)), mt.ablate(mt.heads("1.0", "1.1"))),
    ],
    ids=["repeated-site", "repeated-part", "repeated-patch", "same-zero-overlap"],
)
def test_repeats_run_once_without_a_false_no_op_warning(gpt2, data, combination, alone):
    expected, _ = _measure(gpt2, data, alone)
    got, caught = _measure(gpt2, data, combination)
    np.testing.assert_array_equal(got, expected)
    assert caught == []
    np.testing.assert_array_equal(_measure(gpt2, data, combination, strict=True)[0], expected)


def test_parts_on_different_heads_or_positions_of_one_site_run_together(gpt2, data):
    got, caught = _measure(gpt2, data, mt.ablate(mt.head(1, 0)) + mt.patch(mt.head(1, 2)))
    assert caught == []
    by_hand, _ = _measure(gpt2, data, mt.patch(mt.head(1, 2)))
    assert not np.array_equal(got, by_hand)  # the ablation is not overwritten
    positions, caught = _measure(gpt2, data, mt.ablate(mt.resid(0).at("last")) + mt.patch(mt.resid(0).at(0)))
    assert caught == []


def test_steers_add_up(gpt2, data):
    d = _direction()
    together, _ = _measure(gpt2, data, mt.steer(d, 1.5) + mt.steer(d, 2.5))
    np.testing.assert_allclose(together, _measure(gpt2, data, mt.steer(d, 4.0))[0], atol=1e-5)


def test_a_cancelling_steer_pair_is_a_no_op(gpt2, data):
    d = _direction()
    clean, caught = _measure(gpt2, data, mt.steer(d, 3.0) + mt.steer(d, -3.0))
    assert any("cancel" in message for message in caught), caught
    with pytest.raises(mt.InterventionError, match="cancel"):
        mt.measure(gpt2, data, mt.steer(d, 4.0) + mt.steer(d, -4.0), metric=mt.metrics.logit_diff, strict=True)


def test_the_keys_and_values_of_a_fused_projection_are_edited_together_in_either_order():
    """Regression (found by the combination property test, which saw k and q refused): GPT-2 computes q,
    k and v in one module; edits of two of them touch disjoint slices, so they combine in either order."""
    model, prompts = mt.Model.from_hf(build("gpt2")), random_prompts()
    keys, values = mt.patch(mt.site("blocks.0.attn.hook_k")), mt.ablate(mt.site("blocks.0.attn.hook_v"), "mean")
    one = mt.measure(model, prompts, keys + values, mt.metrics.logit_diff)
    other = mt.measure(model, prompts, values + keys, mt.metrics.logit_diff)
    np.testing.assert_allclose(one.intervened, other.intervened, rtol=1e-6)
    alone = mt.measure(model, prompts, values, mt.metrics.logit_diff)
    assert not np.allclose(one.intervened, alone.intervened)  # the key patch took effect too
