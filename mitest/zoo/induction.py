"""The induction task: a 2-layer attention-only GPT-2 trained on repeated random-token segments.

Training sequences are random tokens in which one segment ``r`` (4 to 12 tokens) occurs twice, at
random places; its second copy is predictable only by induction (find the earlier occurrence of
the current token, predict the token that followed it). Random placement removes positional
shortcuts. Layer 0 has a single working head (the output weights of its other three heads are zero
and frozen, like every MLP): with four free layer-0 heads the model learned a variant that keys on
the token two back instead of the textbook previous-token head. The zoo's ``induction`` model is the
final checkpoint, ``induction-early`` one taken before the induction heads formed.

Retrain (seeded; about 2 minutes on one CPU core)::

    python -m mitest.zoo.induction      # writes mitest/zoo/weights/induction{,-early}/
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

from ..atomic import write_text
from ..model import Model
from ..prompts import Prompts

VOCAB = 65  # 64 content tokens and BOS
BOS = 64
CONTEXT = 33
HEAD_DIM = 16
SEGMENT = 16  # segment length of the evaluation prompts [BOS] + r + r
TRAIN_SEGMENTS = (4, 12)  # segment lengths seen in training (inclusive)
WEIGHTS = Path(__file__).parent / "weights"


# -- prompts ---------------------------------------------------------------------------------------


def repeated(n: int = 64, *, seed: int = 0) -> Prompts:
    """``[BOS] + r + r`` with ``r`` 16 distinct random tokens; the corrupted twin's second half is
    16 other tokens.

    Score it with ``mt.metrics.loss("second_half")``: the loss on the repeat, which only induction
    can lower (on the corrupted twin the repeat is absent, so the loss stays near ``log 64``).
    Distinct tokens make every induction target unambiguous.
    """
    generator = torch.Generator().manual_seed(seed)
    clean, corrupted = [], []
    for _ in range(n):
        r = _distinct(SEGMENT, generator)
        fresh = _distinct(SEGMENT, generator, avoid=r)
        clean.append([BOS, *r, *r])
        corrupted.append([BOS, *r, *fresh])
    return Prompts(clean, corrupted=corrupted)


def next_token(n: int = 64, *, seed: int = 1) -> Prompts:
    """``[BOS] + r + r[:k]`` (``k`` from 4 to 15): the answer is ``r[k]``, the token induction predicts.

    The wrong token is ``r[k - 1]``, the current token (copying it is the natural mistake). The
    corrupted twin replaces the first copy with fresh tokens, so nothing points to the answer:
    patching from the clean run into it measures how much of the prediction a site carries.
    Prompts have different lengths (right-padded).
    """
    generator = torch.Generator().manual_seed(seed)
    clean, corrupted, answers, wrong = [], [], [], []
    for _ in range(n):
        r = _distinct(SEGMENT, generator)
        k = int(torch.randint(4, SEGMENT, (1,), generator=generator))
        fresh = _distinct(SEGMENT, generator, avoid=r)
        clean.append([BOS, *r, *r[:k]])
        corrupted.append([BOS, *fresh, *r[:k]])
        answers.append(r[k])
        wrong.append(r[k - 1])
    return Prompts(clean, answers=answers, wrong=wrong, corrupted=corrupted)


def prompt_sets(model: Model | None = None) -> dict[str, Prompts]:
    """The task's prompt sets: ``repeated`` (loss on the repeat) and ``next_token`` (answer at the end)."""
    return {"repeated": repeated(), "next_token": next_token()}


def head_scores(model: Model, prompts: Prompts | None = None) -> dict[str, dict[str, float]]:
    """Per head ``"layer.head"``: its mean attention to the previous token (``previous_token``) and,
    on the repeat, to the token after the current token's occurrence in the first copy (``induction``).

    Read from the attention patterns on :func:`repeated` prompts (or ``prompts`` of that form).
    A previous-token head scores near 1 on the first, an induction head on the second.
    """
    from ..hooks import eager_attention, inference_mode

    ids = (prompts or repeated()).ids
    with inference_mode(model.hf_model), eager_attention(model.hf_model):
        patterns = model.hf_model(ids, output_attentions=True).attentions
    positions = torch.arange(2, ids.shape[1])
    repeat = torch.arange(SEGMENT + 1, ids.shape[1])
    scores = {}
    for layer, pattern in enumerate(patterns):
        for head in range(pattern.shape[1]):
            scores[f"{layer}.{head}"] = {
                "previous_token": round(float(pattern[:, head, positions, positions - 1].mean()), 3),
                "induction": round(float(pattern[:, head, repeat, repeat - SEGMENT + 1].mean()), 3),
            }
    return scores


def _distinct(k: int, generator: torch.Generator, avoid: list[int] | None = None) -> list[int]:
    """``k`` distinct random content tokens, none in ``avoid``: each token's successor is unambiguous."""
    pool = torch.tensor([t for t in range(BOS) if t not in set(avoid or ())])
    return pool[torch.randperm(len(pool), generator=generator)[:k]].tolist()


# -- training --------------------------------------------------------------------------------------


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
    projection.register_hook(_only_first_head)
    return model


def _only_first_head(grad: torch.Tensor) -> torch.Tensor:
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
