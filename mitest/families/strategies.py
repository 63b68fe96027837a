"""Prompt families: templates whose slots are filled from vocabularies, as Hypothesis strategies.

A :class:`Family` is a template, the slots it leaves open, and how each prompt's counterfactual
twin differs (usually in one slot). It gives prompts two ways, built by the same code:

* ``family.strategy()`` is a Hypothesis strategy of one-prompt ``mt.Prompts`` (with answer, wrong
  answer and corrupted twin), for per-prompt properties (:func:`mitest.expect_for_all`) and plain
  ``@given`` tests. Hypothesis shrinks a failing prompt towards the first entry of each vocabulary,
  the smallest numbers and the lowest tokens.
* ``family.sample(n, seed=0)`` draws ``n`` prompts with a seeded generator into one ``mt.Prompts``,
  for aggregate claims ("on 200 prompts of this family the mean effect is at least d").

Slots are vocabularies (a list of words), :func:`numbers` and :func:`tokens`. :func:`template`
builds a text family for a tokenizer. The zoo's tasks define theirs next to their prompts
(``mt.zoo.induction.family()``, ``mt.zoo.greater_than.family(tokenizer)``).
"""

from __future__ import annotations

import hashlib
import string
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st

from mitest.errors import MitestError, PromptsError
from mitest.spec.base import source_key
from mitest.spec.prompts import Prompts


class Example(NamedTuple):
    """One prompt of a family: text (or token ids), answer, wrong answer and counterfactual twin."""

    prompt: str | list[int]
    answer: str | int | None = None
    wrong: str | int | None = None
    corrupted: str | list[int] | None = None


@dataclass(frozen=True)
class Slot:
    """An open place in a template: ``kind`` is ``"choice"`` (one of ``values``), ``"number"``
    (an int in ``[low, high]``) or ``"tokens"`` (``length`` token ids in ``[low, high]``, distinct
    when ``distinct``)."""

    kind: str
    values: tuple[Any, ...] = ()
    low: int = 0
    high: int = 0
    length: int = 0
    distinct: bool = True


def _int(value: Any, label: str) -> int:
    if not isinstance(value, Integral) or isinstance(value, (bool, np.bool_)):
        raise MitestError(f"{label} must be an int, got {value!r}")
    return int(value)


def choice(*values: Any) -> Slot:
    """A slot filled with one of ``values`` (words, names, objects); shrinks towards the first."""
    if len(values) == 1 and isinstance(values[0], (list, tuple)):
        values = tuple(values[0])
    if not values:
        raise MitestError("a choice slot needs at least one value, e.g. choice('Mary', 'John')")
    return Slot("choice", tuple(values))


def numbers(low: int, high: int) -> Slot:
    """A slot filled with an int in ``[low, high]`` (format it in the template, e.g. ``{year:02d}``)."""
    low, high = _int(low, "numbers(low, ...)"), _int(high, "numbers(..., high)")
    if low > high:
        raise MitestError(f"numbers(low, high) needs low <= high, got {low}, {high}")
    return Slot("number", low=low, high=high)


def tokens(low: int, high: int, length: int, *, distinct: bool = True) -> Slot:
    """A slot filled with ``length`` token ids in ``[low, high]`` (distinct by default)."""
    low, high, length = _int(low, "tokens(low, ...)"), _int(high, "tokens(..., high)"), _int(length, "tokens length")
    if low < 0 or low > high or length < 1:
        raise MitestError(
            f"tokens(low, high, length) needs 0 <= low <= high and length >= 1, got {low}, {high}, {length}"
        )
    if distinct and length > high - low + 1:
        raise MitestError(f"cannot draw {length} distinct tokens from {high - low + 1} ids ({low}..{high})")
    return Slot("tokens", low=low, high=high, length=length, distinct=distinct)


Build = Callable[[Mapping[str, Any]], Example]


class Family:
    """A prompt family: slots, a function turning filled slots into an :class:`Example`, and a tokenizer.

    Args:
        name: a short name, shown in claims and reports.
        slots: slot name -> :class:`Slot`, filled in order.
        build: filled slots -> :class:`Example` (text needs ``tokenizer``; token ids do not).
        apart: groups of slot names that never share a value (or, for token slots, a token).
        tokenizer: turns text prompts and answers into token ids.
        group_by: a slot whose value labels each prompt's cluster in :meth:`sample`.
    """

    def __init__(
        self,
        name: str,
        slots: Mapping[str, Slot],
        build: Build,
        *,
        apart: Sequence[Sequence[str]] = (),
        tokenizer: Any = None,
        group_by: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise MitestError(f"a family needs a name (a non-empty str), got {name!r}")
        self.name = name
        self.slots = {slot_name: _slot(slot_name, slot) for slot_name, slot in dict(slots).items()}
        if not callable(build):
            raise MitestError(f"family {name!r}: build must be a function of the filled slots returning an Example")
        self.build = build
        self.apart = tuple(tuple(group) for group in apart)
        self.tokenizer = tokenizer
        self.group_by = group_by
        self.identity = ""  # what else tells this family apart (template() adds its text and answers)
        for named in [n for group in self.apart for n in group] + ([group_by] if group_by else []):
            if named not in self.slots:
                raise MitestError(f"family {self.name!r} has no slot {named!r}; slots: {', '.join(self.slots)}")

    def strategy(self) -> st.SearchStrategy[Prompts]:
        """A Hypothesis strategy of one-prompt ``mt.Prompts`` (answer, wrong answer, corrupted twin)."""

        @st.composite
        def one(draw: st.DrawFn) -> Prompts:
            filled = self._fill(_Drawn(draw))
            return self._prompts([self._example(filled)], groups=None)

        return one()

    def sample(self, n: int, *, seed: int = 0) -> Prompts:
        """``n`` prompts drawn with a seeded generator (the same ``seed`` gives the same prompts)."""
        if _int(n, "sample(n)") < 1:
            raise MitestError(f"sample(n) needs a positive int, got {n!r}")
        if _int(seed, "sample seed") < 0:
            raise MitestError(f"sample seed must be a non-negative int, got {seed!r}")
        chooser = _Seeded(np.random.default_rng(int(seed)))
        filled = [self._fill(chooser) for _ in range(int(n))]
        groups = None if self.group_by is None else [str(f[self.group_by]) for f in filled]
        return self._prompts([self._example(f) for f in filled], groups=groups)

    def key(self) -> str:
        """A stable identity: the name, the slots, ``apart`` and the build function's source.

        Values a build function reads from its closure (a constant defined elsewhere) are not part
        of it: change the family's name when such a value changes.
        """
        parts = [self.name, repr(sorted(self.slots.items())), repr(self.apart), source_key(self.build), self.identity]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def _example(self, filled: Mapping[str, Any]) -> Example:
        example = self.build(filled)
        if not isinstance(example, Example):
            raise MitestError(
                f"family {self.name!r}: build returned {type(example).__name__}; return "
                "mt.strategies.Example(prompt, answer, wrong, corrupted)"
            )
        return example

    def describe(self, prompts: Prompts, row: int = 0) -> str:
        """One prompt as text (or token ids), with its answer, wrong answer and corrupted twin."""
        parts = [f"prompt {self._show(prompts.ids[row, : int(prompts.lengths[row])])}"]
        for label, values in (("answer", prompts.answers), ("wrong", prompts.wrong)):
            if values is not None:
                parts.append(f"{label} {self._show(values[row : row + 1])}")
        if prompts.corrupted is not None:
            twin = prompts.corrupted
            parts.append(f"corrupted {self._show(twin.ids[row, : int(twin.lengths[row])])}")
        return "; ".join(parts)

    def _fill(self, chooser: _Chooser) -> dict[str, Any]:
        filled: dict[str, Any] = {}
        for name, slot in self.slots.items():
            taken = {filled[other] for group in self.apart if name in group for other in group if other in filled}
            filled[name] = chooser.fill(slot, taken, name)
        return filled

    def _prompts(self, examples: list[Example], groups: list[str] | None) -> Prompts:
        def column(field: str) -> list | None:
            values = [getattr(e, field) for e in examples]
            return None if all(v is None for v in values) else values

        try:
            return Prompts(
                [e.prompt for e in examples],
                answers=column("answer"),
                wrong=column("wrong"),
                corrupted=column("corrupted"),
                groups=groups,
                tokenizer=self.tokenizer,
            )
        except PromptsError as error:
            raise PromptsError(f"family {self.name!r} built a prompt mitest cannot use: {error}") from None

    def _show(self, ids: Any) -> str:
        values = [int(i) for i in ids]
        if self.tokenizer is None:
            return str(values)
        return repr(self.tokenizer.decode(values))

    def __repr__(self) -> str:
        return f"Family({self.name!r}, slots={list(self.slots)})"


def template(
    text: str,
    slots: Mapping[str, Slot | Sequence[Any]],
    *,
    tokenizer: Any,
    answer: str | Callable[[Mapping[str, Any]], str],
    wrong: str | Callable[[Mapping[str, Any]], str] | None = None,
    corrupt: Mapping[str, Any] | None = None,
    apart: Sequence[Sequence[str]] = (),
    group_by: str | None = None,
    name: str | None = None,
) -> Family:
    """A text family: ``text`` with ``{slot}`` fields (format specs allowed, ``{year:02d}``).

    ``answer`` and ``wrong`` are a slot name (its value, formatted as in the template) or a function
    of the filled slots. Mind the tokenizer: after "to", a BPE tokenizer's next token is usually
    " Mary" with its space, so write ``answer=lambda slots: " " + slots["name"]``.
    ``corrupt`` says how the counterfactual twin differs, usually in one slot: ``{"place":
    "other_place"}`` puts the value of slot ``other_place`` where ``place`` was (the two must be
    listed together in ``apart``, so they always differ), and ``{"year": 1}`` puts a fixed value the
    slot never takes. Every prompt and its twin must tokenize to the same length.
    """
    parsed = [(field, spec) for _, field, spec, _ in string.Formatter().parse(text) if field is not None]
    if any(not field or field.isdigit() for field, _ in parsed):
        raise MitestError(f"template {text!r} has a positional field ({{}} or {{0}}); name every field after a slot")
    formats = {field: spec or "" for field, spec in parsed}
    filled_slots = {slot_name: _slot(slot_name, slot) for slot_name, slot in slots.items()}
    missing = sorted(set(formats) - set(filled_slots))
    if missing:
        raise MitestError(f"template field {{{missing[0]}}} has no slot; slots: {', '.join(filled_slots)}")
    swaps = dict(corrupt or {})
    for field, value in swaps.items():
        _check_swap(field, value, formats, filled_slots, apart, text)
    for spec in (answer, wrong):
        if isinstance(spec, str) and spec not in filled_slots:
            raise MitestError(f"answer/wrong {spec!r} is not a slot; name a slot or pass a function of the slots")

    def pick(spec: Any, filled: Mapping[str, Any]) -> Any:
        if callable(spec):
            return spec(filled)
        return None if spec is None else format(filled[spec], formats.get(spec, ""))

    def build(filled: Mapping[str, Any]) -> Example:
        twin = None
        if swaps:
            changed = {k: filled[v] if isinstance(v, str) and v in filled else v for k, v in swaps.items()}
            twin = text.format(**{**filled, **changed})
        return Example(text.format(**filled), pick(answer, filled), pick(wrong, filled), twin)

    identity = "|".join(
        [text, *(source_key(s) if callable(s) else repr(s) for s in (answer, wrong)), repr(sorted(swaps.items()))]
    )
    family = Family(name or text, filled_slots, build, apart=apart, tokenizer=tokenizer, group_by=group_by)
    family.identity = identity + "|" + _tokenizer_key(tokenizer)
    return family


def _check_swap(
    field: str,
    value: Any,
    formats: Mapping[str, str],
    slots: Mapping[str, Slot],
    apart: Sequence[Sequence[str]],
    text: str,
) -> None:
    """A counterfactual must differ from its prompt: a swapped-in slot is kept apart, a fixed value is never drawn."""
    if field not in formats:
        raise MitestError(f"corrupt names {field!r}, which is not a field of the template {text!r}")
    slot = slots[field]
    if isinstance(value, str) and value in slots:
        if not any(field in group and value in group for group in apart):
            raise MitestError(
                f"corrupt puts slot {value!r} where {field!r} was, but the two may draw the same value; "
                f"list them together in apart=[({field!r}, {value!r})]"
            )
    elif (slot.kind == "choice" and value in slot.values) or (
        slot.kind == "number" and isinstance(value, Integral) and slot.low <= int(value) <= slot.high
    ):
        raise MitestError(f"corrupt puts {value!r} in slot {field!r}, which the slot can also draw; pick another value")


def _tokenizer_key(tokenizer: Any) -> str:
    """The tokenizer by its vocabulary (not by the path it was loaded from, which differs per machine)."""
    if tokenizer is None:
        return "no tokenizer"
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    digest = hashlib.sha256(repr(sorted(vocab.items())).encode()).hexdigest()[:16]
    return f"{type(tokenizer).__name__}:{len(vocab)}:{digest}"


# -- filling slots: by Hypothesis or by a seeded generator ----------------------------------------


class _Chooser(ABC):
    """Fills slots; subclasses say how a value is chosen (a Hypothesis draw or a seeded generator)."""

    def fill(self, slot: Slot, taken: set, name: str) -> Any:
        if slot.kind == "choice":
            values = [v for v in slot.values if v not in taken]
            if not values:
                raise MitestError(f"slot {name!r}: every value is taken by slots it must differ from")
            return self.one(values)
        if slot.kind == "number":
            if not taken:
                return self.integer(slot.low, slot.high)
            values = [v for v in range(slot.low, slot.high + 1) if v not in taken]
            if not values:
                raise MitestError(f"slot {name!r}: every number is taken by slots it must differ from")
            return self.one(values)
        avoid = {t for value in taken if isinstance(value, tuple) for t in value}
        pool = [t for t in range(slot.low, slot.high + 1) if t not in avoid]
        if slot.distinct and len(pool) < slot.length:
            raise MitestError(f"slot {name!r}: only {len(pool)} tokens left for {slot.length} distinct ones")
        return tuple(self.several(pool, slot.length, slot.distinct))

    @abstractmethod
    def one(self, values: list) -> Any:
        """One of ``values``."""

    @abstractmethod
    def integer(self, low: int, high: int) -> int:
        """An int in ``[low, high]``."""

    @abstractmethod
    def several(self, pool: list[int], k: int, distinct: bool) -> list[int]:
        """``k`` entries of ``pool`` (all different when ``distinct``)."""


class _Drawn(_Chooser):
    """Draws through Hypothesis, so failing prompts shrink (to first values, small numbers, low tokens)."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def one(self, values: list) -> Any:
        return self.draw(st.sampled_from(values))

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def several(self, pool: list[int], k: int, distinct: bool) -> list[int]:
        return self.draw(st.lists(st.sampled_from(pool), min_size=k, max_size=k, unique=distinct))


class _Seeded(_Chooser):
    """Draws with a numpy generator, for seeded samples."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def one(self, values: list) -> Any:
        return values[int(self.rng.integers(len(values)))]

    def integer(self, low: int, high: int) -> int:
        return int(self.rng.integers(low, high + 1))

    def several(self, pool: list[int], k: int, distinct: bool) -> list[int]:
        return [int(t) for t in self.rng.choice(pool, size=k, replace=not distinct)]


def _slot(name: str, slot: Any) -> Slot:
    if isinstance(slot, Slot):
        if slot.kind not in ("choice", "number", "tokens"):
            raise MitestError(f"slot {name!r} has unknown kind {slot.kind!r}; build slots with choice/numbers/tokens")
        return slot
    if isinstance(slot, (list, tuple)):
        return choice(*slot)
    raise MitestError(f"slot {name!r} must be a list of values or mt.strategies.choice/numbers/tokens, got {slot!r}")
