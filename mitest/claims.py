"""``mt.Effect``: the per-prompt outcome of an intervention, the input to every claim."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import MitestError


@dataclass(frozen=True)
class Effect:
    """Paired per-prompt metric values: clean vs intervened on the same prompts.

    Attributes:
        clean: metric on the clean prompts with no intervention, one value per prompt.
        intervened: metric with the intervention applied.
        corrupted: metric on the corrupted prompts with no intervention, when prompts have them.
        groups: a cluster label per prompt (template id), or None.
        intervention: the intervention spec as a dict (None for ``from_values``).
        metric: the metric's name.
        hooks: per hook, the site, how often it fired and whether it changed the activation.
    """

    clean: np.ndarray
    intervened: np.ndarray
    corrupted: np.ndarray | None = None
    groups: np.ndarray | None = None
    intervention: dict[str, Any] | None = None
    metric: str = "value"
    hooks: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("clean", "intervened", "corrupted"):
            values = getattr(self, name)
            if values is not None:
                values = np.array(values, dtype=np.float64)  # a private, read-only copy
                values.setflags(write=False)
                object.__setattr__(self, name, values)

    @classmethod
    def from_values(
        cls,
        clean: Sequence[float] | np.ndarray,
        intervened: Sequence[float] | np.ndarray,
        groups: Sequence[Any] | None = None,
        *,
        corrupted: Sequence[float] | np.ndarray | None = None,
        metric: str = "value",
    ) -> Effect:
        """An Effect from per-prompt numbers computed anywhere (another library, a cluster job)."""
        clean_values = _vector(clean, "clean")
        intervened_values = _vector(intervened, "intervened")
        n = len(clean_values)
        if len(intervened_values) != n:
            raise MitestError(f"clean has {n} values but intervened has {len(intervened_values)}; pair them per prompt")
        corrupted_values = None if corrupted is None else _vector(corrupted, "corrupted")
        if corrupted_values is not None and len(corrupted_values) != n:
            raise MitestError(f"corrupted has {len(corrupted_values)} values for {n} prompts")
        labels = None
        if groups is not None:
            labels = np.asarray(list(groups), dtype=object)
            if len(labels) != n:
                raise MitestError(f"groups has {len(labels)} labels for {n} prompts")
        return cls(clean_values, intervened_values, corrupted_values, labels, None, metric)

    @property
    def n(self) -> int:
        """Number of prompts."""
        return len(self.clean)

    @property
    def delta(self) -> np.ndarray:
        """Per-prompt ``intervened - clean``."""
        return self.intervened - self.clean

    @property
    def per_prompt(self) -> pd.DataFrame:
        """One row per prompt: clean, intervened, delta, group (and corrupted when known)."""
        frame = pd.DataFrame({"clean": self.clean, "intervened": self.intervened, "delta": self.delta})
        if self.corrupted is not None:
            frame["corrupted"] = self.corrupted
        frame["group"] = self.groups if self.groups is not None else None
        return frame

    def __repr__(self) -> str:
        return (
            f"Effect({self.metric}, n={self.n}, clean mean={self.clean.mean():.4g}, "
            f"intervened mean={self.intervened.mean():.4g}, mean delta={self.delta.mean():.4g})"
        )


def _vector(values: Any, label: str) -> np.ndarray:
    try:
        array = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float64)
    except (TypeError, ValueError):
        raise MitestError(f"{label} must be numbers, one per prompt") from None
    if array.ndim != 1 or len(array) == 0:
        raise MitestError(f"{label} must be a non-empty 1-D sequence of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise MitestError(f"{label}[{bad}] is {array[bad]}; every value must be finite")
    return array
