"""Models under test: ``--mitest-model NAME=PATH`` points any suite's ``mi.model(NAME, default=...)``
at a candidate checkpoint, so a release is gated without a conftest option of its own.

Imports neither torch nor transformers until a model is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mitest.errors import CandidateError

Source = str | os.PathLike | Callable[[], Any]


def parse(values: Iterable[str], base: Path) -> dict[str, str]:
    """``NAME=PATH`` options as {name: path}; relative paths are read from ``base`` (the invocation folder)."""
    models: dict[str, str] = {}
    for value in values:
        name, sep, where = value.partition("=")
        name, where = name.strip(), where.strip()
        if not sep or not name or not where:
            raise CandidateError(
                f"--mitest-model {value!r} is not NAME=PATH; write e.g. --mitest-model induction=checkpoints/candidate"
            )
        if name in models:
            raise CandidateError(f"--mitest-model names {name!r} twice ({models[name]!r} and {where!r}); give it once")
        models[name] = _checked(where, base, f"--mitest-model {name}={where}")
    return models


def _checked(where: str, base: Path, what: str) -> str:
    """``where`` as a model directory's absolute path or a zoo name; anything else is refused."""
    from mitest import zoo

    directory = Path(where).expanduser()
    directory = directory if directory.is_absolute() else base / directory
    if (directory / "config.json").is_file():
        return str(directory)
    if where in zoo.names() and not directory.exists():
        return where
    reason = "has no config.json" if directory.is_dir() else "does not exist"
    raise CandidateError(
        f"{what}: {directory} {reason}, and {where!r} is not a zoo model ({', '.join(zoo.names())}); "
        "pass a saved model directory (config.json and *.safetensors) or a zoo name"
    )


@dataclass
class Candidates:
    """The session's models under test: loaded once per name, each load remembered for the reports."""

    chosen: dict[str, str]  # name -> directory or zoo name from --mitest-model
    root: Path  # the suite's root: relative default paths are read from here, and recorded relative to it
    loaded: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # name -> the default it was first asked with

    def model(self, name: str, default: Source) -> Any:
        """The model called ``name``: the ``--mitest-model`` candidate when given, else ``default``."""
        if not isinstance(name, str) or not name:
            raise CandidateError(f"mi.model needs a model name (a non-empty string), got {name!r:.60}")
        chosen = default if callable(default) else _checked(os.fspath(default), self.root, f"mi.model({name!r}, ...)")
        first = self.defaults.setdefault(name, chosen)
        if first != chosen:
            raise CandidateError(
                f"mi.model({name!r}) was asked for with two defaults ({_named(first)} and {_named(chosen)}); one "
                "name stands for one model under test: give the other model its own name"
            )
        if name not in self.loaded:
            if name in self.chosen:
                where, origin = self.chosen[name], "--mitest-model"
                model = _load(where)
            elif callable(default):
                where, origin = getattr(default, "__qualname__", repr(default)), "default"
                model = default()
            else:
                where, origin = str(chosen), "default"
                model = _load(where)
            self.loaded[name] = _as_model(model, name)
            self.sources[name] = {"source": origin, "path": _shown(where, self.root)}
        return self.loaded[name]

    def unused(self) -> list[str]:
        """Candidates given on the command line that no test asked for (the gate would test the default)."""
        return sorted(set(self.chosen) - set(self.loaded))

    def record(self) -> dict[str, dict[str, str]]:
        """Per name, where its model came from and its revision (for run.json)."""
        return {name: {**self.sources[name], "revision": self.loaded[name].revision} for name in sorted(self.loaded)}


def _load(where: str) -> Any:
    from mitest import zoo
    from mitest.model.model import Model

    return Model.load(where) if Path(where).is_absolute() else zoo.load(where).model


def _as_model(model: Any, name: str) -> Any:
    from mitest.model.model import Model

    if isinstance(model, Model):
        return model
    raise CandidateError(f"mi.model({name!r}): the default returned {type(model).__name__}, not an mt.Model")


def _named(default: Any) -> str:
    return getattr(default, "__qualname__", None) or repr(default)


def _shown(where: str, base: Path) -> str:
    """A model directory relative to ``base`` (so two checkouts record the same text); a zoo name as it is."""
    path = Path(where)
    return Path(os.path.relpath(path, base)).as_posix() if path.is_absolute() else where
