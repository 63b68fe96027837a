"""Multi-token answers: continuations appended to prompts and teacher-forced.

A prompt with a continuation runs as one sequence, prompt then continuation, so the model predicts
each continuation token from the prompt and the continuation tokens before it. The continuation is
the last ``continuation_lengths[i]`` tokens of prompt ``i``; the model's logits at the position
before each of them score it.
"""

from __future__ import annotations

import torch

from mitest.errors import PromptsError


def append(
    ids: torch.Tensor, lengths: torch.Tensor, extra: torch.Tensor, extra_lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded rows ``ids[i, :lengths[i]] + extra[i, :extra_lengths[i]]`` and their lengths."""
    total = lengths + extra_lengths
    joined = torch.zeros(len(lengths), int(total.max()), dtype=torch.long)
    for i, (n, k) in enumerate(zip(lengths.tolist(), extra_lengths.tolist(), strict=True)):
        joined[i, :n] = ids[i, :n]
        joined[i, n : n + k] = extra[i, :k]
    return joined, total


def divergence(
    right: torch.Tensor, right_lengths: torch.Tensor, wrong: torch.Tensor, wrong_lengths: torch.Tensor
) -> torch.Tensor:
    """Per prompt, the first index where the right and wrong continuations differ.

    Up to there both share the prefix the model is teacher-forced on, so the logits at that index
    compare the two continuations' next tokens exactly.
    """
    found = []
    for i, (k, w) in enumerate(zip(right_lengths.tolist(), wrong_lengths.tolist(), strict=True)):
        differ = (right[i, : min(k, w)] != wrong[i, : min(k, w)]).nonzero().flatten()
        if len(differ) == 0:
            raise PromptsError(
                f"continuation {i} and its wrong continuation agree on every token they share "
                f"({min(k, w)}); give a wrong continuation that differs from the right one"
            )
        found.append(int(differ[0]))
    return torch.tensor(found, dtype=torch.long)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``[n, max(k)]`` teacher-forced log-probabilities of each prompt's last ``k[i]`` tokens (NaN beyond ``k[i]``)."""
    device = logits.device
    steps = torch.arange(int(k.max()), device=device).unsqueeze(0)
    starts = (lengths - k).to(device).unsqueeze(1)
    inside = steps < k.to(device).unsqueeze(1)
    predicted_at = torch.where(inside, starts + steps - 1, starts - 1)  # the position predicting each token
    tokens = targets.to(device).gather(1, predicted_at + 1)
    rows = torch.arange(len(lengths), device=device).unsqueeze(1)
    logprobs = logits[rows, predicted_at].float().log_softmax(-1).gather(2, tokens[..., None])[..., 0]
    return torch.where(inside, logprobs, torch.full_like(logprobs, float("nan")))
