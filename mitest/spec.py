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
        data = {"type": type(self).__name__}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            data[field.name] = _plain(getattr(self, field.name))
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
