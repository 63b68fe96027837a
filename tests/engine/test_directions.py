"""``mt.mean_difference``: a derived direction equal to the mean difference computed by hand."""

from __future__ import annotations

import pytest
import torch

import mitest as mt


def test_a_mean_difference_equals_the_hand_computed_one_and_names_its_recipe():
    model, prompts = mt.zoo.load("induction")
    repeated = prompts["repeated"]
    site = mt.site("blocks.0.hook_attn_out").at("last")
    where = torch.arange(len(repeated)) % 2 == 0
    direction = mt.mean_difference(model, repeated, site, where)
    outputs = mt.activations(model, repeated, site)
    expected = outputs[where].mean(0) - outputs[~where].mean(0)
    assert torch.allclose(torch.tensor(direction.direction, dtype=torch.float32), expected, atol=1e-6)
    assert direction.derived.startswith(f"mean difference at {site} of prompts {repeated.fingerprint}")
    with pytest.raises(mt.SiteError, match="two non-empty sets"):
        mt.mean_difference(model, repeated, site, torch.ones(len(repeated), dtype=torch.bool))
    with pytest.raises(mt.SiteError, match="one True/False per prompt"):
        mt.mean_difference(model, repeated, site, [True, False])
    with pytest.raises(mt.SiteError, match="one vector per prompt"):
        mt.mean_difference(model, repeated, "blocks.0.hook_attn_out", where)
