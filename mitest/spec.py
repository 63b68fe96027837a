"""Specs are data: small frozen objects that serialise to plain dicts with a stable hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


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
        """A short hash of ``to_dict()``: equal specs give equal keys on every machine."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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
