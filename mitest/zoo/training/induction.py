"""Trains the zoo's induction model (seeded; about 2 minutes on one CPU core)::

    python -m mitest.zoo.training.induction      # writes mitest/zoo/weights/induction{,-early}/

The task, its prompts and its family are in :mod:`mitest.zoo.induction`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import transformers

from mitest.results.atomic import write_text
from mitest.spec.prompts import Prompts
from mitest.zoo.induction import BOS, CONTEXT, HEAD_DIM, SEGMENT, TRAIN_SEGMENTS, VOCAB, WEIGHTS, repeated


def make_model(seed: int = 0) -> transformers.GPT2LMHeadModel:
    """A fresh 2-layer, 4-head, d_model 64 GPT-2: attention-only, with one working head in layer 0.

    Every MLP and layer-0 heads 1-3 have zero, frozen output weights (their output is exactly 0).
    """
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=CONTEXT,
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_inner=64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=BOS,
        eos_token_id=BOS,
        tie_word_embeddings=False,
    )
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        blocks: list[Any] = list(model.transformer.h)  # torch types submodule attributes as Tensor | Module
        for block in blocks:  # attention-only: every MLP outputs exactly zero
            for parameter in block.mlp.parameters():
                parameter.zero_()
                parameter.requires_grad_(False)
        projection = blocks[0].attn.c_proj.weight  # rows: the heads' z, 16 per head
        projection[HEAD_DIM:] = 0.0
    projection.register_hook(only_first_head)
    return model


def only_first_head(grad: torch.Tensor) -> torch.Tensor:
    """Gradient mask keeping layer-0 heads 1-3's output weights at zero (AdamW leaves zeros at zero)."""
    masked = grad.clone()
    masked[HEAD_DIM:] = 0.0
    return masked


def training_tokens(n: int, generator: torch.Generator) -> torch.Tensor:
    """Random sequences in which one segment of 4 to 12 tokens occurs twice, at random places."""
    tokens = torch.randint(0, BOS, (n, CONTEXT), generator=generator)
    tokens[:, 0] = BOS
    low, high = TRAIN_SEGMENTS
    for row in range(n):
        length = int(torch.randint(low, high + 1, (1,), generator=generator))
        start = 1 + int(torch.randint(0, CONTEXT - 2 * length, (1,), generator=generator))
        gap = int(torch.randint(0, CONTEXT - start - 2 * length + 1, (1,), generator=generator))
        second = start + length + gap
        tokens[row, second : second + length] = tokens[row, start : start + length]
    return tokens


def repeat_loss(model: transformers.GPT2LMHeadModel, prompts: Prompts) -> float:
    """Mean next-token loss on the repeat of :func:`repeated` prompts (plain torch, for training logs)."""
    with torch.no_grad():
        logits = model(prompts.ids).logits[:, SEGMENT:-1]
        targets = prompts.ids[:, SEGMENT + 1 :]
        return float(torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1)))


def train(steps: int = 4000, early_step: int = 1000, out: Path = WEIGHTS, seed: int = 0) -> list[dict]:
    """Train the model, saving ``induction-early`` at ``early_step`` and ``induction`` at the end."""
    model = make_model(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed + 1)
    held_out = repeated(256, seed=seed + 2)
    history, started = [], time.perf_counter()
    for step in range(1, steps + 1):
        tokens = training_tokens(64, generator)
        loss = model(tokens, labels=tokens).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == early_step:
            model.eval()
            history.append({"step": step, "repeat_loss": round(repeat_loss(model, held_out), 4)})
            model.train()
            print(history[-1], f"{time.perf_counter() - started:.0f}s", flush=True)
        if step == early_step:
            _save(model, out / "induction-early")
    _save(model, out / "induction")
    return history


def _save(model: transformers.GPT2LMHeadModel, directory: Path) -> None:
    """Save weights and config (safetensors), replacing the directory's model files but not its card."""
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    directory.mkdir(parents=True, exist_ok=True)
    for file in staging.iterdir():
        file.replace(directory / file.name)
    staging.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--early-step", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    if not 0 < args.early_step < args.steps:
        parser.error(f"--early-step must be between 0 and --steps ({args.steps}), got {args.early_step}")
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, and several contend on shared cores
    history = train(args.steps, args.early_step, args.out)
    write_text(args.out / "induction" / "training.json", json.dumps(history, indent=1) + "\n")
    print(f"wrote {args.out}/induction and induction-early; update their model cards (README.md) to match")


if __name__ == "__main__":
    main()
