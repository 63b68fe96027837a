"""Position selections resolve to masks that never select padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mitest as mt
from mitest.spec.positions import as_positions

LENGTHS = torch.tensor([4, 6, 3])
INDEX = torch.arange(3)


def _rows(spec):
    mask = as_positions(spec).mask(LENGTHS, 6, INDEX)
    return [torch.nonzero(row).flatten().tolist() for row in mask]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("all", [[0, 1, 2, 3], [0, 1, 2, 3, 4, 5], [0, 1, 2]]),
        (None, [[0, 1, 2, 3], [0, 1, 2, 3, 4, 5], [0, 1, 2]]),
        ("last", [[3], [5], [2]]),
        (0, [[0], [0], [0]]),
        (-2, [[2], [4], [1]]),
        ((0, -1), [[0, 3], [0, 5], [0, 2]]),
        ("first_half", [[0, 1], [0, 1, 2], [0, 1]]),
        ("second_half", [[2, 3], [3, 4, 5], [2]]),
        (np.array([1, 4, 0]), [[1], [4], [0]]),
        (torch.tensor([3, 0, 2]), [[3], [0], [2]]),
        ([[0, 1], [5], [2, 0]], [[0, 1], [5], [0, 2]]),
    ],
)
def test_position_specs(spec, expected):
    assert _rows(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (5, "position 5 is outside prompt 0 of length 4"),
        ("middle", "unknown position name"),
        (True, "bool"),
        (np.zeros((2, 2), dtype=int), "1-D"),
        ([1.5], "cannot read positions"),
        ([[0], [0]], "2 entries"),
    ],
)
def test_bad_positions_are_clear_errors(spec, message):
    with pytest.raises(mt.PositionsError, match=message):
        as_positions(spec).mask(LENGTHS, 6, INDEX)


def test_sites_carry_positions_and_serialise_them():
    site = mt.head(1, 4).at("last")
    assert site.positions == as_positions("last")
    assert mt.heads("1.4", "1.6", "0.1").at(2)[0].positions == as_positions(2)
    assert site.to_dict()["positions"] == {"type": "Positions", "kind": "last", "value": None}
