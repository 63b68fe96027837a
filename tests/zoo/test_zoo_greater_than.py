"""The shipped greater-than model: tokenizer, task performance, and the circuit its model card states."""

import json

import pytest
import torch
import transformers

import mitest as mt
from mitest.zoo import greater_than

PROB_DIFF = greater_than.prob_diff
MOVER = mt.head(0, 1)


@pytest.fixture(scope="module")
def zoo():
    return mt.zoo.load("greater-than")


@pytest.fixture(scope="module")
def years(zoo):
    return zoo.prompts["years"]


def test_the_tokenizer_round_trips_the_template(zoo):
    tokenizer = zoo.model.tokenizer
    assert isinstance(tokenizer, transformers.PreTrainedTokenizerFast)
    assert tokenizer.get_vocab() == greater_than.build_tokenizer().get_vocab()
    text = greater_than.prompt_text("war", "lasted", 17, 45)
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == text.split()
    assert tokenizer.decode(ids) == text
    assert ids[7] == greater_than.FIRST_YEAR_ID + 45 and ids[6] == ids[11] == greater_than.FIRST_YEAR_ID + 17
    assert tokenizer("The cat lasted")["input_ids"][1] == tokenizer.unk_token_id


def test_prompt_sets_are_seeded_and_well_formed(zoo, years):
    again = greater_than.prompt_sets(zoo.model)["years"]
    assert years.fingerprint == again.fingerprint and len(years) == 100
    assert (years.lengths == 12).all() and len(set(years.groups)) == len(greater_than.NOUNS)
    yy = years.ids[:, 7] - greater_than.FIRST_YEAR_ID
    assert yy.min() >= 2 and yy.max() <= 98
    assert torch.equal(years.answers - greater_than.FIRST_YEAR_ID, yy + 1)
    assert torch.equal(years.wrong - greater_than.FIRST_YEAR_ID, yy - 1)
    corrupted = years.corrupted.ids
    assert (corrupted[:, 7] == greater_than.FIRST_YEAR_ID + 1).all()
    others = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11]
    assert torch.equal(corrupted[:, others], years.ids[:, others])


def test_prob_diff_is_a_stable_spec_scored_against_the_clean_year():
    assert PROB_DIFF.to_dict() == {"type": "ProbDiff", "year_offset": 4, "first_year_id": greater_than.FIRST_YEAR_ID}
    vocab = len(greater_than.VOCAB)
    to = greater_than.VOCAB.index("to")
    prompts = mt.Prompts(
        [[0] * 7 + [greater_than.FIRST_YEAR_ID + 50, to] + [0] * 3], corrupted=[[0] * 8 + [to] + [0] * 3]
    )
    logits = torch.full((1, 12, vocab), -1e9)
    logits[0, -1, greater_than.FIRST_YEAR_ID + 60] = 0.0  # all mass on "60" > "50"
    assert PROB_DIFF(logits, prompts).item() == pytest.approx(1.0)
    assert PROB_DIFF(logits, prompts.corrupted).item() == pytest.approx(1.0)  # still read against "50"
    logits[0, -1, greater_than.FIRST_YEAR_ID + 50] = 0.0  # half on "50", which is not greater
    assert PROB_DIFF(logits, prompts).item() == pytest.approx(0.0)


def test_prob_diff_refuses_prompts_without_a_year_where_it_reads_one(zoo):
    """An 11-token prompt has the century, not the year, four tokens before its end: a clear error."""
    short = mt.Prompts(["The war lasted from the year 17 45 to the 17"], tokenizer=zoo.model.tokenizer)
    with pytest.raises(mt.MetricError, match="year token followed by 'to' 4 tokens before the answer"):
        mt.measure(zoo.model, short, mt.ablate(mt.heads("0.1")), metric=PROB_DIFF)


def test_the_model_does_the_task(zoo, years):
    effect = mt.measure(zoo.model, years, mt.patch(MOVER.at("last"), source="corrupted"), PROB_DIFF)
    assert effect.clean.min() > 0.95 and effect.clean.mean() > 0.98
    assert effect.corrupted.mean() < 0.05  # with YY = 01 every year is allowed
    history = json.loads((mt.zoo.path("greater-than") / "training.json").read_text())
    assert history["final"]["prob_diff_clean"] == pytest.approx(effect.clean.mean(), abs=1e-4)


def test_head_0_1_attends_from_the_last_position_to_the_year(zoo, years):
    hf = transformers.GPT2LMHeadModel.from_pretrained(mt.zoo.path("greater-than"), attn_implementation="eager")
    with torch.no_grad():
        attentions = hf(years.ids, output_attentions=True).attentions
    to_year = torch.stack([a[:, :, -1, 7] for a in attentions], 1)  # [prompt, layer, head]
    assert to_year[:, 0, 1].min() > 0.9
    assert to_year[:, 1].mean(0).max() < 0.2  # no layer-1 head looks at the year


def test_noising_the_mover_head_breaks_the_task(zoo, years):
    noised = mt.measure(zoo.model, years, mt.patch(MOVER.at("last"), source="corrupted"), PROB_DIFF)
    noised.expect_decrease(at_least=0.6)
    denoised = mt.measure(zoo.model, years, mt.patch(MOVER.at("last"), source="clean"), PROB_DIFF)
    denoised.expect_recovery(at_least=0.7)


def test_the_mover_head_acts_through_the_mlps(zoo, years):
    """With the MLPs' clean output at the last position held fixed, noising head 0.1 barely matters."""
    held = mt.patch(mt.mlp(0).at("last"), source=years) + mt.patch(mt.mlp(1).at("last"), source=years)
    effect = mt.measure(zoo.model, years, mt.patch(MOVER.at("last"), source="corrupted") + held, PROB_DIFF)
    effect.expect_no_change(within=0.1)


def test_mlp0_computes_greater_than(zoo, years):
    noised = mt.measure(zoo.model, years, mt.patch(mt.mlp(0).at("last"), source="corrupted"), PROB_DIFF)
    noised.expect_decrease(at_least=0.6)
    denoised = mt.measure(zoo.model, years, mt.patch(mt.mlp(0).at("last"), source="clean"), PROB_DIFF)
    denoised.expect_recovery(at_least=0.5)
    at_year = mt.measure(zoo.model, years, mt.patch(mt.mlp(0).at(7), source="corrupted"), PROB_DIFF)
    at_year.expect_no_change(within=0.02)  # the MLP works at the last position, not on the year token


@pytest.mark.parametrize("site", [mt.attn(1), mt.head(0, 0)], ids=["layer-1 attention", "head 0.0"])
def test_irrelevant_components(zoo, years, site):
    """Layer 1's heads and head 0.0 (which attends to the year too) barely matter."""
    effect = mt.measure(zoo.model, years, mt.ablate(site, "mean"), PROB_DIFF)
    effect.expect_no_change(within=0.05)
