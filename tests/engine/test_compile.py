"""The compile table on its own: each intervention spec becomes the edits it means, before any pass runs."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import mitest as mt
from mitest.engine import compile as compile_module
from mitest.engine.compile import COMPILERS, compile_edits
from mitest.engine.measure import WHOLE_RUNS
from mitest.engine.runner import Engine
from mitest.spec import interventions
from tests.builders import build, random_prompts


def _engine() -> tuple[mt.Model, mt.Prompts, Engine]:
    model = mt.Model.from_hf(build("gpt2"))
    return model, random_prompts(n=5), Engine(model, batch_size=2)


def _value(edit, prompts: mt.Prompts, engine: Engine) -> torch.Tensor:
    """The edit's replacement for the whole prompt set's clean activation (one batch of everything)."""
    view = engine.capture(prompts, edit.point)
    return edit.value(view, prompts)


def test_every_single_edit_spec_has_a_compiler_or_a_whole_run():
    specs = {
        cls
        for cls in vars(interventions).values()
        if isinstance(cls, type)
        and issubclass(cls, interventions.Intervention)
        and cls is not interventions.Intervention
    }
    assert specs - {interventions.Combined} == set(COMPILERS) | set(WHOLE_RUNS)


def test_a_zero_ablation_compiles_to_one_zeroing_edit_per_site():
    model, prompts, engine = _engine()
    edits = compile_edits(mt.ablate(mt.heads("0.1", "1.3")), engine, prompts)
    assert [(edit.point.name, edit.site.index) for edit in edits] == [
        ("blocks.0.attn.hook_z", (1,)),
        ("blocks.1.attn.hook_z", (3,)),
    ]
    assert all(torch.count_nonzero(_value(edit, prompts, engine)) == 0 for edit in edits)


def test_a_mean_ablation_edit_holds_the_mean_over_real_tokens():
    model, prompts, engine = _engine()
    (edit,) = compile_edits(mt.ablate(mt.mlp(0), "mean", per_position=False), engine, prompts)
    clean = engine.capture(prompts, edit.point)
    real = prompts.attention_mask.bool()
    expected = clean[real].double().mean(0)
    torch.testing.assert_close(_value(edit, prompts, engine)[0, 0].double(), expected, rtol=1e-5, atol=1e-6)


def test_a_patch_edit_takes_each_prompts_row_of_the_source_run():
    model, prompts, engine = _engine()
    (edit,) = compile_edits(mt.patch(mt.resid(0, "post")), engine, prompts)
    source = engine.capture(prompts.corrupted, edit.point)
    torch.testing.assert_close(_value(edit, prompts, engine), source)


def test_a_steering_edit_adds_the_scaled_vector_and_a_combination_compiles_each_part():
    model, prompts, engine = _engine()
    vector = torch.arange(32, dtype=torch.float32)
    both = mt.steer(mt.direction(mt.resid(1, "pre"), vector), 2.0) + mt.ablate(mt.mlp(1))
    steered, ablated = compile_edits(both, engine, prompts)
    clean = engine.capture(prompts, steered.point)
    torch.testing.assert_close(_value(steered, prompts, engine), clean + 2.0 * vector)
    assert not steered.project and ablated.point.name == "blocks.1.hook_mlp_out"


def test_a_path_patch_compiles_to_edits_of_the_receivers_inputs_only():
    model, prompts, engine = _engine()
    edits = compile_edits(mt.path_patch(mt.heads("0.1"), mt.heads("1.2", kind="k")), engine, prompts)
    assert [edit.point.name for edit in edits] == ["blocks.1.attn.hook_k"]
    assert edits[0].site.index == (2,)


def _architecture_example() -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text(encoding="utf-8")
    start = text.index("**A new intervention.**")
    return text[text.index("```python\n", start) + len("```python\n") : text.index("```\n", start + 30)]


def test_the_architecture_pages_new_intervention_runs_through_measure_like_a_built_in_one(monkeypatch):
    monkeypatch.setattr(compile_module, "COMPILERS", dict(COMPILERS))  # the example's table line stays here
    example = types.ModuleType("architecture_example")  # dataclasses look their module up in sys.modules
    monkeypatch.setitem(sys.modules, example.__name__, example)
    exec(compile(_architecture_example(), "docs/architecture.md", "exec"), example.__dict__)  # noqa: S102 - our docs
    scope = example.__dict__
    model, prompts = mt.Model.from_hf(build("gpt2")), random_prompts(n=5)
    scaled = mt.measure(model, prompts, scope["Scale"](mt.mlp(0), 0.0), mt.metrics.logit_diff)
    zeroed = mt.measure(model, prompts, mt.ablate(mt.mlp(0)), mt.metrics.logit_diff)
    np.testing.assert_allclose(scaled.intervened, zeroed.intervened, rtol=1e-6)
    assert not np.allclose(scaled.intervened, scaled.clean)  # the edit reached the output
    assert scaled.hooks[0]["site"] == "blocks.0.hook_mlp_out" and scaled.hooks[0]["changed"]
    with pytest.raises(mt.InterventionError, match="factor must be a number"):
        scope["Scale"](mt.mlp(0), "half")
