"""Suite-wide statistical settings: alpha, the size of the claim family, and the seed.

Each claim is tested at ``alpha / family_size`` (Bonferroni), so its verdict is already valid
family-wise when the test runs. ``family_size`` defaults to 1; set it to the number of claims one
run decides (the pytest plugin is meant to set it to the number of collected claims).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import SettingsError


@dataclass
class Settings:
    """Mutable, process-wide defaults used when a claim does not pass its own ``alpha``."""

    alpha: float = 0.05
    family_size: int = 1
    seed: int = 0


settings = Settings()

# The last listener is called as listener(verdict, effect, per_prompt) for every decided claim (the
# innermost running test owns it), where per_prompt holds
# each prompt's contribution in the claim's direction (larger is better for the claim). The
# pytest plugin records claims through this; it lives here so the plugin never imports torch.
listeners: list[Callable[[Any, Any, Any], None]] = []


def claim_alpha(alpha: float | None = None) -> float:
    """The alpha one claim is tested at: its own, or the suite's alpha divided by the family size."""
    if alpha is not None:
        if not 0 < alpha < 0.5:
            raise SettingsError(f"alpha must be in (0, 0.5), got {alpha}")
        return float(alpha)
    if not 0 < settings.alpha < 0.5:
        raise SettingsError(f"mt.settings.alpha must be in (0, 0.5), got {settings.alpha}")
    return settings.alpha / max(1, settings.family_size)
