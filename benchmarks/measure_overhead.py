"""Fixed cost of one ``mt.measure`` call over the bare forward pass it runs.

On the zoo's induction model (16 repeated-segment prompts), the clean run cached, mitest zero-ablates
head 1.0 and measures the loss; the bare loop runs the same batch through the transformers model with
one raw pre-hook on the attention output projection that zeroes the head's slice, and computes the
same loss. The two are timed in one process, alternating rounds. Printed: the median per-call time
of each, and the median of the per-round differences (mitest's fixed cost, paired so that load
drifting between rounds cancels) and ratios. Timings are printed, never asserted: machines are noisy.

    OMP_NUM_THREADS=1 python benchmarks/measure_overhead.py
    OMP_NUM_THREADS=1 python benchmarks/measure_overhead.py --rounds 40 --calls 50
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import mitest as mt


def mitest_call(model: mt.Model, prompts: mt.Prompts) -> Callable[[], object]:
    """One ``mt.measure`` of zero-ablating head 1.0 (the clean run cached by a first call)."""
    intervention, metric = mt.ablate(mt.heads("1.0")), mt.metrics.loss()
    mt.measure(model, prompts, intervention, metric=metric)
    return lambda: mt.measure(model, prompts, intervention, metric=metric)


def bare_call(model: mt.Model, prompts: mt.Prompts) -> Callable[[], object]:
    """The same pass with a raw hook: eval mode, no gradients, head 1.0 zeroed, the same loss."""
    hf_model, metric = model.hf_model.eval(), mt.metrics.loss()
    d_head = hf_model.config.n_embd // hf_model.config.n_head
    tokens = prompts.tokens

    def zero_head(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        x = args[0].clone()
        x[..., :d_head] = 0
        return (x,)

    hf_model.transformer.h[1].attn.c_proj.register_forward_pre_hook(zero_head)

    def call() -> object:
        with torch.no_grad():
            return metric(hf_model(input_ids=tokens).logits, prompts)

    return call


def per_call_ms(call: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30, help="alternating timing rounds")
    parser.add_argument("--calls", type=int, default=30, help="calls of each per round")
    parser.add_argument("--prompts", type=int, default=16)
    args = parser.parse_args()

    model, _ = mt.zoo.load("induction")
    prompts = mt.zoo.induction.repeated(args.prompts)
    measured = mitest_call(model, prompts)
    bare_model, _ = mt.zoo.load("induction")  # its own copy: the raw hook never sees mitest's runs
    bare = bare_call(bare_model, prompts)
    for call in (measured, bare):  # warm up
        per_call_ms(call, args.calls)
    times: dict[str, list[float]] = {"mitest": [], "bare": []}
    for _ in range(args.rounds):
        times["mitest"].append(per_call_ms(measured, args.calls))
        times["bare"].append(per_call_ms(bare, args.calls))
    mitest_ms, bare_ms = (statistics.median(times[name]) for name in ("mitest", "bare"))
    fixed = statistics.median(m - b for m, b in zip(times["mitest"], times["bare"], strict=True))
    ratio = statistics.median(m / b for m, b in zip(times["mitest"], times["bare"], strict=True))
    print(f"induction model, {args.prompts} prompts, {args.rounds} rounds x {args.calls} calls (median per call)")
    print(f"  mt.measure          {mitest_ms:7.3f} ms")
    print(f"  bare hooked forward {bare_ms:7.3f} ms")
    print(f"  fixed cost          {fixed:7.3f} ms per call (ratio {ratio:.2f})")


if __name__ == "__main__":
    main()
