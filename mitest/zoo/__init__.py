"""Reference models with known circuits, shipped with the package and loadable offline.

>>> model, prompts = mt.zoo.load("induction")
>>> sorted(prompts)
['repeated', ...]

Each trained model lives in ``mitest/zoo/weights/<name>/`` (safetensors, config, tokenizer files
where the task has words, and a model card ``README.md`` saying which circuit it has and how that
was checked); the module that defines its task also holds the seeded script that trained it.
Hand-constructed models with exactly planted circuits are built in code by :mod:`mitest.zoo.planted`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from ..errors import ModelLoadError, closest

WEIGHTS = Path(__file__).parent / "weights"


class ZooModel(NamedTuple):
    """What :func:`load` returns: unpack it as ``model, prompts = mt.zoo.load(name)``."""

    model: object  # mt.Model (typed loosely so importing the zoo does not import torch)
    prompts: Mapping[str, object]  # name -> mt.Prompts, read-only


@dataclass(frozen=True)
class _Entry:
    directory: str
    task: str  # module in mitest.zoo that builds the prompt sets: prompt_sets(model) -> dict
    summary: str


_ENTRIES: dict[str, _Entry] = {
    "induction": _Entry("induction", "induction", "2-layer attention-only GPT-2 with induction heads"),
    "induction-early": _Entry(
        "induction-early", "induction", "the induction model early in training, before its induction heads formed"
    ),
}


def names() -> list[str]:
    """The names :func:`load` accepts."""
    return sorted(_ENTRIES)


def _entry(name: str) -> _Entry:
    if name not in _ENTRIES:
        raise ModelLoadError(f"no zoo model named {name!r}; closest: {closest(name, names()) or names()}")
    return _ENTRIES[name]


def path(name: str) -> Path:
    """Directory holding the named model's weights, tokenizer files and model card."""
    return WEIGHTS / _entry(name).directory


def card(name: str) -> str:
    """The named model's model card (Markdown): its circuit and how that was verified."""
    return (path(name) / "README.md").read_text()


def load(name: str) -> ZooModel:
    """Load a zoo model (offline, safetensors only) with the prompt sets of its task."""
    import importlib

    from ..model import Model

    entry = _entry(name)
    model = Model.load(path(name))
    task: Callable = importlib.import_module(f"{__name__}.{entry.task}").prompt_sets
    return ZooModel(model, MappingProxyType(dict(task(model))))
