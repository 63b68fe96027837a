"""Claims on a sweep: planted effects HOLD, a false claim names the offending cells, nulls stay at alpha."""

from __future__ import annotations

import numpy as np
import pytest

import mitest as mt
from mitest.spec.sites import Site
from mitest.sweeps.cells import Cell
from mitest.sweeps.sweep import Sweep


def _sweep(means: list[float], n: int = 60, noise: float = 0.1, seed: int = 0) -> Sweep:
    """A sweep of heads 0.0, 0.1, ... whose per-prompt changes have the given means."""
    rng = np.random.default_rng(seed)
    clean = rng.normal(3.0, 0.5, n)
    cells, effects = [], []
    for k, mean in enumerate(means):
        cells.append(Cell(f"0.{k}", Site("blocks.0.attn.hook_z", (k,)), 0, k, None, None))
        effects.append(mt.Effect.from_values(clean, clean + rng.normal(mean, noise, n)))
    return Sweep(mt.ablate(mt.heads("*")), tuple(cells), tuple(effects), {"values": "simulated"})


def test_only_the_named_cells_matter_holds_on_a_planted_sweep():
    sweep = _sweep([-1.0, -0.9, 0.02, -0.01, 0.0, 0.03])
    verdict = sweep.expect_only(["0.0", "0.1"], 0.5, others_within=0.2)
    assert verdict.outcome == mt.HOLDS
    assert "Holm over 6" in verdict.test
    cells = {cell["cell"]: cell for cell in verdict.sweep["cells"]}
    assert cells["0.0"]["named"] and not cells["0.2"]["named"]
    assert not any(cell["failing"] for cell in cells.values())


def test_a_false_only_claim_names_the_offending_cell_with_its_numbers():
    sweep = _sweep([-1.0, -0.9, 0.02, -0.7, 0.0, 0.03])
    with pytest.raises(mt.ClaimFailure) as failure:
        sweep.expect_only(["0.0", "0.1"], 0.5, others_within=0.2)
    verdict = failure.value.verdict
    assert verdict.outcome == mt.REFUTED
    offending = [note for note in verdict.notes if note.startswith("0.3:")]
    assert offending and "mean 0.7" in offending[0] and "|change| below 0.2" in offending[0]
    assert [cell["cell"] for cell in verdict.sweep["cells"] if cell["failing"]] == ["0.3"]


def test_top_k_holds_when_the_named_cells_lead_and_fails_naming_the_pair_otherwise():
    sweep = _sweep([-1.0, -0.8, -0.1, 0.0])
    assert sweep.expect_top(["0.0", "0.1"]).outcome == mt.HOLDS
    with pytest.raises(mt.ClaimFailure) as failure:
        sweep.expect_top(["0.0", "0.2"])
    assert any(note.startswith("0.2 vs 0.1") for note in failure.value.verdict.notes)


def test_none_outside_and_per_cell_claims():
    sweep = _sweep([-1.0, 0.01, -0.02, 0.0])
    assert sweep.expect_none_outside(["0.0"], exceeds=0.2).outcome == mt.HOLDS
    assert sweep["0.0"].expect_decrease(at_least=0.5).outcome == mt.HOLDS
    with pytest.raises(mt.ClaimFailure):
        sweep.expect_none_outside([], exceeds=0.2)


def test_bad_claims_are_clear_errors():
    sweep = _sweep([-1.0, 0.0, 0.0])
    with pytest.raises(mt.SiteError, match="no cell '1.0'.*closest"):
        sweep.expect_only(["1.0"], 0.5, others_within=0.2)
    with pytest.raises(mt.MitestError, match="direction must be"):
        sweep.expect_only(["0.0"], 0.5, others_within=0.2, direction="down")
    with pytest.raises(mt.MitestError, match="more than once"):
        sweep.expect_top(["0.0", "0.0"])
    with pytest.raises(mt.MitestError, match="names every cell"):
        sweep.expect_top(["0.0", "0.1", "0.2"])
    with pytest.raises(mt.MitestError, match="margin must be > 0"):
        sweep.expect_none_outside(["0.0"], exceeds=0.0)


def _holds(run) -> bool:
    try:
        run()
    except mt.ClaimFailure:
        return False
    return True


def test_at_the_null_boundary_a_sweep_claim_holds_at_most_alpha():
    """Every other cell exactly at the margin: "none outside exceeds 0.2" is false; it must not HOLD
    more often than alpha (plus two Monte-Carlo standard errors)."""
    runs = 300
    held = sum(
        _holds(
            lambda s=seed: _sweep([-1.0] + [0.2] * 7, n=40, noise=0.3, seed=s).expect_none_outside(["0.0"], exceeds=0.2)
        )
        for seed in range(runs)
    )
    assert held / runs <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / runs)


def test_a_planted_sweep_claim_has_power():
    runs = 40
    held = sum(
        _holds(
            lambda s=seed: _sweep([-1.0, -0.8] + [0.0] * 6, n=40, noise=0.3, seed=s).expect_only(
                ["0.0", "0.1"], 0.5, others_within=0.3
            )
        )
        for seed in range(runs)
    )
    assert held / runs >= 0.8


def test_the_zoo_induction_sweep_finds_the_induction_circuit():
    model, sets = mt.zoo.load("induction")
    sweep = mt.sweep(model, sets["repeated"], mt.ablate(mt.heads("*")), mt.metrics.loss())
    frame = sweep.frame().set_index("cell")
    assert frame.loc["0.0", "estimate"] > 1.0  # the previous-token head
    assert sweep.grid().shape == (model.dims.n_layers, model.dims.n_heads)


def test_the_grid_of_a_sweep_mixing_heads_and_whole_sites_keeps_every_cell():
    model, sets = mt.zoo.load("induction")
    cells = mt.ablate([*mt.heads("1.0", "0.1"), mt.resid("*", "post")], method="mean")
    sweep = mt.sweep(model, sets["repeated"], cells, mt.metrics.loss("second_half"))
    grid = sweep.grid()
    assert grid.notna().to_numpy().sum() == len(sweep) == 4
    assert list(grid.columns) == ["0", "1", "hook_resid_post"]
    frame = sweep.frame().set_index("cell")
    assert grid.loc[1, "0"] == frame.loc["1.0", "estimate"]
    assert grid.loc[0, "hook_resid_post"] == frame.loc["blocks.0.hook_resid_post", "estimate"]
