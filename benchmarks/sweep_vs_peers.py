"""Sweeps side by side: mitest's ``mt.sweep`` vs TransformerLens 4.3, nnsight 0.8 and a bare PyTorch loop.

Measures the wall-clock time and peak memory of two sweeps over every attention head of a
GPT-2-small-shaped model (12 layers x 12 heads, d_model 768, vocab 50257, random weights from a
fixed seed, built from its config: no download), on 8 (``--prompts``, up to 32) prompts of 32
random tokens, metric: logit difference (answer - wrong token) at the last position, per prompt.

* ``ablate``: zero ablation of one head's output ``z`` (the head's slice of the input of
  ``attn.c_proj``), one cell per head, on the clean prompts.
* ``patch``: activation patching, the corrupted prompts run with one head's ``z`` taken from the
  clean run (TransformerLens' ``get_act_patch_attn_head_out_all_pos`` experiment;
  ``mt.patch(..., source="clean")``).

Contenders (each timed in its own subprocess, so its peak memory is its own; the order alternates
across ``--repeats``; the figure is the median over repeats):

1. ``bare``: a forward pre-hook on ``transformer.h[L].attn.c_proj`` per head, one full forward
   per head. Every ratio is relative to it, and every contender must agree with it within 1e-4.
2. ``mitest``: ``mt.sweep`` (a fresh ``mt.Model`` inside the timer, so its clean run is timed).
3. ``tl-hooks``: a TransformerLens ``TransformerBridge`` around the same HF model,
   ``run_with_hooks`` on ``blocks.L.attn.hook_z`` per head.
4. ``tl-patching``: ``transformer_lens.patching.get_act_patch_attn_head_out_all_pos`` with
   ``reduce="none"`` (patching only: TransformerLens has no ablation sweep), clean cache timed.
5. ``nnsight-trace``: one nnsight trace per head.
6. ``nnsight-invokes``: several heads per trace, one invoke each (``--chunk`` heads per trace).

Wrappers (bridge, NNsight) are built before the timer; the warm-up runs two cells. Peak memory is
the subprocess's peak RSS above its RSS after the model is built and run once (CPU), or
``torch.cuda.max_memory_allocated`` above the allocation before the contender (CUDA). A peer
that is not installed or fails is reported and skipped. Peers: ``pip install -e ".[bench]"``.

    python benchmarks/sweep_vs_peers.py                       # 8 prompts, all 144 heads, CPU
    python benchmarks/sweep_vs_peers.py --device cuda --prompts 32
    python benchmarks/sweep_vs_peers.py --cells 24 --repeats 1  # 24 heads spread over the layers
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CONTENDERS = ("bare", "mitest", "tl-hooks", "tl-patching", "nnsight-trace", "nnsight-invokes")
EXPERIMENTS = ("ablate", "patch")
TOLERANCE = 1e-4


# ---------------------------------------------------------------------------------------------
# The shared setup: model, prompts, metric, cells


@dataclass
class Setup:
    model: object  # transformers.GPT2LMHeadModel
    clean: object  # token ids [prompts, tokens]
    corrupted: object
    answers: object
    wrong: object
    heads: list[tuple[int, int]]
    d_head: int
    device: str
    chunk: int


def build(args: argparse.Namespace) -> Setup:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257)
    model = transformers.GPT2LMHeadModel(config).eval().to(args.device)
    generator = torch.Generator().manual_seed(1)
    clean = torch.randint(0, config.vocab_size, (args.prompts, args.tokens), generator=generator)
    corrupted = torch.randint(0, config.vocab_size, (args.prompts, args.tokens), generator=generator)
    answers = torch.randint(0, config.vocab_size, (args.prompts,), generator=generator)
    wrong = torch.randint(0, config.vocab_size, (args.prompts,), generator=generator)
    every = [(layer, head) for layer in range(config.n_layer) for head in range(config.n_head)]
    step = len(every) / min(args.cells, len(every))
    heads = [every[int(i * step)] for i in range(min(args.cells, len(every)))]
    on = [t.to(args.device) for t in (clean, corrupted, answers, wrong)]
    return Setup(model, *on, heads, config.n_embd // config.n_head, args.device, args.chunk)


def logit_diff(setup: Setup, last_logits):
    """Per-prompt logit difference at the last position: [prompts, vocab] -> numpy [prompts]."""
    rows = last_logits.gather(1, setup.answers[:, None]) - last_logits.gather(1, setup.wrong[:, None])
    return rows[:, 0].detach().float().cpu().numpy()


def inputs_of(setup: Setup, experiment: str):
    """The run the intervention is applied to: clean prompts (ablation) or corrupted (patching)."""
    return setup.clean if experiment == "ablate" else setup.corrupted


def clean_z(setup: Setup) -> list:
    """Each layer's c_proj input on the clean prompts (the patching source for the hook loops)."""
    import torch

    found: list = []
    handles = [
        block.attn.c_proj.register_forward_pre_hook(lambda module, args: found.append(args[0].detach()))
        for block in setup.model.transformer.h
    ]
    try:
        with torch.no_grad():
            setup.model(input_ids=setup.clean)
    finally:
        for handle in handles:
            handle.remove()
    return found


# ---------------------------------------------------------------------------------------------
# Contenders: each returns per-cell, per-prompt metric values [cells, prompts]


def run_bare(setup: Setup, experiment: str, heads: list[tuple[int, int]], _wrapper=None) -> np.ndarray:
    import torch

    source = clean_z(setup) if experiment == "patch" else None
    values = []
    for layer, head in heads:
        cols = slice(head * setup.d_head, (head + 1) * setup.d_head)

        def edit(module, args, layer=layer, cols=cols):
            x = args[0].clone()
            x[..., cols] = 0 if source is None else source[layer][..., cols]
            return (x,)

        handle = setup.model.transformer.h[layer].attn.c_proj.register_forward_pre_hook(edit)
        try:
            with torch.no_grad():
                logits = setup.model(input_ids=inputs_of(setup, experiment)).logits[:, -1]
        finally:
            handle.remove()
        values.append(logit_diff(setup, logits))
    return np.stack(values)


def run_mitest(setup: Setup, experiment: str, heads: list[tuple[int, int]], _wrapper=None) -> np.ndarray:
    import mitest as mt

    model = mt.Model.from_hf(setup.model)  # fresh: nothing cached from the warm-up
    prompts = mt.Prompts(setup.clean, answers=setup.answers, wrong=setup.wrong, corrupted=setup.corrupted)
    sites = mt.heads(*(f"{layer}.{head}" for layer, head in heads))
    intervention = mt.ablate(sites) if experiment == "ablate" else mt.patch(sites, source="clean")
    sweep = mt.sweep(model, prompts, intervention, mt.metrics.logit_diff)
    return np.stack([sweep[f"{layer}.{head}"].intervened for layer, head in heads])


def tl_bridge(setup: Setup):
    """A TransformerBridge around the HF model (it rewires the model in place, so it is the last user)."""
    from transformer_lens.model_bridge.sources import build_bridge_from_module

    bridge = build_bridge_from_module(setup.model, "GPT2LMHeadModel", hf_config=setup.model.config)
    return bridge.eval()


def run_tl_hooks(setup: Setup, experiment: str, heads: list[tuple[int, int]], bridge) -> np.ndarray:
    import torch

    source = None
    if experiment == "patch":
        with torch.no_grad():
            _, cache = bridge.run_with_cache(setup.clean, names_filter=lambda name: name.endswith("attn.hook_z"))
        source = cache
    values = []
    for layer, head in heads:
        name = f"blocks.{layer}.attn.hook_z"

        def edit(z, hook, head=head, name=name):
            z[:, :, head] = 0 if source is None else source[name][:, :, head]
            return z

        with torch.no_grad():
            logits = bridge.run_with_hooks(inputs_of(setup, experiment), fwd_hooks=[(name, edit)])
        values.append(logit_diff(setup, logits[:, -1]))
    return np.stack(values)


def run_tl_patching(setup: Setup, experiment: str, heads: list[tuple[int, int]], bridge) -> np.ndarray:
    import pandas as pd
    import torch
    from transformer_lens import patching

    if experiment != "patch":
        raise NotImplementedError("transformer_lens.patching has activation patching only, no ablation sweep")
    with torch.no_grad():
        _, cache = bridge.run_with_cache(setup.clean, names_filter=lambda name: name.endswith("attn.hook_z"))
        metric = lambda logits: torch.from_numpy(logit_diff(setup, logits[:, -1]))  # noqa: E731
        if len(heads) == bridge.cfg.n_layers * bridge.cfg.n_heads:
            result = patching.get_act_patch_attn_head_out_all_pos(bridge, setup.corrupted, cache, metric, reduce="none")
        else:  # a subset (--cells): the same function's setter over those heads only
            result = patching.generic_activation_patch(
                bridge,
                setup.corrupted,
                cache,
                metric,
                patch_setter=patching.layer_head_vector_patch_setter,
                activation_name="z",
                index_df=pd.DataFrame(heads, columns=["layer", "head"]),
                reduce="none",
            )
    return result.values.detach().cpu().numpy().reshape(len(heads), -1)


def nnsight_model(setup: Setup):
    """NNsight around the HF model, batching invokes of token tensors by concatenation.

    nnsight's own batching lives in LanguageModel, which needs a tokenizer (none offline here);
    these two methods are all it adds for tensor inputs.
    """
    import torch
    from nnsight import NNsight

    class TokenBatched(NNsight):
        def _batch_size(self, *inputs, **kwargs):
            return inputs[0].shape[0] if inputs else 0

        def _batch(self, invokes, fn):
            return (torch.cat([args[0] for args, _ in invokes]),), {}

    return TokenBatched(setup.model)


def nnsight_clean_z(setup: Setup, model) -> list:
    import torch

    found: list = []
    with torch.no_grad(), model.trace(setup.clean):
        for block in model.transformer.h:
            found.append(block.attn.c_proj.input.save())
    return found


def run_nnsight_trace(setup: Setup, experiment: str, heads: list[tuple[int, int]], model) -> np.ndarray:
    import torch

    source = nnsight_clean_z(setup, model) if experiment == "patch" else None
    values = []
    for layer, head in heads:
        cols = slice(head * setup.d_head, (head + 1) * setup.d_head)
        with torch.no_grad(), model.trace(inputs_of(setup, experiment)):
            z = model.transformer.h[layer].attn.c_proj.input
            z[..., cols] = 0 if source is None else source[layer][..., cols]
            logits = model.lm_head.output[:, -1].save()
        values.append(logit_diff(setup, logits))
    return np.stack(values)


def run_nnsight_invokes(setup: Setup, experiment: str, heads: list[tuple[int, int]], model) -> np.ndarray:
    import torch

    source = nnsight_clean_z(setup, model) if experiment == "patch" else None
    values = []
    for start in range(0, len(heads), setup.chunk):
        saved: list = []
        with torch.no_grad(), model.trace() as tracer:
            for layer, head in heads[start : start + setup.chunk]:
                cols = slice(head * setup.d_head, (head + 1) * setup.d_head)
                with tracer.invoke(inputs_of(setup, experiment)):
                    z = model.transformer.h[layer].attn.c_proj.input
                    z[..., cols] = 0 if source is None else source[layer][..., cols]
                    saved.append(model.lm_head.output[:, -1].save())
        values.extend(logit_diff(setup, logits) for logits in saved)
    return np.stack(values)


RUNNERS = {
    "bare": (run_bare, None),
    "mitest": (run_mitest, None),
    "tl-hooks": (run_tl_hooks, tl_bridge),
    "tl-patching": (run_tl_patching, tl_bridge),
    "nnsight-trace": (run_nnsight_trace, nnsight_model),
    "nnsight-invokes": (run_nnsight_invokes, nnsight_model),
}


# ---------------------------------------------------------------------------------------------
# One contender in one subprocess: time it, measure its peak memory, save its values


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_grad_enabled(False)
    setup = build(args)
    run, prepare = RUNNERS[args.worker]
    run_bare(setup, "ablate", setup.heads[:1])  # touch every weight before the memory baseline
    cuda = setup.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = rss_bytes()
    wrapper = prepare(setup) if prepare else None
    run(setup, args.experiment, setup.heads[:2], wrapper)  # warm-up
    start = time.perf_counter()
    values = run(setup, args.experiment, setup.heads, wrapper)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if cuda else peak_rss_bytes()) - baseline
    np.save(args.out + ".npy", values)
    Path(args.out + ".json").write_text(json.dumps({"seconds": seconds, "peak": peak}))


def spawn(args: argparse.Namespace, contender: str, experiment: str, out: str) -> dict:
    """Run one contender in a fresh interpreter; its result, or why it failed."""
    command = [sys.executable, __file__, "--worker", contender, "--experiment", experiment, "--out", out]
    command += ["--device", args.device, "--prompts", str(args.prompts), "--tokens", str(args.tokens)]
    command += ["--cells", str(args.cells), "--chunk", str(args.chunk)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"exit status {done.returncode}"}
    result = json.loads(Path(out + ".json").read_text())
    result["values"] = np.load(out + ".npy")
    return result


# ---------------------------------------------------------------------------------------------
# The parent: alternate, collect, compare, print


def available(contender: str) -> str | None:
    """Why a contender cannot run here, or None."""
    module = {"tl-hooks": "transformer_lens", "tl-patching": "transformer_lens"}.get(contender)
    module = module or ("nnsight" if contender.startswith("nnsight") else None)
    if module is None:
        return None
    try:
        __import__(module)
    except Exception as error:  # noqa: BLE001 - any import failure means: skip this peer
        return f"{module} not importable ({type(error).__name__}: {error}); pip install -e '.[bench]'"
    return None


def benchmark(args: argparse.Namespace) -> None:
    wanted = [c for c in CONTENDERS if c in args.only] if args.only else list(CONTENDERS)
    skipped = {c: why for c in wanted if (why := available(c))}
    for contender, why in skipped.items():
        print(f"skipped {contender}: {why}")
    ready = [c for c in wanted if c not in skipped]
    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            order = ready if repeat % 2 == 0 else ready[::-1]
            for experiment in EXPERIMENTS:
                for contender in order:
                    if contender == "tl-patching" and experiment == "ablate":
                        continue
                    out = os.path.join(scratch, f"{contender}-{experiment}-{repeat}")
                    try:
                        result = spawn(args, contender, experiment, out)
                    except Exception:  # noqa: BLE001 - a peer's failure must not stop the others
                        result = {"error": traceback.format_exc().strip().splitlines()[-1]}
                    runs.setdefault((contender, experiment), []).append(result)
                    status = result.get("error") or f"{result['seconds']:.2f} s"
                    print(f"  repeat {repeat} {experiment:6} {contender:16} {status}", flush=True)
    report(args, runs)


def report(args: argparse.Namespace, runs: dict[tuple[str, str], list[dict]]) -> None:
    print(
        f"\n{args.cells} heads, {args.prompts} prompts x {args.tokens} tokens, device {args.device}, "
        f"repeats {args.repeats}, median seconds; max |diff| is against the bare loop's per-prompt values"
    )
    header = (
        f"{'experiment':10} {'contender':16} {'seconds':>9} {'x bare':>7} {'peak MiB':>9} {'max |diff|':>11}  agrees"
    )
    print(header)
    print("-" * len(header))
    for experiment in EXPERIMENTS:
        bare = [r for r in runs.get(("bare", experiment), []) if "error" not in r]
        reference = bare[0]["values"] if bare else None
        bare_seconds = statistics.median(r["seconds"] for r in bare) if bare else None
        for contender in CONTENDERS:
            results = runs.get((contender, experiment))
            if not results:
                continue
            good = [r for r in results if "error" not in r]
            if not good:
                print(f"{experiment:10} {contender:16} failed: {results[0]['error']}")
                continue
            seconds = statistics.median(r["seconds"] for r in good)
            ratio = f"{seconds / bare_seconds:7.2f}" if bare_seconds else f"{'-':>7}"
            peak = max(r["peak"] for r in good) / 2**20
            if reference is None:
                diff, agrees = float("nan"), "?"
            else:
                diff = max(float(np.abs(r["values"] - reference).max()) for r in good)
                agrees = "yes" if diff <= TOLERANCE else "NO"
            print(f"{experiment:10} {contender:16} {seconds:9.2f} {ratio} {peak:9.0f} {diff:11.2e}  {agrees}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--prompts", type=int, default=8, help="prompts (8-32)")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--cells", type=int, default=144, help="heads swept, spread evenly over the layers")
    parser.add_argument("--chunk", type=int, default=12, help="heads per trace for nnsight-invokes")
    parser.add_argument("--repeats", type=int, default=2, help="alternating timing rounds")
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, help="run only these contenders")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per contender before it counts as failed")
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--experiment", choices=EXPERIMENTS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.prompts <= 32:
        parser.error("--prompts must be between 1 and 32")
    if args.worker:
        worker(args)
    else:
        benchmark(args)


if __name__ == "__main__":
    main()
