"""The shipped induction models: loading offline, prompt sets, and the circuit their model card states."""

import json

import pytest
import torch

import mitest as mt
from mitest.zoo import induction

LOSS = mt.metrics.loss("second_half")


@pytest.fixture(scope="module")
def final():
    return mt.zoo.load("induction")


@pytest.fixture(scope="module")
def early():
    return mt.zoo.load("induction-early")


def test_load_returns_a_model_and_its_prompt_sets(final):
    model, prompts = final
    assert isinstance(model, mt.Model) and model.family.name == "gpt2"
    assert set(prompts) == {"repeated", "next_token"}
    with pytest.raises(TypeError):
        prompts["other"] = prompts["repeated"]  # read-only mapping


def test_unknown_names_list_the_closest():
    with pytest.raises(mt.ModelLoadError, match="did you mean induction.*available: .*mt.Model.load"):
        mt.zoo.load("inductoin")


def test_every_zoo_entry_has_safetensors_and_a_card():
    for name in mt.zoo.names():
        directory = mt.zoo.path(name)
        assert (directory / "model.safetensors").is_file(), name
        assert not list(directory.glob("*.bin")) and not list(directory.glob("*.pt")), name
        assert (directory / "model.safetensors").stat().st_size < 5_000_000, name
        assert f'mt.zoo.load("{name}")' in mt.zoo.card(name), name


def test_prompt_sets_are_seeded_and_well_formed():
    first, again = induction.repeated(), induction.repeated()
    assert torch.equal(first.ids, again.ids) and torch.equal(first.corrupted.ids, again.corrupted.ids)
    ids = first.ids
    assert (ids[:, 0] == induction.BOS).all()
    assert torch.equal(ids[:, 1:17], ids[:, 17:])
    assert (first.corrupted.ids[:, 17:] != ids[:, 17:]).any(1).all()

    nxt = induction.next_token()
    for row in range(len(nxt)):
        tokens = nxt.ids[row, : nxt.lengths[row]].tolist()
        r, k = tokens[1:17], len(tokens) - 17
        assert tokens[17:] == r[:k] and nxt.answers[row] == r[k] and nxt.wrong[row] == r[k - 1]
        corrupted = nxt.corrupted.ids[row, : nxt.lengths[row]].tolist()
        assert corrupted[17:] == r[:k] and not set(corrupted[1:17]) & set(r)


def test_attention_only_with_one_working_layer0_head(final):
    hf = final.model.hf_model
    for block in hf.transformer.h:
        assert all(float(p.detach().abs().max()) == 0.0 for p in block.mlp.parameters())
    projection = hf.transformer.h[0].attn.c_proj.weight.detach()
    assert float(projection[induction.HEAD_DIM :].abs().max()) == 0.0
    assert float(projection[: induction.HEAD_DIM].abs().max()) > 0.1


def test_head_roles_match_the_model_card(final):
    scores = induction.head_scores(final.model)
    assert scores["0.0"]["previous_token"] > 0.7
    for head in ("1.0", "1.1", "1.2", "1.3"):
        assert scores[head]["induction"] > 0.35, head
        assert scores[head]["previous_token"] < 0.05, head


def test_induction_heads_read_the_previous_token_head(final):
    """K-composition: with head 0.0's output zeroed, no layer-1 head finds the induction target."""
    model, _ = mt.zoo.load("induction")  # a separate copy to edit
    with torch.no_grad():
        model.hf_model.transformer.h[0].attn.c_proj.weight[: induction.HEAD_DIM] = 0.0
    scores = induction.head_scores(model)
    assert max(scores[f"1.{h}"]["induction"] for h in range(4)) < 0.08
    assert scores["1.2"]["induction"] < 0.1 * induction.head_scores(final.model)["1.2"]["induction"]


def _repeat_loss_spliced(model: mt.Model, ids: torch.Tensor, part: int | None) -> float:
    """Loss on the predictable repeat tokens when layer 1's key (part 1) or value (part 2) input comes
    from a run with head 0.0 mean-ablated on the first copy, everything else from the clean run
    (``part=None``: the clean run)."""
    hf = model.hf_model
    projection = hf.transformer.h[0].attn.c_proj
    attention_input = hf.transformer.h[1].attn.c_attn
    head = slice(0, induction.HEAD_DIM)
    captured = {}

    def ablate_head_on_first_copy(module, args):
        z = args[0].clone()
        z[:, 1:17, head] = z[:, :, head].mean((0, 1))
        return (z,)

    def capture(module, args, output):
        captured["qkv"] = output.detach()

    def splice(module, args, output):
        if part is None:
            return output
        d = hf.config.n_embd
        spliced = output.clone()
        spliced[..., part * d : (part + 1) * d] = captured["qkv"][..., part * d : (part + 1) * d]
        return spliced

    with torch.no_grad():
        handles = [projection.register_forward_pre_hook(ablate_head_on_first_copy)]
        handles.append(attention_input.register_forward_hook(capture))
        hf(ids)
        for handle in handles:
            handle.remove()
        handle = attention_input.register_forward_hook(splice)
        try:
            logits = hf(ids).logits
        finally:
            handle.remove()
    targets = ids[:, 18:]
    return float(torch.nn.functional.cross_entropy(logits[:, 17:-1].reshape(-1, logits.shape[-1]), targets.reshape(-1)))


def test_the_previous_token_head_is_read_through_the_keys(final):
    """K-composition: head 0.0's output on the first copy reaches the induction heads through their
    keys. Splicing in the ablated run's keys alone breaks induction; its values alone barely matter.
    (Queries are on the repeat, where head 0.0 was not ablated.)"""
    ids = final.prompts["repeated"].ids
    clean = _repeat_loss_spliced(final.model, ids, part=None)
    keys = _repeat_loss_spliced(final.model, ids, part=1)
    values = _repeat_loss_spliced(final.model, ids, part=2)
    assert clean < 0.7
    assert keys - clean > 2.5
    assert abs(values - clean) < 0.3


def test_the_model_does_induction_and_the_early_checkpoint_does_not(final, early):
    repeated = final.prompts["repeated"]
    for zoo_model, lowest, highest in ((final, 0.5, 1.2), (early, 3.7, 4.2)):
        effect = mt.measure(zoo_model.model, repeated, mt.ablate(mt.heads("1.0", "1.1", "1.2", "1.3"), "mean"), LOSS)
        assert lowest < effect.clean.mean() < highest
        assert effect.corrupted.mean() > 3.8  # without a first copy to read, near log 64
    late = mt.measure(final.model, repeated, mt.ablate(mt.heads("0.0"), "mean"), LOSS)
    young = mt.measure(early.model, repeated, mt.ablate(mt.heads("0.0"), "mean"), LOSS)
    assert late.delta.mean() > 2.5 and young.delta.mean() < 0.5
    assert max(s["induction"] for s in induction.head_scores(early.model).values()) < 0.1


def test_training_history_shows_the_phase_change():
    history = json.loads((mt.zoo.path("induction") / "training.json").read_text())
    losses = {entry["step"]: entry["repeat_loss"] for entry in history}
    assert losses[1000] > 3.5  # the early checkpoint: before the phase change
    assert losses[1300] > 3.5 and losses[1500] < 2.0  # the phase change
    assert losses[4000] < 1.0
