"""Reference models with known circuits, shipped with the package and loadable offline.

>>> model, prompts = mt.zoo.load("induction")
>>> sorted(prompts)
['next_token', 'repeated']

Each trained model lives in ``mitest/zoo/weights/<name>/`` (safetensors, config, tokenizer files
where the task has words, and a model card ``README.md`` saying which circuit it has and how that
was checked). The module that defines its task (``mt.zoo.induction``, ``mt.zoo.greater_than``) holds its
prompt sets and prompt family; :mod:`mitest.zoo.training` holds the seeded scripts that trained them.
Hand-constructed models with exactly planted circuits are built in code by :mod:`mitest.zoo.planted`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from mitest.errors import ModelLoadError, closest

if TYPE_CHECKING:
    from mitest.model.model import Model
    from mitest.spec.prompts import Prompts

WEIGHTS = Path(__file__).parent / "weights"


class ZooModel(NamedTuple):
    """What :func:`load` returns: unpack it as ``model, prompts = mt.zoo.load(name)``."""

    model: Model
    prompts: Mapping[str, Prompts]  # read-only: name -> prompt set


# Zoo name -> the module in mitest.zoo that defines its task: ``prompt_sets(model) -> dict``.
_TASKS = {
    "greater-than": "greater_than",
    "induction": "induction",
    "induction-early": "induction",
}


def names() -> list[str]:
    """The names :func:`load` accepts."""
    return sorted(_TASKS)


def _task(name: str) -> str:
    if name not in _TASKS:
        near = closest(name, names())
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise ModelLoadError(
            f"no zoo model named {name!r}; {hint}available: {', '.join(names())}. "
            "Load your own model directory with mt.Model.load(path)"
        )
    return _TASKS[name]


def path(name: str) -> Path:
    """Directory holding the named model's weights, tokenizer files and model card."""
    _task(name)
    return WEIGHTS / name


def card(name: str) -> str:
    """The named model's model card (Markdown): its circuit and how that was verified."""
    return (path(name) / "README.md").read_text(encoding="utf-8")


def load(name: str) -> ZooModel:
    """Load a zoo model (offline, safetensors only) with the prompt sets of its task."""
    from mitest.model.model import Model

    task = importlib.import_module(f"{__name__}.{_task(name)}")
    model = Model.load(path(name))
    return ZooModel(model, MappingProxyType(dict(task.prompt_sets(model))))


_SUBMODULES = ("greater_than", "induction", "planted", "training")


def __getattr__(name: str) -> object:
    """The task modules load on first use (``mt.zoo.induction.family()``): they import torch."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
