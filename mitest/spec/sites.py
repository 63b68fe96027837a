"""Site specs: which activation an intervention touches, named as in TransformerLens.

A :class:`Site` names an activation (``blocks.1.attn.hook_z``), optionally a subset along its
component axis (heads for attention sites, neurons for ``mlp.hook_post``), the positions it covers,
and optionally a direction in its last dimension. Sites are frozen data; the model resolves them.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from mitest.errors import SiteError
from mitest.spec.base import Spec
from mitest.spec.positions import ALL, Positions, as_positions

ANY = "*"  # in place of a layer: every layer (see :func:`heads`)

HEAD_SITES = ("attn.hook_z", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_pattern")


@dataclass(frozen=True)
class Site(Spec):
    """One activation site, optionally restricted to components, positions and a direction.

    ``derived`` names how a direction was computed from the model under test (see :func:`direction`).
    """

    name: str
    index: tuple[int, ...] | None = None
    positions: Positions = ALL
    direction: tuple[float, ...] | None = None
    derived: str | None = None

    def __post_init__(self) -> None:
        name = _name(self.name)
        if self.derived is not None and (not isinstance(self.derived, str) or not self.derived.strip()):
            raise SiteError(
                f"derived must name how the direction was computed (a non-empty string), got {self.derived!r:.80}"
            )
        if self.derived is not None and self.direction is None:
            raise SiteError(f"{name}: derived names how a direction was computed; give the direction too")
        values = {
            "index": _indices(self.index),
            "positions": as_positions(self.positions),
            "direction": None if self.direction is None else _vector(name, self.direction),
        }
        for field_name, value in values.items():
            object.__setattr__(self, field_name, value)

    def at(self, positions: Any) -> Site:
        """The same site restricted to ``positions`` (see :func:`mitest.spec.positions.as_positions`)."""
        return replace(self, positions=as_positions(positions))

    def __str__(self) -> str:
        text = self.name
        if self.index is not None:
            text += "[" + ",".join(map(str, self.index)) + "]"
        if self.positions != ALL:
            text += f"@{self.positions}"
        if self.direction is not None:
            text += f"·dir({self.derived or len(self.direction)})"
        return text


class Sites(tuple):
    """A tuple of :class:`Site` with :meth:`at` applying positions to all of them."""

    def at(self, positions: Any) -> Sites:
        """Every site restricted to ``positions``."""
        return Sites(site.at(positions) for site in self)


def as_sites(spec: Any) -> Sites:
    """Normalise a Site, a site name, or a sequence of them into :class:`Sites`."""
    if isinstance(spec, Site):
        return Sites([spec])
    if isinstance(spec, str):
        return Sites([Site(spec)])
    if isinstance(spec, Sequence):
        out: list[Site] = []
        for item in spec:
            out.extend(as_sites(item))
        return Sites(out)
    raise SiteError(f"cannot read a site from {spec!r}; pass a site name, mt.head(...), mt.heads(...) or a list")


def site(name: str, index: int | Sequence[int] | None = None) -> Site:
    """A site by name, e.g. ``site("blocks.0.hook_resid_post")`` or a raw module path."""
    return Site(_name(name), _indices(index))


def head(layer: int, head: int, kind: str = "z") -> Site:
    """One attention head: ``head(1, 4)`` is head 4 of ``blocks.1.attn.hook_z``.

    ``kind`` picks the per-head activation: ``z`` (head output before W_O), ``q``, ``k``, ``v``
    or ``pattern``. On grouped-query models ``k`` and ``v`` index the shared key/value heads.
    """
    return Site(f"blocks.{_layer(layer)}.attn.hook_{_kind(kind)}", (_int(head, "head index"),))


def heads(*specs: str | tuple[int, int], kind: str = "z") -> Sites:
    """Several heads, written ``"layer.head"`` or ``(layer, head)``; heads of one layer share a site.

    ``"1.*"`` is every head of layer 1 and ``"*"`` every head of every layer (a pattern that
    :func:`mitest.sweep` expands on the model, one cell per head).
    """
    by_layer: dict[int | str, list[int] | None] = {}
    for spec in specs:
        if isinstance(spec, str) and spec == ANY:
            by_layer = {ANY: None}
            break
        if isinstance(spec, str) and spec.endswith(".*"):
            by_layer[_layer(_whole_number(spec[:-2], spec))] = None
            continue
        layer, index = _parse_head(spec)
        chosen = by_layer.setdefault(layer, [])
        if chosen is not None and index not in chosen:
            chosen.append(index)
    if not specs:
        raise SiteError("heads() needs at least one head, e.g. heads('1.4', '1.6'), or '*' for every head")
    kind = _kind(kind)
    return Sites(
        Site(f"blocks.{layer}.attn.hook_{kind}", None if idx is None else tuple(idx)) for layer, idx in by_layer.items()
    )


def neurons(layer: int, *indices: int) -> Site:
    """MLP neurons (post-activation) of ``layer``; all neurons when no index is given."""
    return Site(f"blocks.{_layer(layer)}.mlp.hook_post", _indices(list(indices)) if indices else None)


def mlp(layer: int) -> Site:
    """The MLP output of ``layer`` (``blocks.L.hook_mlp_out``)."""
    return Site(f"blocks.{_layer(layer)}.hook_mlp_out")


def attn(layer: int) -> Site:
    """The attention output of ``layer`` (``blocks.L.hook_attn_out``), all heads summed."""
    return Site(f"blocks.{_layer(layer)}.hook_attn_out")


def resid(layer: int, where: str = "post") -> Site:
    """The residual stream of ``layer`` at ``pre``, ``mid`` or ``post``."""
    if where not in ("pre", "mid", "post"):
        raise SiteError(f"resid(where={where!r}) is not a residual point; use 'pre', 'mid' or 'post'")
    return Site(f"blocks.{_layer(layer)}.hook_resid_{where}")


def direction(at: str | Site, vector: Any, *, derived: str | None = None) -> Site:
    """A direction in the last dimension of a site: the 1-D subspace an intervention acts on.

    Ablating it projects the direction out (zero) or sets its coordinate to the mean; steering adds
    ``coef * vector``. The vector is stored as given; projections use its unit length.

    ``derived`` says that the vector was computed from the model under test and names how (for
    example ``"late minus early years, layer 0 attention output"``). A derived direction is part of
    a claim's identity by that name, not by its values: a new model release gives a new vector for
    the same claim, and the baseline records the vector and reports how far it moved (its cosine to
    the baseline's). Without ``derived`` the values are compared with the baseline's at a relative
    tolerance of 1e-6, and a vector that differs more makes the claim ``changed``.
    :func:`mitest.mean_difference` builds derived directions with their recipe.
    """
    base = at if isinstance(at, Site) else Site(_name(at))
    return replace(base, direction=_vector(base.name, vector), derived=derived)


def _vector(name: str, vector: Any) -> tuple[float, ...]:
    """A direction as a tuple of floats: a non-zero, finite 1-D vector (list, array or tensor)."""
    if isinstance(vector, tuple) and vector and all(type(v) is float for v in vector):
        values = np.asarray(vector)  # already normalised (a copy made by dataclasses.replace)
    else:
        if isinstance(vector, (str, bytes)):
            raise SiteError(f"direction for {name} must be a vector of numbers, got {vector!r:.80}")
        try:
            array = np.asarray(
                vector.detach().cpu().double() if isinstance(vector, torch.Tensor) else vector, dtype=np.float64
            )
        except (TypeError, ValueError):
            raise SiteError(f"direction for {name} must be a vector of numbers, got {vector!r:.80}") from None
        if sum(size > 1 for size in array.shape) > 1:
            raise SiteError(f"direction for {name} must be a 1-D vector, got shape {array.shape}")
        values = array.reshape(-1)
    if values.size == 0 or not np.isfinite(values).all() or not np.abs(values).max() > 0:
        raise SiteError(f"direction for {name} must be a non-zero, finite vector")
    return tuple(float(v) for v in values)


def _parse_head(spec: str | tuple[int, int]) -> tuple[int, int]:
    try:
        if isinstance(spec, str):
            layer, index = spec.split(".")
            if not (layer.isascii() and layer.isdigit() and index.isascii() and index.isdigit()):
                raise ValueError(spec)
            return int(layer), int(index)
        layer_number, head_number = spec
        return _layer(layer_number), _int(head_number, "head index")
    except (ValueError, TypeError):
        raise SiteError(f"cannot read head {spec!r}; write heads as 'layer.head' (e.g. '1.4') or (1, 4)") from None


def _int(value: Any, what: str) -> int:
    """``value`` as an int: Python and numpy integers (not bools, floats or strings)."""
    if isinstance(value, (bool, np.bool_)):
        raise SiteError(f"{what} must be an int, got the bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise SiteError(f"{what} must be an int, got {value!r:.80}") from None


def _whole_number(text: str, spec: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise SiteError(f"cannot read heads {spec!r}; write 'layer.*' with a layer number (e.g. '1.*') or '*'")
    return int(text)


def _layer(value: Any) -> Any:
    """A layer number >= 0, or ``"*"``: every layer (a pattern :func:`mitest.sweep` expands)."""
    if isinstance(value, str) and value == ANY:
        return ANY
    layer = _int(value, "layer")
    if layer < 0:
        raise SiteError(f"layer must be >= 0, got {layer}; layers count from 0 (see model.sites())")
    return layer


def _kind(kind: Any) -> str:
    if kind not in ("z", "q", "k", "v", "pattern"):
        raise SiteError(f"unknown head activation kind {kind!r}; use 'z', 'q', 'k', 'v' or 'pattern'")
    return kind


def _name(name: Any) -> str:
    if not isinstance(name, str):
        raise SiteError(f"site names are strings such as 'blocks.0.hook_resid_post', got {name!r:.80}")
    return name


def _indices(index: Any) -> tuple[int, ...] | None:
    if index is None:
        return None
    wrong = SiteError(f"component indices must be an int or a non-empty list of ints, got {index!r:.80}")
    if isinstance(index, (str, bytes)):
        raise wrong
    if isinstance(index, (bool, np.bool_)):
        values: tuple[Any, ...] = (index,)  # refused by _int with the reason
    else:
        try:
            values = (operator.index(index),)
        except TypeError:
            try:
                values = tuple(index)
            except TypeError:
                raise wrong from None
    if not values:
        raise wrong
    return tuple(_int(i, "component index") for i in values)
