"""What ``mt.attribute`` costs in forward-pass equivalents, and how well it agrees with exact patching.

On the zoo's induction model (64 prompts of each task, every head patched from the corrupted twins)
and on ``planted.saturated_attention()`` (every head's key), it times one clean forward pass over the
prompts, ``mt.attribute`` with AtP and with IG (16 steps), and the exact ``mt.sweep``, each from an
empty cache (best of a few runs), and prints the times as multiples of the clean pass, then each
method's Spearman rho with exact patching and the verdict of ``expect_agrees_with_patching``; first,
AtP over the 144 heads of a GPT-2-small-shaped random model (8 prompts x 32 tokens) in clean passes,
beside TransformerLens 4.3's ``attribution_patch`` on the same weights when the ``bench`` extra is
installed (the bridge rewires the model, so it runs last on it).
Timings are printed, never asserted: machines are noisy.

    OMP_NUM_THREADS=1 python benchmarks/attribution_cost.py
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import torch

import mitest as mt
from mitest.zoo import planted


def _best(model: mt.Model, run: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        model.cache.clear()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def _report(title: str, model: mt.Model, prompts: mt.Prompts, template: mt.Intervention, metric, bound: float) -> None:
    def forward() -> None:
        with model.running():
            for batch in prompts.batches(32):
                model.forward(batch.tokens, batch.attention_mask)

    clean = _best(model, forward, 5)
    atp = _best(model, lambda: mt.attribute(model, prompts, template, metric), 5)
    ig = _best(model, lambda: mt.attribute(model, prompts, template, metric, method="ig"), 3)
    exact = _best(model, lambda: mt.sweep(model, prompts, template, metric), 3)
    print(
        f"{title}: clean forward {1e3 * clean:.1f} ms; atp {atp / clean:.1f}x, ig(16) {ig / clean:.1f}x, "
        f"exact sweep {exact / clean:.1f}x"
    )
    for method in ("atp", "ig"):
        agreement = mt.attribute(model, prompts, template, metric, method=method).verify(top_k=1)
        try:
            verdict = agreement.expect_agrees(rank_correlation_at_least=bound)
        except mt.ClaimFailure as failure:
            verdict = failure.verdict  # type: ignore[attr-defined]
        print(
            f"  {method}: rho {agreement.rank_correlation:.3f} (CI {verdict.low:.3f}..{verdict.high:.3f}), "
            f"top-1 match and rho >= {bound}: {verdict.outcome}"
        )


def gpt2_small_cost(prompts: int = 8, tokens: int = 32) -> None:
    """AtP over all 144 heads of a GPT-2-small-shaped random model, in clean forward passes."""
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257)
    model = mt.Model.from_hf(transformers.GPT2LMHeadModel(config).eval())
    generator = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, config.vocab_size, (prompts, tokens), generator=generator) for _ in range(2)]
    answers = [torch.randint(0, config.vocab_size, (prompts,), generator=generator) for _ in range(2)]
    corrupted = mt.Prompts(ids[1], answers=answers[0], wrong=answers[1])
    pairs = mt.Prompts(ids[0], answers=answers[0], wrong=answers[1], corrupted=corrupted)

    def forward() -> None:
        with model.running():
            model.forward(pairs.tokens, pairs.attention_mask)

    clean = _best(model, forward, 3)
    atp = _best(model, lambda: mt.attribute(model, pairs, mt.patch(mt.heads("*")), mt.metrics.logit_diff), 3)
    print(
        f"GPT-2-small shape, {prompts} x {tokens} tokens, 144 heads: clean forward {1e3 * clean:.0f} ms; "
        f"atp {1e3 * atp:.0f} ms = {atp / clean:.2f} forward passes"
    )
    try:
        from transformer_lens.model_bridge.sources import build_bridge_from_module
        from transformer_lens.tools.analysis.attribution_patching import attribution_patch
    except ImportError:
        print("  TransformerLens not installed (pip install -e '.[bench]'): its attribution patching not timed")
        return
    bridge = build_bridge_from_module(model.hf_model, "GPT2LMHeadModel", hf_config=config).eval()
    rows = torch.arange(prompts)

    def metric(logits: torch.Tensor) -> torch.Tensor:  # one pair at a time: TL scores each pair on its own
        return logits[0, -1, answers[0][0]] - logits[0, -1, answers[1][0]]

    peer = _best(model, lambda: attribution_patch(bridge, ids[0][rows], ids[1][rows], metric), 2)
    print(f"  TransformerLens 4.3 attribution_patch (node granularity): {1e3 * peer:.0f} ms = {peer / clean:.2f}")


def main() -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", mt.NoOpInterventionWarning)
    gpt2_small_cost()
    model, prompts = mt.zoo.load("induction")
    heads = mt.patch(mt.heads("*"))
    _report("induction next_token", model, prompts["next_token"], heads, mt.metrics.logit_diff, 0.9)
    _report("induction repeated", model, prompts["repeated"], heads, mt.metrics.loss("second_half"), 0.9)
    model, prompts = planted.saturated_attention()
    _report("saturated attention", model, prompts, mt.patch(mt.heads("*", kind="k")), mt.metrics.logit_diff, 0.8)


if __name__ == "__main__":
    main()
