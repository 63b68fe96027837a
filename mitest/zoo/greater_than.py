"""The greater-than task (Hanna et al. 2023): its prompts, metric and prompt family.

Prompts follow the paper's template on a small word-level vocabulary::

    The war lasted from the year 17 45 to the year 17

Every prompt is 12 tokens: the year ``YY`` sits at position 7, four tokens before the last. The
answer is a two-digit token ``ZZ > YY``, uniformly distributed, and :data:`prob_diff` scores it as in
the paper: the probability put on years after ``YY`` minus the probability put on the others. The
corrupted twin replaces ``YY`` by ``01``, after which no year is ruled out.

The model is a 2-layer GPT-2 (d_model 32, 4 heads, MLPs of 256 neurons, no dropout, untied
unembedding) trained on random prompts: next-token loss on the prompt's own tokens, and at the last
position the soft target uniform over ``ZZ > YY``. (With d_model 64 and the answer loss alone, the
layer-0 heads computed greater-than straight into the unembedding and the MLPs were nearly idle; the
narrow residual stream and the prompt loss give the paper's division of labour, a head that moves the
year and an MLP that compares.) The model card ``weights/greater-than/README.md`` states the circuit::

    python -m mitest.zoo.training.greater_than      # about 3 minutes on 2 CPU cores; writes weights/greater-than
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

from mitest.errors import MetricError
from mitest.families.strategies import Family, choice, numbers, template
from mitest.model.model import Model
from mitest.spec.metrics import Metric
from mitest.spec.prompts import Prompts

HERE = Path(__file__).parent / "weights" / "greater-than"
NOUNS = ("war", "deal", "trip", "strike", "treaty", "journey", "project", "siege", "reign", "drought")
VERBS = ("lasted", "ran", "continued")
CENTURIES = tuple(range(11, 20))  # the "17" in "the year 17 45"
SPECIALS = ("<|endoftext|>", "<unk>")
WORDS = ("The", "the", "from", "year", "to", *NOUNS, *VERBS)
YEARS = tuple(f"{year:02d}" for year in range(100))  # two-digit tokens "00".."99"
VOCAB = (*SPECIALS, *WORDS, *YEARS)
FIRST_YEAR_ID = VOCAB.index("00")
LENGTH = 12  # tokens per prompt
YEAR_OFFSET = 4  # YY sits this many tokens before the answer position


def build_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """The task's word-level tokenizer (whitespace pre-tokenizer, ``<|endoftext|>`` as BOS/EOS/pad)."""
    import tokenizers
    from tokenizers import models, pre_tokenizers

    backend = tokenizers.Tokenizer(models.WordLevel({token: i for i, token in enumerate(VOCAB)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        model_max_length=LENGTH,
    )


def prompt_text(noun: str, verb: str, century: int, year: int) -> str:
    """One prompt, e.g. ``prompt_text("war", "lasted", 17, 45)``."""
    return f"The {noun} {verb} from the year {century} {year:02d} to the year {century}"


@dataclass(frozen=True)
class ProbDiff(Metric):
    """Sum of P(ZZ > YY) minus sum of P(ZZ <= YY) over the two-digit tokens, at the answer position.

    ``YY`` is read from the clean tokens (``prompts.targets``) ``year_offset`` tokens before the answer
    position, so on a corrupted twin the metric still scores against the clean prompt's year; a
    prompt without a year followed by "to" there is an ``mt.MetricError``.
    """

    year_offset: int = YEAR_OFFSET
    first_year_id: int = FIRST_YEAR_ID
    name = "prob_diff"

    def __call__(self, logits: torch.Tensor, prompts: Prompts, reference: torch.Tensor | None = None) -> torch.Tensor:
        rows = torch.arange(len(prompts))
        positions = prompts.answer_positions
        probs = logits[rows.to(logits.device), positions.to(logits.device)].float().softmax(-1)
        years = probs[:, self.first_year_id : self.first_year_id + len(YEARS)]
        yy = start_years(prompts, self.year_offset, self.first_year_id).to(logits.device)
        follows = prompts.targets[rows, positions - self.year_offset + 1].to(logits.device)
        wrong = (yy < 0) | (yy >= len(YEARS)) | (follows != VOCAB.index("to"))
        if bool(wrong.any()):
            raise MetricError(
                f"prob_diff expects a year token followed by 'to' {self.year_offset} tokens before the answer "
                f"position; prompt {int(prompts.index[int(wrong.nonzero()[0])])} has none there "
                "(build prompts with greater_than.prompt_text)"
            )
        later = torch.arange(len(YEARS), device=logits.device)[None, :] > yy[:, None]
        return (years * later).sum(-1) - (years * ~later).sum(-1)


prob_diff = ProbDiff()


def start_years(prompts: Prompts, year_offset: int = YEAR_OFFSET, first_year_id: int = FIRST_YEAR_ID) -> torch.Tensor:
    """Each prompt's start year ``YY`` (0..99 for a year token), read from its clean tokens
    ``year_offset`` tokens before the answer position."""
    rows = torch.arange(len(prompts))
    return prompts.targets[rows, prompts.answer_positions - year_offset] - first_year_id


def prompt_sets(model: Model, n: int = 100, seed: int = 0) -> dict[str, Prompts]:
    """Seeded prompt sets for ``model`` (an ``mt.Model`` with this task's tokenizer).

    ``"years"``: ``n`` prompts with ``YY`` uniform in 02..98, answer ``YY+1``, wrong ``YY-1``, the
    ``01`` corrupted twin of each prompt, and the noun as group.
    """
    generator = torch.Generator().manual_seed(seed)
    nouns = torch.randint(len(NOUNS), (n,), generator=generator).tolist()
    verbs = torch.randint(len(VERBS), (n,), generator=generator).tolist()
    centuries = torch.randint(len(CENTURIES), (n,), generator=generator).tolist()
    years = torch.randint(2, 99, (n,), generator=generator).tolist()
    rows = list(zip(nouns, verbs, centuries, years, strict=True))
    clean = [prompt_text(NOUNS[a], VERBS[b], CENTURIES[c], yy) for a, b, c, yy in rows]
    corrupted = [prompt_text(NOUNS[a], VERBS[b], CENTURIES[c], 1) for a, b, c, _ in rows]
    return {
        "years": Prompts(
            clean,
            answers=[f"{yy + 1:02d}" for yy in years],
            wrong=[f"{yy - 1:02d}" for yy in years],
            corrupted=corrupted,
            groups=[NOUNS[a] for a in nouns],
            tokenizer=model.tokenizer,
        )
    }


# -- the prompt family ------------------------------------------------------------------------------


def family(tokenizer: Any) -> Family:
    """The zoo greater-than task: "The {noun} {verb} from the year {century} {year} to the year {century}".

    The answer is ``year + 1`` and the wrong answer ``year - 1``; the corrupted twin has year ``01``.
    Prompts are grouped by noun in :meth:`Family.sample`. Pass the zoo model's tokenizer.
    """
    return template(
        "The {noun} {verb} from the year {century} {year:02d} to the year {century}",
        {
            "noun": choice(*NOUNS),
            "verb": choice(*VERBS),
            "century": choice(*CENTURIES),
            "year": numbers(2, 98),
        },
        tokenizer=tokenizer,
        answer=lambda filled: f"{filled['year'] + 1:02d}",
        wrong=lambda filled: f"{filled['year'] - 1:02d}",
        corrupt={"year": 1},
        group_by="noun",
        name="greater-than years",
    )
