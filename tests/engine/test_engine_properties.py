"""Properties of the engine, checked with Hypothesis on random interventions and prompt sets.

On GPT-2 and Llama (grouped-query attention, rotary positions):

* an intervention's per-prompt values (ablations, patches, steering, their combinations and path
  patches) do not depend on the batch size or the order of the prompts;
* patching from the clean run itself is the identity (and is reported as a no-op);
* combining an intervention with a no-op (steering with ``coef=0``, or patching the embedding from
  the clean run first) changes nothing compared with the intervention alone.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

import mitest as mt
from tests.builders import VOCAB, build

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = ("gpt2", "llama")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ATOL = 1e-5


@dataclass(frozen=True)
class Catalog:
    """A model and what a strategy needs to know of its sites: components and last dimension."""

    model: mt.Model
    components: dict[str, int | None]  # heads or neurons per site (None: no component axis)
    width: dict[str, int | None]  # last dimension (None: attention patterns, it is the key length)


@functools.cache
def catalog(family: str) -> Catalog:
    model = mt.Model.from_hf(build(family))
    probe = mt.Prompts([[1, 2, 3, 4]])
    components, width = {}, {}
    for name in model.sites():
        components[name] = model.resolve(name).components
        width[name] = None if name.endswith("hook_pattern") else mt.activations(model, probe, name).shape[-1]
    return Catalog(model, components, width)


# -- strategies -----------------------------------------------------------------------------------


@st.composite
def prompt_sets(draw: st.DrawFn, twins: bool = True) -> mt.Prompts:
    """3-6 prompts of 3-8 tokens (ragged), with answers, wrong answers and corrupted twins."""
    n = draw(st.integers(3, 6))
    lengths = draw(st.lists(st.integers(3, 8), min_size=n, max_size=n))
    token = st.integers(1, VOCAB - 1)
    rows = [draw(st.lists(token, min_size=k, max_size=k)) for k in lengths]
    twins_rows = [draw(st.lists(token, min_size=k, max_size=k)) for k in lengths] if twins else None
    answers = draw(st.lists(token, min_size=n, max_size=n))
    wrong = [(a + 1) % VOCAB for a in answers]
    return mt.Prompts(rows, answers=answers, wrong=wrong, corrupted=twins_rows)


@st.composite
def sites(
    draw: st.DrawFn, cat: Catalog, n_prompts: int, min_len: int, steerable: bool = False, name: str | None = None
) -> mt.Site:
    """A site of the model (``name`` when given and usable) with optional components and positions
    valid for every prompt."""
    names = [n for n in cat.components if not (steerable and cat.width[n] is None)]
    name = name if name in names else draw(st.sampled_from(names))
    count = cat.components[name]
    index = None
    if count is not None and draw(st.booleans()):
        index = draw(st.lists(st.integers(0, count - 1), min_size=1, max_size=3))
    site = mt.site(name, index)
    if steerable:
        vector = draw(st.lists(st.floats(-1, 1, width=32), min_size=cat.width[name], max_size=cat.width[name]))
        vector[draw(st.integers(0, len(vector) - 1))] = 1.0  # never the zero vector
        site = mt.direction(site, vector)
    fixed = st.integers(-min_len, min_len - 1)
    per_prompt = st.lists(st.lists(fixed, min_size=0, max_size=2), min_size=n_prompts, max_size=n_prompts)
    positions = draw(
        st.one_of(
            st.sampled_from(["all", "last", "first_half", "second_half"]),
            fixed,
            st.lists(fixed, min_size=1, max_size=3).map(tuple),
            per_prompt,
        )
    )
    return site.at(positions)


@st.composite
def interventions(draw: st.DrawFn, cat: Catalog, prompts: mt.Prompts) -> mt.Intervention:
    """An ablation, patch from the corrupted twins, steer, or a combination of two of them.

    All are order-independent: resampling draws each prompt's own twin (``reference="corrupted"``),
    since a seeded draw among other prompts depends on their order by design.
    """
    first = draw(parts(cat, prompts))
    return first + draw(parts(cat, prompts)) if draw(st.booleans()) else first


@st.composite
def parts(draw: st.DrawFn, cat: Catalog, prompts: mt.Prompts, name: str | None = None) -> mt.Intervention:
    """One ablation, patch from the corrupted twins or steer (of site ``name`` when given)."""
    n, min_len = len(prompts), int(prompts.lengths.min())
    kind = draw(st.sampled_from(["zero", "mean", "resample", "patch", "steer"]))
    if kind == "steer":
        return mt.steer(draw(sites(cat, n, min_len, steerable=True, name=name)), coef=draw(st.floats(-3, 3)))
    site = draw(sites(cat, n, min_len, name=name))
    if kind == "patch":
        return mt.patch(site, source="corrupted")
    if kind == "mean":
        return mt.ablate(site, "mean", per_position=draw(st.booleans()))
    return mt.ablate(site, kind, reference="corrupted" if kind == "resample" else None)


@st.composite
def path_patches(draw: st.DrawFn, cat: Catalog, prompts: mt.Prompts) -> mt.PathPatch:
    """A path from a layer-0 writer to a layer-1 reader (or the logits), from the corrupted twins."""
    n_heads, min_len = cat.components["blocks.0.attn.hook_z"], int(prompts.lengths.min())
    n_kv = cat.components["blocks.1.attn.hook_k"]  # grouped-query models share key/value heads
    sender = draw(st.sampled_from(["hook_embed", mt.mlp(0), mt.heads((0, draw(st.integers(0, n_heads - 1))))]))
    kind = draw(st.sampled_from(["q", "k", "v"] + (["z"] if n_kv == n_heads else [])))
    head = draw(st.integers(0, (n_kv if kind in ("k", "v") else n_heads) - 1))
    receiver = draw(st.sampled_from([mt.mlp(1), "logits", mt.heads((1, head), kind=kind)]))
    if not isinstance(receiver, str) and draw(st.booleans()):
        receiver = receiver.at(draw(st.sampled_from(["last", -1, 0, (0, min_len - 1)])))
    return mt.path_patch(sender, receiver, source="corrupted")


def measure(cat: Catalog, prompts: mt.Prompts, intervention: mt.Intervention, **kwargs) -> mt.Effect:
    """``mt.measure`` on a fresh wrapper (no cache shared between runs), no-op warnings ignored."""
    model = mt.Model.from_hf(cat.model.hf_model)
    with warnings.catch_warnings(), refusals_rejected():
        warnings.simplefilter("ignore", mt.NoOpInterventionWarning)
        return mt.measure(model, prompts, intervention, mt.metrics.logit_diff, **kwargs)


@contextlib.contextmanager
def refusals_rejected() -> Iterator[None]:
    """A combination refused because its parts edit the same entries is not an example (see
    ``test_a_combination_is_refused_exactly_when_its_parts_meet``)."""
    try:
        yield
    except mt.InterventionError as error:
        if "edit the same entries" not in str(error):
            raise
        reject()


def permuted(intervention: mt.Intervention, order: list[int]) -> mt.Intervention:
    """The same intervention for prompts reordered by ``order``: per-prompt positions follow them."""

    def move(site: mt.Site) -> mt.Site:
        if site.positions.kind != "per_prompt":
            return site
        return site.at([list(site.positions.value[i]) for i in order])

    if isinstance(intervention, mt.Combined):
        return mt.combine(*(permuted(part, order) for part in intervention.interventions))
    if isinstance(intervention, mt.Steer):
        return mt.steer(move(intervention.direction), intervention.coef)
    if isinstance(intervention, mt.Patch):
        return mt.patch([move(site) for site in intervention.sites], intervention.source)
    if isinstance(intervention, mt.PathPatch):
        return intervention  # its positions are the same for every prompt
    return mt.ablate(
        [move(site) for site in intervention.sites],
        intervention.method,
        reference=intervention.reference,
        per_position=intervention.per_position,
    )


# -- properties -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@SETTINGS
@given(data=st.data())
def test_values_do_not_depend_on_batch_size_or_prompt_order(family, data):
    cat = catalog(family)
    prompts = data.draw(prompt_sets(), label="prompts")
    kind = interventions if data.draw(st.integers(0, 4), label="kind") else path_patches
    intervention = data.draw(kind(cat, prompts), label="intervention")
    order = data.draw(st.permutations(range(len(prompts))), label="order")
    batch = data.draw(st.integers(1, len(prompts)), label="batch_size")
    try:
        whole = measure(cat, prompts, intervention, batch_size=len(prompts))
    except mt.MetricError:  # steering far enough to overflow the logits is refused, not measured
        return
    shuffled = measure(cat, prompts[order], permuted(intervention, order), batch_size=batch)
    back = np.argsort(order)
    for name in ("clean", "intervened", "corrupted"):
        np.testing.assert_allclose(getattr(shuffled, name)[back], getattr(whole, name), rtol=1e-5, atol=ATOL)


@pytest.mark.parametrize("family", FAMILIES)
@SETTINGS
@given(data=st.data())
def test_patching_from_the_clean_run_is_the_identity(family, data):
    cat = catalog(family)
    prompts = data.draw(prompt_sets(twins=False), label="prompts")
    n, min_len = len(prompts), int(prompts.lengths.min())
    chosen = data.draw(st.lists(sites(cat, n, min_len), min_size=1, max_size=3), label="sites")
    batch = data.draw(st.integers(1, n), label="batch_size")
    model = mt.Model.from_hf(cat.model.hf_model)
    with pytest.warns(mt.NoOpInterventionWarning):
        same = mt.measure(model, prompts, mt.patch(chosen, source=prompts), mt.metrics.logit_diff, batch_size=batch)
    np.testing.assert_array_equal(same.intervened, same.clean)
    # Denoising on prompts whose corrupted twins are the clean prompts themselves.
    twins = mt.Prompts(
        [row[:k].tolist() for row, k in zip(prompts.tokens, prompts.lengths, strict=True)],
        answers=prompts.answers,
        wrong=prompts.wrong,
        corrupted=[row[:k].tolist() for row, k in zip(prompts.tokens, prompts.lengths, strict=True)],
    )
    with pytest.warns(mt.NoOpInterventionWarning):
        denoised = mt.measure(model, twins, mt.patch(chosen, source="clean"), mt.metrics.logit_diff, batch_size=batch)
    np.testing.assert_array_equal(denoised.intervened, denoised.clean)
    np.testing.assert_array_equal(denoised.corrupted, denoised.clean)


@pytest.mark.parametrize("family", FAMILIES)
@SETTINGS
@given(data=st.data())
def test_combining_with_a_no_op_changes_nothing(family, data):
    cat = catalog(family)
    prompts = data.draw(prompt_sets(), label="prompts")
    n, min_len = len(prompts), int(prompts.lengths.min())
    intervention = data.draw(interventions(cat, prompts), label="intervention")
    if data.draw(st.booleans(), label="steer with coef 0"):
        noop = mt.steer(data.draw(sites(cat, n, min_len, steerable=True), label="direction"), coef=0.0)
        combined = noop + intervention if data.draw(st.booleans(), label="no-op first") else intervention + noop
    else:  # the embedding is computed before anything else, so its clean value is the value it has
        combined = mt.patch(mt.site("hook_embed"), source=prompts) + intervention
    try:
        alone = measure(cat, prompts, intervention)
    except mt.MetricError:
        return
    with warnings.catch_warnings(record=True) as caught, refusals_rejected():
        warnings.simplefilter("always")
        together = mt.measure(mt.Model.from_hf(cat.model.hf_model), prompts, combined, mt.metrics.logit_diff)
    assert any(issubclass(w.category, mt.NoOpInterventionWarning) for w in caught)
    np.testing.assert_array_equal(together.intervened, alone.intervened)
    np.testing.assert_array_equal(together.clean, alone.clean)


def test_steering_with_coef_zero_is_allowed_and_reported_as_a_no_op():
    cat = catalog("gpt2")
    prompts = mt.Prompts([[1, 2, 3, 4], [5, 6, 7, 8]], answers=[1, 2], wrong=[3, 4])
    direction = mt.direction("blocks.0.hook_resid_post", torch.arange(32.0) - 10)
    with pytest.warns(mt.NoOpInterventionWarning, match="blocks.0.hook_resid_post"):
        effect = mt.measure(cat.model, prompts, mt.steer(direction, coef=0), mt.metrics.logit_diff)
    np.testing.assert_array_equal(effect.delta, 0.0)


def _meet(first: mt.Intervention, second: mt.Intervention, prompts: mt.Prompts) -> bool:
    """The combination rule, restated: the parts edit a common entry and do not commute."""
    a, b = (part.direction if isinstance(part, mt.Steer) else part.sites[0] for part in (first, second))
    if a.name != b.name or (a.index and b.index and not set(a.index) & set(b.index)):
        return False
    width = prompts.tokens.shape[1]
    masks = [site.positions.mask(prompts.lengths, width, prompts.index) for site in (a, b)]
    if not bool((masks[0] & masks[1]).any()):
        return False
    if isinstance(first, mt.Steer) and isinstance(second, mt.Steer):
        return False
    same = {k: v for k, v in first.to_dict().items() if k != "sites"} == {
        k: v for k, v in second.to_dict().items() if k != "sites"
    }
    return not (same and a.direction is None and b.direction is None)


@pytest.mark.parametrize("family", FAMILIES)
@SETTINGS
@given(data=st.data())
def test_a_combination_is_refused_exactly_when_its_parts_meet(family, data):
    """Two parts, often on one site: refused when they edit common entries and do not commute; else
    the same numbers in either order, and an exact repeat of a part is that part alone."""
    cat = catalog(family)
    prompts = data.draw(prompt_sets(), label="prompts")
    first = data.draw(parts(cat, prompts), label="first")
    site = first.direction if isinstance(first, mt.Steer) else first.sites[0]
    second = data.draw(parts(cat, prompts, name=site.name if data.draw(st.booleans()) else None), label="second")
    model = mt.Model.from_hf(cat.model.hf_model)

    def run(intervention):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mt.NoOpInterventionWarning)
            return mt.measure(model, prompts, intervention, mt.metrics.logit_diff).intervened

    try:
        forward = run(first + second)
    except mt.InterventionError as error:
        assert "edit the same entries" in str(error) and _meet(first, second, prompts), str(error)
        return
    except mt.MetricError:
        return
    assert not _meet(first, second, prompts)
    np.testing.assert_allclose(run(second + first), forward, atol=ATOL, rtol=ATOL)
    if not isinstance(first, mt.Steer):
        np.testing.assert_array_equal(run(first + first), run(first))


def test_a_part_at_no_positions_meets_nothing_not_even_a_part_at_all_positions():
    """Found by the property above: ablate(hook_embed) + ablate(hook_embed at no positions of any
    prompt) was refused as overlapping, although the second edits no entry."""
    cat = catalog("gpt2")
    prompts = mt.Prompts([[1, 2, 3], [4, 5, 6]], answers=[1, 2], wrong=[3, 4])
    nowhere = mt.site("hook_embed").at([[], []])
    everywhere = mt.ablate(mt.site("hook_embed"), method="mean")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mt.NoOpInterventionWarning)
        together = mt.measure(cat.model, prompts, everywhere + mt.ablate(nowhere), mt.metrics.logit_diff)
        alone = mt.measure(cat.model, prompts, everywhere, mt.metrics.logit_diff)
    np.testing.assert_array_equal(together.intervened, alone.intervened)


def test_a_zero_steer_next_to_another_steer_of_the_same_site_is_reported_as_a_no_op():
    """Found by the property above: steer(d, 1) + steer(d, 0) on one site; the zero steer changed nothing
    it was given, although the site as a whole changed."""
    cat = catalog("gpt2")
    prompts = mt.Prompts([[1, 2, 3, 4], [5, 6, 7, 8]], answers=[1, 2], wrong=[3, 4])
    direction = mt.direction("blocks.0.hook_resid_post", torch.arange(32.0) - 10)
    alone = mt.measure(cat.model, prompts, mt.steer(direction, coef=1.0), mt.metrics.logit_diff)
    with pytest.warns(mt.NoOpInterventionWarning, match="blocks.0.hook_resid_post"):
        together = mt.measure(
            cat.model, prompts, mt.steer(direction, coef=1.0) + mt.steer(direction, coef=0.0), mt.metrics.logit_diff
        )
    np.testing.assert_array_equal(together.intervened, alone.intervened)
