"""mt.sweep equals one mt.measure per cell on every family, and its bad inputs are clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mitest as mt
from tests.builders import FAMILIES, VOCAB, build, hooks_left, random_prompts

TOLERANCE = 1e-5


def _padded_prompts() -> mt.Prompts:
    """Prompts of several lengths (padding inside a batch), with corrupted twins."""
    g = torch.Generator().manual_seed(3)
    lengths = [12, 9, 12, 7, 10, 12, 8, 11]
    tokens = [torch.randint(1, VOCAB, (k,), generator=g) for k in lengths]
    twins = [torch.randint(1, VOCAB, (k,), generator=g) for k in lengths]
    answers = torch.randint(1, VOCAB, (len(lengths),), generator=g)
    return mt.Prompts(tokens, answers=answers, wrong=(answers + 1) % VOCAB, corrupted=twins)


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request):
    return request.param, mt.Model.from_hf(build(request.param))


def _one_at_a_time(model, prompts, sweep, metric, make):
    return [mt.measure(model, prompts, make(cell.site), metric).intervened for cell in sweep.cells]


def _assert_equal_to_measure(model, prompts, template, make, metric, **options):
    with _quiet():
        sweep = mt.sweep(model, prompts, template, metric, **options)
        expected = _one_at_a_time(model, prompts, sweep, metric, make)
    got = np.stack([sweep[name].intervened for name in sweep.names])
    assert np.abs(got - np.stack(expected)).max() <= TOLERANCE
    clean = mt.measure(model, prompts, make(sweep.cells[0].site), metric).clean
    assert all(np.array_equal(sweep[name].clean, clean) for name in sweep.names)
    return sweep


class _quiet:
    """No-op cells (e.g. a dead head) warn in both paths; these tests compare values only."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", mt.NoOpInterventionWarning)

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)


@pytest.mark.parametrize("metric", [mt.metrics.logit_diff, mt.metrics.loss()], ids=["logit_diff", "loss"])
@pytest.mark.parametrize(
    "template, make",
    [
        (mt.ablate(mt.heads("*")), lambda s: mt.ablate(s)),
        (mt.ablate(mt.heads("*"), method="mean"), lambda s: mt.ablate(s, method="mean")),
        (mt.patch(mt.heads("*")), lambda s: mt.patch(s)),
        (mt.patch(mt.heads("*"), source="clean"), lambda s: mt.patch(s, source="clean")),
        (mt.ablate(mt.mlp("*")), lambda s: mt.ablate(s)),
    ],
    ids=["zero", "mean", "patch-corrupted", "patch-clean", "mlp"],
)
def test_a_sweep_equals_one_measure_per_cell_on_every_family(family_model, template, make, metric):
    _, model = family_model
    sweep = _assert_equal_to_measure(model, _padded_prompts(), template, make, metric, batch_size=3)
    assert len(sweep) == (model.dims.n_layers * model.dims.n_heads if "attn" in str(template.sites[0]) else 2)


def test_residual_positions_and_neurons_sweep_exactly(family_model):
    _, model = family_model
    prompts = random_prompts(n=6)
    residual = _assert_equal_to_measure(
        model, prompts, mt.ablate(mt.resid("*", "pre")), lambda s: mt.ablate(s), mt.metrics.logit_diff, positions="each"
    )
    assert len(residual) == model.dims.n_layers * prompts.tokens.shape[1]
    assert residual.frame()["position"].max() == prompts.tokens.shape[1] - 1
    neurons = mt.site("blocks.1.mlp.hook_post", [0, 5, 9])
    swept = _assert_equal_to_measure(model, prompts, mt.ablate(neurons), lambda s: mt.ablate(s), mt.metrics.loss())
    assert list(swept.frame()["neuron"]) == [0, 5, 9]


def test_path_patching_from_each_sender_equals_measure():
    model = mt.Model.from_hf(build("gpt2"))
    prompts = random_prompts(n=6)
    template = mt.path_patch(sender=mt.heads("0.*"), receivers=mt.heads("1.0", "1.2", kind="v"))

    def make(site):
        return mt.path_patch(sender=site, receivers=mt.heads("1.0", "1.2", kind="v"))

    sweep = _assert_equal_to_measure(model, prompts, template, make, mt.metrics.logit_diff)
    assert sweep.names == ["0.0", "0.1", "0.2", "0.3"]


def test_cells_per_pass_and_batch_size_do_not_change_the_values():
    model = mt.Model.from_hf(build("llama"))
    prompts = _padded_prompts()
    with _quiet():
        wide = mt.sweep(model, prompts, mt.ablate(mt.heads("*")), mt.metrics.logit_diff)
        narrow = mt.sweep(model, prompts, mt.ablate(mt.heads("*")), mt.metrics.logit_diff, batch_size=2, memory="150KB")
    assert np.abs(wide.deltas - narrow.deltas).max() <= TOLERANCE


def test_resample_ablation_and_heads_at_each_position_sweep_exactly():
    model = mt.Model.from_hf(build("llama"))
    prompts = random_prompts(n=8)
    template = mt.ablate(mt.heads("1.*"), method="resample", seed=4)
    _assert_equal_to_measure(
        model, prompts, template, lambda s: mt.ablate(s, method="resample", seed=4), mt.metrics.loss()
    )
    at_positions = _assert_equal_to_measure(
        model, prompts, mt.ablate(mt.heads("1.1")), lambda s: mt.ablate(s), mt.metrics.logit_diff, positions="each"
    )
    assert at_positions.names[:2] == ["1.1@0", "1.1@1"]


def test_a_forward_set_on_a_layer_survives_the_skip():
    """Wrappers that replace a layer's forward on the object (accelerate's device-map hooks) are kept."""
    hf = build("gpt2")
    model = mt.Model.from_hf(hf)
    layer = hf.transformer.h[0]
    original = layer.forward
    layer.forward = lambda *args, **kwargs: original(*args, **kwargs)
    wrapper = layer.forward
    mt.sweep(model, random_prompts(n=4), mt.ablate(mt.heads("1.*")), mt.metrics.logit_diff)
    assert vars(layer)["forward"] is wrapper


def test_lower_layers_are_skipped_and_restored():
    """A layer-1 cell never runs layer 0 (it reads the clean residual), and layer 0 runs again after."""
    hf = build("gpt2")
    model = mt.Model.from_hf(hf)
    prompts = random_prompts(n=4)
    mt.measure(model, prompts, mt.ablate(mt.heads("1.0")), mt.metrics.logit_diff)  # clean run and capture cached
    mt.sweep(model, prompts, mt.ablate(mt.heads("1.0")), mt.metrics.logit_diff)  # the capture of resid_pre 1
    calls = []
    handle = hf.transformer.h[0].attn.register_forward_hook(lambda *args: calls.append(1))
    try:
        mt.sweep(model, prompts, mt.ablate(mt.heads("1.*")), mt.metrics.logit_diff)
        assert calls == []
        mt.sweep(model, prompts, mt.ablate(mt.heads("0.1")), mt.metrics.logit_diff)
        assert calls
    finally:
        handle.remove()
    assert all("forward" not in vars(layer) for layer in hf.transformer.h)


def test_every_hook_is_removed_after_an_error_in_a_pass():
    hf = build("gpt2")
    model = mt.Model.from_hf(hf)
    prompts = random_prompts(n=4)
    calls = []

    def metric(logits, prompts):
        calls.append(1)
        if len(calls) > 1:  # the clean run passes; the sweep's pass fails
            raise RuntimeError("metric failed")
        return logits[:, -1, 0]

    with pytest.raises(RuntimeError, match="metric failed"):
        mt.sweep(model, prompts, mt.ablate(mt.heads("1.*")), metric)
    assert hooks_left(hf) == []
    assert all("forward" not in vars(layer) for layer in hf.transformer.h)


def test_an_answer_only_metric_unembeds_one_position_per_prompt():
    hf = build("gpt2")
    model = mt.Model.from_hf(hf)
    prompts = random_prompts(n=4)
    mt.sweep(model, prompts, mt.ablate(mt.heads("1.0")), mt.metrics.logit_diff)  # clean runs cached
    shapes = []
    handle = hf.lm_head.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.shape)))
    try:
        mt.sweep(model, prompts, mt.ablate(mt.heads("1.*")), mt.metrics.logit_diff)
    finally:
        handle.remove()
    assert shapes and all(shape[1] == 1 for shape in shapes)


@pytest.mark.parametrize(
    "template, options, message",
    [
        (mt.ablate([]), {}, "no cells"),
        (mt.ablate(mt.heads("5.*")), {}, "layer 5 does not exist"),
        (mt.ablate([*mt.heads("*"), mt.head(1, 0)]), {}, "overlap: 1.0"),
        (mt.ablate(mt.heads("*")), {"memory": 1000}, "too small for one cell"),
        (mt.ablate(mt.heads("*")), {"memory": "lots"}, "cannot read the memory budget"),
        (mt.ablate(mt.heads("*")), {"positions": "every"}, "positions must be None"),
        (mt.steer(mt.direction("blocks.0.hook_resid_pre", [1.0] * 32)), {}, "mt.sweep varies the sites"),
    ],
    ids=["empty", "missing-layer", "overlap", "memory", "memory-text", "positions", "steer"],
)
def test_bad_sweeps_are_clear_errors(template, options, message):
    model = mt.Model.from_hf(build("gpt2"))
    with pytest.raises(mt.MitestError, match=message):
        mt.sweep(model, random_prompts(n=4), template, mt.metrics.logit_diff, **options)


def _out_of_vocabulary() -> mt.Prompts:
    return mt.Prompts(torch.full((4, 8), 100), answers=torch.ones(4, dtype=torch.long))


@pytest.mark.parametrize(
    "template",
    [
        lambda bad: mt.ablate(mt.heads("*"), "mean", reference=bad),
        lambda bad: mt.ablate(mt.heads("*"), "resample", reference=bad),
        lambda bad: mt.patch(mt.heads("*"), source=bad),
    ],
    ids=["mean", "resample", "patch"],
)
@pytest.mark.parametrize("run", [mt.sweep, mt.attribute], ids=["sweep", "attribute"])
def test_reference_prompts_out_of_the_vocabulary_are_refused_before_any_pass(template, run):
    """Found by review: sweeps and attribution ran the reference through the model (a raw IndexError)."""
    model = mt.Model.from_hf(build("gpt2"))
    with pytest.raises(mt.PromptsError, match="out of the model's vocabulary"):
        run(model, random_prompts(n=4, seq=8), template(_out_of_vocabulary()), mt.metrics.logit_diff)


def test_a_site_missing_on_the_architecture_and_unequal_lengths_for_positions_are_refused():
    parallel = mt.Model.from_hf(build("gpt_neox"))  # parallel residual: no resid_mid
    with pytest.raises(mt.SiteError, match="no layer of this model has 'hook_resid_mid'"):
        mt.sweep(parallel, random_prompts(n=4), mt.ablate(mt.resid("*", "mid")), mt.metrics.logit_diff)
    model = mt.Model.from_hf(build("gpt2"))
    with pytest.raises(mt.SiteError, match="same length"):
        mt.sweep(model, _padded_prompts(), mt.ablate(mt.resid("*", "pre")), mt.metrics.logit_diff, positions="each")


def test_a_pattern_of_sites_in_measure_says_to_use_sweep():
    model = mt.Model.from_hf(build("gpt2"))
    with pytest.raises(mt.SiteError, match="mt.sweep expands it"):
        mt.measure(model, random_prompts(n=4), mt.ablate(mt.heads("*")), mt.metrics.logit_diff)


def test_a_cell_that_changes_nothing_warns_and_strict_raises():
    model = mt.Model.from_hf(build("gpt2"))
    prompts = random_prompts(n=4)
    template = mt.patch(mt.heads("0.*"), source=prompts)  # the clean run's own activations: no change
    with pytest.warns(mt.NoOpInterventionWarning, match="4 of 4 cells changed nothing"):
        mt.sweep(model, prompts, template, mt.metrics.logit_diff)
    with pytest.raises(mt.MitestError, match="changed nothing"):
        mt.sweep(model, prompts, template, mt.metrics.logit_diff, strict=True)


def test_a_patch_sweep_captures_its_sources_in_one_pass():
    hf = build("gpt2")
    model = mt.Model.from_hf(hf)
    prompts = random_prompts(n=4)
    passes = []
    handle = hf.transformer.wte.register_forward_hook(lambda *args: passes.append(1))
    try:
        with _quiet():
            mt.sweep(model, prompts, mt.patch(mt.heads("*"), source="clean"), mt.metrics.logit_diff)
    finally:
        handle.remove()
    # clean and corrupted metric runs, one capture of both layers' sources (not one per layer), and the
    # sweep's pass (its 8 cells share it, starting at layer 0: no residual to capture)
    assert len(passes) == 4
