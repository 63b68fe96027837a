"""Fuzzing mitest's own inputs with Hypothesis: bad input is a clear mitest error, never a crash.

The contract checked here, for site names and indices, positions, interventions, prompt sets,
baseline files and run records: every input either works and gives the right result, or raises an
``mt.MitestError`` subclass with a message; never a TypeError/IndexError/KeyError/RuntimeError from
inside torch, numpy or json, never a silently wrong result, and never a damaged file the user had.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

import mitest as mt
from mitest.cli import main as cli
from mitest.results import atomic, baseline
from mitest.results.report import ReportError, build_run, load_run, write_reports
from tests.builders import VOCAB, build

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODEL_RUNS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
N_LAYERS, N_HEADS, D_MLP = 2, 4, 128  # the GPT-2 of conftest.build("gpt2")


@functools.cache
def gpt2() -> mt.Model:
    return mt.Model.from_hf(build("gpt2"))


@functools.cache
def prompts() -> mt.Prompts:
    rows = [[5, 9, 3, 7, 2, 8], [4, 4, 6, 1, 9, 3], [7, 2, 5], [1, 3, 8, 6]]
    twins = [[6, 1, 2, 9, 3, 4], [8, 7, 1, 2, 5, 6], [9, 9, 1], [2, 7, 7, 3]]
    return mt.Prompts(rows, answers=[1, 2, 3, 4], wrong=[5, 6, 7, 8], corrupted=twins)


def attempt(call: Any) -> Any:
    """``call()``'s result, or the MitestError it raised (with a message); anything else fails the test."""
    try:
        return call()
    except mt.MitestError as error:
        assert str(error).strip(), f"{type(error).__name__} without a message"
        return error


def measured(intervention: Any, **kwargs: Any) -> Any:
    """``mt.measure`` on the shared GPT-2 and prompts (no-op warnings ignored), or its MitestError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mt.NoOpInterventionWarning)
        return attempt(lambda: mt.measure(gpt2(), prompts(), intervention, mt.metrics.logit_diff, **kwargs))


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# Values that users pass where an int belongs: ints of every size, and things that only look like one.
ANY_INDEX = st.one_of(
    st.integers(-3, 8),
    st.integers(-(2**70), 2**70),
    st.integers(0, 2**62).map(np.int64),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.none(),
)


# -- site names and indices ---------------------------------------------------------------------------


@st.composite
def site_names(draw: st.DrawFn) -> str:
    """Real site names, near misses of them (edits, other layers, unicode digits), and garbage."""
    names = gpt2().sites()
    real = draw(st.sampled_from([*names, "transformer.h.0.mlp", "lm_head"]))
    how = draw(st.sampled_from(["real", "layer", "insert", "delete", "replace", "case", "garbage"]))
    if how == "layer":
        _, _, rest = draw(st.sampled_from([n for n in names if n.startswith("blocks.")])).split(".", 2)
        layer = st.one_of(
            st.integers(-5, 5).map(str),
            st.integers(2**31, 2**80).map(str),
            st.sampled_from(["٣", "١", "²", "𝟏", "0x1", "1.0", " 1", "", "-0", "0 ", "01"]),
        )
        return f"blocks.{draw(layer)}.{rest}"
    if how == "case":
        return real.upper()
    if how == "garbage":
        return draw(st.text(max_size=30))
    if how == "real":
        return real
    i = draw(st.integers(0, len(real)))
    char = "" if how == "delete" else draw(st.characters(codec="utf-8"))
    return real[:i] + char + real[i + (how != "insert") :]  # insert, delete or replace one character


def canonical(name: str) -> str:
    """``blocks.01.x`` names the same site as ``blocks.1.x``; other names are their own."""
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isascii() and parts[1].isdigit():
        return f"blocks.{int(parts[1])}.{parts[2]}"
    return name


@FAST
@given(name=site_names())
def test_site_names_resolve_to_a_site_of_the_model_or_are_a_site_error(name):
    model = gpt2()
    point = attempt(lambda: model.resolve(name))
    valid = canonical(name) in model.sites() or name in dict(model.hf_model.named_modules()) and name != ""
    if isinstance(point, mt.MitestError):
        assert isinstance(point, mt.SiteError) and not valid
    else:
        assert valid and point.name == name, f"{name!r} resolved although it is not a site"


def test_layer_numbers_in_other_scripts_are_not_layers():
    # Regression: str.isdigit() accepts '١' (Arabic-Indic one) and '²'; int('١') is 1 and int('²')
    # raised ValueError. 'blocks.١.hook_resid_post' silently resolved to layer 1.
    for name in ("blocks.١.hook_resid_post", "blocks.².hook_resid_post", "blocks.-1.hook_resid_post"):
        with pytest.raises(mt.SiteError, match="layer must be a number"):
            gpt2().resolve(name)


@FAST
@given(layer=ANY_INDEX, index=ANY_INDEX, kind=st.sampled_from(["z", "q", "k", "v", "pattern", "Z", "zz", 3]))
# Regressions: a float or bool head was truncated to a real head; NaN, inf or text raised ValueError.
@example(layer=0, index=1.7, kind="z")
@example(layer=0, index=True, kind="z")
@example(layer=1.9, index=0, kind="z")
@example(layer=0, index=float("nan"), kind="z")
@example(layer=0, index="x", kind="z")
@example(layer=-1, index=0, kind="z")
def test_heads_are_ints_in_range_or_a_site_error(layer, index, kind):
    site = attempt(lambda: mt.head(layer, index, kind))
    valid_spec = is_int(layer) and layer >= 0 and is_int(index) and kind in ("z", "q", "k", "v", "pattern")
    assert isinstance(site, mt.SiteError) != valid_spec, f"head({layer!r}, {index!r}, {kind!r}) -> {site!r}"
    if valid_spec:
        assert site.index == (int(index),) and site.name == f"blocks.{int(layer)}.attn.hook_{kind}"
        effect = measured(mt.ablate(site))
        in_range = layer < N_LAYERS and 0 <= index < N_HEADS
        assert isinstance(effect, mt.Effect) == in_range and (in_range or isinstance(effect, mt.SiteError))


@FAST
@given(specs=st.lists(st.one_of(st.tuples(ANY_INDEX, ANY_INDEX), st.text(max_size=6)), min_size=1, max_size=4))
@example(specs=[(0, 1.5)])  # regression: read as head 0.1
@example(specs=[(True, 1)])  # regression: read as head 1.1
@example(specs=["٣.1"])  # non-ASCII digits are refused, as in site names
@example(specs=["*", "1.0"])  # wildcards (every head, every head of a layer) cover what they name
@example(specs=["1.*", "1.0", "0.2"])
def test_head_lists_keep_valid_heads_once_and_refuse_the_rest(specs):
    def parsed(spec: Any) -> tuple[Any, ...] | None:
        if isinstance(spec, str):
            if spec == "*":
                return ("*",)
            parts = spec.split(".")
            digits = [p.isascii() and p.isdigit() for p in parts]
            ok = len(parts) == 2 and digits[0] and (digits[1] or parts[1] == "*")
            return (int(parts[0]), "*" if parts[1] == "*" else int(parts[1])) if ok else None
        layer, index = spec
        return (int(layer), int(index)) if is_int(layer) and layer >= 0 and is_int(index) else None

    def covered(selections: list[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
        """What the selections cover, each head once: a wildcard absorbs the heads it names."""
        if ("*",) in selections:
            return {("*",)}
        layers = {layer for layer, head in selections if head == "*"}
        return {(layer, head) for layer, head in selections if head == "*" or layer not in layers}

    wanted = [parsed(spec) for spec in specs]
    result = attempt(lambda: mt.heads(*specs))
    if None in wanted:
        assert isinstance(result, mt.SiteError)
        return
    got = []
    for site in result:
        layer = site.name.split(".")[1]
        if site.index is None:
            got.append(("*",) if layer == "*" else (int(layer), "*"))
        else:
            got += [(int(layer), i) for i in site.index]
    assert len(got) == len(set(got)), "every head once"
    assert set(got) == covered([w for w in wanted if w is not None]), "none invented, none lost"


@FAST
@given(
    layer=ANY_INDEX,
    index=st.one_of(ANY_INDEX, st.lists(ANY_INDEX, max_size=3), st.just(torch.tensor([1, 2]))),
    make=st.sampled_from(["neurons", "site", "mlp", "attn", "resid"]),
)
# Regressions: a float index raised TypeError, layer None raised TypeError, layer 'a' ValueError,
# and a float layer was truncated.
@example(layer=0, index=1.0, make="site")
@example(layer=None, index=0, make="mlp")
@example(layer="a", index=0, make="resid")
@example(layer=1.5, index=0, make="attn")
def test_neuron_and_layer_helpers_take_ints_only(layer, index, make):
    indices = list(index) if isinstance(index, (list, torch.Tensor)) else [index]
    ints = [int(i) for i in indices] if all(is_int(i) or isinstance(i, torch.Tensor) for i in indices) else None
    if make == "neurons":
        site = attempt(lambda: mt.neurons(layer, *indices))
        valid = is_int(layer) and layer >= 0 and ints is not None
    elif make == "site":
        site = attempt(lambda: mt.site("blocks.0.mlp.hook_post", index))
        valid = index is None or (ints is not None and len(ints) > 0)
    else:
        site = attempt(lambda: getattr(mt, make)(layer))
        valid, ints = is_int(layer) and layer >= 0, None
    assert isinstance(site, mt.SiteError) != valid, f"{make}({layer!r}, {index!r}) -> {site!r}"
    if valid and ints:
        assert site.index == tuple(ints)
        effect = measured(mt.ablate(site))
        in_range = int(site.name.split(".")[1]) < N_LAYERS and all(0 <= i < D_MLP for i in ints)
        assert isinstance(effect, mt.Effect) == in_range


def direction_oracle(vector: Any) -> np.ndarray | None:
    """The vector a valid direction stores, or None when ``mt.direction`` must refuse it."""
    if isinstance(vector, (str, bytes)):
        return None
    try:
        array = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if array.size == 0 or sum(size > 1 for size in array.shape) > 1:
        return None
    flat = array.reshape(-1)
    return flat if np.isfinite(flat).all() and np.abs(flat).max() > 0 else None


@FAST
@given(
    vector=st.one_of(
        st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=40),
        st.lists(st.floats(-1e308, 1e308), min_size=32, max_size=32),
        st.lists(st.sampled_from([1e-320, -1e-310, 1e300, -1e308, 0.0]), min_size=32, max_size=32),
        st.lists(st.lists(st.floats(-2, 2), min_size=1, max_size=3), max_size=3),
        st.sampled_from(["12", "abc", b"12", None, 3.0, {1: 2}]),
    ),
)
# Regressions: huge entries made the ablation a silent no-op, tiny ones were refused as zero,
# text raised ValueError or was read as a number, and a 2-D array was flattened.
@example(vector=[1e308] * 32)
@example(vector=[1e-320] * 32)
@example(vector="abc")
@example(vector="12")
@example(vector=[[1.0, 2.0], [3.0, 4.0]])
def test_directions_are_finite_non_zero_vectors_and_work_at_any_scale(vector):
    direction = attempt(lambda: mt.direction("blocks.1.hook_resid_pre", vector))
    expected = direction_oracle(vector)
    assert isinstance(direction, mt.SiteError) == (expected is None), f"{vector!r:.80} -> {direction!r:.80}"
    if expected is not None and len(expected) == 32:
        assert direction.direction == tuple(expected)
        # Projecting a direction out acts on its unit vector, whatever the vector's scale.
        # Regression: the norm of 1e308-sized entries overflowed (the ablation became a silent no-op)
        # and a vector of 1e-320 entries was refused as zero.
        unit = mt.direction(direction, expected / np.abs(expected).max())
        with warnings.catch_warnings():
            warnings.simplefilter("error", mt.NoOpInterventionWarning)
            effect = mt.measure(gpt2(), prompts(), mt.ablate(direction), mt.metrics.logit_diff)
            reference = mt.measure(gpt2(), prompts(), mt.ablate(unit), mt.metrics.logit_diff)
        np.testing.assert_allclose(effect.intervened, reference.intervened, atol=1e-5)


# -- positions ------------------------------------------------------------------------------------

SMALL = st.integers(-9, 9)
POSITION_SPECS = st.one_of(
    st.sampled_from(["all", "last", "first_half", "second_half", "LAST", "", "first half", "all ", None]),
    SMALL,
    st.integers(-(2**70), 2**70),
    SMALL.map(np.int64),
    st.lists(SMALL, max_size=4),
    st.lists(SMALL, min_size=1, max_size=4).map(tuple),
    st.lists(st.lists(SMALL, max_size=3), min_size=1, max_size=6),
    st.lists(SMALL, min_size=1, max_size=6).map(np.array),
    st.lists(SMALL, min_size=1, max_size=6).map(torch.tensor),
    st.lists(st.one_of(SMALL, st.booleans(), st.floats(-3, 3), st.text(max_size=2)), min_size=1, max_size=3),
    st.sampled_from([True, 1.0, float("nan"), b"last", slice(0, 2), {0, 1}, {"a": 1}, range(0, 3), np.array(2)]),
    st.sampled_from([np.array([0.5, 1.5]), np.array([True, False]), np.zeros((2, 2), dtype=int)]),
)


def expected_mask(spec: Any, lengths: list[int]) -> np.ndarray | None:
    """The positions ``spec`` selects in prompts of ``lengths`` (right-padded), or None if invalid."""
    width = max(lengths)
    real = np.arange(width)[None, :] < np.array(lengths)[:, None]
    half = (np.array(lengths)[:, None] + 1) // 2
    named = {
        "all": real,
        None: real,
        "last": np.arange(width)[None, :] == np.array(lengths)[:, None] - 1,
        "first_half": np.arange(width)[None, :] < half,
        "second_half": real & (np.arange(width)[None, :] >= half),
    }
    if isinstance(spec, str) or spec is None:
        return named.get(spec)

    def ints(values: Any) -> bool:
        return all(is_int(v) for v in values)

    if is_int(spec):
        rows = [[int(spec)]] * len(lengths)
    elif isinstance(spec, (np.ndarray, torch.Tensor)):
        array = np.asarray(spec)
        if array.ndim != 1 or array.dtype.kind not in "iu" or len(array) != len(lengths):
            return None
        rows = [[int(p)] for p in array]
    elif isinstance(spec, (list, tuple, range)) and len(spec) > 0 and ints(spec):
        rows = [[int(p) for p in spec]] * len(lengths)
    elif isinstance(spec, list) and spec and all(isinstance(r, list) and ints(r) for r in spec):
        if len(spec) != len(lengths):
            return None
        rows = spec
    else:
        return None
    mask = np.zeros((len(lengths), width), dtype=bool)
    for i, (row, length) in enumerate(zip(rows, lengths, strict=True)):
        for p in row:
            q = p + length if p < 0 else p
            if not 0 <= q < length:
                return None
            mask[i, q] = True
    return mask


@FAST
@given(spec=POSITION_SPECS, lengths=st.lists(st.integers(1, 7), min_size=1, max_size=6))
@example(spec=b"last", lengths=[4, 4])  # regression: read as the positions 108, 97, 115, 116
@example(spec=[[0], [1], [2]], lengths=[4, 4])  # regression: the extra entry was ignored
def test_positions_select_exactly_the_tokens_they_name_or_are_a_positions_error(spec, lengths):
    expected = expected_mask(spec, lengths)

    def select() -> torch.Tensor:
        positions = mt.as_positions(spec)
        positions.check_count(len(lengths))
        return positions.mask(torch.tensor(lengths), max(lengths), torch.arange(len(lengths)))

    mask = attempt(select)
    if expected is None:
        assert isinstance(mask, mt.PositionsError), f"{spec!r} on {lengths} selected {mask!r}"
    else:
        assert not isinstance(mask, mt.MitestError), f"{spec!r} on {lengths}: {mask}"
        np.testing.assert_array_equal(mask.numpy(), expected)


def test_per_prompt_positions_need_one_entry_per_prompt():
    # Regression: extra per-prompt entries (positions written for another prompt set) were ignored.
    site = mt.resid(0, "post")
    for spec in ([[0]] * 5, np.zeros(5, dtype=int), [[0]] * 3):
        for intervention in (mt.ablate(site.at(spec)), mt.steer(mt.direction(site, np.ones(32)).at(spec))):
            error = measured(intervention)
            assert isinstance(error, mt.PositionsError) and "one entry per prompt" in str(error)
        with pytest.raises(mt.PositionsError, match="per prompt"):
            mt.measure(gpt2(), prompts(), mt.ablate(site), mt.metrics.loss(spec))
        with pytest.raises(mt.PositionsError, match="per prompt"):
            mt.activations(gpt2(), prompts(), site.at(spec))
    with pytest.raises(mt.PositionsError, match="bytes"):
        mt.as_positions(b"last")  # was read as the positions 108, 97, 115, 116


# -- interventions --------------------------------------------------------------------------------

SITE_ARGS = st.sampled_from(
    [
        "blocks.0.hook_resid_post",
        mt.heads("0.1", "1.3"),
        mt.neurons(1, 5, 5, 7).at("last"),
        mt.site("blocks.1.attn.hook_pattern", [0]).at(-1),
        mt.direction("blocks.0.hook_attn_out", np.arange(32.0) - 7),
        mt.resid(1, "mid").at([0, -1]),
        "blocks.7.hook_resid_post",
        "hook_embedding",
        mt.head(0, 9),
        [],
        (),
        3,
        None,
        b"blocks.0.hook_resid_post",
    ]
)


def other_prompts(lengths: list[int], seed: int) -> mt.Prompts:
    g = torch.Generator().manual_seed(seed)
    return mt.Prompts([torch.randint(1, VOCAB, (k,), generator=g) for k in lengths], answers=[1] * len(lengths))


ALIGNED, SHORT, FEWER = other_prompts([6, 6, 3, 4], 1), other_prompts([3, 3, 3, 3], 2), other_prompts([6, 6, 3], 3)


def valid_sites(sites: Any) -> bool:
    """Site names, sites and lists of them; an empty list intervenes on nothing (``patch([])``)."""
    return isinstance(sites, (str, mt.Site, tuple, list))


def check_effect(effect: Any) -> None:
    """A measured effect: one finite value per prompt; otherwise a MitestError."""
    if isinstance(effect, mt.Effect):
        assert effect.n == len(prompts()) and np.isfinite(effect.intervened).all()
    else:
        assert isinstance(effect, mt.MitestError)


@MODEL_RUNS
@given(
    sites=SITE_ARGS,
    method=st.sampled_from(["zero", "mean", "resample", "Zero", "", None, 1]),
    reference=st.sampled_from([None, "corrupted", "clean", ALIGNED, SHORT, FEWER, [[1, 2]]]),
    per_position=st.sampled_from([True, False, 1, "no", None]),
    seed=st.one_of(st.integers(-2, 2**70), st.booleans(), st.floats(-1, 1), st.sampled_from(["0", None])),
)
# Regressions: a float seed was truncated, a str per_position read as True, a str seed raised ValueError.
@example(sites="blocks.0.hook_resid_post", method="resample", reference=None, per_position=True, seed=1.7)
@example(sites="blocks.0.hook_resid_post", method="mean", reference=None, per_position="no", seed=0)
@example(sites="blocks.0.hook_resid_post", method="resample", reference=None, per_position=True, seed="0")
def test_ablations_build_only_from_valid_arguments(sites, method, reference, per_position, seed):
    intervention = attempt(lambda: mt.ablate(sites, method, reference=reference, per_position=per_position, seed=seed))
    valid = (
        valid_sites(sites)
        and method in ("zero", "mean", "resample")
        and (reference is None or isinstance(reference, mt.Prompts) and method != "zero")
        | (reference == "corrupted" and method == "resample")
        and isinstance(per_position, bool)
        and is_int(seed)
        and seed >= 0
    )
    assert isinstance(intervention, mt.InterventionError | mt.SiteError) != valid, repr(intervention)
    if valid:
        assert intervention.per_position is per_position and intervention.seed == seed
        check_effect(measured(intervention))


@MODEL_RUNS
@given(sites=SITE_ARGS, source=st.sampled_from(["corrupted", "clean", "Clean", ALIGNED, SHORT, FEWER, 3, None]))
def test_patches_need_a_source_aligned_with_the_prompts(sites, source):
    intervention = attempt(lambda: mt.patch(sites, source=source))
    valid = valid_sites(sites) and (source in ("corrupted", "clean") or isinstance(source, mt.Prompts))
    assert isinstance(intervention, mt.MitestError) != valid, repr(intervention)
    if valid:
        effect = measured(intervention)
        check_effect(effect)
        if source in (SHORT, FEWER) and intervention.sites:  # patch([]) patches nothing from anywhere
            assert isinstance(effect, mt.MitestError), "a source not token-aligned with the prompts"


@MODEL_RUNS
@given(
    coef=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(2**70), 2**70),
        st.sampled_from([True, None, "1", 1j, np.float32(2.5), np.int64(-3)]),
    ),
    position=st.sampled_from(["all", "last", 0, [[1], [], [0, 2], [3]]]),
)
# Regressions: NaN was accepted; text, None and complex raised ValueError/TypeError.
@example(coef=float("nan"), position="all")
@example(coef="1", position="all")
@example(coef=None, position="all")
@example(coef=1j, position="all")
def test_steering_takes_a_finite_real_coefficient(coef, position):
    direction = mt.direction("blocks.0.hook_resid_post", np.arange(32.0) - 7).at(position)
    intervention = attempt(lambda: mt.steer(direction, coef=coef))
    valid = isinstance(coef, (int, float, np.floating, np.integer)) and not isinstance(coef, bool)
    valid = valid and math.isfinite(coef)
    assert isinstance(intervention, mt.InterventionError) != valid, f"steer(coef={coef!r}) -> {intervention!r}"
    if valid:
        assert intervention.coef == float(coef)
        effect = measured(intervention)
        check_effect(effect)  # a huge coefficient overflows the logits: a MetricError, not NaN values
        if isinstance(effect, mt.Effect) and coef == 0:
            np.testing.assert_array_equal(effect.delta, 0.0)


PARTS = st.sampled_from(
    [
        mt.ablate("blocks.0.hook_mlp_out"),
        mt.patch(mt.heads("1.2"), source="corrupted"),
        mt.patch(mt.resid(1, "pre"), source="clean"),
        mt.steer(mt.direction("blocks.1.hook_resid_mid", np.arange(32.0) - 3), coef=2.0),
        mt.path_patch(mt.heads("0.0"), mt.heads("1.1", kind="k")),
        "ablate",
        3,
        None,
    ]
)


@MODEL_RUNS
@given(parts=st.lists(PARTS, max_size=4), nested=st.booleans())
@example(parts=[], nested=False)  # regression: combine() raised IndexError inside measure
def test_combinations_refuse_what_cannot_run_in_one_pass(parts, nested):
    combined = attempt(lambda: mt.combine(mt.combine(*parts)) if nested else mt.combine(*parts))
    atoms = [p for p in parts if isinstance(p, mt.Intervention)]
    valid = (
        len(parts) > 0
        and len(atoms) == len(parts)
        and len({p.runs_on for p in atoms}) == 1
        and not (len(atoms) > 1 and any(isinstance(p, mt.PathPatch) for p in atoms))
    )
    assert isinstance(combined, mt.InterventionError) != valid, f"{parts} -> {combined!r}"
    if valid:
        assert combined.parts() == tuple(atoms)
        check_effect(measured(combined))


HEAD_SITES = st.builds(mt.head, st.integers(0, N_LAYERS - 1), st.integers(0, N_HEADS - 1))
REPLACING = st.sampled_from(
    [
        lambda sites: mt.ablate(sites),
        lambda sites: mt.ablate(sites, "mean"),
        lambda sites: mt.patch(sites, source="corrupted"),
    ]
)


@MODEL_RUNS
@given(heads=st.lists(HEAD_SITES, min_size=1, max_size=5), build=REPLACING, split=st.booleans())
def test_repeated_sites_run_once_without_a_false_no_op_warning(heads, build, split):
    """Sites repeated in one part, or across parts (``ablate(h) + ablate(h)``), give the numbers of each
    site once and no no-op warning; a repeat never makes ``strict=True`` refuse."""
    unique = list(dict.fromkeys(heads))
    repeated = build(heads + heads) if not split else sum((build(h) for h in heads + heads[:1]), start=build(heads))
    with warnings.catch_warnings():
        warnings.simplefilter("error", mt.NoOpInterventionWarning)
        once = mt.measure(gpt2(), prompts(), build(unique), mt.metrics.logit_diff, strict=True)
        twice = mt.measure(gpt2(), prompts(), repeated, mt.metrics.logit_diff, strict=True)
    np.testing.assert_array_equal(twice.intervened, once.intervened)


# Where each sender writes to the residual stream and each receiver reads it, in forward order.
WRITES = {"hook_embed": 0, "0.1": 1, "mlp0": 2, "1.0": 3}
READS = {"1.1k": 3, "mlp1": 4, "logits": 9, "mid1": 4, "0.2": 1}
SENDERS = {"0.1": mt.heads("0.1"), "mlp0": mt.mlp(0), "hook_embed": "hook_embed", "1.0": mt.heads("1.0")}
RECEIVERS = {"1.1k": mt.heads("1.1", kind="k"), "mlp1": mt.mlp(1), "logits": "logits", "mid1": mt.resid(1, "mid")}


@MODEL_RUNS
@given(
    sender=st.sampled_from([*SENDERS, "resid0", "empty", "x"]),
    receiver=st.sampled_from([*RECEIVERS, "0.2"]),
    source=st.sampled_from(["corrupted", "clean", ALIGNED, SHORT, "other", 0]),
)
def test_path_patching_runs_forward_from_a_writer_or_is_refused(sender, receiver, source):
    senders = {**SENDERS, "resid0": mt.resid(0), "empty": [], "x": "x"}
    receivers = {**RECEIVERS, "0.2": mt.heads("0.2")}
    intervention = attempt(lambda: mt.path_patch(senders[sender], receivers[receiver], source=source))
    valid = sender != "empty" and (source in ("corrupted", "clean") or isinstance(source, mt.Prompts))
    assert isinstance(intervention, mt.MitestError) != valid
    if valid:
        effect = measured(intervention)
        check_effect(effect)
        forward = WRITES.get(sender, 99) < READS[receiver] and source is not SHORT
        assert isinstance(effect, mt.Effect) == forward, f"{sender} -> {receiver} from {source}: {effect!r}"


@MODEL_RUNS
@given(
    model=st.sampled_from(["gpt2", None, 3, "gpt2-small"]),
    batch_size=st.one_of(st.integers(-2, 9), st.sampled_from([True, 2.0, "4", None, np.int64(3)])),
    metric=st.sampled_from(
        [  # (metric, whether it is a valid one)
            (mt.metrics.logit_diff, True),
            (mt.metrics.loss, True),
            (lambda logits, batch: logits[torch.arange(len(batch)), batch.lengths - 1, 0].tolist(), True),
            ("logit_diff", False),
            (None, False),
            (lambda logits, batch: "text", False),
            (lambda logits, batch: [1j] * len(batch), False),
            (lambda logits, batch: torch.zeros(len(batch) + 1), False),
            (lambda logits, batch: torch.full((len(batch),), float("nan")), False),
        ]
    ),
)
# Regressions: a numpy batch size was refused with a ValueError, a string model raised TypeError,
# and a metric returning text raised TypeError inside torch.
@example(model="gpt2", batch_size=np.int64(3), metric=(mt.metrics.logit_diff, True))
@example(model="gpt2-small", batch_size=2, metric=(mt.metrics.logit_diff, True))
@example(model="gpt2", batch_size=2, metric=(lambda logits, batch: "text", False))
def test_measure_checks_its_model_batch_size_and_metric(model, batch_size, metric):
    metric, valid_metric = metric
    subject = gpt2() if model == "gpt2" else model
    intervention = mt.ablate(mt.heads("1.1"))
    effect = attempt(lambda: mt.measure(subject, prompts(), intervention, metric, batch_size=batch_size))
    valid = model == "gpt2" and is_int(batch_size) and batch_size >= 1 and valid_metric
    assert isinstance(effect, mt.Effect) == valid, repr(effect)
    if valid:
        reference = mt.measure(gpt2(), prompts(), intervention, metric)
        np.testing.assert_allclose(effect.intervened, reference.intervened, atol=1e-5)


# -- prompt sets ----------------------------------------------------------------------------------

INT64_MAX = 2**63 - 1
VALID_IDS = st.one_of(st.integers(0, VOCAB + 5), st.sampled_from([INT64_MAX, np.int64(7), np.uint8(3)]))
ODD_IDS = st.one_of(
    st.integers(-3, -1),
    st.sampled_from([2**63, 2**64, -(2**70), np.uint64(2**64 - 1), np.bool_(True)]),
    st.sampled_from([1.0, float("nan"), float("inf"), True, False, None, "a", "", b"x", [1], 1j]),
)
TOKEN_IDS = st.one_of(VALID_IDS, ODD_IDS)


@st.composite
def token_rows(draw: st.DrawFn, odd: bool = True) -> list[list[Any]]:
    """1-4 prompts of 1-5 valid ids each; with ``odd``, one odd value slipped in somewhere (or an empty row)."""
    rows = draw(st.lists(st.lists(VALID_IDS, min_size=1, max_size=5), min_size=1, max_size=4))
    if odd:
        row = draw(st.sampled_from(rows))
        if draw(st.integers(0, 9)) == 0:
            row.clear()
        else:
            row.insert(draw(st.integers(0, len(row))), draw(ODD_IDS))
    return rows


def id_ok(value: Any) -> bool:
    return is_int(value) and 0 <= int(value) <= INT64_MAX


def rows_ok(rows: Any) -> bool:
    return isinstance(rows, list) and all(isinstance(r, list) and r and all(id_ok(v) for v in r) for r in rows)


@st.composite
def prompt_arguments(draw: st.DrawFn) -> dict[str, Any]:
    """Arguments of ``mt.Prompts``: all valid, or one of them hostile (most of the time)."""
    hostile = draw(st.sampled_from(["tokens", "answers", "corrupted", "groups", "answer_positions", None]))
    garbage = st.sampled_from([[], "text", 5, None, [None], ["text"], [7], np.zeros((2, 2, 2), int), {0: [1]}])
    if hostile == "tokens":
        rows = draw(st.one_of(token_rows(), garbage))
    else:
        rows = draw(token_rows(odd=False))
    n = len(rows) if isinstance(rows, list) else 1
    lengths = [len(row) if isinstance(row, list) else 1 for row in rows] if isinstance(rows, list) else [1]
    valid = {
        "answers": st.one_of(st.none(), VALID_IDS, st.lists(VALID_IDS, min_size=n, max_size=n)),
        "corrupted": st.one_of(st.none(), st.just("same lengths")),
        "groups": st.one_of(st.none(), st.lists(st.one_of(st.text(max_size=2), st.integers()), min_size=n, max_size=n)),
        "answer_positions": st.one_of(
            st.none(), st.tuples(*(st.integers(-max(k, 1), max(k, 1) - 1) for k in lengths)).map(list)
        ),
    }
    odd = {
        "answers": st.one_of(ODD_IDS, st.lists(TOKEN_IDS, max_size=5), st.just({0: 1})),
        "corrupted": st.one_of(token_rows(), token_rows(odd=False), garbage),
        "groups": st.one_of(
            st.lists(st.one_of(st.text(max_size=2), st.integers(), st.tuples(st.integers())), max_size=5),
            st.lists(st.sampled_from([None, float("nan"), [1], {"a": 1}, "g"]), min_size=n, max_size=n),
            st.sampled_from(["ab", 3, b"ab", {"a": 1}]),
        ),
        "answer_positions": st.lists(
            st.one_of(st.integers(-6, 6), st.sampled_from([0.5, True, "1", 2**70, None])), min_size=n, max_size=n + 1
        ),
    }
    arguments = {name: draw(odd[name] if name == hostile else valid[name]) for name in valid}
    return {"tokens": rows, **arguments}


@FAST
@given(arguments=prompt_arguments())
def test_prompt_sets_hold_exactly_what_was_given_or_are_a_prompts_error(arguments):
    rows, answers, twins, groups, answer_positions = arguments.values()
    if isinstance(twins, str):  # "same lengths": twins of the (valid) prompts
        twins = [[(v + 1) % VOCAB for v in row] for row in rows] if rows_ok(rows) else None
    built = attempt(
        lambda: mt.Prompts(rows, answers=answers, corrupted=twins, groups=groups, answer_positions=answer_positions)
    )
    n = len(rows) if isinstance(rows, list) else 0
    lengths = [len(r) for r in rows] if rows_ok(rows) else []
    answer_list = [answers] * n if answers is not None and not isinstance(answers, list) else answers
    valid = (
        n > 0
        and rows_ok(rows)
        and (answers is None or len(answer_list) == n and all(id_ok(a) for a in answer_list))
        and (twins is None or rows_ok(twins) and [len(r) for r in twins] == lengths)
        and (
            groups is None
            or isinstance(groups, list)
            and len(groups) == n
            and all(g is not None and g == g and not isinstance(g, (list, dict)) for g in groups)
        )
        and (
            answer_positions is None
            or len(answer_positions) == n
            and all(is_int(p) and -k <= p < k for p, k in zip(answer_positions, lengths, strict=False))
        )
    )
    assert isinstance(built, mt.PromptsError) != valid, f"{built!r}"
    if not valid:
        return
    assert built.lengths.tolist() == lengths
    for i, row in enumerate(rows):
        assert built.tokens[i, : lengths[i]].tolist() == [int(v) for v in row]
        assert not built.tokens[i, lengths[i] :].any()
    if answers is not None:
        assert built.answers.tolist() == [int(a) for a in answer_list]
    if twins is not None:
        assert built.corrupted.tokens.tolist() == mt.Prompts(twins).tokens.tolist()
    if groups is not None:
        assert list(built.groups) == groups
    expected_positions = [k - 1 for k in lengths] if answer_positions is None else answer_positions
    assert built.answer_positions.tolist() == [p % k for p, k in zip(expected_positions, lengths, strict=True)]
    in_vocab = all(v < VOCAB for row in [*rows, *(twins or []), answer_list or []] for v in row)
    read = attempt(lambda: mt.activations(gpt2(), built, "blocks.0.hook_resid_post"))
    assert isinstance(read, torch.Tensor) == in_vocab
    if not in_vocab:
        assert isinstance(read, mt.PromptsError) and "vocabulary" in str(read)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [  # each was accepted (silently changed) or crashed inside numpy/torch before
        ({"tokens": [[5, True]]}, "bool values"),
        ({"tokens": [[1, 2**64]]}, "int64"),
        ({"tokens": np.array([[1, 2**64 - 1]], dtype=np.uint64)}, "int64"),
        ({"tokens": [[1, None]]}, "not integers"),
        ({"tokens": [[1, "a"]]}, "text"),
        ({"tokens": [[1, 2]], "answers": b"x"}, "one token id"),
        ({"tokens": [[1, 2]], "answers": [2**70]}, "token ids must be"),
        ({"tokens": [[1, 2], [3, 4]], "groups": "ab"}, "one label per prompt"),
        ({"tokens": [[1, 2], [3, 4]], "groups": [float("nan"), "a"]}, "missing"),
        ({"tokens": [[1, 2], [3, 4]], "groups": [None, "a"]}, "missing"),
        ({"tokens": [[1, 2], [3, 4]], "groups": [[1], "a"]}, "hashable"),
        ({"tokens": [[1, 2], [3, 4]], "answer_positions": [0.7, 1.2]}, "float"),
        ({"tokens": [[1, 2], [3, 4]], "answer_positions": [True, False]}, "bool"),
        ({"tokens": torch.tensor([[1, 2, 3]]), "attention_mask": torch.tensor([[1, 2, 0]])}, "only 0"),
        ({"tokens": torch.tensor([[1, 2, 3]]), "attention_mask": torch.tensor([[1.0, 0.5, 0.0]])}, "only 0"),
        ({"tokens": [[1, 2, 3], [4, 5]], "attention_mask": [[1, 1, 1], [1, 1]]}, "regular array"),
    ],
)
def test_prompt_inputs_that_were_misread_are_refused(arguments, message):
    with pytest.raises(mt.PromptsError, match=message):
        mt.Prompts(**arguments)


def test_scalar_answers_and_negative_slices_work():
    # Regression: a numpy or 0-d torch scalar answer raised TypeError; prompts[::-1] raised ValueError.
    for answer in (np.int64(3), torch.tensor(3), 3):
        assert mt.Prompts([[1, 2], [3, 4]], answers=answer).answers.tolist() == [3, 3]
    assert prompts()[::-1].tokens[:, 0].tolist() == prompts().tokens[:, 0].flip(0).tolist()
    for index in (None, True, 4, "0"):
        with pytest.raises(mt.PromptsError, match="select"):
            prompts()[index]


@FAST
@given(
    array=npst.arrays(
        dtype=st.sampled_from([np.int8, np.int64, np.uint8, np.uint64, np.float32, np.bool_, np.complex64]),
        shape=npst.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    ),
    as_tensor=st.booleans(),
)
def test_token_arrays_of_any_shape_and_dtype(array, as_tensor):
    if as_tensor and array.dtype != np.uint64:  # torch has no uint64 tensors from numpy before 2.3
        tokens: Any = torch.from_numpy(array)
    else:
        tokens = array
    built = attempt(lambda: mt.Prompts(tokens))
    valid = (
        array.ndim == 2
        and array.shape[0] > 0
        and array.shape[1] > 0
        and array.dtype.kind in "iu"
        and (array >= 0).all()
        and all(int(v) <= INT64_MAX for v in array.flat)
    )
    assert isinstance(built, mt.PromptsError) != valid, f"{array!r} -> {built!r}"
    if valid:
        assert built.tokens.tolist() == array.astype(np.int64).tolist()


@FAST
@given(
    mask=st.lists(
        st.lists(
            st.one_of(st.sampled_from([0, 1]), st.sampled_from([0, 1]), st.sampled_from([2, -1, 0.5])),
            min_size=5,
            max_size=5,
        ),
        min_size=1,
        max_size=4,
    ),
    as_type=st.sampled_from([torch.long, torch.float32, torch.bool, np.int8, np.float64, list]),
    nan=st.booleans(),
)
@example(mask=[[1, 2, 0, 0, 0]], as_type=torch.long, nan=False)  # regression: 2 read as a real token
@example(mask=[[1, 0.5, 0, 0, 0]], as_type=np.float64, nan=False)  # regression: 0.5 read as a real token
def test_attention_masks_hold_zeros_and_ones_around_one_run_of_real_tokens(mask, as_type, nan):
    tokens = torch.arange(1, 1 + 5 * len(mask)).reshape(len(mask), 5)
    values = np.array(mask, dtype=np.float64)
    if nan and as_type in (torch.float32, np.float64, list):
        values[0, 0] = np.nan
    if as_type is list:
        given_mask: Any = values.tolist()
    elif isinstance(as_type, torch.dtype):
        given_mask = torch.tensor(values).to(as_type)
    else:
        given_mask = values.astype(as_type)
    built = attempt(lambda: mt.Prompts(tokens, attention_mask=given_mask))
    seen = np.asarray(given_mask.numpy() if isinstance(given_mask, torch.Tensor) else given_mask, dtype=np.float64)
    binary = np.isin(seen, (0, 1)).all()
    runs = [np.flatnonzero(row) for row in seen]
    valid = binary and all(len(r) and r[-1] - r[0] + 1 == len(r) for r in runs)
    assert isinstance(built, mt.PromptsError) != valid, f"mask {seen.tolist()} -> {built!r}"
    if valid:
        for i, real in enumerate(runs):
            assert built.tokens[i, : len(real)].tolist() == tokens[i, real].tolist()
            assert int(built.lengths[i]) == len(real)


@FAST
@given(
    index=st.one_of(
        st.integers(-6, 6),
        st.lists(st.integers(-6, 6), max_size=4),
        st.slices(5),
        st.sampled_from(["a", 1.5, None, True, [True, False, True, False]]),
    )
)
@example(index=5)  # regression: IndexError from torch
@example(index=slice(None, None, -1))  # regression: ValueError from torch
@example(index="a")  # regression: TypeError from torch
def test_selecting_prompts_gives_those_prompts_or_a_prompts_error(index):
    whole = prompts()
    chosen = attempt(lambda: whole[index])
    try:
        rows = np.arange(4)[index].reshape(-1).tolist()
    except (IndexError, TypeError):
        rows = None
    if rows is None or not rows or index is None or isinstance(index, bool):
        assert isinstance(chosen, mt.PromptsError)
        return
    assert isinstance(chosen, mt.Prompts), repr(chosen)
    for position, row in enumerate(rows):
        k = int(whole.lengths[row])
        assert chosen.tokens[position, :k].tolist() == whole.tokens[row, :k].tolist()
        assert chosen.corrupted.tokens[position, :k].tolist() == whole.corrupted.tokens[row, :k].tolist()


# -- baseline files and run records ---------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


def claim_record(index: int, shift: float) -> dict[str, Any]:
    """A claim record as the plugin writes it: a decided claim on paired values, JSON-ready."""
    rng = np.random.default_rng(index)
    clean = rng.normal(0.0, 1.0, 12)
    effect = mt.Effect.from_values(clean, clean - shift + rng.normal(0.0, 0.2, 12), groups=[i % 3 for i in range(12)])
    try:
        verdict = effect.expect_decrease(at_least=0.5)
    except (mt.ClaimRefuted, mt.ClaimInconclusive) as failure:
        verdict = failure.verdict
    data = verdict.to_dict()
    data["method"] = data.pop("test")
    identity = {"model": "m1", "prompts": f"p{index}", "claim": verdict.claim}
    record = {
        **data,
        "test": f"test_claims.py::test_{index}",
        "key": f"test_claims.py::test_{index}::0",
        "index": 0,
        "name": None,
        "identity": identity,
        "id": f"id{index}",
        "claim_key": f"key{index}",
        "definition": baseline.definition(identity, verdict.claim, verdict.threshold),
        "derived": {},
        "hooks": [],
        "baseline": {"status": "new", "message": "no baseline for this claim"},
        "per_prompt": {
            "clean": effect.clean.tolist(),
            "intervened": effect.intervened.tolist(),
            "corrupted": None,
            "group": [str(g) for g in effect.groups],
            "claim_value": (-effect.delta).tolist(),
        },
    }
    return json.loads(json.dumps(record, default=str).replace("-Infinity", '"-inf"').replace("Infinity", '"inf"'))


@functools.cache
def valid_run() -> dict[str, Any]:
    claims = [claim_record(i, shift) for i, shift in enumerate((2.0, 0.0, 0.6))]
    undecided = [{"test": "t.py::u", "index": 1, "claim": "c", "old_estimate": 1.5, "error": "MitestError"}]
    return build_run(claims, alpha=0.05, correction="bonferroni", seed=0, profile="default", undecided=undecided)


@functools.cache
def valid_baseline() -> dict[str, Any]:
    claims = {c["key"]: baseline.entry(c) for c in valid_run()["claims"]}
    return {"schema": baseline.SCHEMA, "version": baseline.VERSION, "claims": claims}


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any]) -> Any:
    """``document`` with one value somewhere replaced by random JSON, or one key removed."""
    document = json.loads(json.dumps(document))
    node: Any = document
    for _ in range(draw(st.integers(0, 5))):
        children = node.values() if isinstance(node, dict) else node
        containers = [child for child in children if isinstance(child, (dict, list)) and child]
        if not containers:
            break
        node = draw(st.sampled_from(containers))
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    key = draw(st.sampled_from(keys))
    if isinstance(node, dict) and draw(st.booleans()):
        del node[key]
    else:
        node[key] = draw(JSON_VALUES)
    return document


@st.composite
def hostile_files(draw: st.DrawFn, document: dict[str, Any]) -> bytes:
    """The bytes of ``document`` after a random mishap: mutation, truncation, stray bytes, NaN tokens,
    deep nesting, huge numbers, or another encoding."""
    text = json.dumps(draw(st.one_of(st.just(document), mutated(document))), indent=1)
    mishap = draw(st.sampled_from(["none", "truncate", "bytes", "nan", "nest", "huge", "latin-1", "utf-16"]))
    if mishap == "truncate":
        return text.encode()[: draw(st.integers(0, len(text) - 1))]
    if mishap == "bytes":
        at = draw(st.integers(0, len(text)))
        return text.encode()[:at] + draw(st.binary(min_size=1, max_size=4)) + text.encode()[at:]
    if mishap == "nan":
        number = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0.0"]))
        return re_number(text, number).encode()
    if mishap == "nest":
        depth = draw(st.sampled_from([50, 5000, 200_000]))
        return re_number(text, "[" * depth + "]" * depth).encode()
    if mishap == "huge":
        return re_number(text, "9" * draw(st.sampled_from([20, 400, 5000]))).encode()
    if mishap in ("latin-1", "utf-16"):
        return (text[:10] + "é" + text[10:]).encode(mishap)
    return text.encode()


def re_number(text: str, replacement: str) -> str:
    """``text`` with its first number after a colon replaced by ``replacement``."""
    import re

    return re.sub(r"(: )-?\d[\d.e+-]*", lambda m: m.group(1) + replacement, text, count=1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("files")


@FAST
@given(content=hostile_files(valid_baseline()))
@example(content=b"\xff\xfe{}")  # regression: UnicodeDecodeError
@example(content=b"[" * 100_000)  # regression: RecursionError
@example(content=b'{"schema": "mitest.baseline", "x": ' + b"9" * 5000 + b"}")  # regression: ValueError
def test_baseline_files_load_into_comparable_claims_or_a_baseline_error(folder, content):
    path = folder / "baseline.json"
    path.write_bytes(content)
    claims = attempt(lambda: baseline.load(path))
    if isinstance(claims, mt.MitestError):
        assert isinstance(claims, baseline.BaselineError) and str(path) in str(claims)
        return
    record = valid_run()["claims"][0]
    for stored in claims.values():  # everything load() accepts, compare() can use
        result = baseline.compare(stored, record, margin=0.2, alpha=0.05)
        assert result["status"] in ("same", "ok", "regressed", "changed", "error")
        assert all(math.isfinite(result[p]) for p in ("p_beyond", "p_within") if p in result)


@FAST
@given(content=hostile_files(valid_run()))
def test_run_files_load_and_render_or_are_a_report_error(folder, content):
    path = folder / "run.json"
    path.write_bytes(content)
    run = attempt(lambda: load_run(path))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli(["report", str(path), "--out", str(folder / "rendered")])
        compared = cli(["compare", str(path), str(path)])
    if isinstance(run, mt.MitestError):
        assert isinstance(run, ReportError) and status == 2 and compared == 2
        assert err.getvalue().startswith("mitest: ") and "Traceback" not in err.getvalue()
        return
    assert status == 0 and compared == 0, err.getvalue()  # a run compared with itself has no regression
    rendered = sorted(p.name for p in (folder / "rendered").iterdir() if not p.name.startswith("."))
    assert rendered == ["per_prompt.csv", "report.html", "run.json", "summary.md"]


def test_a_folder_where_a_file_belongs_is_a_clear_error(folder):
    # Regression: baseline.load raised IsADirectoryError; both errors are MitestErrors now.
    target = folder / "dir.json"
    target.mkdir(exist_ok=True)
    (target / "keep.txt").write_text("mine")
    with pytest.raises(baseline.BaselineError, match="is a folder, not a file"):
        baseline.load(target)
    with pytest.raises(ReportError, match="cannot read run file"):
        load_run(target)
    with pytest.raises(OSError):
        atomic.write_text(target, "new")
    assert (target / "keep.txt").read_text() == "mine"
    assert issubclass(baseline.BaselineError, mt.MitestError) and issubclass(ReportError, mt.MitestError)


def test_non_finite_or_mistyped_baseline_values_are_refused(folder):
    # Regression: a NaN claim value made the non-inferiority p-value NaN, and the claim passed as
    # "ok"; a string estimate, a non-list claim value or a str entry raised inside compare().
    path = folder / "hand-edited.json"
    good = valid_baseline()
    key = next(iter(good["claims"]))
    for field, value in [
        ("claim_value", [float("nan")] * 12),
        ("claim_value", "1, 2"),
        ("estimate", "high"),
        ("gap", float("inf")),
        ("outcome", "HELD"),
        ("group", ["a"]),
    ]:
        broken = json.loads(json.dumps(good))
        broken["claims"][key][field] = value
        path.write_text(json.dumps(broken))
        with pytest.raises(baseline.BaselineError, match=field if field != "claim_value" else "claim_value"):
            baseline.load(path)
    for text in ["\\xff\\xfe", "[" * 100_000, '{"x": ' + "9" * 5000 + "}"]:
        path.write_bytes(text.encode().decode("unicode_escape").encode("latin-1"))
        with pytest.raises(baseline.BaselineError):
            baseline.load(path)


# -- writing files --------------------------------------------------------------------------------

UNENCODABLE = st.text(alphabet=st.characters(codec=None, categories=["Cs", "Lu", "Zs"]), max_size=8)


class HalfWrite:
    """A file stream that writes half of its text, then fails (a full disk)."""

    def __init__(self, stream: io.TextIOWrapper) -> None:
        self.stream = stream

    def __enter__(self) -> HalfWrite:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stream.close()

    def write(self, text: str) -> None:
        self.stream.write(text[: len(text) // 2])
        self.stream.flush()
        raise OSError("No space left on device")


@FAST
@given(
    text=st.one_of(st.text(max_size=50), UNENCODABLE),
    failure=st.sampled_from([None, "write", "fsync", "chmod", "replace", "interrupt"]),
)
def test_a_write_that_fails_midway_leaves_the_old_file(folder, text, failure):
    target = folder / "atomic" / "report.md"
    target.parent.mkdir(exist_ok=True)
    target.write_text("old content\n")
    fdopen = os.fdopen
    patches = {
        None: contextlib.nullcontext(),
        "write": mock.patch.object(os, "fdopen", side_effect=lambda *a, **k: HalfWrite(fdopen(*a, **k))),
        "fsync": mock.patch.object(os, "fsync", side_effect=OSError("fsync failed")),
        "chmod": mock.patch.object(os, "chmod", side_effect=OSError("chmod failed")),
        "replace": mock.patch.object(os, "replace", side_effect=OSError("rename failed")),
        "interrupt": mock.patch.object(os, "fsync", side_effect=KeyboardInterrupt()),
    }
    try:
        with patches[failure]:
            atomic.write_text(target, text)
    except (OSError, KeyboardInterrupt, UnicodeEncodeError):
        assert target.read_bytes() == b"old content\n"
    else:
        assert failure is None and target.read_bytes() == text.encode("utf-8")
    assert [p.name for p in target.parent.iterdir()] == ["report.md"], "no temporary file is left behind"


def test_reports_that_fail_to_render_leave_the_earlier_reports(folder):
    # Regression: run.json was written before the Markdown was rendered, so a run that failed to
    # render replaced run.json and left the other reports from the earlier run.
    reports = folder / "reports"
    reports.mkdir()
    names = ["run.json", "summary.md", "report.html", "per_prompt.csv"]
    for name in names:
        (reports / name).write_text(f"earlier {name}")
    run = json.loads(json.dumps(valid_run()))
    del run["claims"][0]["claim"]
    with pytest.raises(KeyError):
        write_reports(run, reports)
    unserialisable = {**valid_run(), "settings": {**valid_run()["settings"], "alpha": object()}}
    with pytest.raises(TypeError):
        write_reports(unserialisable, reports)
    with pytest.raises(ValueError):
        write_reports({**valid_run(), "created": float("nan")}, reports)
    assert sorted(p.name for p in reports.iterdir()) == sorted(names)
    assert all((reports / name).read_text() == f"earlier {name}" for name in names)
    written = write_reports(valid_run(), reports)
    assert [p.name for p in written] == names and load_run(reports / "run.json") == valid_run()


def test_baselines_that_cannot_be_serialised_leave_the_old_file(folder):
    path = folder / "baselines" / "test_x.json"
    atomic.write_text(path, baseline.render(valid_baseline()["claims"]))
    before = path.read_bytes()
    for value in (object(), {1, 2}, b"bytes"):
        with pytest.raises(TypeError):
            entry = {**valid_baseline()["claims"][next(iter(valid_baseline()["claims"]))], "x": value}
            atomic.write_text(path, baseline.render({"t.py::t::0": entry}))
    assert path.read_bytes() == before and baseline.load(path) == valid_baseline()["claims"]
    assert [p.name for p in path.parent.iterdir()] == ["test_x.json"]


def test_writing_through_a_symlink_keeps_the_link(folder):
    # Regression: os.replace swapped the user's symlink for a regular file; the file it pointed to
    # kept the old content.
    shared = folder / "shared"
    shared.mkdir()
    real = shared / "test_x.json"
    real.write_text("old")
    link = folder / "linked.json"
    link.symlink_to(real)
    written = atomic.write_text(link, "new")
    assert written == link and link.is_symlink() and real.read_text() == "new"
    assert sorted(p.name for p in shared.iterdir()) == ["test_x.json"]
