"""Prompt families (``mt.strategies``) and per-prompt property claims (``mt.expect_for_all``)."""

from __future__ import annotations

import json

import hypothesis
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis.database import InMemoryExampleDatabase

import mitest as mt
from mitest.zoo import greater_than, induction

NEXT_TOKEN = mt.zoo.induction.family()


@pytest.fixture(scope="module")
def years_tokenizer():
    return greater_than.build_tokenizer()


# -- families --------------------------------------------------------------------------------------


@given(prompt=NEXT_TOKEN.strategy())
@hypothesis_settings(max_examples=30, deadline=None)
def test_every_drawn_induction_prompt_is_well_formed(prompt):
    tokens = prompt.ids[0, : int(prompt.lengths[0])].tolist()
    segment = tokens[1:17]
    k = len(tokens) - 17
    assert tokens[0] == induction.BOS and len(set(segment)) == 16 and 4 <= k <= 15
    assert tokens[17:] == segment[:k]
    assert int(prompt.answers[0]) == segment[k] and int(prompt.wrong[0]) == segment[k - 1]
    twin = prompt.corrupted.ids[0].tolist()
    assert twin[17:] == segment[:k] and not set(twin[1:17]) & set(segment)  # only the first copy changed


def test_samples_are_seeded(years_tokenizer):
    family = mt.zoo.greater_than.family(years_tokenizer)
    first, again, other = family.sample(20, seed=3), family.sample(20, seed=3), family.sample(20, seed=4)
    assert torch.equal(first.ids, again.ids) and first.fingerprint == again.fingerprint
    assert not torch.equal(first.ids, other.ids)
    assert first.ids.shape == (20, greater_than.LENGTH)
    assert (first.corrupted.ids[:, 7] == greater_than.FIRST_YEAR_ID + 1).all()  # the twin's year is 01
    years = greater_than.start_years(first)
    assert torch.equal(first.answers - greater_than.FIRST_YEAR_ID, years + 1)
    assert set(first.groups) <= set(greater_than.NOUNS)


def test_a_user_template_with_a_counterfactual_slot(years_tokenizer):
    family = mt.strategies.template(
        "The {noun} lasted from the year 17 {year:02d} to the year 17",
        {"noun": ["war", "deal"], "other": ["war", "deal"], "year": mt.strategies.numbers(10, 20)},
        tokenizer=years_tokenizer,
        answer=lambda slots: f"{slots['year'] + 1:02d}",
        corrupt={"noun": "other"},
        apart=[("noun", "other")],
    )
    prompts = family.sample(30, seed=0)
    clean = [years_tokenizer.decode(row) for row in prompts.ids.tolist()]
    twins = [years_tokenizer.decode(row) for row in prompts.corrupted.ids.tolist()]
    for text, twin in zip(clean, twins, strict=True):
        assert text.split()[1] != twin.split()[1] and text.split()[2:] == twin.split()[2:]
    assert prompts.wrong is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": "The {noun} {missing}"}, r"template field \{missing\} has no slot"),
        ({"corrupt": {"place": "noun"}}, "corrupt names 'place'"),
        ({"answer": "nope"}, "'nope' is not a slot"),
        ({"apart": [("noun", "ghost")]}, "has no slot 'ghost'"),
    ],
)
def test_template_mistakes_are_explained(years_tokenizer, kwargs, message):
    arguments = {"text": "The {noun} lasted", "answer": "noun", **kwargs}
    with pytest.raises(mt.MitestError, match=message):
        mt.strategies.template(arguments.pop("text"), {"noun": ["war"]}, tokenizer=years_tokenizer, **arguments)


def test_a_counterfactual_of_another_length_names_the_family(years_tokenizer):
    family = mt.strategies.template(
        "The {noun} lasted", {"noun": ["war"]}, tokenizer=years_tokenizer, answer="noun", corrupt={"noun": "deal war"}
    )
    with pytest.raises(mt.PromptsError, match="family 'The {noun} lasted' built a prompt mitest cannot use"):
        family.sample(2)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: mt.strategies.tokens(0, 3, 5), "cannot draw 5 distinct tokens from 4"),
        (lambda: mt.strategies.numbers(5, 1), "low <= high"),
        (lambda: mt.strategies.choice(), "at least one value"),
        (lambda: mt.zoo.induction.family(segment=40), "segment"),
        (lambda: NEXT_TOKEN.sample(0), "positive int"),
    ],
)
def test_slot_mistakes_are_explained(build, message):
    with pytest.raises(mt.MitestError, match=message):
        build()


# -- property claims ---------------------------------------------------------------------------------


@pytest.fixture
def examples_db():
    """A profile with an in-memory example database, so replay is observable and nothing is written."""
    hypothesis_settings.register_profile("mitest-test-db", database=InMemoryExampleDatabase(), derandomize=False)
    previous = hypothesis_settings.get_current_profile_name()
    hypothesis_settings.load_profile("mitest-test-db")
    yield
    hypothesis_settings.load_profile(previous)


def test_a_counterexample_is_shrunk_to_the_simplest_prompt(examples_db):
    """ "k < 10" first fails at k = 10; the simplest such prompt uses the lowest tokens everywhere."""
    with pytest.raises(mt.ClaimRefuted) as failure:
        mt.expect_for_all(NEXT_TOKEN, lambda prompt: int(prompt.lengths[0]) - 17 < 10)
    simplest = [induction.BOS, *range(16), *range(10)]
    note = failure.value.verdict.notes[0]
    assert f"prompt {simplest}; answer [10]; wrong [9]" in note
    assert f"corrupted {[induction.BOS, *range(16, 32), *range(10)]}" in note
    assert failure.value.verdict.outcome == mt.REFUTED and "counterexample (shrunk)" in str(failure.value)


def test_a_rerun_searches_the_same_prompts_and_finds_the_same_counterexample(examples_db):
    """With an example database, a rerun still searches the same prompts: same verdict, same numbers."""

    def short(prompt):
        seen[-1].append(prompt.ids[0].tolist())
        assert int(prompt.lengths[0]) - 17 < 10, "too long"
        return True

    seen: list[list] = []
    verdicts = []
    for _ in range(2):
        seen.append([])
        with pytest.raises(mt.ClaimRefuted, match="too long") as failure:
            mt.expect_for_all(NEXT_TOKEN, short)
        verdicts.append(failure.value.verdict)
    assert seen[0] == seen[1] and len(seen[0]) > 1
    assert (verdicts[0].estimate, verdicts[0].n, verdicts[0].notes) == (
        verdicts[1].estimate,
        verdicts[1].n,
        verdicts[1].notes,
    )


def test_the_ci_profile_searches_the_same_prompts_every_run():
    previous = hypothesis_settings.get_current_profile_name()
    hypothesis_settings.load_profile("ci")
    try:
        runs: list[list] = []
        for _ in range(2):
            runs.append([])
            mt.expect_for_all(NEXT_TOKEN, lambda prompt: runs[-1].append(prompt.ids[0].tolist()) is None, examples=15)
    finally:
        hypothesis_settings.load_profile(previous)
    assert runs[0] == runs[1] and len(runs[0]) == 15


def test_a_property_that_holds_on_a_planted_model():
    """The planted induction head predicts the repeat exactly, so the search finds no counterexample."""
    from mitest.zoo import planted

    model, _ = planted.induction()
    family = mt.strategies.Family(
        "planted repeats",
        {"r": mt.strategies.tokens(0, 14, 7)},
        lambda slots: mt.strategies.Example([15, *slots["r"], *slots["r"]], slots["r"][0], slots["r"][-1]),
    )

    def predicts_the_first_token_again(prompt):
        with torch.no_grad():
            return int(model.hf_model(prompt.tokens).logits[0, -1].argmax()) == int(prompt.answers[0])

    verdict = mt.expect_for_all(family, predicts_the_first_token_again, examples=25)
    assert verdict.holds and verdict.n == 25 and "no counterexample" in verdict.test


def test_property_mistakes_are_explained():
    with pytest.raises(mt.MitestError, match="returns True or False"):
        mt.expect_for_all(NEXT_TOKEN, lambda prompt: 1.0, examples=3)
    with pytest.raises(mt.MitestError, match="takes an mt.strategies family"):
        mt.expect_for_all(NEXT_TOKEN.strategy(), lambda prompt: True)
    with pytest.raises(ZeroDivisionError):  # a bug in the property is an error, not a counterexample
        mt.expect_for_all(NEXT_TOKEN, lambda prompt: 1 / 0 > 0, examples=3)


def test_property_claims_reach_the_report(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(
        test_inner_family="""
import mitest as mt

def test_short_segments(mi):
    mt.expect_for_all(mt.zoo.induction.family(), lambda prompt: int(prompt.lengths[0]) < 20)
"""
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(failed=1)
    [claim] = json.loads((pytester.path / "reports" / "run.json").read_text())["claims"]
    assert claim["outcome"] == mt.REFUTED and claim["method"].startswith("property search (Hypothesis)")
    assert claim["notes"][0].startswith("counterexample (shrunk): prompt [64, 0, 1, 2")
    assert "counterexample (shrunk)" in (pytester.path / "reports" / "summary.md").read_text()


def test_the_mitest_ci_profile_loads_hypothesis_ci_and_restores_it(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(
        test_inner_profile="""
from hypothesis import settings

def test_profile():
    assert settings.get_current_profile_name() == "ci" and settings.default.derandomize
"""
    )
    before = hypothesis.settings.get_current_profile_name()
    pytester.runpytest("-p", "no:cacheprovider", "--mitest-profile", "ci").assert_outcomes(passed=1)
    assert hypothesis.settings.get_current_profile_name() == before


def test_a_plain_given_test_shows_the_falsifying_prompt(pytester, monkeypatch):
    """In an ordinary @given test, Hypothesis prints the shrunk example: a one-prompt set shows its tokens."""
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(
        test_inner_given="""
from hypothesis import given, settings
import mitest as mt

@settings(database=None, derandomize=True)
@given(prompt=mt.zoo.induction.family().strategy())
def test_short(prompt):
    assert int(prompt.lengths[0]) < 25
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*prompt=Prompts(n=1, prompt=[64, 0, 1, 2, 3, 4, 5, 6, 7, 8*, answer=8*"])


def test_an_explicit_hypothesis_profile_wins_over_the_ci_profile(pytester, monkeypatch):
    monkeypatch.setenv("CI", "true")
    hypothesis_settings.register_profile("mitest-thorough", max_examples=321)
    pytester.makepyfile(
        test_inner_chosen="""
from hypothesis import settings

def test_profile():
    assert settings.get_current_profile_name() == "mitest-thorough" and settings.default.max_examples == 321
"""
    )
    pytester.runpytest("-p", "no:cacheprovider", "--hypothesis-profile", "mitest-thorough").assert_outcomes(passed=1)


# -- review regressions --------------------------------------------------------------------------------


def _holds(prompt, threshold=0):
    return int(prompt.answers[0]) >= threshold


class _AtLeast:
    def __call__(self, prompt):
        return int(prompt.answers[0]) >= 0


def test_keys_name_functions_by_source_never_by_address(years_tokenizer):
    import functools
    import re

    for fn in (functools.partial(_holds, threshold=1), _AtLeast()):
        family = mt.strategies.Family("f", {"t": mt.strategies.tokens(0, 9, 2)}, fn)
        assert not re.search(r"0x[0-9a-f]+", mt.strategies.source_key(fn))
        assert family.key() == mt.strategies.Family("f", {"t": mt.strategies.tokens(0, 9, 2)}, fn).key()

    def years(**kwargs):
        return mt.strategies.template(
            "The war lasted from the year 17 {year:02d}",
            {"year": mt.strategies.numbers(10, 20)},
            tokenizer=years_tokenizer,
            **kwargs,
        )

    assert years(answer="year").key() != years(answer=lambda slots: f"{slots['year'] + 1:02d}").key()
    assert years(answer="year", corrupt={"year": 1}).key() != years(answer="year", corrupt={"year": 2}).key()
    prompts = years(answer="year").sample(5)  # the answer is formatted like the field: "05", not "5"
    assert torch.equal(prompts.answers, prompts.ids[:, -1])


def test_apart_slots_never_share_a_number():
    family = mt.strategies.Family(
        "pairs",
        {"a": mt.strategies.numbers(0, 2), "b": mt.strategies.numbers(0, 2)},
        lambda slots: mt.strategies.Example([slots["a"] + 1, slots["b"] + 1]),
        apart=[("a", "b")],
    )
    prompts = family.sample(60, seed=1)
    assert (prompts.ids[:, 0] != prompts.ids[:, 1]).all()


@pytest.mark.parametrize(
    ("slots", "build", "message"),
    [
        ({"w": "word"}, None, "must be a list of values"),
        ({"w": mt.strategies.Slot("bogus")}, None, "unknown kind 'bogus'"),
        ({"w": ["a"]}, lambda slots: ([1], 1), "build returned tuple"),
    ],
)
def test_family_mistakes_are_explained(slots, build, message):
    with pytest.raises(mt.MitestError, match=message):
        mt.strategies.Family("bad", slots, build or (lambda s: mt.strategies.Example([1]))).sample(2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": "The {} lasted"}, "positional field"),
        ({"corrupt": {"noun": "other"}, "apart": ()}, "list them together in apart"),
        ({"corrupt": {"noun": "war"}}, "which the slot can also draw"),
    ],
)
def test_counterfactuals_that_could_equal_the_prompt_are_refused(years_tokenizer, kwargs, message):
    arguments = {"text": "The {noun} {other} lasted", **kwargs}
    with pytest.raises(mt.MitestError, match=message):
        mt.strategies.template(
            arguments.pop("text"),
            {"noun": ["war", "deal"], "other": ["war", "deal"]},
            tokenizer=years_tokenizer,
            answer="noun",
            **arguments,
        )


def test_claims_inside_a_property_are_not_the_suites_claims(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(
        test_inner_nested="""
import pytest
import mitest as mt

def test_nested(mi):
    def effect_is_positive(prompt):
        effect = mt.Effect.from_values([0.0] * 16, [1.0, 1.2, 0.9] * 5 + [1.1])  # 16 prompts decide at alpha 0.2
        return effect.expect_increase(at_least=0.5, alpha=0.2).holds
    mt.expect_for_all(mt.zoo.induction.family(), effect_is_positive, examples=10)

def test_inconclusive_is_not_a_counterexample(mi):
    def undecided(prompt):
        mt.Effect.from_values([0.0, 0.0, 0.0], [1.0, -1.0, 0.1]).expect_increase(at_least=0.5)
        return True
    with pytest.raises(mt.MitestError, match="INCONCLUSIVE: that is not a counterexample"):
        mt.expect_for_all(mt.zoo.induction.family(), undecided, examples=3)
"""
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    claims = json.loads((pytester.path / "reports" / "run.json").read_text())["claims"]
    assert [claim["metric"] for claim in claims] == ["property"]


def test_a_zero_dimensional_tensor_is_a_verdict():
    verdict = mt.expect_for_all(NEXT_TOKEN, lambda prompt: prompt.answers[0] >= 0, examples=5)
    assert verdict.holds and verdict.n == 5


def test_a_family_key_does_not_depend_on_where_the_tokenizer_was_loaded_from(tmp_path, years_tokenizer):
    years_tokenizer.save_pretrained(tmp_path / "a")
    years_tokenizer.save_pretrained(tmp_path / "b")
    import transformers

    keys = {
        mt.zoo.greater_than.family(transformers.AutoTokenizer.from_pretrained(tmp_path / where)).key()
        for where in ("a", "b")
    }
    assert len(keys) == 1 and keys == {mt.zoo.greater_than.family(years_tokenizer).key()}
