"""Overhead of mitest over a bare PyTorch loop: zero-ablate every head, one at a time.

A GPT-2-small-shaped random model (12 layers x 12 heads, d_model 768) runs 32 prompts x 32 tokens.
The bare loop does the same forward passes with one raw hook that zeroes the head's slice of the
output projection's input, and computes the same logit difference. Both are timed side by side,
alternating, in one process; the printed figure is mitest's time divided by the bare loop's.
Target: at most 1.10.

    python benchmarks/ablate_every_head.py            # full 144 heads
    python benchmarks/ablate_every_head.py --layers 2 # quicker
"""

from __future__ import annotations

import argparse
import time

import torch
import transformers

import mitest as mt


def bare_loop(hf_model, tokens, answers, wrong, heads) -> list[float]:
    d_head = hf_model.config.n_embd // hf_model.config.n_head
    results = []
    hf_model.eval()
    for layer, head in heads:
        cols = slice(head * d_head, (head + 1) * d_head)

        def zero_head(module, args, cols=cols):
            x = args[0].clone()
            x[..., cols] = 0
            return (x,)

        handle = hf_model.transformer.h[layer].attn.c_proj.register_forward_pre_hook(zero_head)
        try:
            with torch.no_grad():
                final = hf_model(input_ids=tokens).logits[:, -1]
        finally:
            handle.remove()
        diff = final.gather(1, answers[:, None]) - final.gather(1, wrong[:, None])
        results.append(float(diff.mean()))
    return results


def mitest_loop(hf_model, prompts, heads) -> list[float]:
    model = mt.Model.from_hf(hf_model)  # fresh: its clean run is part of the timed work
    return [
        float(mt.measure(model, prompts, mt.ablate(mt.head(layer, head)), mt.metrics.logit_diff).intervened.mean())
        for layer, head in heads
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=12, help="ablate heads of the first N layers")
    parser.add_argument("--repeats", type=int, default=1, help="alternating timing rounds")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()

    torch.manual_seed(0)
    hf_model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    tokens = torch.randint(0, hf_model.config.vocab_size, (args.prompts, args.tokens))
    answers, wrong = tokens[:, 0], tokens[:, 1]
    prompts = mt.Prompts(tokens, answers=answers, wrong=wrong)
    heads = [(layer, head) for layer in range(args.layers) for head in range(hf_model.config.n_head)]

    bare_loop(hf_model, tokens, answers, wrong, heads[:2])  # warm up both paths
    mitest_loop(hf_model, prompts, heads[:2])
    bare_total = mitest_total = 0.0
    for round_ in range(args.repeats):
        for name in ("bare", "mitest") if round_ % 2 == 0 else ("mitest", "bare"):
            start = time.perf_counter()
            if name == "bare":
                bare = bare_loop(hf_model, tokens, answers, wrong, heads)
                bare_total += time.perf_counter() - start
            else:
                ours = mitest_loop(hf_model, prompts, heads)
                mitest_total += time.perf_counter() - start
        worst = max(abs(a - b) for a, b in zip(bare, ours, strict=True))
        assert worst < 1e-4, f"mitest and the bare loop disagree by {worst}"
    print(
        f"heads ablated: {len(heads)} x {args.repeats} rounds, {args.prompts} prompts x {args.tokens} tokens, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"bare PyTorch loop: {bare_total:.2f} s")
    print(f"mitest:            {mitest_total:.2f} s (includes its one clean pass)")
    print(f"ratio mitest / bare: {mitest_total / bare_total:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
