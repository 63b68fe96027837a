"""Error rates of the release gate on the bundled suite: false alarms on harmless releases, detection
of broken ones.

Builds new "releases" of the zoo's ``induction`` and ``greater-than`` models, saves each as a model
directory in a temporary folder, and runs the bundled suite (``hypotheses/``, committed baselines in
``hypotheses/baselines/``) against each one as a release engineer would, one subprocess per run from
the repository root, the release replacing only the model it was built from::

    CI=true python -m pytest hypotheses -p no:cacheprovider -q --mitest-report-dir DIR \\
        --mitest-model NAME=RELEASE --mitest-gate GATE

A claim failed the gate when ``DIR/run.json`` gives its baseline status as ``regressed`` (or
``error``, or ``new``/``changed`` under the ci profile: each also fails the run) or lists it among
the ``undecided`` claims (held in the baseline, but its test raised before deciding it).

Harmless releases keep the circuit:

- ``noise``: Gaussian noise on every trained weight, 1e-3 of each tensor's RMS (frozen weights stay 0);
- ``finetune``: 10-50 AdamW steps at a learning rate of 1e-4 to 3e-4 on the zoo's own training
  data and loss (frozen weights stay frozen, as in the training script);
- ``irrelevant-zeroed``: components no claim uses, zeroed. greater-than: the output weights of a
  subset of the layer-1 heads 1.1-1.3 (the suite claims layer-1 attention is irrelevant; head 1.0
  is kept because the steering claims use it, see ``zero_layer1_heads``); induction: every
  remaining weight of the dead heads 0.1-0.3 and of the MLPs' LayerNorms (its only non-circuit
  parts: they output exactly 0, so this release computes the same function with other weights).

Broken releases remove a mechanism:

- ``knockout-*``: the output weights of the circuit's heads (induction 1.0-1.3, or 0.0; greater-than
  0.1) or of MLP0 (greater-than) zeroed, on a copy noised as above;
- ``retrained-away``: fine-tuned with the task's signal removed until the behaviour is gone
  (induction: uniformly random tokens, no planted repeat, until the repeat loss is above 3.5 nats;
  greater-than: the answer's target uniform over every year, until prob_diff's clean-corrupted gap
  is below 0.2);
- ``induction-early``: the zoo checkpoint taken before the induction heads formed.

Printed (stdout): per claim, the false-alarm rate on the harmless releases of its model; per broken
kind, the detection rate of the claims whose mechanism it removed (the mapping is ``CLAIMS`` below,
read from the tests' names and docstrings); overall rates; for each gate mode. As Markdown, with
the command that produced it. Targets: false alarms at most alpha (0.05) of the claims on harmless
releases; at least 95% of the claims on a removed mechanism fail. Progress goes to stderr.

    python benchmarks/gate_error_rates.py                        # 2 releases per kind, both gates
    python benchmarks/gate_error_rates.py --releases 1 --gate evidence   # quick look
    python benchmarks/gate_error_rates.py --build-only --keep DIR        # build and check releases only

The default builds 24 releases and makes 50 suite runs, two at a time with one thread each (one run
takes 20-30 s on an otherwise idle 2-core machine, several times that while other jobs share it).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import mitest as mt
from mitest.zoo import greater_than, induction
from mitest.zoo.training import greater_than as greater_than_training
from mitest.zoo.training import induction as induction_training

ROOT = Path(__file__).resolve().parents[1]
ALPHA, DETECTION_TARGET = 0.05, 0.95
GATES = ("evidence", "prove")
NOISE = 1e-3  # relative to each weight tensor's RMS
INDUCTION_CIRCUIT = "induction circuit (heads 0.0, 1.0-1.3)"
GREATER_THAN_CIRCUIT = "greater-than circuit (head 0.1, MLP0)"

# Test function -> (model it runs on, mechanism its claims depend on or None). A claim depends on a
# circuit when it states that the circuit (or a part of it) does something: behaviour, necessity,
# sufficiency, steering. Claims that something is *irrelevant*, structural identities, and the two
# deliberately false claims do not: removing a circuit leaves them as they were.
CLAIMS: dict[str, tuple[str, str | None]] = {
    "test_the_past_does_not_read_the_future": ("induction", None),
    "test_the_model_reads_the_first_copy": ("induction", INDUCTION_CIRCUIT),
    "test_induction_heads_are_necessary": ("induction", INDUCTION_CIRCUIT),
    "test_each_induction_head_contributes": ("induction", INDUCTION_CIRCUIT),
    "test_previous_token_head_is_necessary": ("induction", INDUCTION_CIRCUIT),
    "test_the_induction_circuit_explains_the_repeat_loss": ("induction", INDUCTION_CIRCUIT),
    "test_the_previous_token_head_reaches_the_answer_through_the_keys": ("induction", INDUCTION_CIRCUIT),
    "test_the_previous_token_head_is_not_read_at_the_queries": ("induction", None),
    "test_every_head_of_the_induction_circuit_matters": ("induction", INDUCTION_CIRCUIT),
    "test_previous_token_head_is_needed_at_the_keys": ("induction", INDUCTION_CIRCUIT),
    "test_previous_token_head_is_irrelevant_at_the_queries": ("induction", None),
    "test_previous_token_head_is_needed_at_the_queries": ("induction", None),  # deliberately false
    "test_induction_heads_recover_the_answer": ("induction", INDUCTION_CIRCUIT),
    "test_the_strongest_induction_head_alone_recovers_a_share": ("induction", INDUCTION_CIRCUIT),
    "test_the_model_completes_every_repeat": ("induction", INDUCTION_CIRCUIT),
    "test_ablating_the_induction_heads_lowers_every_answer": ("induction", INDUCTION_CIRCUIT),
    "test_induction_heads_are_necessary_across_the_family": ("induction", INDUCTION_CIRCUIT),
    "test_the_model_reads_the_start_year": ("greater-than", GREATER_THAN_CIRCUIT),
    "test_the_mover_head_is_necessary": ("greater-than", GREATER_THAN_CIRCUIT),
    "test_the_mover_head_carries_the_year": ("greater-than", GREATER_THAN_CIRCUIT),
    "test_mlp0_computes_the_comparison": ("greater-than", GREATER_THAN_CIRCUIT),
    "test_layer1_attention_is_irrelevant": ("greater-than", None),
    "test_the_mover_and_mlp0_beat_random_circuits": ("greater-than", GREATER_THAN_CIRCUIT),
    "test_knocking_out_the_mover_and_mlp0_hurts_more_than_random_pairs": ("greater-than", GREATER_THAN_CIRCUIT),
    "test_neuron_167_is_necessary": ("greater-than", GREATER_THAN_CIRCUIT),
    "test_the_later_year_direction_is_necessary": ("greater-than", GREATER_THAN_CIRCUIT),
    "test_a_random_direction_is_irrelevant": ("greater-than", None),
    "test_steering_towards_later_years_raises_the_predicted_year": ("greater-than", GREATER_THAN_CIRCUIT),
    "test_one_unit_of_steering_moves_the_year_by_at_least_five": ("greater-than", GREATER_THAN_CIRCUIT),
    "test_the_top_prediction_is_always_the_next_year": ("greater-than", None),  # deliberately false
}


# -- releases --------------------------------------------------------------------------------------


@dataclass
class Release:
    """One candidate model directory and what was done to build it."""

    name: str  # e.g. "induction/noise-1"
    model: str  # the zoo model it replaces: "induction" or "greater-than"
    kind: str
    harmless: bool
    removed: str | None  # the mechanism a broken release removed
    detail: str = ""
    check: str = ""  # behaviour measured on the saved release
    path: Path = Path()


@dataclass(frozen=True)
class Kind:
    model: str
    name: str
    harmless: bool
    build: Callable[[torch.nn.Module, np.random.Generator, int], str]  # changes the model, returns detail
    seeded: bool = True  # False: one release only (the build does not depend on the seed)
    start: str | None = None  # zoo checkpoint to start from (default: the model itself)

    @property
    def removed(self) -> str | None:
        if self.harmless:
            return None
        return INDUCTION_CIRCUIT if self.model == "induction" else GREATER_THAN_CIRCUIT


def _generator(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(2**62)))


def _trainable(model: str, name: str, parameter: torch.Tensor) -> torch.Tensor | None:
    """Which entries of a parameter the zoo's training script trains (None: frozen)."""
    if model == "induction":
        if ".mlp." in name:
            return None
        if name == "transformer.h.0.attn.c_proj.weight":  # rows: the heads' z; heads 0.1-0.3 frozen at 0
            mask = torch.zeros_like(parameter, dtype=torch.bool)
            mask[: induction.HEAD_DIM] = True
            return mask
    return torch.ones_like(parameter, dtype=torch.bool)


def add_noise(hf_model: torch.nn.Module, model: str, generator: torch.Generator, scale: float = NOISE) -> None:
    """Gaussian noise on every trained weight, ``scale`` times the RMS of its tensor's trained entries."""
    with torch.no_grad():
        for name, parameter in hf_model.named_parameters():
            mask = _trainable(model, name, parameter)
            if mask is None or not bool(mask.any()):
                continue
            rms = parameter[mask].pow(2).mean().sqrt()
            noise = torch.randn(parameter.shape, generator=generator) * scale * rms
            parameter.add_(noise * mask)


def _freeze_like_training(hf_model: torch.nn.Module, model: str) -> list[torch.nn.Parameter]:
    """Freeze what the training script froze; returns the parameters to optimise."""
    if model == "induction":
        for block in hf_model.transformer.h:
            for parameter in block.mlp.parameters():
                parameter.requires_grad_(False)
        hf_model.transformer.h[0].attn.c_proj.weight.register_hook(induction_training.only_first_head)
    return [parameter for parameter in hf_model.parameters() if parameter.requires_grad]


def _optimise(
    hf_model: torch.nn.Module,
    model: str,
    lr: float,
    loss: Callable[[torch.nn.Module], torch.Tensor],
    steps: int,
    stop: Callable[[torch.nn.Module], bool] | None = None,
    every: int = 10,
) -> int:
    """AdamW (weight decay 0.01, as in training) for ``steps`` steps, or until ``stop`` (checked
    every ``every`` steps); returns the steps taken."""
    optimizer = torch.optim.AdamW(_freeze_like_training(hf_model, model), lr=lr, weight_decay=0.01)
    hf_model.train()
    step = 0
    for step in range(1, steps + 1):
        value = loss(hf_model)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        if stop is not None and step % every == 0:
            hf_model.eval()
            done = stop(hf_model)
            hf_model.train()
            if done:
                break
    hf_model.eval()
    for parameter in hf_model.parameters():
        parameter.requires_grad_(True)
    return step


def noise(hf_model: torch.nn.Module, rng: np.random.Generator, index: int, *, model: str) -> str:
    add_noise(hf_model, model, _generator(rng))
    return f"relative {NOISE:g} Gaussian noise"


def finetune(hf_model: torch.nn.Module, rng: np.random.Generator, index: int, *, model: str) -> str:
    """A few low-learning-rate AdamW steps on the task's own training data and loss."""
    lr = float(np.exp(rng.uniform(np.log(1e-4), np.log(3e-4))))
    steps = int(rng.integers(10, 51))
    data = _generator(rng)
    if model == "induction":

        def loss(m: torch.nn.Module) -> torch.Tensor:
            tokens = induction_training.training_tokens(64, data)
            return m(tokens, labels=tokens).loss
    else:

        def loss(m: torch.nn.Module) -> torch.Tensor:
            return sum(greater_than_training.losses(m, *greater_than_training.batch(256, data)).values())

    _optimise(hf_model, model, lr, loss, steps)
    return f"{steps} AdamW steps, lr {lr:.2g}"


def _zero_head_outputs(hf_model: torch.nn.Module, layer: int, heads: Iterable[int]) -> None:
    d_head = hf_model.config.n_embd // hf_model.config.n_head
    with torch.no_grad():
        for head in heads:
            hf_model.transformer.h[layer].attn.c_proj.weight[head * d_head : (head + 1) * d_head] = 0.0


def zero_dead_induction_parts(hf_model: torch.nn.Module, rng: np.random.Generator, index: int) -> str:
    """Zero the query, key and value weights of heads 0.1-0.3 (their output weights are 0 already)
    and the MLPs' LayerNorms (the MLPs are 0): nothing the model computes changes."""
    d_model, d_head = hf_model.config.n_embd, induction.HEAD_DIM
    with torch.no_grad():
        attention = hf_model.transformer.h[0].attn.c_attn
        for part in range(3):  # q, k, v
            columns = slice(part * d_model + d_head, (part + 1) * d_model)
            attention.weight[:, columns] = 0.0
            attention.bias[columns] = 0.0
        for block in hf_model.transformer.h:
            block.ln_2.weight.zero_()
            block.ln_2.bias.zero_()
    return "Q/K/V weights of heads 0.1-0.3 and the MLP LayerNorms zeroed"


IRRELEVANT_LAYER1_HEADS = (1, 2, 3)


def zero_layer1_heads(hf_model: torch.nn.Module, rng: np.random.Generator, index: int) -> str:
    """Zero the output weights of some of greater-than's layer-1 heads 1.1-1.3: all three for the
    first release, then random non-empty subsets (seeded). The suite claims layer-1 attention is
    irrelevant to prob_diff; head 1.0 is left alone because the steering claims use it (zeroing it
    lowers the year moved by one unit of steering from 13.0 to 11.6, most of the gate's margin)."""
    heads = list(IRRELEVANT_LAYER1_HEADS)
    if index > 0:
        heads = sorted(int(h) for h in rng.choice(heads, size=int(rng.integers(1, len(heads))), replace=False))
    _zero_head_outputs(hf_model, 1, heads)
    return "output weights of heads " + ", ".join(f"1.{h}" for h in heads) + " zeroed"


def knockout(what: str) -> Callable[..., str]:
    """Noise the model (as ``noise``), then zero the output weights of ``what``."""
    layer, heads, model = {
        "induction heads": (1, range(4), "induction"),
        "previous-token head": (0, [0], "induction"),
        "mover head": (0, [1], "greater-than"),
        "MLP0": (0, None, "greater-than"),
    }[what]

    def build(hf_model: torch.nn.Module, rng: np.random.Generator, index: int) -> str:
        add_noise(hf_model, model, _generator(rng))
        if heads is None:
            with torch.no_grad():
                hf_model.transformer.h[layer].mlp.c_proj.weight.zero_()
                hf_model.transformer.h[layer].mlp.c_proj.bias.zero_()
            zeroed = "MLP0's output weights and bias"
        else:
            _zero_head_outputs(hf_model, layer, heads)
            zeroed = "output weights of heads " + ", ".join(f"{layer}.{h}" for h in heads)
        return f"{zeroed} zeroed, on relative {NOISE:g} noise"

    return build


INDUCTION_HELD_OUT = induction.repeated(256, seed=2)  # the training script's held-out set


def retrain_induction_away(hf_model: torch.nn.Module, rng: np.random.Generator, index: int) -> str:
    """Fine-tune on uniformly random tokens (no planted repeat, so induction only hurts) until the
    repeat loss exceeds 3.5 nats (log 64 = 4.16; the reference model: 0.71)."""
    data = _generator(rng)

    def loss(m: torch.nn.Module) -> torch.Tensor:
        tokens = torch.randint(0, induction.BOS, (64, induction.CONTEXT), generator=data)
        tokens[:, 0] = induction.BOS
        return m(tokens, labels=tokens).loss

    def gone(m: torch.nn.Module) -> bool:
        return induction_training.repeat_loss(m, INDUCTION_HELD_OUT) > 3.5

    steps = _optimise(hf_model, "induction", 1e-3, loss, 2000, stop=gone, every=10)
    return f"{steps} AdamW steps (lr 0.001) on random tokens without planted repeats"


def retrain_greater_than_away(hf_model: torch.nn.Module, rng: np.random.Generator, index: int) -> str:
    """Fine-tune with the answer's target uniform over every year until prob_diff's gap is below 0.2."""
    data = _generator(rng)
    years = greater_than.prompt_sets(mt.Model.load(mt.zoo.path("greater-than")))["years"]

    def loss(m: torch.nn.Module) -> torch.Tensor:
        tokens, target = greater_than_training.batch(256, data)
        target = torch.zeros_like(target)
        target[:, greater_than.FIRST_YEAR_ID :] = 1.0 / len(greater_than.YEARS)
        return sum(greater_than_training.losses(m, tokens, target).values())

    def gone(m: torch.nn.Module) -> bool:
        clean, corrupted = _prob_diffs(m, years)
        return clean - corrupted < 0.2

    steps = _optimise(hf_model, "greater-than", 1e-3, loss, 2000, stop=gone, every=5)
    return f"{steps} AdamW steps (lr 0.001) with the answer uniform over every year"


def checkpoint(hf_model: torch.nn.Module, rng: np.random.Generator, index: int) -> str:
    return "the zoo's induction-early checkpoint (step 1,000 of 4,000), unchanged"


def _bind(function: Callable[..., str], model: str) -> Callable[..., str]:
    return lambda hf_model, rng, index: function(hf_model, rng, index, model=model)


KINDS = (
    Kind("induction", "noise", True, _bind(noise, "induction")),
    Kind("induction", "finetune", True, _bind(finetune, "induction")),
    Kind("induction", "irrelevant-zeroed", True, zero_dead_induction_parts, seeded=False),
    Kind("greater-than", "noise", True, _bind(noise, "greater-than")),
    Kind("greater-than", "finetune", True, _bind(finetune, "greater-than")),
    Kind("greater-than", "irrelevant-zeroed", True, zero_layer1_heads),
    Kind("induction", "knockout-induction-heads", False, knockout("induction heads")),
    Kind("induction", "knockout-previous-token-head", False, knockout("previous-token head")),
    Kind("induction", "retrained-away", False, retrain_induction_away),
    Kind("induction", "induction-early", False, checkpoint, seeded=False, start="induction-early"),
    Kind("greater-than", "knockout-mover-head", False, knockout("mover head")),
    Kind("greater-than", "knockout-mlp0", False, knockout("MLP0")),
    Kind("greater-than", "retrained-away", False, retrain_greater_than_away),
)


def _prob_diffs(hf_model: torch.nn.Module, years: mt.Prompts) -> tuple[float, float]:
    with torch.no_grad():
        clean = greater_than.prob_diff(hf_model(years.tokens).logits, years).mean()
        corrupted = greater_than.prob_diff(hf_model(years.corrupted.tokens).logits, years).mean()
    return float(clean), float(corrupted)


def behaviour(model: mt.Model, name: str) -> tuple[float, str]:
    """The task's behaviour measured on a loaded release: induction's repeat loss on the held-out
    prompts (lower is better), greater-than's prob_diff gap between clean and corrupted prompts."""
    if name == "induction":
        value = induction_training.repeat_loss(model.hf_model, INDUCTION_HELD_OUT)
        return value, f"repeat loss {value:.3f}"
    clean, corrupted = _prob_diffs(model.hf_model, greater_than.prompt_sets(model)["years"])
    return clean - corrupted, f"prob_diff {clean:.3f} (corrupted {corrupted:.3f})"


def _behaves(kind: Kind, value: float, reference: float) -> bool:
    """Harmless releases keep the behaviour; broken ones mostly lose it (a sanity check only)."""
    if kind.model == "induction":
        return abs(value - reference) < 0.1 if kind.harmless else value > 2.0
    return abs(value - reference) < 0.05 if kind.harmless else value < 0.5


def save_release(hf_model: torch.nn.Module, start: str, directory: Path) -> mt.Model:
    """Copy the zoo model's folder (config, tokenizer files), write the changed weights as
    safetensors, and load the result back with ``mt.Model.load`` to check it."""
    source = mt.zoo.path(start)
    shutil.copytree(source, directory, ignore=shutil.ignore_patterns("README.md", "training.json"))
    with safe_open(source / "model.safetensors", "pt") as original:
        keys = set(original.keys())
    state = {key: value.detach().clone().contiguous() for key, value in hf_model.state_dict().items() if key in keys}
    missing = keys - set(state)
    if missing:
        raise RuntimeError(f"the release lacks weights {sorted(missing)}")
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    loaded = mt.Model.load(directory)
    for key, value in loaded.hf_model.state_dict().items():
        if key in state and not torch.equal(value, state[key]):
            raise RuntimeError(f"{directory}: {key} did not load back as saved")
    return loaded


def build_releases(per_kind: int, seed: int, folder: Path) -> list[Release]:
    """``per_kind`` releases of every seeded kind and one of each other, saved under ``folder``."""
    rng = np.random.default_rng(seed)
    references = {name: behaviour(mt.Model.load(mt.zoo.path(name)), name) for name in ("induction", "greater-than")}
    for name, (_, shown) in references.items():
        _log(f"reference {name}: {shown}")
    releases = []
    for kind in KINDS:
        for index in range(per_kind if kind.seeded else 1):
            release_rng = np.random.default_rng(rng.integers(2**62))  # each release's own stream
            hf_model = copy.deepcopy(mt.Model.load(mt.zoo.path(kind.start or kind.model)).hf_model)
            torch.manual_seed(int(release_rng.integers(2**62)))
            detail = kind.build(hf_model, release_rng, index)
            name = f"{kind.model}/{kind.name}" + (f"-{index + 1}" if kind.seeded else "")
            path = folder / name.replace("/", "--")
            value, shown = behaviour(save_release(hf_model, kind.start or kind.model, path), kind.model)
            release = Release(name, kind.model, kind.name, kind.harmless, kind.removed, detail, shown, path)
            if not _behaves(kind, value, references[kind.model][0]):
                release.check += " (!)"
                _log(f"WARNING: {name} does not behave as a {'harmless' if kind.harmless else 'broken'} release")
            _log(f"built {name}: {detail}; {release.check}")
            releases.append(release)
    return releases


# -- suite runs ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the gate did with one suite run."""

    claims: dict[str, dict] = field(default_factory=dict)  # claim id -> record (or undecided entry)
    failed: set[str] = field(default_factory=set)  # claim ids the gate failed
    statuses: dict[str, str] = field(default_factory=dict)  # claim id -> baseline status
    exit_code: int = 0
    seconds: float = 0.0


def _claim_id(entry: dict) -> str:
    """A claim's key in the baseline (``key`` in records), else its test and index."""
    return str(entry.get("key") or f"{entry['test']}::{entry.get('name') or entry['index']}")


def suite_command(release: Release | None, gate: str, report_dir: Path) -> list[str]:
    command = [sys.executable, "-m", "pytest", "hypotheses", "-p", "no:cacheprovider", "-q"]
    command += ["--mitest-report-dir", str(report_dir), f"--mitest-gate={gate}"]
    if release is not None:
        command += ["--mitest-model", f"{release.model}={release.path}"]
    return command


def run_suite(release: Release | None, gate: str, report_dir: Path, threads: int | None) -> Outcome:
    """One suite run (a subprocess from the repository root) and its run.json."""
    env = {**os.environ, "CI": "true"}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    started = time.perf_counter()
    done = subprocess.run(
        suite_command(release, gate, report_dir), cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    seconds = time.perf_counter() - started
    run_file = report_dir / "run.json"
    if done.returncode not in (0, 1) or not run_file.is_file():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise RuntimeError(f"suite run for {release.name if release else 'reference'} ({gate}) failed:\n{tail}")
    return read_run(run_file, done.returncode, seconds)


def read_run(run_file: Path, exit_code: int = 0, seconds: float = 0.0) -> Outcome:
    """The claims of a run.json and which of them failed the gate."""
    run = json.loads(run_file.read_text(encoding="utf-8"))
    ci = run.get("settings", {}).get("profile") == "ci"
    outcome = Outcome(exit_code=exit_code, seconds=seconds)
    for record in run["claims"]:
        claim, status = _claim_id(record), (record.get("baseline") or {}).get("status", "")
        outcome.claims[claim], outcome.statuses[claim] = record, status
        if status in ("regressed", "error") or (ci and status in ("new", "changed")):
            outcome.failed.add(claim)
    for entry in run.get("undecided", []):
        claim = _claim_id(entry)
        outcome.claims.setdefault(claim, entry)
        outcome.statuses[claim] = "undecided"
        outcome.failed.add(claim)
    return outcome


def gate_option_exists() -> bool:
    found = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    return "--mitest-gate" in found.stdout and "--mitest-model" in found.stdout


# -- rates -----------------------------------------------------------------------------------------


def claim_info(record: dict) -> tuple[str, str | None]:
    """(model, mechanism) of a claim; a test missing from CLAIMS gets its model from its file name."""
    function = str(record["test"]).split("::")[-1]
    if function in CLAIMS:
        return CLAIMS[function]
    _log(f"WARNING: {record['test']} is not in CLAIMS; counted as depending on no mechanism")
    return ("greater-than" if "greater_than" in str(record["test"]) else "induction"), None


@dataclass
class Tally:
    """Which claims the gate failed, per (release, gate), with the claims each release is judged on."""

    releases: list[Release]
    outcomes: dict[tuple[str, str], Outcome]
    claims: list[str]  # claims that held in the baseline (the reference run), in table order
    info: dict[str, tuple[str, str | None]]  # claim -> (model, mechanism)
    labels: dict[str, str]

    def judged(self, release: Release) -> list[str]:
        """A harmless release's claims: every claim on its model; a broken one's: those on the
        mechanism it removed."""
        model = [c for c in self.claims if self.info[c][0] == release.model]
        return model if release.harmless else [c for c in model if self.info[c][1] == release.removed]

    def others(self, release: Release) -> list[str]:
        return [c for c in self.claims if self.info[c][0] == release.model and c not in self.judged(release)]

    def failed(self, release: Release, gate: str, claim: str) -> bool:
        return claim in self.outcomes[(release.name, gate)].failed

    def rate(self, releases: Iterable[Release], gate: str, claims: Callable[[Release], list[str]]) -> str:
        pairs = [(r, c) for r in releases for c in claims(r)]
        return _rate(sum(self.failed(r, gate, c) for r, c in pairs), len(pairs))

    def runs_failing(self, releases: list[Release], gate: str) -> str:
        return _rate(sum(bool(self.outcomes[(r.name, gate)].failed) for r in releases), len(releases))


def tally(releases: list[Release], outcomes: dict[tuple[str, str], Outcome], reference: Outcome) -> Tally:
    claims = [claim for claim, record in reference.claims.items() if record.get("outcome") == "HOLDS"]
    claims.sort(key=lambda c: (str(reference.claims[c]["test"]), c))
    tests = [str(reference.claims[c]["test"]) for c in claims]
    labels = {}
    for claim, test in zip(claims, tests, strict=True):
        label = test.removeprefix("hypotheses/").replace(".py::", "::")
        labels[claim] = label + (f" [{claim.rsplit('::', 1)[-1]}]" if tests.count(test) > 1 else "")
    info = {claim: claim_info(reference.claims[claim]) for claim in claims}
    return Tally(releases, outcomes, claims, info, labels)


def _rate(hits: int, total: int) -> str:
    return f"{hits / total:.1%} ({hits}/{total})" if total else "n/a"


def _short(mechanism: str | None) -> str:
    return mechanism.split(" (")[0] if mechanism else "none"


def claim_table(t: Tally, gates: tuple[str, ...]) -> list[str]:
    """Per claim: false alarms on its model's harmless releases, detection on the broken releases
    that removed its mechanism."""
    harmless = [r for r in t.releases if r.harmless]
    broken = [r for r in t.releases if not r.harmless]
    lines = [
        "| claim | model | depends on | "
        + " | ".join([f"false alarms ({g})" for g in gates] + [f"detected ({g})" for g in gates])
        + " |",
        "| --- | --- | --- |" + " ---: |" * (2 * len(gates)),
    ]
    for claim in t.claims:
        model, mechanism = t.info[claim]
        mine = [r for r in harmless if r.model == model]
        hits = [r for r in broken if mechanism is not None and r.removed == mechanism]
        cells = [t.rate(mine, g, lambda r, c=claim: [c]) for g in gates]
        cells += [t.rate(hits, g, lambda r, c=claim: [c]) if mechanism else "" for g in gates]
        lines.append(f"| `{t.labels[claim]}` | {model} | {_short(mechanism)} | " + " | ".join(cells) + " |")
    overall = [t.rate(harmless, g, t.judged) for g in gates] + [t.rate(broken, g, t.judged) for g in gates]
    lines.append("| **all claims** | | | " + " | ".join(f"**{cell}**" for cell in overall) + " |")
    return lines


def kind_table(t: Tally, gates: tuple[str, ...]) -> list[str]:
    """Per release kind: the share of its judged claims that failed (false alarms on harmless
    releases, detections on broken ones), the share of its suite runs that failed CI, and the
    other claims of its model that failed on broken releases."""
    lines = [
        "| release kind | releases | claims judged per release | "
        + " | ".join([f"claims failed ({g})" for g in gates] + [f"runs failing CI ({g})" for g in gates])
        + " | other claims failed |",
        "| --- | ---: | ---: |" + " ---: |" * (2 * len(gates) + 1),
    ]
    groups: dict[str, list[Release]] = {}
    for release in t.releases:
        groups.setdefault(f"{release.model} {release.kind}", []).append(release)
    for harmless in (True, False):
        for group, members in groups.items():
            if members[0].harmless != harmless:
                continue
            what = "harmless: failures are false alarms" if harmless else f"removes the {_short(members[0].removed)}"
            cells = [t.rate(members, g, t.judged) for g in gates] + [t.runs_failing(members, g) for g in gates]
            other = "" if harmless else "; ".join(f"{g}: {t.rate(members, g, t.others)}" for g in gates)
            lines.append(
                f"| {group} ({what}) | {len(members)} | {len(t.judged(members[0]))} | "
                + " | ".join(cells)
                + f" | {other} |"
            )
        members = [r for r in t.releases if r.harmless == harmless]
        cells = [t.rate(members, g, t.judged) for g in gates] + [t.runs_failing(members, g) for g in gates]
        label = "**all harmless releases**" if harmless else "**all broken releases**"
        lines.append(f"| {label} | {len(members)} | | " + " | ".join(f"**{c}**" for c in cells) + " | |")
    return lines


def _why(outcome: Outcome, claim: str) -> str:
    """A claim's baseline status, with its verdict now when the verdict is what changed."""
    status, record = outcome.statuses.get(claim, "?"), outcome.claims.get(claim, {})
    verdict = record.get("outcome")
    old = (record.get("baseline") or {}).get("old_outcome")
    return f"{status}: {old} -> {verdict}" if verdict and old and verdict != old else status


def misses(t: Tally, gates: tuple[str, ...]) -> list[str]:
    """Each false alarm and missed detection, and every other claim that failed a run, by release."""
    lines = []
    for gate in gates:
        for release in t.releases:
            outcome = t.outcomes[(release.name, gate)]
            judged = t.judged(release)

            def shown(claims: list[str], outcome: Outcome = outcome) -> str:
                return ", ".join(f"`{t.labels.get(c, c)}` ({_why(outcome, c)})" for c in claims)

            parts = []
            if release.harmless and outcome.failed & set(judged):
                parts.append("false alarms: " + shown([c for c in judged if c in outcome.failed]))
            if not release.harmless and set(judged) - outcome.failed:
                parts.append("missed: " + shown([c for c in judged if c not in outcome.failed]))
            other = sorted(outcome.failed - set(judged))
            if other:
                parts.append("other claims failed: " + shown(other))
            if parts:
                lines.append(f"- {gate}, `{release.name}`: " + "; ".join(parts))
    return lines or ["- none"]


def source_fingerprint() -> str:
    """A hash of the code and baselines the suite runs (to notice a checkout that changed mid-run)."""
    digest = hashlib.sha256()
    for path in sorted([ROOT / "conftest.py", *ROOT.glob("mitest/**/*.py"), *ROOT.glob("hypotheses/**/*.*")]):
        if path.is_file() and path.suffix in (".py", ".json"):
            digest.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--releases", type=int, default=2, help="releases of each seeded kind (default 2)")
    parser.add_argument("--gate", choices=(*GATES, "both"), default="both", help="gate mode(s) to measure")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--jobs", type=int, default=2, help="suite runs at once, one thread each (default 2)")
    parser.add_argument("--keep", type=Path, help="build releases and reports here and keep them")
    parser.add_argument("--build-only", action="store_true", help="build and check the releases, run no suite")
    args = parser.parse_args()
    if args.releases < 1 or args.jobs < 1:
        parser.error("--releases and --jobs must be at least 1")
    gates = GATES if args.gate == "both" else (args.gate,)
    if not args.build_only and not gate_option_exists():
        parser.error("this mitest's pytest plugin has no --mitest-gate / --mitest-model options")

    started, fingerprint = time.perf_counter(), source_fingerprint()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="mitest-gate-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        releases = build_releases(args.releases, args.seed, folder / "releases")
        if args.build_only:
            for release in releases:
                print(f"- `{release.name}`: {release.detail}; {release.check}")
            return
        jobs = [(None, gate) for gate in gates] + [(r, gate) for gate in gates for r in releases]
        threads = 1 if args.jobs > 1 else None

        def one(job: tuple[Release | None, str]) -> Outcome:
            release, gate = job
            name = release.name if release else "reference"
            outcome = run_suite(release, gate, folder / "reports" / gate / name.replace("/", "--"), threads)
            _log(
                f"[{time.perf_counter() - started:6.0f}s] {gate:8} {name:45} exit {outcome.exit_code}, "
                f"{len(outcome.failed)} claims failed the gate ({outcome.seconds:.0f}s)"
            )
            return outcome

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(one, jobs))
    references = {gate: results[i] for i, gate in enumerate(gates)}
    outcomes = {(r.name, g): o for (r, g), o in zip(jobs[len(gates) :], results[len(gates) :], strict=True) if r}
    minutes = (time.perf_counter() - started) / 60

    command = shlex.join(["python", "benchmarks/gate_error_rates.py", *sys.argv[1:]])
    print(
        f"Measured with `{command}`: {len(releases)} releases ({sum(r.harmless for r in releases)} harmless), "
        f"{len(jobs)} runs of the bundled suite (`CI=true python -m pytest hypotheses --mitest-model NAME=RELEASE "
        f"--mitest-gate=GATE`, the release replacing one zoo model), {minutes:.1f} min on {os.cpu_count()} CPU "
        f"cores. Alpha {ALPHA}, margin and everything else at their defaults.\n"
    )
    if source_fingerprint() != fingerprint:
        print("WARNING: mitest/, hypotheses/ or conftest.py changed during the measurement; the runs mix versions.\n")
    for gate, reference in references.items():
        if reference.failed:
            print(f"WARNING: the unchanged models already fail {len(reference.failed)} claims under the {gate} gate:")
            print("".join(f"- {claim}\n" for claim in sorted(reference.failed)))
    t = tally(releases, outcomes, references[gates[0]])
    print("\n".join(claim_table(t, gates)))
    print()
    print("\n".join(kind_table(t, gates)))
    print(
        f"\nTargets: false alarms at most {ALPHA:.0%} of the claims on harmless releases; at least "
        f"{DETECTION_TARGET:.0%} of the claims on a removed mechanism fail. Only claims that held in the baseline "
        "are counted. A claim's false alarms are counted on the harmless releases of its own model, its "
        "detections on the broken releases that removed the mechanism it depends on; claims that depend on "
        "none (irrelevance, structure) count only as false alarms. A claim fails the gate when run.json gives "
        "its baseline status as regressed (or error, or new/changed under the ci profile) or lists it as undecided."
    )
    print("\nFalse alarms, missed detections and other failing claims (baseline status in run.json):\n")
    print("\n".join(misses(t, gates)))
    print("\nReleases:\n")
    for release in releases:
        print(f"- `{release.name}` ({'harmless' if release.harmless else 'broken'}): {release.detail}; {release.check}")


if __name__ == "__main__":
    main()
