"""Models under test: ``--mitest-model NAME=PATH`` values and ``mi.model(NAME, default=...)``."""

from __future__ import annotations

import pytest

from mitest.plugin.candidates import CandidateError, Candidates, parse


def test_a_name_stands_for_one_model_whatever_default_a_later_test_gives(tmp_path):
    """Review finding: a second mi.model('m', default=other) silently returned the first model."""
    candidates = Candidates({}, tmp_path)
    first = candidates.model("m", "induction")
    assert candidates.model("m", "induction") is first
    with pytest.raises(CandidateError, match=r"mi.model\('m'\) was asked for with two defaults"):
        candidates.model("m", "induction-early")


def test_a_candidate_replaces_the_default_and_is_recorded_relative_to_the_root(tmp_path):
    import mitest as mt

    candidates = Candidates(parse(["m=induction-early"], tmp_path), tmp_path)
    model = candidates.model("m", "induction")
    assert model.revision == mt.zoo.load("induction-early").model.revision
    assert candidates.record()["m"]["source"] == "--mitest-model" and candidates.unused() == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["induction"], "is not NAME=PATH"),
        (["m=induction", "m=induction-early"], "names 'm' twice"),
        (["m=nowhere"], "does not exist, and 'nowhere' is not a zoo model"),
    ],
)
def test_bad_candidate_options_are_clear_errors(tmp_path, values, message):
    with pytest.raises(CandidateError, match=message):
        parse(values, tmp_path)
