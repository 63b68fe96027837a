"""``mt.attention``: a head's attention pattern on each prompt, and claims on where it attends.

A claim's per-prompt value is the attention mass from the query positions ``from_`` to the key
positions ``to``: per query, the summed weight on its target keys, averaged over the prompt's
queries. Queries at padding, and queries that cannot see any target key (a previous token at
position 0, a token with no earlier occurrence), are skipped; keys are only real, earlier-or-same
tokens. Patterns are read from the site ``blocks.L.attn.hook_pattern`` on clean runs.

``to`` is a relation or positions:

- ``"previous"`` (the token before the query), ``"self"``, ``"first"`` (position 0, e.g. BOS),
  ``mt.relative(k)`` (the token ``-k`` places back; ``relative(-1)`` is ``"previous"``);
- ``"duplicate"``: earlier occurrences of the query's own token;
- ``"induction"``: tokens that *followed* an earlier occurrence of the query's token;
- any position selection (``"last"``, ints, one index per prompt): those key positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mitest.claims.effect import Effect
from mitest.claims.levels import Level, expect_levels, reading
from mitest.claims.verdict import Verdict
from mitest.engine.measure import checked_inputs
from mitest.engine.runner import Engine
from mitest.errors import MitestError, PositionsError, SiteError
from mitest.features.readings import reading_identity
from mitest.model.model import Model
from mitest.spec.base import Spec
from mitest.spec.positions import Positions, as_positions
from mitest.spec.prompts import Prompts
from mitest.spec.sites import heads

RELATIONS = ("previous", "self", "first", "duplicate", "induction")


@dataclass(frozen=True)
class Relative(Spec):
    """The key ``offset`` places from each query (``offset <= 0``: attention looks back)."""

    offset: int

    def __post_init__(self) -> None:
        if type(self.offset) is not int or self.offset > 0:
            raise PositionsError(f"a relative key position is an int <= 0 (keys precede queries), got {self.offset!r}")

    def __str__(self) -> str:
        return f"relative({self.offset})"


def relative(offset: int) -> Relative:
    """Keys ``offset`` places from each query: ``relative(-1)`` is the previous token."""
    return Relative(offset)


Target = str | Relative | Positions


def as_target(to: Any) -> Target:
    """A key selection: a relation name, a :class:`Relative` offset, or positions (see the module docstring)."""
    if isinstance(to, Relative) or (isinstance(to, str) and to in RELATIONS):
        return to
    try:
        return as_positions(to)
    except PositionsError:
        raise PositionsError(
            f"cannot read attention targets from {to!r:.60}; use one of {', '.join(map(repr, RELATIONS))}, "
            "mt.relative(k) or key positions ('last', an int, one index per prompt)"
        ) from None


def key_mask(to: Target, prompts: Prompts) -> torch.Tensor:
    """``[n, query, key]``: the target keys of every query, real and not after the query."""
    tokens, lengths = prompts.tokens, prompts.lengths
    width = tokens.shape[1]
    q, k = torch.arange(width)[:, None], torch.arange(width)[None, :]
    real = torch.arange(width)[None, :] < lengths[:, None]
    visible = (k <= q)[None] & real[:, :, None] & real[:, None, :]
    if isinstance(to, Relative) or to in ("previous", "self"):
        offset = to.offset if isinstance(to, Relative) else {"previous": -1, "self": 0}[str(to)]
        wanted = (k == q + offset)[None]
    elif to == "first":
        wanted = (k == 0)[None]
    elif to == "duplicate":
        wanted = (tokens[:, None, :] == tokens[:, :, None]) & (k < q)[None]
    elif to == "induction":  # the key's previous token is the query's token, earlier than the query
        before = torch.cat([torch.full_like(tokens[:, :1], -1), tokens[:, :-1]], dim=1)
        wanted = (before[:, None, :] == tokens[:, :, None]) & (k < q)[None] & (k >= 1)[None]
    elif isinstance(to, Positions):
        wanted = to.mask(lengths, width, prompts.index)[:, None, :]
    else:
        raise PositionsError(f"unknown attention target {to!r}; use as_target() to build one")
    return wanted & visible


def attention_mass(pattern: torch.Tensor, to: Target, from_: Positions, prompts: Prompts) -> torch.Tensor:
    """Per prompt (and per head, for a ``[n, query, head, key]`` pattern) the mean over its queries of
    the attention weight on their target keys; raises when a prompt has no query that sees a target."""
    keys = key_mask(to, prompts)
    queries = from_.mask(prompts.lengths, keys.shape[1], prompts.index) & keys.any(-1)
    counts = queries.sum(1)
    if bool((counts == 0).any()):
        i = int((counts == 0).nonzero()[0])
        raise PositionsError(
            f"prompt {i} (length {int(prompts.lengths[i])}) has no query at {from_} that can attend to {to}; "
            "choose query positions every prompt has"
        )
    shape = (*keys.shape[:2], *[1] * (pattern.dim() - 3), keys.shape[2])
    per_query = (pattern.float() * keys.view(shape)).sum(-1)
    weights = queries.view(*queries.shape, *[1] * (pattern.dim() - 3)).float()
    return (per_query * weights).sum(1) / counts.view(-1, *[1] * (pattern.dim() - 3))


def patterns(model: Model, prompts: Prompts, layers: list[int], batch_size: int) -> tuple[list[torch.Tensor], str]:
    """The attention patterns ``[n, query, head, key]`` (float32, zero at padding) of ``layers`` from one
    clean pass, and the model revision they were read from."""
    engine = Engine(model, batch_size, eager=True)
    points = [model.resolve(f"blocks.{layer}.attn.hook_pattern") for layer in layers]
    found = engine.capture_all(prompts, points)
    real = torch.arange(prompts.tokens.shape[1])[None, :] < prompts.lengths[:, None]
    out = [(pattern.detach().float().cpu() * real[:, :, None, None]) for pattern in found]
    return out, model.revision_at(engine.version)


def attention(model: Model | Any, prompts: Prompts, head: str | tuple[int, int], *, batch_size: int = 32) -> Attention:
    """Head ``head``'s (``"layer.head"``) attention pattern on each prompt, for claims on where it attends."""
    model = checked_inputs(model, prompts, batch_size)
    site = heads(head, kind="pattern")
    if len(site) != 1 or site[0].index is None or len(site[0].index) != 1:
        raise SiteError(f"mt.attention reads one head, written 'layer.head' (e.g. '0.0'), got {head!r}")
    layer = int(site[0].name.split(".")[1])
    index = site[0].index[0]
    point = model.resolve(site[0].name)
    if index < 0 or (point.components is not None and index >= point.components):
        raise SiteError(f"{site[0].name} has {point.components} heads; head {index} does not exist")
    (pattern,), revision = patterns(model, prompts, [layer], batch_size)
    return Attention(f"{layer}.{index}", prompts, pattern[:, :, index], revision)


@dataclass(frozen=True, eq=False)
class Attention:
    """One head's attention pattern on each prompt: ``pattern`` is ``[n, query, key]``, zero at padding."""

    head: str
    prompts: Prompts
    pattern: torch.Tensor
    revision: str

    def mass(self, *, to: Any, from_: Any = "all") -> np.ndarray:
        """Per prompt, the mean attention weight its queries at ``from_`` put on their keys ``to``."""
        return attention_mass(self.pattern, as_target(to), as_positions(from_), self.prompts).numpy().astype(np.float64)

    def reading(self, *, to: Any, from_: Any = "all") -> Effect:
        """The attention mass as an Effect of readings (recorded and gated like any claim's values)."""
        target, queries = as_target(to), as_positions(from_)
        spec = {"reading": "attention mass", "head": self.head, "to": _plain(target), "from": queries.to_dict()}
        return reading(
            self.mass(to=target, from_=queries),
            metric=f"attention {self.head} from {queries} to {target}",
            groups=self.prompts.groups,
            identity=reading_identity(self.revision, self.prompts, spec),
            spec=spec,
        )

    def expect_attends(self, *, to: Any, from_: Any = "all", at_least: float, alpha: float | None = None) -> Verdict:
        """Claim: on average over prompts, the head puts at least ``at_least`` of its attention from
        ``from_`` on ``to`` (the one-sample mean test every mean claim uses)."""
        __tracebackhide__ = True
        if not 0 <= at_least <= 1:
            raise MitestError(f"an attention mass is a fraction in [0, 1], got at_least={at_least}")
        effect = self.reading(to=to, from_=from_)
        claim = (
            f"head {self.head} attends from {as_positions(from_)} to {as_target(to)} with mass at least {at_least:g}"
        )
        return expect_levels([Level(effect, at_least)], claim=claim, alpha=alpha)


def _plain(target: Target) -> Any:
    return target if isinstance(target, str) else target.to_dict()
