"""``mt.Prompts``: token ids with answers, an aligned counterfactual set and group labels.

Prompts of different lengths are stored right-padded with an explicit length per prompt, so every
metric reads each prompt's own positions and no statistic ever sees padding.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mitest.errors import PromptsError
from mitest.spec import chat
from mitest.spec import continuations as _continuations
from mitest.spec.special_tokens import refuse_padding, unwrap_encoding, warn_double_bos


class Prompts:
    """A prompt set: tokens plus optional answers, wrong answers, corrupted twins and groups.

    Args:
        tokens: a 2-D integer tensor/array ``[n, seq]`` (every token real), a list of 1-D token
            sequences of any lengths, a list of strings together with ``tokenizer``, or a tokenizer's
            ``BatchEncoding`` (a mapping with ``input_ids`` and ``attention_mask``).
        answers: the correct next token per prompt (ids, or single-token strings with a tokenizer).
        wrong: the competing token per prompt, for logit differences.
        corrupted: the counterfactual prompt per prompt (same forms as ``tokens``, or a Prompts);
            each must have the same length as its clean prompt so positions line up.
        groups: a label per prompt (template id); statistics treat groups as clusters.
        answer_positions: where each prompt's answer is predicted; default its last token.
        attention_mask: with a padded 2-D ``tokens`` tensor (e.g. a tokenizer's ``padding=True``
            output, left- or right-padded), marks the real tokens; padding is dropped. Without it,
            token ids that start or end with ``tokenizer``'s pad id are refused.
        tokenizer: needed when tokens or answers are strings.
        continuations: a multi-token answer per prompt (token ids, or text with ``tokenizer``, which
            is tokenized without special tokens), appended to the prompt and teacher-forced: the
            model runs on prompt + continuation, and ``mt.metrics.continuation_logprob`` scores it.
            ``answers`` default to each continuation's first token, ``answer_positions`` to the
            prompt's own last token. Corrupted twins get the same continuation appended.
        wrong_continuations: a competing continuation per prompt (with ``continuations``): then
            ``answers``, ``wrong`` and ``answer_positions`` are the two continuations' first differing
            tokens and the position predicting them, so ``mt.metrics.logit_diff`` is the teacher-forced
            logit difference where the two part ways.

    A prompt set is immutable: its fields cannot be reassigned, and an in-place edit of one of its
    tensors is refused when it is next identified (:attr:`fingerprint`), since cached runs are keyed
    by its content. Build a new Prompts (or select with ``prompts[rows]``) instead.
    """

    _sealed = False
    _identified: tuple[str, tuple[int, ...]] | None = None  # the fingerprint and the tensors' versions
    _batched: dict[int, tuple[tuple[int, ...], tuple[Prompts, ...]]] | None = None  # batches by size
    _TENSORS = ("ids", "lengths", "answers", "wrong", "answer_positions", "targets", "index", "continuation_lengths")

    def __init__(
        self,
        tokens: Any,
        answers: Any = None,
        wrong: Any = None,
        corrupted: Any = None,
        groups: Sequence[Any] | None = None,
        *,
        answer_positions: Any = None,
        attention_mask: Any = None,
        tokenizer: Any = None,
        continuations: Any = None,
        wrong_continuations: Any = None,
    ) -> None:
        self.tokenizer = tokenizer
        tokens, attention_mask = unwrap_encoding(tokens, attention_mask)
        if attention_mask is not None:
            tokens = _strip_padding(tokens, attention_mask)
        self.ids, self.lengths = _token_matrix(tokens, tokenizer, "tokens")
        if attention_mask is None and not _has_text(tokens):
            refuse_padding(self.ids, self.lengths, tokenizer)
        n = len(self.lengths)
        self.continuation_lengths: torch.Tensor | None = None
        if continuations is not None:
            answers, wrong, answer_positions = self._continue(
                continuations, wrong_continuations, answers, wrong, answer_positions
            )
        elif wrong_continuations is not None:
            raise PromptsError("wrong_continuations= needs continuations= (the right continuation per prompt)")
        self.targets = self.ids  # tokens whose next-token loss is measured (the clean ones, also for twins)
        self.answers = _token_vector(answers, n, tokenizer, "answers")
        self.wrong = _token_vector(wrong, n, tokenizer, "wrong")
        self.groups = _groups(groups, n)
        self.answer_positions = self._answer_positions(answer_positions)
        self.corrupted = self._corrupted(corrupted, continuations)
        self.index = torch.arange(n)
        self._seal()

    def _seal(self) -> None:
        """Refuse reassignment from now on (the fingerprint is computed on first use, then kept)."""
        if self.groups is not None:
            self.groups.setflags(write=False)
        object.__setattr__(self, "_identified", None)
        object.__setattr__(self, "_sealed", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if self._sealed:
            raise PromptsError(
                f"Prompts are immutable: cannot set {name!r}; build a new mt.Prompts (or select with prompts[rows])"
            )
        object.__setattr__(self, name, value)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_frame(
        cls,
        frame: Any,
        *,
        tokenizer: Any,
        text: str = "prompt",
        answer: str | None = "answer",
        wrong: str | None = None,
        corrupted: str | None = None,
        group: str | None = None,
    ) -> Prompts:
        """Build prompts from a pandas DataFrame with one row per prompt, naming its columns."""
        wanted = [c for c in (text, answer, wrong, corrupted, group) if c is not None]
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise PromptsError(
                f"DataFrame has no column(s) {missing}; it has {list(frame.columns)}. "
                "Name the columns with text=, answer=, wrong=, corrupted=, group="
            )
        column = lambda name: None if name is None else frame[name].tolist()  # noqa: E731
        return cls(
            column(text),
            answers=column(answer) if answer in frame.columns else None,
            wrong=column(wrong),
            corrupted=column(corrupted),
            groups=column(group),
            tokenizer=tokenizer,
        )

    @classmethod
    def from_chat(
        cls,
        conversations: Sequence[Sequence[Mapping[str, str]]],
        tokenizer: Any,
        *,
        answers: Any = None,
        wrong: Any = None,
        wrong_continuations: Any = None,
        corrupted: Sequence[Sequence[Mapping[str, str]]] | None = None,
        groups: Sequence[Any] | None = None,
    ) -> Prompts:
        """Build prompts from chat conversations (lists of ``{"role", "content"}``) with the tokenizer's chat template.

        The rendered text is tokenized without adding special tokens, so BOS is never doubled. When every
        conversation ends with the assistant's turn, its reply is the continuation (``continuations=``):
        the prompt ends with the assistant header, whose last token is the answer position, and
        ``answers`` default to the reply's first token. Otherwise each prompt ends with the template's
        generation prompt and ``answers=`` names the expected token. ``corrupted`` conversations get the
        same treatment (their own replies are ignored: the clean reply is appended).
        """
        prompts, replies = chat.render(conversations, tokenizer)
        twins = None if corrupted is None else chat.render(corrupted, tokenizer, replies=False)[0]
        return cls(
            prompts,
            answers=answers,
            wrong=wrong,
            corrupted=twins,
            groups=groups,
            tokenizer=tokenizer,
            continuations=replies,
            wrong_continuations=wrong_continuations,
        )

    def _continue(
        self, continuations: Any, wrong_continuations: Any, answers: Any, wrong: Any, positions: Any
    ) -> tuple[Any, Any, Any]:
        """Append the continuations; return the answers, wrong tokens and answer positions they imply."""
        named = {"answers": answers, "wrong": wrong, "answer_positions": positions}
        given = [name for name, value in named.items() if value is not None]
        if given:
            raise PromptsError(
                f"with continuations= the answers come from the continuations; do not pass {', '.join(given)}"
            )
        right, right_lengths = _token_matrix(continuations, self.tokenizer, "continuations", special=False)
        if len(right_lengths) != len(self.lengths):
            raise PromptsError(f"continuations has {len(right_lengths)} entries for {len(self.lengths)} prompts")
        starts = self.lengths.clone()
        self.ids, self.lengths = _continuations.append(self.ids, self.lengths, right, right_lengths)
        self.continuation_lengths = right_lengths
        if wrong_continuations is None:
            return right[:, 0], None, starts - 1
        other, other_lengths = _token_matrix(wrong_continuations, self.tokenizer, "wrong_continuations", special=False)
        if len(other_lengths) != len(starts):
            raise PromptsError(f"wrong_continuations has {len(other_lengths)} entries for {len(starts)} prompts")
        at = _continuations.divergence(right, right_lengths, other, other_lengths)
        rows = torch.arange(len(at))
        return right[rows, at], other[rows, at], starts - 1 + at

    def _answer_positions(self, positions: Any) -> torch.Tensor:
        if positions is None:
            return self.lengths - 1
        values = torch.from_numpy(_integers(positions, "answer_positions", "positions")).flatten()
        if len(values) != len(self.lengths):
            raise PromptsError(f"answer_positions has {len(values)} entries for {len(self.lengths)} prompts")
        values = torch.where(values < 0, values + self.lengths, values)
        bad = ((values < 0) | (values >= self.lengths)).nonzero().flatten()
        if len(bad):
            i = int(bad[0])
            raise PromptsError(
                f"answer position {int(values[i])} is outside prompt {i} (length {int(self.lengths[i])})"
            )
        return values

    def _corrupted(self, corrupted: Any, continuations: Any = None) -> Prompts | None:
        if corrupted is None:
            return None
        if isinstance(corrupted, Prompts) and continuations is not None:
            corrupted = [row[:length] for row, length in zip(corrupted.ids, corrupted.lengths.tolist(), strict=True)]
        if not isinstance(corrupted, Prompts):
            corrupted = Prompts(corrupted, tokenizer=self.tokenizer, continuations=continuations)
        if len(corrupted) != len(self):
            raise PromptsError(f"corrupted has {len(corrupted)} prompts but there are {len(self)} clean prompts")
        differ = (corrupted.lengths != self.lengths).nonzero().flatten()
        if len(differ):
            i = int(differ[0])
            raise PromptsError(
                f"corrupted prompt {i} has {int(corrupted.lengths[i])} tokens but clean prompt {i} has "
                f"{int(self.lengths[i])}; patching needs token-aligned pairs (same length, same positions)"
            )
        shared = Prompts.__new__(Prompts)
        own = ("_sealed", "_identified", "_batched")
        shared.__dict__.update({k: v for k, v in corrupted.__dict__.items() if k not in own})
        shared.answers, shared.wrong, shared.answer_positions = self.answers, self.wrong, self.answer_positions
        shared.continuation_lengths = self.continuation_lengths
        shared.targets = self.ids
        shared.groups, shared.corrupted = self.groups, None
        shared._seal()
        return shared

    # -- access ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: Any) -> Prompts:
        """A new prompt set from a ``slice``, index list or tensor, padded to its own longest prompt."""
        if index is None or isinstance(index, (str, bytes, float, bool, np.bool_)):
            raise PromptsError(f"cannot select prompts with {index!r:.40}; use an int, a slice or a list of ints")
        if isinstance(index, slice):  # torch refuses negative steps; Python's range takes any slice
            index = list(range(len(self))[index])
        try:
            rows = torch.arange(len(self))[index].reshape(-1)
        except (IndexError, TypeError, ValueError) as error:
            raise PromptsError(
                f"cannot select prompts {index!r:.60} from {len(self)} prompts ({error}); "
                "use an int, a slice or a list of ints in range"
            ) from None
        if len(rows) == 0:
            raise PromptsError("selected no prompts; a prompt set cannot be empty")
        return self._subset(rows, renumber=True)

    def batches(self, size: int) -> Iterator[Prompts]:
        """Consecutive batches of ``size`` prompts; each keeps ``index``, its rows in this set.

        Built once per size and kept (rebuilt if a tensor of the set was edited in place since).
        """
        if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1:
            raise PromptsError(f"batch size must be a positive int, got {size!r}")
        size, versions = int(size), self._versions()
        batched = self._batched
        if batched is None:
            batched = {}
            object.__setattr__(self, "_batched", batched)
        kept = batched.get(size)
        if kept is None or kept[0] != versions:
            starts = range(0, len(self), size)
            kept = versions, tuple(self._subset(torch.arange(i, min(i + size, len(self)))) for i in starts)
            batched[size] = kept
        return iter(kept[1])

    def _subset(self, rows: torch.Tensor, *, renumber: bool = False) -> Prompts:
        """The prompts at ``rows``; ``renumber`` makes it a set of its own (index 0..k-1), else a batch."""
        subset = Prompts.__new__(Prompts)
        width = int(self.lengths[rows].max())
        subset.tokenizer = self.tokenizer
        subset.ids = self.ids[rows, :width]
        subset.targets = self.targets[rows, :width]
        subset.lengths = self.lengths[rows]
        subset.answers = None if self.answers is None else self.answers[rows]
        subset.wrong = None if self.wrong is None else self.wrong[rows]
        subset.groups = None if self.groups is None else self.groups[rows.numpy()]
        subset.answer_positions = self.answer_positions[rows]
        subset.continuation_lengths = None if self.continuation_lengths is None else self.continuation_lengths[rows]
        subset.corrupted = None if self.corrupted is None else self.corrupted._subset(rows, renumber=renumber)
        subset.index = torch.arange(len(rows)) if renumber else self.index[rows]
        subset._seal()
        return subset

    @property
    def attention_mask(self) -> torch.Tensor:
        """``[n, seq]`` mask with 1 on real tokens and 0 on padding."""
        return (torch.arange(self.ids.shape[1]).unsqueeze(0) < self.lengths.unsqueeze(1)).long()

    @property
    def tokens(self) -> torch.Tensor:
        """Right-padded token ids ``[n, seq]`` (padding id 0; see :attr:`attention_mask`)."""
        return self.ids

    @property
    def fingerprint(self) -> str:
        """A content hash of tokens, answers, corrupted twins and groups (stable across machines).

        Computed once; raises :class:`PromptsError` if a tensor of the set was edited in place since.
        """
        versions = self._versions()
        if self._identified is not None:
            fingerprint, seen = self._identified
            if seen != versions:
                raise PromptsError(
                    "these Prompts were edited in place after they were built (a tensor such as .tokens was "
                    "written to); results cached for them would be stale. Build a new mt.Prompts instead"
                )
            return fingerprint
        fingerprint = self._content_hash()
        object.__setattr__(self, "_identified", (fingerprint, versions))
        return fingerprint

    def _versions(self) -> tuple[int, ...]:
        """Torch's in-place modification counters of every tensor of the set and of its twin."""
        own = tuple(getattr(self, name)._version for name in self._TENSORS if getattr(self, name) is not None)
        return own + (() if self.corrupted is None else self.corrupted._versions())

    def _content_hash(self) -> str:
        digest = hashlib.sha256()
        parts = {
            "ids": self.ids,
            "lengths": self.lengths,
            "answers": self.answers,
            "wrong": self.wrong,
            "answer_positions": self.answer_positions,
            "targets": self.targets,
        }
        if self.continuation_lengths is not None:  # absent, it leaves the hash of every older prompt set as it was
            parts["continuation_lengths"] = self.continuation_lengths
        for name, part in parts.items():
            shape = "none" if part is None else f"{part.dtype}{tuple(part.shape)}"
            digest.update(f"|{name}:{shape}:".encode())
            if part is not None:
                digest.update(part.contiguous().numpy().tobytes())
        digest.update(b"|corrupted:" + (b"none" if self.corrupted is None else self.corrupted.fingerprint.encode()))
        digest.update(b"|groups:" + (b"none" if self.groups is None else repr(self.groups.tolist()).encode()))
        return digest.hexdigest()[:16]

    def check_vocab(self, vocab_size: int | None) -> None:
        """Raise :class:`PromptsError` if any token or answer id is not below ``vocab_size``."""
        if vocab_size is None:
            return
        for label, values in (("token", self.ids), ("answer", self.answers), ("wrong-answer", self.wrong)):
            if values is not None and values.numel() and int(values.max()) >= vocab_size:
                bad = int(values.max())
                raise PromptsError(
                    f"{label} id {bad} is out of the model's vocabulary (size {vocab_size}); "
                    "were these prompts tokenized for another model?"
                )
        if self.corrupted is not None:
            self.corrupted.check_vocab(vocab_size)

    def __repr__(self) -> str:
        extras = [name for name in ("answers", "wrong", "corrupted", "groups") if getattr(self, name) is not None]
        if len(self) == 1:  # e.g. a Hypothesis example: show the prompt itself
            ids = self.ids[0, : int(self.lengths[0])].tolist()
            shown = repr(self.tokenizer.decode(ids)) if self.tokenizer is not None else str(ids)
            answer = "" if self.answers is None else f", answer={int(self.answers[0])}"
            return f"Prompts(n=1, prompt={shown}{answer}, with={extras})"
        return f"Prompts(n={len(self)}, max_len={self.ids.shape[1]}, with={extras})"


def _strip_padding(tokens: Any, attention_mask: Any) -> list[torch.Tensor]:
    """Rows of a padded ``[n, seq]`` tensor without their padding (left or right)."""
    ids = torch.from_numpy(_integers(tokens, "tokens (with attention_mask)", "token ids"))
    mask = _mask(attention_mask)
    if ids.dim() != 2 or mask.shape != ids.shape:
        raise PromptsError(
            f"attention_mask {tuple(mask.shape)} must have the same 2-D shape as tokens {tuple(ids.shape)}"
        )
    rows = []
    for i, (row, keep) in enumerate(zip(ids, mask, strict=True)):
        real = keep.nonzero().flatten()
        if len(real) and int(real[-1] - real[0]) + 1 != len(real):
            raise PromptsError(f"attention_mask row {i} has padding between real tokens; pad only at one end")
        rows.append(row[keep])
    return rows


def _has_text(tokens: Any) -> bool:
    return isinstance(tokens, Sequence) and any(isinstance(row, str) for row in tokens)


def _mask(attention_mask: Any) -> torch.Tensor:
    """A boolean mask from 0/1 values (ints, floats or bools); anything else is refused."""
    try:
        array = np.asarray(
            attention_mask.detach().cpu() if isinstance(attention_mask, torch.Tensor) else attention_mask
        )
    except (TypeError, ValueError, RuntimeError):
        raise PromptsError("attention_mask must be a regular [n, seq] array of 0 and 1") from None
    if array.dtype.kind not in "biuf":
        raise PromptsError(f"attention_mask must hold only 0 (padding) and 1 (real token), got {array.dtype} values")
    bad = array[~np.isin(array, (0, 1))]
    if bad.size:
        raise PromptsError(f"attention_mask must hold only 0 (padding) and 1 (real token), got {bad.flat[0].item()!r}")
    return torch.from_numpy(array.astype(bool))


def _integers(values: Any, label: str, what: str = "token ids") -> np.ndarray:
    """``values`` as an int64 array; floats, bools, text and integers beyond int64 are refused."""
    if isinstance(values, torch.Tensor):
        if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
            raise PromptsError(f"{label} holds {values.dtype} values; {what} must be integers")
        values = values.detach().cpu()
    try:
        array = np.asarray(values)
    except (TypeError, ValueError):
        raise PromptsError(f"{label} is not a regular array of {what} (integers): {values!r:.60}") from None
    if array.size == 0:  # np.asarray([]) is float64; an empty prompt is reported by the caller
        return np.zeros(array.shape, dtype=np.int64)
    if array.dtype.kind == "O" and all(isinstance(v, numbers.Integral) for v in array.flat):
        raise PromptsError(f"{label} holds {what} beyond the int64 range; {what} must be small integers")
    if array.dtype.kind in "iu" and isinstance(values, (list, tuple)):
        if any(isinstance(v, (bool, np.bool_)) for v in np.asarray(values, dtype=object).flat):
            raise PromptsError(f"{label} holds bool values among its {what}; {what} must be integers")
    if array.dtype.kind not in "iu":
        kind = {"b": "bool", "f": "float", "c": "complex", "U": "text", "S": "bytes"}.get(array.dtype.kind)
        held = f"{kind} values" if kind else f"values that are not integers ({values!r:.40})"
        raise PromptsError(f"{label} holds {held}; {what} must be integers")
    if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
        raise PromptsError(f"{label} holds {what} beyond the int64 range; {what} must be small integers")
    return array.astype(np.int64)


def _token_matrix(tokens: Any, tokenizer: Any, label: str, special: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(tokens, str):
        raise PromptsError(f"{label} is a single string; pass a list of prompts, e.g. [{tokens!r}]")
    if isinstance(tokens, (torch.Tensor, np.ndarray)):
        if tokens.ndim == 1:
            raise PromptsError(
                f"{label} is 1-D {tuple(tokens.shape)}; pass [n_prompts, seq_len] (use tokens[None] for one prompt)"
            )
        if tokens.ndim != 2:
            raise PromptsError(f"{label} must be 2-D [n_prompts, seq_len], got shape {tuple(tokens.shape)}")
        rows = list(tokens)
    elif isinstance(tokens, Sequence):
        rows = list(tokens)
    else:
        raise PromptsError(
            f"cannot read {label} from {type(tokens).__name__}; "
            "pass a tensor, a list of token lists, a list of strings or a tokenizer's BatchEncoding"
        )
    if not rows:
        raise PromptsError(f"{label} is empty; a prompt set needs at least one prompt")
    sequences = [_token_row(row, tokenizer, label, i, special) for i, row in enumerate(rows)]
    lengths = torch.tensor([len(s) for s in sequences])
    ids = torch.zeros(len(sequences), int(lengths.max()), dtype=torch.long)
    for i, sequence in enumerate(sequences):
        ids[i, : len(sequence)] = sequence
    return ids, lengths


def _token_row(row: Any, tokenizer: Any, label: str, i: int, special: bool = True) -> torch.Tensor:
    if isinstance(row, str):
        if tokenizer is None:
            raise PromptsError(f"{label}[{i}] is text; pass tokenizer= (or Model.tokenizer) to tokenize it")
        text = row
        row = (tokenizer(text) if special else tokenizer(text, add_special_tokens=False))["input_ids"]
        warn_double_bos(row, text, tokenizer, f"{label}[{i}]")
    if row is None or isinstance(row, (bytes, numbers.Number)):
        raise PromptsError(f"{label}[{i}] is {row!r:.40}; each prompt must be a sequence of token ids (or a string)")
    values = torch.from_numpy(_integers(row, f"{label}[{i}]"))
    if values.dim() != 1:
        raise PromptsError(f"{label}[{i}] must be a 1-D token sequence, got shape {tuple(values.shape)}")
    if values.numel() == 0:
        raise PromptsError(f"{label}[{i}] has no tokens; every prompt needs at least one")
    if int(values.min()) < 0:
        raise PromptsError(f"{label}[{i}] has negative token id {int(values.min())}; ids must be >= 0")
    return values


def _token_vector(values: Any, n: int, tokenizer: Any, label: str) -> torch.Tensor | None:
    if values is None:
        return None
    if isinstance(values, (torch.Tensor, np.ndarray)) and values.ndim == 0:
        values = values.item()
    if isinstance(values, (str, numbers.Number)):
        values = [values] * n
    if not isinstance(values, Iterable) or isinstance(values, (bytes, bytearray, Mapping)):
        raise PromptsError(f"{label} must be one token id or string per prompt, got {type(values).__name__}")
    items = list(values.tolist() if isinstance(values, (torch.Tensor, np.ndarray)) else values)
    if len(items) != n:
        raise PromptsError(f"{label} has {len(items)} entries for {n} prompts; give one per prompt")
    ids = [_single_token(item, tokenizer, label, i) for i, item in enumerate(items)]
    return torch.tensor(ids, dtype=torch.long)


def _single_token(item: Any, tokenizer: Any, label: str, i: int) -> int:
    if isinstance(item, str):
        if tokenizer is None:
            raise PromptsError(f"{label}[{i}] is text ({item!r}); pass tokenizer= to turn it into a token id")
        encoded = tokenizer(item, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise PromptsError(
                f"{label}[{i}] {item!r} is {len(encoded)} tokens {encoded}; answers must be single tokens "
                "(mind the leading space, e.g. ' Mary')"
            )
        return int(encoded[0])
    if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
        raise PromptsError(f"{label}[{i}] is {item!r}; give a token id (int) or a single-token string")
    if not 0 <= item <= np.iinfo(np.int64).max:
        raise PromptsError(f"{label}[{i}] is {item}; token ids must be >= 0 and within the vocabulary")
    return int(item)


def _groups(groups: Sequence[Any] | None, n: int) -> np.ndarray | None:
    if groups is None:
        return None
    if isinstance(groups, (str, bytes, Mapping)) or not isinstance(groups, Iterable):
        raise PromptsError(f"groups must be a list with one label per prompt, got {groups!r:.60}")
    items = list(groups.tolist() if isinstance(groups, (torch.Tensor, np.ndarray)) else groups)
    labels = np.empty(len(items), dtype=object)
    labels[:] = items  # one label per entry, even when labels are tuples
    if len(labels) != n:
        raise PromptsError(f"groups has {len(labels)} labels for {n} prompts; give one label per prompt")
    for i, label in enumerate(items):
        if not _hashable(label) or isinstance(label, (np.ndarray, torch.Tensor)):  # tensors hash by identity
            raise PromptsError(f"groups[{i}] is {label!r:.40}; group labels must be str, int or other hashable values")
        if label is None or (isinstance(label, float) and label != label):
            raise PromptsError(f"groups[{i}] is missing ({label!r}); give every prompt a group label")
    return labels


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
