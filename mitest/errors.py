"""Every exception and warning mitest raises, in one torch-free module.

Three roots: :class:`MitestError` for bad input or a failed intervention (each also subclasses the
builtin it refines, so ``except ValueError`` keeps working), :class:`ClaimFailure` for a claim that
did not hold (an ``AssertionError``, so pytest reports a failed test), and :class:`MitestWarning`
for every warning. Messages name the problem and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mitest.claims.verdict import Verdict

# -- claims ----------------------------------------------------------------------------------------


class ClaimFailure(AssertionError):
    """A claim that did not hold: refuted, inconclusive, or regressed against its baseline."""


class ClaimRefuted(ClaimFailure):
    """The data reject the claim. ``.verdict`` holds the numbers."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.summary())
        self.verdict = verdict


class ClaimInconclusive(ClaimFailure):
    """The data neither support nor reject the claim at this n. ``.verdict`` holds the numbers."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.summary())
        self.verdict = verdict


class BaselineRegression(ClaimFailure):
    """A claim that held in the baseline no longer holds, or its effect fell beyond its margin."""


# -- bad input -------------------------------------------------------------------------------------


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


class NestedRunError(MitestError, RuntimeError):
    """A forward pass of a model was started from inside another pass of the same model (e.g. a metric
    that calls ``mt.measure`` on the model it is measuring): it would run with the outer pass's hooks."""


class ModelError(MitestError, TypeError):
    """The object given as a model is not one mitest can run (not an nn.Module, or it returns no logits)."""


class SettingsError(MitestError, ValueError):
    """A suite setting or a claim's own alpha is out of range."""


class StatsError(MitestError, ValueError):
    """A statistics function was called with arguments it cannot test (an unknown alternative, too few units)."""


class BaselineError(MitestError, ValueError):
    """A baseline file is missing pieces, hand-broken, too large or from another schema."""


class DuplicateKeyError(BaselineError):
    """A JSON object of a baseline holds one key twice; ``args[0]`` is the key."""


class ReportError(MitestError, ValueError):
    """A run file is not a mitest run record (wrong schema, version or shape)."""


class HypothesisError(MitestError, ValueError):
    """A hypothesis that cannot be scrubbed: an unknown node, a backward edge, a bad feature."""


class CandidateError(MitestError, ValueError):
    """A ``--mitest-model`` value or an ``mi.model`` default that names no loadable model."""


class CurveError(MitestError, ValueError):
    """A faithfulness curve asked for with a ranking or fractions it cannot use (empty, repeated, unsorted)."""


class ZooError(MitestError, ValueError):
    """A zoo model was asked for with arguments it cannot be built with."""


# -- warnings --------------------------------------------------------------------------------------


class ReadsDone(Exception):
    """Not an error: raised inside a pass that only reads activations once every read has fired, to
    skip the rest of the forward pass; the engine catches it and it never reaches a user."""


class MitestWarning(UserWarning):
    """Base class of every warning mitest emits."""


class NoOpInterventionWarning(MitestWarning):
    """An intervention's hooks fired but left every activation they touched unchanged."""


class InconclusiveWarning(MitestWarning):
    """An INCONCLUSIVE claim under the ``warn`` policy."""


class DoubleBosWarning(MitestWarning):
    """A text prompt already starts with the tokenizer's BOS and the tokenizer added another."""


class ResampleWarning(MitestWarning):
    """The resample count needed for the requested alpha was capped; interval tails are approximate."""


# -- messages --------------------------------------------------------------------------------------


def closest(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """The candidates closest to ``name``, best first (for 'did you mean' messages)."""
    candidates = list(candidates)
    found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    if len(found) < n:
        # Prefix matches catch 'blocks.1.attn' -> 'blocks.1.attn.hook_z' that ratios miss.
        stem = name.rsplit(".", 1)[0]
        found += [c for c in candidates if c.startswith(stem) and c not in found][: n - len(found)]
    return found
