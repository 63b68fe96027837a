"""The identity of a reading (values measured on clean runs, no intervention), as claims record it."""

from __future__ import annotations

from typing import Any

from mitest.spec.base import identity
from mitest.spec.prompts import Prompts


def reading_identity(revision: str, prompts: Prompts | tuple[Prompts, ...], spec: dict[str, Any]) -> dict[str, Any]:
    """What produced a reading: the model revision, the prompt sets' fingerprints and the reading's spec
    (hashed structure; its floats listed as ``parameters``)."""
    sets = prompts if isinstance(prompts, tuple) else (prompts,)
    spec_identity = identity(spec)
    return {
        "model": revision,
        "prompts": ",".join(p.fingerprint for p in sets),
        "reading": spec_identity.key,
        "parameters": {f"reading.{path}": value for path, value in spec_identity.parameters.items()},
        "derived": spec_identity.derived,
        "structure": {"reading": spec_identity.structure},
    }
