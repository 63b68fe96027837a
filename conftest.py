"""Fixtures for the hypothesis suites in hypotheses/ (session scope: built once per run)."""

from __future__ import annotations

import pytest
import torch
import transformers

import mitest as mt


@pytest.fixture(scope="session")
def tiny_gpt2() -> mt.Model:
    """A seeded, random-weight 2-layer GPT-2 (4 heads, d_model 32, vocab 64).

    A stand-in until the model zoo ships trained reference models: claims about it are the
    structural facts every causal transformer must satisfy.
    """
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_head=4, n_embd=32, vocab_size=64, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.3)
    return mt.Model.from_hf(model.eval())


@pytest.fixture(scope="session")
def random_pairs() -> mt.Prompts:
    """24 random 12-token prompts, each with a corrupted twin that differs from position 6 on."""
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, 64, (24, 12), generator=g)
    corrupted = tokens.clone()
    corrupted[:, 6:] = torch.randint(1, 64, (24, 6), generator=g)
    answers = torch.randint(1, 64, (24,), generator=g)
    return mt.Prompts(tokens, answers=answers, wrong=(answers + 1) % 64, corrupted=corrupted)
