"""Which token positions an intervention or metric touches.

``Positions`` is resolved per batch into a boolean mask ``[batch, seq]`` that never selects padding.
Accepted forms (see :func:`as_positions`): ``"all"``, ``"last"``, an int (negative counts from each
prompt's own end), a tuple of ints, ``"first_half"`` / ``"second_half"`` (the second half is
the last ``len // 2`` tokens, so on ``[BOS] + r + r`` it is exactly the repeat), or per-prompt indices
(a 1-D array with one index per prompt, or a list of lists).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mitest.errors import PositionsError
from mitest.spec.base import Spec

SPANS = ("first_half", "second_half")


def _ints(value: Any, *, empty: bool = False) -> bool:
    """Whether ``value`` is a tuple of ints, the normalised form of positions (non-empty unless ``empty``)."""
    return isinstance(value, tuple) and (empty or len(value) > 0) and all(type(v) is int for v in value)


@dataclass(frozen=True)
class Positions(Spec):
    """A position selection; build it with :func:`as_positions`."""

    kind: str  # "all" | "last" | "fixed" | "span" | "per_prompt"
    value: Any = None

    def __post_init__(self) -> None:
        kind, value = self.kind, self.value
        valid = {
            "all": value is None,
            "last": value is None,
            "span": value in SPANS,
            "fixed": _ints(value),
            "per_prompt": isinstance(value, tuple) and all(_ints(row, empty=True) for row in value),
        }
        if not valid.get(kind, False):
            raise PositionsError(
                f"Positions({kind!r}, {value!r:.60}) is not a position selection; build one with "
                "mt.as_positions('all' | 'last' | 'first_half' | 'second_half' | an int | ints | one index per prompt)"
            )

    def mask(self, lengths: torch.Tensor, seq_len: int, prompt_index: torch.Tensor) -> torch.Tensor:
        """Boolean ``[len(lengths), seq_len]`` mask of selected, non-padding positions.

        ``prompt_index`` holds each row's index in the full prompt set (for per-prompt selections).
        """
        lengths = lengths.to(torch.long)
        arange = torch.arange(seq_len).unsqueeze(0)
        real = arange < lengths.unsqueeze(1)
        if self.kind == "all":
            return real
        if self.kind == "last":
            return arange == (lengths - 1).unsqueeze(1)
        if self.kind == "span":
            half = ((lengths + 1) // 2).unsqueeze(1)  # the middle token of an odd length is in the first half
            return real & (arange >= half) if self.value == "second_half" else arange < half
        if self.kind == "fixed":
            rows = [self.value] * len(lengths)
        else:
            rows = [self._row(int(i)) for i in prompt_index]
        mask = torch.zeros(len(lengths), seq_len, dtype=torch.bool)
        for row, (wanted, length) in enumerate(zip(rows, lengths.tolist(), strict=True)):
            for p in wanted:
                q = p + length if p < 0 else p
                if not 0 <= q < length:
                    raise PositionsError(
                        f"position {p} is outside prompt {int(prompt_index[row])} of length {length}; "
                        f"use an index in [-{length}, {length - 1}] or 'last'"
                    )
                mask[row, q] = True
        return mask

    def check_count(self, n: int) -> None:
        """Raise :class:`PositionsError` unless per-prompt positions give exactly one entry per prompt."""
        if self.kind == "per_prompt" and len(self.value) != n:
            raise PositionsError(
                f"per-prompt positions give {len(self.value)} entries for {n} prompts; pass one entry per prompt"
            )

    def _row(self, prompt: int) -> tuple[int, ...]:
        if prompt >= len(self.value):
            raise PositionsError(
                f"per-prompt positions give {len(self.value)} entries but prompt {prompt} was requested; "
                "pass one entry per prompt"
            )
        return self.value[prompt]

    def __str__(self) -> str:
        if self.kind in ("all", "last"):
            return self.kind
        if self.kind == "span":
            return str(self.value)
        if self.kind == "fixed":
            return ",".join(map(str, self.value))
        return f"per_prompt[{len(self.value)}]"


ALL = Positions("all")
LAST = Positions("last")


def as_positions(spec: Any) -> Positions:
    """Turn a user's position selection into :class:`Positions` (see the module docstring)."""
    if isinstance(spec, Positions):
        return spec
    if spec is None or (isinstance(spec, str) and spec == "all"):
        return ALL
    if isinstance(spec, str):
        if spec == "last":
            return LAST
        if spec in SPANS:
            return Positions("span", spec)
        raise PositionsError(
            f"unknown position name {spec!r}; use 'all', 'last', {', '.join(map(repr, SPANS))}, "
            "an int, a tuple of ints, or one index per prompt"
        )
    if isinstance(spec, (bytes, bytearray)):
        raise PositionsError(f"cannot read positions from bytes {spec!r:.40}; use a str such as 'last', or ints")
    if isinstance(spec, (bool, np.bool_)):
        raise PositionsError("positions cannot be a bool; use an int index or 'all'")
    if isinstance(spec, (int, np.integer)):
        return Positions("fixed", (int(spec),))
    if isinstance(spec, (torch.Tensor, np.ndarray)):
        array = np.asarray(spec.cpu() if isinstance(spec, torch.Tensor) else spec)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise PositionsError(
                f"a positions array must be 1-D integers (one index per prompt), got shape "
                f"{array.shape} and dtype {array.dtype}"
            )
        return Positions("per_prompt", tuple((int(i),) for i in array))
    if isinstance(spec, Sequence) and len(spec) > 0:
        if all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in spec):
            return Positions("fixed", tuple(int(p) for p in spec))
        if all(isinstance(p, Sequence) and not isinstance(p, str) for p in spec):
            rows = []
            for row in spec:
                if not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in row):
                    raise PositionsError(f"per-prompt positions must be ints, got {row!r}")
                rows.append(tuple(int(p) for p in row))
            return Positions("per_prompt", tuple(rows))
    raise PositionsError(
        f"cannot read positions from {spec!r}; use 'all', 'last', 'first_half', 'second_half', an int, "
        "a tuple of ints, a 1-D integer array (one index per prompt) or a list of lists"
    )
