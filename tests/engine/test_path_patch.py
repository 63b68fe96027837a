"""Path patching (``mt.path_patch``) against an exact, independent plain-torch reference.

The reference never goes through mitest: it is a hand-written GPT-2 forward pass (float64, causal,
no padding) that keeps every component's contribution to the residual stream apart, and it
computes path patching straight from the definition (Wang et al. 2022):

1. run the clean and the source prompts, keeping each head's ``z_h @ W_O[h]`` and each MLP's output;
2. each receiver reads ``clean residual + (sender's source output - sender's clean output)``,
   counting only senders that write before the receiver reads, LayerNorm applied to the whole sum;
3. from that input compute the receiver's q / k / v (or MLP output, or final logits);
4. rerun the clean prompts with only those receiver values substituted, at the receiver's
   positions, and everything downstream recomputed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import mitest as mt
from mitest.zoo import planted
from tests.builders import random_gpt2

N_LAYER, N_HEAD, D_MODEL, VOCAB, SEQ, N_PROMPTS = 3, 4, 32, 50, 8, 8


# -- the reference -------------------------------------------------------------------------------


class Reference:
    """GPT-2 in plain float64 torch, with each head's and each MLP's residual contribution kept apart.

    Residual points are numbered in reading order: ``2L`` enters block L (read by its heads),
    ``2L + 1`` is between its attention and MLP (read by the MLP), ``2 * n_layers`` enters ``ln_f``.
    A head of layer L writes between ``2L`` and ``2L + 1``, an MLP of layer L after ``2L + 1``.
    """

    def __init__(self, hf: transformers.GPT2LMHeadModel) -> None:
        self.hf, self.t = hf, hf.transformer
        self.n_layers, self.n_heads = hf.config.n_layer, hf.config.n_head
        self.d_head = hf.config.n_embd // self.n_heads
        self.eps = hf.config.layer_norm_epsilon

    def ln(self, x, norm):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * norm.weight.double() + norm.bias.double()

    @staticmethod
    def conv1d(x, layer):  # transformers' Conv1D: x @ weight + bias, weight stored [in, out]
        return x @ layer.weight.double() + layer.bias.double()

    def qkv(self, layer, resid):
        """q, k, v ``[batch, pos, head, d_head]`` of every head of ``layer`` reading ``resid``."""
        block = self.t.h[layer]
        out = self.conv1d(self.ln(resid, block.ln_1), block.attn.c_attn)
        return [part.unflatten(-1, (self.n_heads, self.d_head)) for part in out.split(self.hf.config.n_embd, -1)]

    def mlp(self, layer, resid_mid):
        block = self.t.h[layer]
        hidden = block.mlp.act(self.conv1d(self.ln(resid_mid, block.ln_2), block.mlp.c_fc))
        return self.conv1d(hidden, block.mlp.c_proj)

    def unembed(self, resid_final):
        return self.ln(resid_final, self.t.ln_f) @ self.hf.lm_head.weight.double().T

    @torch.no_grad()
    def forward(self, tokens, edits=None):
        """Logits and a cache; ``edits[key] = (mask [batch, pos], value)`` replaces a value where mask.

        Keys: ``("q"|"k"|"v", L, h)`` (value ``[batch, pos, d_head]``), ``("mlp", L)`` (the MLP's
        output) and ``("resid", point)`` (the residual stream at a numbered point).
        """
        edits = edits or {}

        def edit(key, x):
            if key not in edits:
                return x
            mask, value = edits[key]
            return torch.where(mask[..., None], value, x)

        seq = tokens.shape[1]
        resid = self.t.wte.weight.double()[tokens] + self.t.wpe.weight.double()[:seq]
        cache = {"resid": {}, "out": {}}
        causal = torch.ones(seq, seq, dtype=torch.bool).tril()
        for layer, block in enumerate(self.t.h):
            resid = cache["resid"][2 * layer] = edit(("resid", 2 * layer), resid)
            q, k, v = (
                torch.stack([edit((name, layer, h), part[:, :, h]) for h in range(self.n_heads)], 2)
                for name, part in zip("qkv", self.qkv(layer, resid), strict=True)
            )
            scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / self.d_head**0.5
            pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
            z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)
            w_o = block.attn.c_proj.weight.double()
            for h in range(self.n_heads):
                cache["out"]["head", layer, h] = z[:, :, h] @ w_o[h * self.d_head : (h + 1) * self.d_head]
            resid = resid + sum(cache["out"]["head", layer, h] for h in range(self.n_heads))
            resid = resid + block.attn.c_proj.bias.double()
            resid = cache["resid"][2 * layer + 1] = edit(("resid", 2 * layer + 1), resid)
            cache["out"]["mlp", layer] = edit(("mlp", layer), self.mlp(layer, resid))
            resid = resid + cache["out"]["mlp", layer]
        resid = cache["resid"][2 * self.n_layers] = edit(("resid", 2 * self.n_layers), resid)
        return self.unembed(resid), cache

    @torch.no_grad()
    def path_patched(self, clean_tokens, source_tokens, senders, receivers):
        """Logits on ``clean_tokens`` with ``senders`` patched from ``source_tokens`` along direct paths.

        ``senders``: ``[(component, mask)]``, component ``("embed",)``, ``("head", L, h)`` or
        ``("mlp", L)``. ``receivers``: ``[(kind, L, h, mask)]``, kind ``q``, ``k``, ``v``, ``z`` (all
        three), ``mlp`` (its input), or ``resid`` (``L`` is then the residual point's number; the
        logits are the last point, ``2 * n_layers``). Masks are boolean ``[batch, pos]``.
        """
        _, clean = self.forward(clean_tokens)
        _, source = self.forward(source_tokens)
        source["out"]["embed",] = self.t.wte.weight.double()[source_tokens]
        clean["out"]["embed",] = self.t.wte.weight.double()[clean_tokens]

        def written_at(component):
            if component[0] == "embed":
                return -0.5
            return 2 * component[1] + (0.5 if component[0] == "head" else 1.5)

        def delta(read):  # the senders' change to the residual stream at point ``read``
            total = torch.zeros_like(clean["resid"][read])
            for component, mask in senders:
                if written_at(component) < read:
                    total = total + mask[..., None] * (source["out"][component] - clean["out"][component])
            return total

        edits = {}
        for kind, layer, head, mask in receivers:
            read = {"resid": layer, "mlp": 2 * layer + 1}.get(kind, 2 * layer)
            resid = clean["resid"][read] + delta(read)
            if kind == "resid":
                edits["resid", read] = (mask, resid)
            elif kind == "mlp":
                edits["mlp", layer] = (mask, self.mlp(layer, resid))
            else:
                for name, part in zip("qkv", self.qkv(layer, resid), strict=True):
                    if kind in (name, "z"):
                        edits[name, layer, head] = (mask, part[:, :, head])
        return self.forward(clean_tokens, edits)[0]


# -- per-prompt metrics on reference logits (written out, not mitest's) ----------------------------


def ref_logit_diff(logits, prompts):
    last = logits[:, -1]
    rows = torch.arange(len(last))
    return (last[rows, prompts.answers] - last[rows, prompts.wrong]).numpy()


def ref_loss(logits, prompts, second_half=False):
    """Mean next-token loss; with ``second_half``, only targets at positions ``>= (len + 1) // 2``."""
    tokens = prompts.tokens
    token_loss = -logits[:, :-1].log_softmax(-1).gather(2, tokens[:, 1:, None])[..., 0]
    if second_half:
        token_loss = token_loss[:, (tokens.shape[1] + 1) // 2 - 1 :]
    return token_loss.mean(1).numpy()


# -- models and prompts --------------------------------------------------------------------------


def random_prompts(seed: int = 1) -> mt.Prompts:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (N_PROMPTS, SEQ), generator=g)
    corrupted = torch.randint(0, VOCAB, (N_PROMPTS, SEQ), generator=g)
    answers = torch.randint(0, VOCAB, (N_PROMPTS,), generator=g)
    wrong = (answers + 1 + torch.randint(0, VOCAB - 1, (N_PROMPTS,), generator=g)) % VOCAB
    return mt.Prompts(tokens, answers=answers, wrong=wrong, corrupted=corrupted)


@pytest.fixture(scope="module")
def tiny():
    hf = random_gpt2()
    return hf, mt.Model.from_hf(hf), random_prompts()


# -- the reference itself ----------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_reference_reproduces_transformers_logits(attention):
    hf = random_gpt2()
    hf.config._attn_implementation = attention
    prompts = random_prompts()
    with torch.no_grad():
        expected = hf(input_ids=prompts.tokens).logits
    got, _ = Reference(hf).forward(prompts.tokens)
    torch.testing.assert_close(got.float(), expected, atol=1e-5, rtol=0)


def test_reference_with_no_change_is_the_clean_run(tiny):
    hf, _, prompts = tiny
    ref = Reference(hf)
    every = torch.ones(prompts.tokens.shape, dtype=torch.bool)
    clean, _ = ref.forward(prompts.tokens)
    same = ref.path_patched(prompts.tokens, prompts.tokens, [(("head", 0, 1), every)], [("z", 2, 0, every)])
    torch.testing.assert_close(same, clean, atol=1e-12, rtol=0)
    changed = ref.path_patched(
        prompts.tokens, prompts.corrupted.tokens, [(("head", 0, 1), every)], [("z", 2, 0, every)]
    )
    assert (changed - clean).abs().max() > 1e-2


# -- one case, in mitest's terms and in the reference's ------------------------------------------------
# A sender is ("embed", None, None, at), ("head", L, h, at), ("attn", L, None, at) (all heads of a layer)
# or ("mlp", L, None, at). A receiver is (kind, L, h, at) with kind q / k / v / z (all three) / mlp,
# ("resid", L, "pre" | "mid" | "post", at) or ("logits", None, None, at). ``at`` is None (every
# position), "last", an int or a tuple of ints.

RESID_POINT = {"pre": 0, "mid": 1, "post": 2}


def mitest_sender(kind, layer, head, at):
    if kind == "embed":
        site = mt.site("hook_embed")
    elif kind == "mlp":
        site = mt.mlp(layer)
    elif kind == "attn":  # the whole attention layer: all its heads
        site = mt.attn(layer)
    else:
        site = mt.heads(f"{layer}.{head}")
    return site if at is None else site.at(at)


def mitest_receiver(kind, layer, head, at):
    if kind == "logits":
        site = mt.site("logits")
    elif kind == "resid":
        site = mt.resid(layer, head)
    elif kind == "mlp":
        site = mt.mlp(layer)
    else:
        site = mt.heads(f"{layer}.{head}", kind=kind)
    return site if at is None else site.at(at)


def position_mask(at, shape):
    mask = torch.zeros(shape, dtype=torch.bool)
    if at is None:
        mask[:] = True
    elif at == "last":
        mask[:, -1] = True
    else:
        mask[:, list(at) if isinstance(at, tuple) else at] = True
    return mask


def reference_logits(hf, base, source, senders, receivers):
    shape = base.shape
    ref_senders = []
    for kind, layer, head, at in senders:
        components = {
            "embed": [("embed",)],
            "mlp": [("mlp", layer)],
            "attn": [("head", layer, h) for h in range(hf.config.n_head)],
        }.get(kind, [("head", layer, head)])
        ref_senders += [(component, position_mask(at, shape)) for component in components]
    ref_receivers = []
    for kind, layer, head, at in receivers:
        if kind == "logits":
            kind, layer = "resid", 2 * hf.config.n_layer
        elif kind == "resid":
            layer = 2 * layer + RESID_POINT[head]
        ref_receivers.append((kind, layer, head, position_mask(at, shape)))
    return Reference(hf).path_patched(base, source, ref_senders, ref_receivers)


def measured(model, prompts, senders, receivers, metric, source="corrupted", batch_size=32):
    intervention = mt.path_patch(
        [mitest_sender(*s) for s in senders], [mitest_receiver(*r) for r in receivers], source=source
    )
    return mt.measure(model, prompts, intervention, metric, batch_size=batch_size)


def check_against_reference(hf, model, prompts, senders, receivers, source="corrupted", batch_size=32):
    """mitest's path patching equals the reference on logit_diff and on the loss at every position."""
    if isinstance(source, mt.Prompts):
        base, src = prompts.tokens, source.tokens
    elif source == "clean":  # denoising: the corrupted run, with the sender's clean value
        base, src = prompts.corrupted.tokens, prompts.tokens
    else:
        base, src = prompts.tokens, prompts.corrupted.tokens
    logits = reference_logits(hf, base, src, senders, receivers)
    clean_logits, _ = Reference(hf).forward(base)
    worst = moved = 0.0
    for metric, ref_metric in ((mt.metrics.logit_diff, ref_logit_diff), (mt.metrics.loss("all"), ref_loss)):
        effect = measured(model, prompts, senders, receivers, metric, source, batch_size)
        expected = ref_metric(logits, prompts)
        np.testing.assert_allclose(effect.intervened, expected, rtol=1e-4, atol=1e-5, err_msg=str(metric))
        worst = max(worst, float(np.abs(effect.intervened - expected).max()))
        moved = max(moved, float(np.abs(expected - ref_metric(clean_logits, prompts)).max()))
    # the case means something: path patching moved the reference's metrics well beyond the tolerance
    # (a change at the last position only shows in logit_diff; the loss reads the others)
    assert moved > 1e-2
    return worst


# -- 1. mitest against the reference on a random 3-layer GPT-2 with MLPs --------------------------------

CASES = {
    "head->q": ([("head", 0, 1, None)], [("q", 2, 0, None)]),
    "head->k": ([("head", 0, 1, None)], [("k", 1, 3, None)]),
    "head->v": ([("head", 0, 1, None)], [("v", 2, 2, None)]),
    "head->all inputs": ([("head", 0, 1, None)], [("z", 1, 0, None)]),
    "head->mlp of a later layer": ([("head", 0, 1, None)], [("mlp", 1, None, None)]),
    "head->mlp of its own layer": ([("head", 1, 2, None)], [("mlp", 1, None, None)]),
    "head->logits": ([("head", 0, 1, None)], [("logits", None, None, None)]),
    "head->last resid_post": ([("head", 0, 1, None)], [("resid", 2, "post", None)]),
    "head->resid_mid": ([("head", 0, 1, None)], [("resid", 1, "mid", None)]),
    "mlp->q": ([("mlp", 0, None, None)], [("q", 2, 1, None)]),
    "mlp->logits at last": ([("mlp", 1, None, None)], [("logits", None, None, "last")]),
    "embed at 2->k": ([("embed", None, None, 2)], [("k", 1, 2, None)]),
    "two heads->several receivers": (
        [("head", 0, 1, None), ("head", 1, 2, None)],
        [("q", 2, 0, None), ("v", 2, 3, None), ("mlp", 1, None, None)],
    ),
    "two heads of one layer->all inputs of two heads": (
        [("head", 0, 1, None), ("head", 0, 3, None)],
        [("z", 1, 0, None), ("z", 2, 1, None)],
    ),
    "two heads->inputs of two heads of one layer": (
        [("head", 0, 1, None), ("head", 0, 2, None)],
        [("q", 2, 0, None), ("k", 2, 0, None), ("v", 2, 3, None)],
    ),
    "attention layer->mlp and a head": ([("attn", 0, None, None)], [("mlp", 0, None, None), ("k", 1, 1, None)]),
    "head->q at last": ([("head", 0, 1, None)], [("q", 2, 0, "last")]),
    "head at 3->k": ([("head", 0, 1, 3)], [("k", 2, 0, None)]),
    # a receiver at the last position reads only the sender's change there: position 2 is ignored
    "head at 2,-1->all inputs at last": ([("head", 0, 1, (2, -1))], [("z", 1, 1, "last")]),
}


@pytest.mark.parametrize("case", CASES)
def test_path_patching_matches_the_reference(tiny, case):
    hf, model, prompts = tiny
    senders, receivers = CASES[case]
    assert check_against_reference(hf, model, prompts, senders, receivers) < 1e-4


def test_path_patching_in_small_batches_matches_the_reference(tiny):
    hf, model, prompts = tiny
    senders, receivers = CASES["two heads->several receivers"]
    assert check_against_reference(hf, model, prompts, senders, receivers, batch_size=3) < 1e-4


@pytest.mark.parametrize("source", ["clean", "prompts"])
def test_path_patching_from_another_source_matches_the_reference(tiny, source):
    hf, model, prompts = tiny
    if source == "prompts":
        source = random_prompts(seed=7)
    senders, receivers = [("head", 0, 1, None), ("mlp", 0, None, None)], [("z", 2, 0, None), ("mlp", 1, None, None)]
    assert check_against_reference(hf, model, prompts, senders, receivers, source=source) < 1e-4


# -- 2. identities ---------------------------------------------------------------------------------------


def test_path_to_logits_from_a_last_layer_head_is_activation_patching_only_without_mlps(tiny):
    """With every MLP output zero, a last-layer head reaches the logits only directly."""
    _, with_mlp, prompts = tiny
    without_mlp = mt.Model.from_hf(random_gpt2(with_mlp=False))
    sender = mt.heads("2.1")
    for model, same in ((without_mlp, True), (with_mlp, False)):
        path = mt.measure(model, prompts, mt.path_patch(sender, "logits"), mt.metrics.logit_diff)
        patched = mt.measure(model, prompts, mt.patch(sender), mt.metrics.logit_diff)
        assert np.abs(patched.delta).max() > 1e-1
        if same:
            np.testing.assert_allclose(path.intervened, patched.intervened, rtol=1e-5, atol=1e-5)
        else:  # MLP 2 reads the head's output: a path the direct path leaves out
            assert np.abs(path.intervened - patched.intervened).max() > 1e-2


@pytest.mark.filterwarnings("ignore::mitest.NoOpInterventionWarning")
def test_path_patching_from_the_clean_prompts_themselves_is_the_identity(tiny):
    _, model, prompts = tiny
    same = mt.Prompts(prompts.tokens.clone())
    for senders, receivers in CASES.values():
        intervention = mt.path_patch(
            [mitest_sender(*s) for s in senders], [mitest_receiver(*r) for r in receivers], source=same
        )
        for metric in (mt.metrics.logit_diff, mt.metrics.loss("all")):
            effect = mt.measure(model, prompts, intervention, metric)
            np.testing.assert_allclose(effect.intervened, effect.clean, rtol=0, atol=1e-6)


def test_path_patching_differs_from_activation_patching_when_later_components_carry_the_change(tiny):
    _, model, prompts = tiny
    path = mt.measure(model, prompts, mt.path_patch(mt.heads("0.1"), "logits"), mt.metrics.logit_diff)
    patched = mt.measure(model, prompts, mt.patch(mt.heads("0.1")), mt.metrics.logit_diff)
    np.testing.assert_array_equal(path.clean, patched.clean)
    assert np.abs(path.intervened - patched.intervened).max() > 0.1


# -- 3. the planted induction circuit --------------------------------------------------------------------


@pytest.fixture(scope="module")
def induction():
    model, prompts = planted.induction(n=16)
    n = prompts.tokens.shape[1] // 2  # [BOS] + r + r
    bos, first = prompts.tokens[:, :1], prompts.tokens[:, 1 : 1 + n]
    others = prompts.corrupted.tokens[:, 1 + n :]  # tokens that occur nowhere in r
    # Induction keys sit in the first copy: there the previous tokens must differ.
    first_half = mt.Prompts(
        prompts.tokens, answers=prompts.answers, wrong=prompts.wrong, corrupted=torch.cat([bos, others, first], 1)
    )
    return model, prompts, first_half


@pytest.mark.filterwarnings("ignore::mitest.NoOpInterventionWarning")
def test_previous_token_head_reaches_the_induction_head_only_through_its_keys(induction):
    model, _, prompts = induction
    metric = mt.metrics.loss("second_half")
    log_vocab = np.log(model.vocab_size)
    results = {}
    for kind in "qkv":
        receivers = [(kind, 1, 0, None)]
        effect = measured(model, prompts, [("head", 0, 0, None)], receivers, metric)
        logits = reference_logits(
            model.hf_model, prompts.tokens, prompts.corrupted.tokens, [("head", 0, 0, None)], receivers
        )
        np.testing.assert_allclose(effect.intervened, ref_loss(logits, prompts, second_half=True), rtol=1e-4, atol=1e-5)
        results[kind] = effect
    clean = results["k"].clean
    assert clean.max() < 0.5  # only the first token of the repeat is unpredictable
    np.testing.assert_allclose(results["k"].intervened, log_vocab, atol=1e-4)  # induction gone: uniform
    np.testing.assert_allclose(results["q"].intervened, clean, atol=1e-5)
    np.testing.assert_allclose(results["v"].intervened, clean, atol=1e-5)


def test_corrupting_only_the_repeat_leaves_the_key_path_without_effect(induction):
    """The planted twins change only the second copy, whose keys no query can use: no effect."""
    model, prompts, _ = induction
    effect = measured(model, prompts, [("head", 0, 0, None)], [("k", 1, 0, None)], mt.metrics.loss("second_half"))
    assert [hook["changed"] for hook in effect.hooks] == [True]  # the keys did change ...
    np.testing.assert_allclose(effect.intervened, effect.clean, atol=1e-5)  # ... where no query looks
