"""Exceptions and warnings raised by mitest.

Every error a user can trigger derives from :class:`MitestError` and names the problem and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MitestError(Exception):
    """Base class of every error mitest raises on bad input or a failed intervention."""


class SiteError(MitestError, KeyError):
    """A site name, head or neuron index does not exist on the model."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class PromptsError(MitestError, ValueError):
    """Prompts have bad shapes, mismatched lengths, out-of-vocabulary ids or are empty."""


class PositionsError(MitestError, ValueError):
    """A position selection does not fit the prompts it is applied to."""


class InterventionError(MitestError, ValueError):
    """An intervention spec is invalid or cannot run on these prompts."""


class MetricError(MitestError, ValueError):
    """A metric cannot be computed on these prompts or returned a wrong shape."""


class ModelLoadError(MitestError, OSError):
    """A model directory is missing files or holds something mitest will not load."""


class WriteError(MitestError, OSError):
    """A baseline or report file cannot be written: an unwritable folder, a file where a folder belongs, a
    folder where a file belongs, a full disk. Nothing was changed and no temporary file is left."""


class HookNotFiredError(MitestError, RuntimeError):
    """A hook was installed but the model's forward pass never reached it."""


class NoOpInterventionWarning(UserWarning):
    """An intervention's hooks fired but left every activation they touched unchanged."""


def closest(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """The candidates closest to ``name``, best first (for 'did you mean' messages)."""
    candidates = list(candidates)
    found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    if len(found) < n:
        # Prefix matches catch 'blocks.1.attn' -> 'blocks.1.attn.hook_z' that ratios miss.
        stem = name.rsplit(".", 1)[0]
        found += [c for c in candidates if c.startswith(stem) and c not in found][: n - len(found)]
    return found
