"""Trains the zoo's greater-than model (seeded; about 3 minutes on 2 CPU cores)::

    python -m mitest.zoo.training.greater_than      # writes mitest/zoo/weights/greater-than

The task, its prompts, metric and family are in :mod:`mitest.zoo.greater_than`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import transformers

from mitest.model.model import Model
from mitest.zoo.greater_than import (
    CENTURIES,
    FIRST_YEAR_ID,
    HERE,
    LENGTH,
    NOUNS,
    VERBS,
    VOCAB,
    YEARS,
    build_tokenizer,
    prob_diff,
    prompt_sets,
    prompt_text,
)


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
