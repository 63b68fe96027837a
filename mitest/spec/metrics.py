"""Per-prompt metrics: each returns one number per prompt, never only a mean.

Metrics read each prompt's own answer position (``Prompts.answer_positions``, default the last
token) and are computed in float32 whatever the model's dtype. Any callable
``(logits, prompts) -> tensor[n_prompts]`` is a metric too; ``prompts`` is then the batch's
:class:`~mitest.Prompts` subset (``.tokens``, ``.lengths``, ``.answers``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mitest.errors import MetricError
from mitest.spec.base import Spec
from mitest.spec.continuations import token_logprobs
from mitest.spec.positions import ALL, LAST, Positions, as_positions
from mitest.spec.prompts import Prompts


class Metric(Spec):
    """Base of metric specs: ``metric(logits, prompts, reference) -> tensor[n_prompts]``."""

    name = "metric"
    needs_reference = False
    lens: str | None = None  # a residual-stream site whose logit lens the metric reads (None: the logits)

    def at_answer(self, final: torch.Tensor, prompts: Prompts) -> torch.Tensor | None:
        """The metric from the logits at each prompt's answer position alone (``final``: ``[n, vocab]``),
        for metrics that read nothing else; None for the others. A sweep uses it to unembed one
        position per prompt instead of every position."""
        return None

    def reference(self, logits: torch.Tensor, prompts: Prompts) -> torch.Tensor | None:
        """State this metric needs from the clean run (e.g. clean log-probs for KL); default none."""
        return None

    def __call__(self, logits: torch.Tensor, prompts: Prompts, reference: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def read(self, logits: torch.Tensor, prompts: Prompts, reference: torch.Tensor | None = None) -> torch.Tensor:
        """The metric on the logits it reads: the model's, or for a :attr:`lens` metric that site's lens
        logits. The engine calls this; calling the metric itself refuses lens logits it cannot see."""
        return self(logits, prompts, reference)


def _answer_logits(logits: torch.Tensor, prompts: Prompts) -> torch.Tensor:
    rows = torch.arange(len(prompts), device=logits.device)
    return logits[rows, prompts.answer_positions.to(logits.device)].float()


def _require(prompts: Prompts, field: str, metric: str) -> torch.Tensor:
    values = getattr(prompts, field)
    if values is None:
        raise MetricError(f"{metric} needs prompts with {field}=...; build mt.Prompts(tokens, {field}=...)")
    return values


@dataclass(frozen=True)
class LogitDiff(Metric):
    """Logit of the answer minus logit of the wrong token, at the answer position."""

    name = "logit_diff"

    def __call__(self, logits, prompts, reference=None):
        return self.at_answer(_answer_logits(logits, prompts), prompts)

    def at_answer(self, final, prompts):
        final = final.float()
        answers = _require(prompts, "answers", self.name).to(final.device)
        wrong = _require(prompts, "wrong", self.name).to(final.device)
        return final.gather(1, answers[:, None])[:, 0] - final.gather(1, wrong[:, None])[:, 0]


@dataclass(frozen=True)
class LogProb(Metric):
    """Log-probability of the answer at the answer position."""

    name = "logprob"

    def __call__(self, logits, prompts, reference=None):
        return self.at_answer(_answer_logits(logits, prompts), prompts)

    def at_answer(self, final, prompts):
        logprobs = final.float().log_softmax(-1)
        answers = _require(prompts, "answers", self.name).to(logprobs.device)
        return logprobs.gather(1, answers[:, None])[:, 0]


@dataclass(frozen=True)
class Prob(Metric):
    """Probability of the answer at the answer position."""

    name = "prob"

    def __call__(self, logits, prompts, reference=None):
        return self.at_answer(_answer_logits(logits, prompts), prompts)

    def at_answer(self, final, prompts):
        return LogProb().at_answer(final, prompts).exp()


@dataclass(frozen=True)
class Top1Accuracy(Metric):
    """1.0 where the answer is the top-1 prediction at the answer position, else 0.0."""

    name = "top1_accuracy"

    def __call__(self, logits, prompts, reference=None):
        return self.at_answer(_answer_logits(logits, prompts), prompts)

    def at_answer(self, final, prompts):
        answers = _require(prompts, "answers", self.name)
        return (final.argmax(-1).cpu() == answers).float()


@dataclass(frozen=True)
class Loss(Metric):
    """Mean next-token cross-entropy over the tokens at ``positions`` (position 0 has no prediction).

    Targets are ``prompts.targets``: the prompts' own tokens, and the clean tokens on a corrupted twin,
    so a denoising patch is scored on how well it restores the clean continuation.
    """

    positions: Positions = ALL
    name = "loss"

    def __call__(self, logits, prompts, reference=None):
        selected = self.positions.mask(prompts.lengths, logits.shape[1], prompts.index)[:, 1:]
        _check_nonempty(selected, prompts, self.name, self.positions)
        targets = prompts.targets[:, 1:].to(logits.device)
        logprobs = logits[:, :-1].float().log_softmax(-1)
        token_loss = -logprobs.gather(2, targets[..., None])[..., 0]
        selected = selected.to(logits.device)
        return (token_loss * selected).sum(1) / selected.sum(1)


@dataclass(frozen=True)
class KLDiv(Metric):
    """KL(clean || intervened) of the next-token distribution, averaged over ``positions``."""

    positions: Positions = LAST
    name = "kl_div"
    needs_reference = True

    def reference(self, logits, prompts):
        return logits.float().log_softmax(-1)

    def __call__(self, logits, prompts, reference=None):
        if reference is None:
            raise MetricError("kl_div needs the clean run's log-probs; it is computed by mt.measure")
        selected = self.positions.mask(prompts.lengths, logits.shape[1], prompts.index).to(logits.device)
        _check_nonempty(selected, prompts, self.name, self.positions)
        logprobs = logits.float().log_softmax(-1)
        kl = (reference.exp() * (reference - logprobs)).sum(-1)
        return (kl * selected).sum(1) / selected.sum(1)


@dataclass(frozen=True)
class ContinuationLogProb(Metric):
    """Teacher-forced log-probability of each prompt's continuation (``Prompts(..., continuations=...)``).

    ``reduce="sum"``: the continuation's log-probability; ``"mean"``: per token; ``token=j``: its
    ``j``-th token alone (negative counts from its end).
    """

    reduce: str = "sum"
    token: int | None = None
    name = "continuation_logprob"

    def __post_init__(self) -> None:
        if self.reduce not in ("sum", "mean"):
            raise MetricError(f"continuation_logprob reduce must be 'sum' or 'mean', got {self.reduce!r}")
        if self.token is not None and (isinstance(self.token, bool) or not isinstance(self.token, int)):
            raise MetricError(f"continuation_logprob token must be an int index, got {self.token!r}")

    def __call__(self, logits, prompts, reference=None):
        per_token = continuation_token_logprobs(logits, prompts)
        k = prompts.continuation_lengths.to(per_token.device)
        if self.token is None:
            total = per_token.nan_to_num(0.0).sum(1)
            return total if self.reduce == "sum" else total / k
        index = torch.full_like(k, self.token) + (k if self.token < 0 else 0)
        short = ((index < 0) | (index >= k)).nonzero().flatten()
        if len(short):
            i = int(short[0])
            raise MetricError(
                f"continuation_logprob(token={self.token}): the continuation of prompt {int(prompts.index[i])} has "
                f"{int(k[i])} tokens"
            )
        return per_token.gather(1, index[:, None])[:, 0]


def continuation_token_logprobs(logits: torch.Tensor, prompts: Prompts) -> torch.Tensor:
    """``[n, longest continuation]`` teacher-forced log-probability of each continuation token (NaN past its end)."""
    k = prompts.continuation_lengths
    if k is None:
        raise MetricError(
            "continuation_logprob needs prompts with continuations: mt.Prompts(tokens, continuations=...)"
        )
    return token_logprobs(logits, prompts.targets, prompts.lengths, k)


@dataclass(frozen=True)
class Custom(Metric):
    """A user function ``(logits, prompts) -> tensor[n_prompts]``."""

    fn: Callable[[torch.Tensor, Prompts], Any]

    @property
    def name(self) -> str:  # type: ignore[override]
        return getattr(self.fn, "__name__", "custom")

    def __call__(self, logits, prompts, reference=None):
        returned = self.fn(logits, prompts)
        try:
            values = torch.as_tensor(returned)
        except (TypeError, ValueError, RuntimeError):
            values = None
        if values is None or values.dtype.is_complex or not (values.dtype.is_floating_point or values.dtype in _REAL):
            raise MetricError(
                f"metric {self.name} returned {type(returned).__name__} {returned!r:.60}; a metric must return real "
                "numbers, one per prompt (a tensor or array of shape [n_prompts])"
            )
        if values.shape != (len(prompts),):
            raise MetricError(
                f"metric {self.name} returned shape {tuple(values.shape)} for {len(prompts)} prompts; "
                "a metric must return one number per prompt, shape [n_prompts]"
            )
        return values.float()


@dataclass(frozen=True)
class LogitLens(Metric):
    """``metric`` on the logit lens of ``blocks.{layer}.hook_resid_post``: that residual stream through
    the final norm, computed afresh on it (its own mean and variance), and the unembedding.

    Interventions before the layer change what the lens reads; those after it do not. The engine
    captures the site in the same pass; code that passes only the model's logits is refused.
    """

    layer: int
    metric: Metric

    def __post_init__(self) -> None:
        if type(self.layer) is not int or self.layer < 0:
            raise MetricError(f"logit_lens needs a layer index >= 0, got {self.layer!r}")
        if not isinstance(self.metric, Metric) or self.metric.lens is not None:
            raise MetricError(f"logit_lens wraps an mt.metrics metric of the logits, got {self.metric!r:.60}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"logit_lens({self.layer}, {self.metric.name})"

    @property
    def lens(self) -> str:  # type: ignore[override]
        return f"blocks.{self.layer}.hook_resid_post"

    @property
    def needs_reference(self) -> bool:  # type: ignore[override]
        return self.metric.needs_reference

    def reference(self, logits, prompts):
        return self.metric.reference(logits, prompts)

    def read(self, logits, prompts, reference=None):
        return self.metric.read(logits, prompts, reference)

    def __call__(self, logits, prompts, reference=None):
        raise MetricError(
            f"{self.name} reads the residual stream at {self.lens}, which mt.measure (and the claims built on it) "
            "capture in the same pass; this computation passes only the model's final logits"
        )


_REAL = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _check_nonempty(selected: torch.Tensor, prompts: Prompts, name: str, positions: Positions) -> None:
    empty = (selected.sum(1) == 0).nonzero().flatten()
    if len(empty):
        i = int(empty[0])
        raise MetricError(
            f"{name} at positions {positions} selects no token of prompt {int(prompts.index[i])} "
            f"(length {int(prompts.lengths[i])}); choose positions every prompt has"
        )


logit_diff = LogitDiff()
logprob = LogProb()
prob = Prob()
top1_accuracy = Top1Accuracy()


def loss(positions: Any = "all") -> Loss:
    """Next-token loss over the tokens at ``positions`` (e.g. ``"second_half"`` for repeated tokens)."""
    return Loss(as_positions(positions))


def kl_div(positions: Any = "last") -> KLDiv:
    """KL divergence from the clean next-token distribution at ``positions``."""
    return KLDiv(as_positions(positions))


def continuation_logprob(reduce: str = "sum", *, token: int | None = None) -> ContinuationLogProb:
    """Teacher-forced log-probability of each prompt's continuation: summed, ``"mean"`` per token, or one ``token``."""
    return ContinuationLogProb(reduce, token)


def logit_lens(layer: int, metric: Any = logit_diff) -> LogitLens:
    """``metric`` (default :data:`logit_diff`) read from the logit lens at the residual stream after ``layer``."""
    return LogitLens(layer, as_metric(metric))


_FACTORIES = (loss, kl_div, continuation_logprob)


def as_metric(metric: Any) -> Metric:
    """A Metric from a metric spec, a factory such as ``mt.metrics.loss``, or a user callable."""
    if isinstance(metric, Metric):
        return metric
    if metric in _FACTORIES:
        return metric()
    if callable(metric):
        return Custom(metric)
    raise MetricError(f"metric must be an mt.metrics metric or a callable (logits, prompts) -> tensor, got {metric!r}")
