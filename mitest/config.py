"""Suite-wide statistical settings and the claim recorder, both scoped to a context.

Each claim is tested at ``alpha / family_size`` (Bonferroni), so its verdict is already valid
family-wise when the test runs. ``family_size`` defaults to 1; the pytest plugin sets it to the
number of collected claims.

:func:`use` makes settings or a recorder current for a ``with`` block (after Hypothesis's
``DynamicVariable.with_value``); the pytest plugin enters it per session for the settings and per
test call for the recorder, so nested pytester sessions never see each other's. ``mt.settings``
reads the current :class:`Settings`; assigning a field (``mt.settings.alpha = 0.01``) makes a
changed copy current until the enclosing :func:`use` block ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from mitest.errors import SettingsError


@dataclass(frozen=True)
class Settings:
    """The defaults a claim is decided with when it does not pass its own ``alpha``."""

    alpha: float = 0.05
    family_size: int = 1
    seed: int = 0


# Called as recorder(verdict, effect, per_prompt) for every decided claim, where per_prompt holds
# each prompt's contribution in the claim's direction (larger is better for the claim).
Recorder = Callable[[Any, Any, Any], None]

_DEFAULT = Settings()
_SETTINGS: ContextVar[Settings] = ContextVar("mitest_settings", default=_DEFAULT)
_RECORDER: ContextVar[Recorder | None] = ContextVar("mitest_recorder", default=None)


def current() -> Settings:
    """The settings in effect in this context."""
    return _SETTINGS.get()


def current_recorder() -> Recorder | None:
    """The recorder that receives the claims decided in this context, if any."""
    return _RECORDER.get()


@contextlib.contextmanager
def use(settings: Settings | None = None, recorder: Recorder | None = None) -> Iterator[Settings]:
    """Make ``settings`` and/or ``recorder`` current inside the block; the previous ones return after it."""
    settings_token = None if settings is None else _SETTINGS.set(settings)
    recorder_token = None if recorder is None else _RECORDER.set(recorder)
    try:
        yield current()
    finally:
        if recorder_token is not None:
            _RECORDER.reset(recorder_token)
        if settings_token is not None:
            _SETTINGS.reset(settings_token)


class CurrentSettings:
    """``mt.settings``: reads the current :class:`Settings`; assigning a field makes a changed copy current."""

    __slots__ = ()

    @property
    def alpha(self) -> float:
        return current().alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        _SETTINGS.set(dataclasses.replace(current(), alpha=value))

    @property
    def family_size(self) -> int:
        return current().family_size

    @family_size.setter
    def family_size(self, value: int) -> None:
        _SETTINGS.set(dataclasses.replace(current(), family_size=value))

    @property
    def seed(self) -> int:
        return current().seed

    @seed.setter
    def seed(self, value: int) -> None:
        _SETTINGS.set(dataclasses.replace(current(), seed=value))

    def __repr__(self) -> str:
        return repr(current())


settings = CurrentSettings()


def claim_alpha(alpha: float | None = None) -> float:
    """The alpha one claim is tested at: its own, or the suite's alpha divided by the family size."""
    if alpha is not None:
        if not 0 < alpha < 0.5:
            raise SettingsError(f"alpha must be in (0, 0.5), got {alpha}")
        return float(alpha)
    suite = current()
    if not 0 < suite.alpha < 0.5:
        raise SettingsError(f"mt.settings.alpha must be in (0, 0.5), got {suite.alpha}")
    return suite.alpha / max(1, suite.family_size)
