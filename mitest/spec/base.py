"""Specs are data: small frozen objects that serialise to plain dicts.

Two hashes serve two jobs. :meth:`Spec.key` hashes everything, floats included, and identifies a
spec within one process (caches). :func:`identity` splits a spec's dict into its structure, which
is hashed into claim identities, and its numbers, which are compared with a tolerance instead: a
float computed at run time differs in its last bits between CPU kernels, so it must never be hashed
into anything a baseline is matched by.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from typing import Any, NamedTuple


class Spec:
    """Mixin for frozen dataclasses: ``to_dict()`` gives JSON-ready data, ``key()`` a stable hash."""

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-serialisable data, tagged with its type."""
        cls = type(self)
        data = {
            "type": cls.__qualname__ if cls.__module__.startswith("mitest.") else f"{cls.__module__}.{cls.__qualname__}"
        }
        if dataclasses.is_dataclass(self):
            fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        else:
            fields = {name: value for name, value in vars(self).items() if not name.startswith("_")}
        for name, value in fields.items():
            data[name] = _plain(value)
        return data

    def key(self) -> str:
        """A short hash of ``to_dict()``, floats included: equal specs give equal keys (use it for caches)."""
        return digest(self.to_dict())


def digest(data: Any) -> str:
    """A short, order-independent hash of JSON-ready data."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Identity(NamedTuple):
    """What identifies a spec across machines (see :func:`identity`)."""

    key: str  # hash of the structure
    structure: Any  # the spec's dict with every float replaced by a placeholder
    parameters: dict[str, Any]  # each float or vector of floats, by path
    derived: dict[str, list[float]]  # model-derived vectors, by site and recipe


def identity(data: Any) -> Identity:
    """A spec dict as its structure (and its hash), its numbers by path and its model-derived vectors.

    The structure is everything but floats (names, indices, methods, seeds, positions); each float or
    vector of floats becomes a placeholder there and is returned by its path (``coef``,
    ``direction.direction``) for comparison with a tolerance. A direction marked ``derived`` (computed
    from the model under test) is keyed by its recipe, and its values are returned separately: they
    are expected to move between model releases and are compared, never matched on.
    """
    parameters: dict[str, Any] = {}
    derived: dict[str, list[float]] = {}
    structure = _structure(data, "", parameters, derived)
    return Identity(digest(structure), structure, parameters, derived)


def _structure(value: Any, path: str, parameters: dict[str, Any], derived: dict[str, list[float]]) -> Any:
    if isinstance(value, dict):
        if value.get("derived") is not None and isinstance(value.get("direction"), list):
            name = f"{value.get('name')}:{value['derived']}"
            derived[name] = [float(v) for v in value["direction"]]
            value = {**value, "direction": f"<derived vector of {len(value['direction'])}>"}
        return {k: _structure(v, f"{path}.{k}" if path else str(k), parameters, derived) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(_number(v) for v in value) and any(isinstance(v, float) for v in value):
            parameters[path] = [float(v) for v in value]
            return f"<vector of {len(value)}>"
        return [_structure(v, f"{path}.{i}", parameters, derived) for i, v in enumerate(value)]
    if isinstance(value, float):
        parameters[path] = value
        return "<number>"
    return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    if isinstance(value, Spec):
        return value.to_dict()
    if hasattr(value, "fingerprint"):  # Prompts referenced by a spec are identified by content
        return {"prompts": value.fingerprint}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"
    return value


def source_key(fn: Callable) -> str:
    """A stable text naming a function by its source: partials by their function and arguments,
    callable objects by their class. Never an address, so keys agree across runs and machines."""
    if isinstance(fn, functools.partial):
        return f"partial({source_key(fn.func)}, {fn.args!r}, {sorted(fn.keywords.items())!r})"
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn)
    try:
        return inspect.getsource(target)
    except (OSError, TypeError):
        return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__name__)}"
