"""When mitest shows a progress bar: one policy for model loading, forward-pass loops and searches.

A bar shows only when all of these hold:

- ``MITEST_PROGRESS`` is not ``0`` (``1`` forces bars on everywhere, overriding the rest);
- ``CI`` is not set (CI logs are not terminals, and bars there are noise);
- no enclosing ``progress.use(False)``; the pytest plugin enters one under ``-q``;
- the stream (stderr) is a terminal. pytest captures stderr during tests, so bars show inside
  pytest only with ``-s`` (``--capture=no``).

A bar appears only after :data:`DELAY` seconds, so short work stays silent, and is removed when done.
tqdm is imported only when a bar is made.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import IO, Any

DELAY = 2.0  # seconds of work before a bar appears
_FALSE = ("0", "false", "no", "off")
_CHOICE: ContextVar[bool | None] = ContextVar("mitest_progress", default=None)


def enabled(stream: IO[str] | None = None) -> bool:
    """Whether a bar on ``stream`` (default: the current ``sys.stderr``) shows, by the policy above."""
    forced = os.environ.get("MITEST_PROGRESS", "").strip().lower()
    if forced:
        return forced not in _FALSE
    if os.environ.get("CI", "").strip().lower() not in ("", *_FALSE):
        return False
    if _CHOICE.get() is False:
        return False
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed or detached stream
        return False


@contextlib.contextmanager
def use(show: bool | None) -> Iterator[None]:
    """Inside the block, ``False`` turns bars off; ``True`` or ``None`` leave the policy to decide."""
    token = _CHOICE.set(show)
    try:
        yield
    finally:
        _CHOICE.reset(token)


def bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str = "it",
    stream: IO[str] | None = None,
) -> Any:
    """A tqdm bar over ``iterable`` (or one to ``update`` by hand), disabled where the policy says so."""
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    return tqdm(
        iterable,
        total=total,
        desc=f"mitest: {desc}",
        unit=unit,
        file=stream,
        disable=not enabled(stream),
        delay=DELAY,
        leave=False,
        dynamic_ncols=True,
    )
