"""The greater-than task (Hanna et al. 2023) and the seeded script that trains the zoo's model on it.

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

    python -m mitest.zoo.greater_than      # about 3 minutes on 2 CPU cores; writes weights/greater-than
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers

from ..errors import MetricError
from ..metrics import Metric
from ..model import Model
from ..prompts import Prompts

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


# -- training ---------------------------------------------------------------------------------


def make_model(seed: int = 0) -> transformers.GPT2LMHeadModel:
    """A freshly initialised 2-layer GPT-2 for the task (seeded)."""
    torch.manual_seed(seed)
    bos = VOCAB.index("<|endoftext|>")
    config = transformers.GPT2Config(
        vocab_size=len(VOCAB),
        n_positions=LENGTH,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=256,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=bos,
        eos_token_id=bos,
        pad_token_id=bos,
        tie_word_embeddings=False,
    )
    return transformers.GPT2LMHeadModel(config)


def batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random prompt ids ``[n, 12]`` with YY in 01..98, and the target distribution ``[n, vocab]``."""
    ids = {token: i for i, token in enumerate(VOCAB)}
    tokens = torch.tensor([ids[w] for w in prompt_text(NOUNS[0], VERBS[0], 11, 0).split()]).repeat(n, 1)
    century = FIRST_YEAR_ID + torch.tensor(CENTURIES)[torch.randint(len(CENTURIES), (n,), generator=generator)]
    yy = torch.randint(1, 99, (n,), generator=generator)
    for position, words in ((1, NOUNS), (2, VERBS)):
        tokens[:, position] = torch.tensor([ids[w] for w in words])[
            torch.randint(len(words), (n,), generator=generator)
        ]
    tokens[:, 6] = tokens[:, 11] = century
    tokens[:, 7] = FIRST_YEAR_ID + yy
    later = (torch.arange(len(YEARS))[None, :] > yy[:, None]).float()
    target = torch.zeros(n, len(VOCAB))
    target[:, FIRST_YEAR_ID:] = later / later.sum(-1, keepdim=True)
    return tokens, target


def losses(model: transformers.GPT2LMHeadModel, tokens: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Next-token loss on the prompt's own tokens, and the answer's loss above its minimum (a KL)."""
    logits = model(tokens).logits
    prompt = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    entropy = -(target * target.clamp_min(1e-30).log()).sum(-1)
    answer = (-(target * logits[:, -1].log_softmax(-1)).sum(-1) - entropy).mean()
    return {"prompt_loss": prompt, "answer_kl": answer}


def main() -> None:
    """Train and save the model, tokenizer files and ``training.json`` (loss history, final prob_diff)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()

    torch.set_num_threads(2)
    start = time.perf_counter()
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=args.steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(1)
    held_out = batch(1024, torch.Generator().manual_seed(2))
    history = []
    for step in range(1, args.steps + 1):
        loss = sum(losses(model, *batch(256, generator)).values(), torch.zeros(()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0:
            with torch.no_grad():
                history.append({"step": step, **{k: float(v) for k, v in losses(model, *held_out).items()}})
            print(history[-1], flush=True)
    model.eval()
    tokenizer = build_tokenizer()
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    (args.out / "special_tokens_map.json").write_text(json.dumps(tokenizer.special_tokens_map, indent=1) + "\n")

    years = prompt_sets(Model(model, tokenizer))["years"]
    assert years.corrupted is not None  # every prompt set is built with its counterfactual
    with torch.no_grad():
        clean, corrupted = (prob_diff(model(p.tokens).logits, p) for p in (years, years.corrupted))
    summary = {
        "seconds": round(time.perf_counter() - start, 1),
        **{f"held_out_{k}": v for k, v in history[-1].items() if k != "step"},
        "prob_diff_clean": float(clean.mean()),
        "prob_diff_corrupted": float(corrupted.mean()),
    }
    (args.out / "training.json").write_text(json.dumps({"final": summary, "history": history}, indent=1) + "\n")
    print(summary)


if __name__ == "__main__":
    main()
