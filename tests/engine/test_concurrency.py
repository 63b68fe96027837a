"""Several threads measuring one model: each run is serialised on the model, so every number equals
the serial run's, and the model is left as the user had it (no hook, training flags, attention)."""

from __future__ import annotations

import functools
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mitest as mt
from tests.builders import build, hooks_left, random_prompts

pytestmark = pytest.mark.usefixtures("one_thread")

INTERVENTIONS = (
    mt.ablate(mt.heads("0.1", "1.2", kind="pattern")),
    mt.patch(mt.head(1, 0)),
    mt.ablate(mt.mlp(0), method="mean"),
    mt.patch(mt.resid(1, "pre")),
)


def _fresh() -> tuple[mt.Model, mt.Prompts]:
    hf = build("gpt2").train()  # the user's model is in training mode; runs must not change that
    return mt.Model.from_hf(hf), random_prompts(n=8)


def _attention(model: mt.Model) -> list[str | None]:
    return [getattr(m.config, "_attn_implementation", None) for m in model.hf_model.modules() if hasattr(m, "config")]


def _in_threads(model: mt.Model, prompts: mt.Prompts, interventions, rounds: int = 1) -> list[np.ndarray]:
    """Each intervention measured ``rounds`` times in its own thread, all starting at one barrier."""
    barrier = threading.Barrier(len(interventions))
    results: list[list[np.ndarray]] = [[] for _ in interventions]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(rounds):
                barrier.wait()
                effect = mt.measure(model, prompts, interventions[i], metric=mt.metrics.logit_diff, batch_size=3)
                results[i].append(effect.intervened)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(interventions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return [values for per in results for values in per]


def test_threads_on_one_model_give_serial_numbers_and_leave_it_as_it_was():
    model, prompts = _fresh()
    attention = _attention(model)
    serial = [mt.measure(model, prompts, iv, metric=mt.metrics.logit_diff).intervened for iv in INTERVENTIONS]
    model.cache.clear()  # the threads compute their clean runs, captures and means themselves
    rounds = 5
    got = _in_threads(model, prompts, INTERVENTIONS, rounds)
    for i, values in enumerate(got):
        np.testing.assert_array_equal(values, serial[i // rounds], err_msg=f"{INTERVENTIONS[i // rounds]}")
    assert hooks_left(model.hf_model) == []
    assert all(m.training for m in model.hf_model.modules())
    assert _attention(model) == attention


def test_threads_on_wrappers_of_one_hf_model_are_serialised_too():
    """Two mt.Model wrappers (or a bare transformers model passed to measure) share the modules."""
    hf = build("gpt2")
    prompts = random_prompts(n=8)
    serial = [
        mt.measure(mt.Model.from_hf(hf), prompts, iv, metric=mt.metrics.logit_diff).intervened for iv in INTERVENTIONS
    ]
    barrier = threading.Barrier(len(INTERVENTIONS))
    got: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        barrier.wait()
        got[i] = mt.measure(hf, prompts, INTERVENTIONS[i], metric=mt.metrics.logit_diff, batch_size=2).intervened

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(INTERVENTIONS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, values in got.items():
        np.testing.assert_array_equal(values, serial[i])
    assert len(got) == len(INTERVENTIONS)
    assert hooks_left(hf) == []


def test_a_run_inside_a_run_of_the_same_model_is_refused():
    """A metric that measures the model it is called from would see the outer run's hooks."""
    model, prompts = _fresh()

    def nested(logits, batch):
        mt.measure(model, batch, mt.ablate(mt.head(0, 0)), metric=mt.metrics.logit_diff)
        return logits[:, -1, 0]

    with pytest.raises(mt.NestedRunError, match="inside a forward pass"):
        mt.measure(model, prompts, mt.ablate(mt.head(1, 1)), metric=nested)
    assert hooks_left(model.hf_model) == []
    assert all(m.training for m in model.hf_model.modules())


POOL = (
    *INTERVENTIONS,
    mt.steer(mt.direction("blocks.0.hook_resid_post", np.linspace(-1.0, 1.0, 32)), 3.0),
    mt.ablate(mt.head(0, 2), method="resample", reference="corrupted"),
    mt.path_patch(mt.heads("0.1"), mt.heads("1.1", kind="k")),
)
SERIAL: dict[int, np.ndarray] = {}


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    chosen=st.lists(st.integers(0, len(POOL) - 1), min_size=2, max_size=4),
    batch_sizes=st.lists(st.integers(1, 8), min_size=4, max_size=4),
    cached=st.booleans(),
)
def test_any_interleaving_of_threads_gives_the_serial_numbers(chosen, batch_sizes, cached):
    """Random interventions and batch sizes in 2-4 threads started together, with or without cached
    clean runs: every thread gets the serial numbers, and the model is left as it was."""
    model, prompts = _shared()
    if not SERIAL:
        SERIAL.update(
            {i: mt.measure(model, prompts, iv, metric=mt.metrics.logit_diff).intervened for i, iv in enumerate(POOL)}
        )
    if not cached:
        model.cache.clear()
    barrier = threading.Barrier(len(chosen))
    got: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(slot: int) -> None:
        try:
            barrier.wait()
            effect = mt.measure(
                model, prompts, POOL[chosen[slot]], metric=mt.metrics.logit_diff, batch_size=batch_sizes[slot]
            )
            got[slot] = effect.intervened
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(len(chosen))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for slot, index in enumerate(chosen):
        np.testing.assert_allclose(got[slot], SERIAL[index], rtol=1e-6, atol=1e-6, err_msg=str(POOL[index]))
    assert hooks_left(model.hf_model) == []
    assert all(m.training for m in model.hf_model.modules())


@functools.cache
def _shared() -> tuple[mt.Model, mt.Prompts]:
    return _fresh()
