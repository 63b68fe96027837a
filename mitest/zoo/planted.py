"""Hand-built GPT-2 models with exactly planted circuits: ground truth for testing mitest itself.

Every weight is set by hand, so which components matter, by how much, and which provably do
nothing is known exactly. Both models are attention-only GPT-2s (MLP weights and biases zero, so
every MLP outputs exactly 0) with 4 heads per layer and eager attention.

How LayerNorm is made exact: the residual stream is a sum of blocks on disjoint coordinates (one-hot
codes, and two-coordinate "difference" directions that sum to zero), so on every input the models
are built for, each position's residual has the same mean ``mu`` and variance ``var``. Each
LayerNorm has weight ``sqrt(var + eps)`` and bias ``mu``, which makes it the identity on those
residuals (up to float32 rounding), and anything added along the all-ones vector is removed by its
centring. Attention logits that must be hard differ by 500 or more, so the float32 softmax
underflows to exact zeros and each planted pattern is exactly one-hot.

A "null" head below has nonzero, input-dependent ``hook_z`` (so ablating it is never a no-op) and
zero rows in ``W_O`` (``attn.c_proj.weight``), with the layer's output bias unaffected by it, so its
output is exactly 0 and ablating it by any method leaves every later activation and the logits
bit-identical.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np
import torch
import transformers

from mitest.errors import ZooError
from mitest.model.model import Model
from mitest.spec.prompts import Prompts

HEADS = 4
HARD = 1000.0  # attention-logit scale of planted patterns: non-attended keys score at least HARD / 2 lower
LOGIT = 10.0  # logit the induction model gives its predicted token (all others get 0)
_EPS = 1e-5  # GPT-2's LayerNorm epsilon

# Ground truth of induction(): head names as "layer.head".
PREVIOUS_TOKEN_HEAD = "0.0"
INDUCTION_HEAD = "1.0"
DISTRACTOR_HEAD = "0.1"
INDUCTION_NULL_HEADS = ("0.2", "0.3", "1.1", "1.2", "1.3")

# Ground truth of planted_effect().
EFFECT_HEAD = "0.0"
EFFECT_NULL_HEADS = ("0.1", "0.2", "0.3")
FILLERS = 8  # filler tokens of planted_effect prompts
BASELINES = np.linspace(-1.0, 3.0, FILLERS)  # what each filler token, last in a prompt, adds to the logit difference


class Planted(NamedTuple):
    """A planted model and its prompt set: unpack as ``model, prompts = planted.induction()``."""

    model: Model
    prompts: Prompts


# -- induction -------------------------------------------------------------------------------------


def induction(vocab: int = 16, *, length: int = 7, n: int = 64, seed: int = 0) -> Planted:
    """A 2-layer attention-only GPT-2 with an exact previous-token head and an exact induction head.

    Token ``vocab - 1`` is BOS; the others are content tokens. The residual stream (``d_model =
    4 * d_head``, ``d_head = max(2 * vocab - 1, vocab + 1)``) holds four one-hot blocks: TOK (the
    token), POS (the position), PREV (the previous token) and OUT (the predicted token).

    Ground truth, exact on prompts of distinct tokens ``[BOS] + r + r`` (see :func:`repeated_tokens`):

    - head 0.0, previous-token head: position ``i`` attends to ``i - 1`` (BOS to itself) with
      weight exactly 1 (positional QK) and writes the attended token's one-hot into PREV.
    - head 1.0, induction head: the query is the current token, the key the PREV block (K-composition
      with 0.0), so position ``i`` attends with weight exactly 1 to the position after the previous
      occurrence of its token, or to BOS when there is none; it copies the attended token into OUT.
      The unembedding gives logit ``LOGIT`` (10) to the token in OUT and 0 to every other token (OUT
      of BOS gives all logits 0). So every token of the second copy except its first is predicted
      with loss ``log(1 + (vocab - 1) e^-10)`` (7e-4 at vocab 16); every first-copy token, and the
      first token of the second copy, gets loss ``log(vocab)``. Zero-ablating 0.0 or 1.0 makes
      every prediction nearly uniform (loss near ``log(vocab)``).
    - head 0.1, distractor: attends uniformly to all positions so far and writes a nonzero,
      prompt-dependent multiple of the all-ones vector, which every LayerNorm removes; its
      ``hook_z`` and ``hook_attn_out`` change under ablation, the logits only by float32 rounding.
    - heads 0.2, 0.3, 1.1, 1.2, 1.3 are null: random QKV, zero ``W_O``; ablating them changes no
      logit at all (bit-identical).

    Returns the model and ``n`` prompts from :func:`repeated_tokens` (``length``, ``seed``).
    """
    if vocab < 3:
        raise ZooError(f"vocab must be at least 3 (BOS and two content tokens), got {vocab}")
    n_ctx = 2 * (vocab - 1) + 1  # room for [BOS] + r + r with r up to every content token
    d_head = max(n_ctx, vocab + 1)
    hf = _gpt2(vocab, n_ctx, d_head, n_layer=2)
    bos = vocab - 1
    tok, pos = 0, vocab
    prev, out = pos + n_ctx, pos + n_ctx + vocab
    d = HEADS * d_head
    with torch.no_grad():
        wte, wpe = hf.transformer.wte.weight, hf.transformer.wpe.weight
        wte[:, tok : tok + vocab] = torch.eye(vocab)
        wpe[:, pos : pos + n_ctx] = torch.eye(n_ctx)
        layer0, layer1 = _blocks(hf)
        _identity_norm(layer0.ln_1, total=2.0, square=2.0, d=d)  # TOK + POS
        _identity_norm(layer1.ln_1, total=3.0, square=3.0, d=d)  # + PREV (the distractor is along ones)
        _identity_norm(hf.transformer.ln_f, total=4.0, square=4.0, d=d)  # + OUT

        q0, k0, v0, o0 = _head(layer0, 0, d_head)  # previous-token head
        for i in range(n_ctx):
            q0[pos + i, i] = HARD * math.sqrt(d_head)
            if i + 1 < d_head:
                k0[pos + i, i + 1] = 1.0  # position j keys as j + 1: query i matches key i - 1
        for t in range(vocab):
            v0[tok + t, t] = 1.0
            o0[t, prev + t] = 1.0

        _, _, v1, o1 = _head(layer0, 1, d_head)  # distractor: zero QK (uniform), output along ones
        v1[tok : tok + vocab, 0] = 1.0 + torch.arange(vocab) / vocab
        o1[0, :] = 1.0

        q, k, v, o = _head(layer1, 0, d_head)  # induction head
        for t in range(vocab):
            q[tok + t, t] = HARD * math.sqrt(d_head)
            k[prev + t, t] = 1.0
            v[tok + t, t] = 1.0
            o[t, out + t] = 1.0
        _query_bias(layer1, 0, d_head)[vocab] = HARD * math.sqrt(d_head)  # BOS sink: every query ...
        k[tok + bos, vocab] = 0.5  # ... scores HARD / 2 on the BOS key, below a match (HARD)

        generator = torch.Generator().manual_seed(0)
        for layer, head in ((layer0, 2), (layer0, 3), (layer1, 1), (layer1, 2), (layer1, 3)):
            _null_head(layer, head, d_head, generator)

        hf.lm_head.weight[:bos, out : out + bos] = LOGIT * torch.eye(bos)
    return Planted(Model.from_hf(hf), repeated_tokens(n, vocab=vocab, length=length, seed=seed))


def repeated_tokens(n: int, *, vocab: int = 16, length: int = 7, seed: int = 0) -> Prompts:
    """``n`` prompts ``[BOS] + r + r``: ``r`` is ``length`` distinct random content tokens.

    Answers are the induction prediction at the last token (``r[0]``, which followed ``r[-1]``
    the first time); wrong answers are the last token ``r[-1]`` itself. Each corrupted twin is
    ``[BOS] + r + r2`` with ``r2`` distinct tokens none of which occur in ``r``, so its second half
    has nothing to induce from. Needs ``2 * length <= vocab - 1``.
    """
    if not 1 <= length <= (vocab - 1) // 2:
        raise ZooError(f"length must be in 1..{(vocab - 1) // 2} for vocab {vocab}, got {length}")
    bos = vocab - 1
    generator = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(bos, generator=generator) for _ in range(n)])
    first, other = order[:, :length], order[:, length : 2 * length]
    start = torch.full((n, 1), bos)
    return Prompts(
        torch.cat([start, first, first], 1),
        answers=first[:, 0],
        wrong=first[:, -1],
        corrupted=torch.cat([start, first, other], 1),
    )


# -- planted effect --------------------------------------------------------------------------------


def planted_effect(
    strength: float, *, spread: float = 1.0, levels: int = 16, length: int = 8, n: int = 64, seed: int = 0
) -> Planted:
    """A 1-layer attention-only GPT-2 whose head 0.0 adds a known amount to the logit difference.

    Prompts (see :func:`effect_prompts`) are ``[BOS, m, f, ..., f]``: a level token ``m`` in
    ``0..levels-1`` and filler tokens; the answer is token ``A`` and the wrong answer ``W``
    (``mt.metrics.logit_diff`` reads logit(A) - logit(W) at the last token).

    Ground truth, exact up to float32 rounding (about 1e-6):

    - head 0.0 attends with weight exactly 1 to position 1 and adds ``effect_sizes(...)[m]``
      (:func:`effect_sizes`: ``strength + spread * q[m]``, ``q`` standardised normal quantiles with
      mean 0 and population sd 1) to the logit difference at every later position. Zero- or
      resample-ablating it changes each prompt's logit difference by exactly ``-size[m]`` (zero) or
      ``size[m'] - size[m]`` (resample from a prompt with level ``m'``). Its output lies on a circle
      with the layer's output bias (zero ablation's output), so the residual norm, and with it
      LayerNorm's scale, never changes. Mean ablation moves it inside the circle, so its effect
      there is only close to ``mean size - size[m]``.
    - heads 0.1, 0.2, 0.3 are null: random QKV, zero ``W_O``; ablating them changes no logit.
    - The last filler token ``levels + j`` adds ``BASELINES[j]`` (between -1 and 3) to the clean
      logit difference through the embedding; no head touches it.
    """
    sizes = effect_sizes(strength, spread=spread, levels=levels)
    vocab = levels + FILLERS + 3  # levels, fillers, A, W, BOS
    answer = levels + FILLERS
    d = HEADS * math.ceil((vocab + length + 8) / HEADS)
    d_head = d // HEADS
    hf = _gpt2(vocab, length, d_head, n_layer=1)
    tok, pos, plane = 0, vocab, vocab + length  # plane: 8 coordinates for 4 zero-sum directions
    p1, p2, q1, q2 = (_difference(plane + 2 * i, plane + 2 * i + 1, d) for i in range(4))
    radius = float(np.abs(sizes).max()) + 1.0  # circle of the head's output (plus bias) in the P plane
    baselines = torch.as_tensor(BASELINES, dtype=torch.float32)
    rho = 4.0  # every token's embedding has norm rho in the Q plane; its Q1 part is its baseline
    with torch.no_grad():
        wte, wpe = hf.transformer.wte.weight, hf.transformer.wpe.weight
        wte[:, tok : tok + vocab] = torch.eye(vocab)
        wte += rho * q2  # every token at angle pi / 2 (baseline 0) ...
        fillers = slice(levels, levels + FILLERS)
        wte[fillers] += baselines[:, None] * q1 + (torch.sqrt(rho**2 - baselines**2) - rho)[:, None] * q2
        wpe[:, pos : pos + length] = torch.eye(length)
        layer = _blocks(hf)[0]
        _identity_norm(layer.ln_1, total=2.0, square=2.0 + rho**2, d=d)
        _identity_norm(hf.transformer.ln_f, total=2.0, square=2.0 + rho**2 + radius**2, d=d)

        _, k, v, o = _head(layer, 0, d_head)
        _query_bias(layer, 0, d_head)[0] = HARD * math.sqrt(d_head)
        k[pos + 1, 0] = 1.0  # every position attends to position 1 (BOS, at 0, to itself)
        height = torch.sqrt(radius**2 - torch.as_tensor(sizes, dtype=torch.float32) ** 2)
        v[tok : tok + levels, 0] = torch.as_tensor(sizes, dtype=torch.float32)
        v[tok : tok + levels, 1] = height - radius  # output + bias = (size, height): norm radius
        o[0], o[1] = p1, p2
        layer.attn.c_proj.bias.copy_(radius * p2)
        generator = torch.Generator().manual_seed(0)
        for head in range(1, HEADS):
            _null_head(layer, head, d_head, generator)
        hf.lm_head.weight[answer] = p1 + q1  # logit(A) reads the head's size plus the baseline; W reads 0
    return Planted(Model.from_hf(hf), effect_prompts(n, levels=levels, length=length, seed=seed))


def effect_sizes(strength: float, *, spread: float = 1.0, levels: int = 16) -> np.ndarray:
    """What head 0.0 of :func:`planted_effect` adds to the logit difference, per level token.

    ``strength + spread * q`` with ``q`` the standardised normal quantiles at ``(k + 0.5) / levels``
    (mean exactly 0, population sd exactly 1), so over uniformly drawn levels the per-prompt effect
    has mean ``strength`` and sd ``spread``.
    """
    if levels < 2:
        raise ZooError(f"levels must be at least 2, got {levels}")
    q = np.array([NormalDist().inv_cdf((k + 0.5) / levels) for k in range(levels)])
    q = (q - q.mean()) / q.std()
    return strength + spread * q


def effect_prompts(n: int, *, levels: int = 16, length: int = 8, seed: int = 0) -> Prompts:
    """``n`` prompts ``[BOS, m, f, ..., f]`` of :func:`planted_effect`, levels ``m`` drawn uniformly.

    ``prompts.ids[:, 1]`` is each prompt's level. Each corrupted twin has a fresh level and fresh
    fillers.
    """
    if length < 3:
        raise ZooError(f"length must be at least 3 (BOS, level, filler), got {length}")
    bos, answer = levels + FILLERS + 2, levels + FILLERS
    generator = torch.Generator().manual_seed(seed)

    def draw() -> torch.Tensor:
        level = torch.randint(0, levels, (n, 1), generator=generator)
        filler = torch.randint(levels, levels + FILLERS, (n, length - 2), generator=generator)
        return torch.cat([torch.full((n, 1), bos), level, filler], 1)

    clean, corrupted = draw(), draw()
    return Prompts(clean, answers=torch.full((n,), answer), wrong=torch.full((n,), answer + 1), corrupted=corrupted)


# -- saturated attention ---------------------------------------------------------------------------

# Ground truth of saturated_attention(): head 0.0's key decides, through a saturated softmax, which
# token it copies; heads 0.1 and 0.2 do the same through soft attention with smaller outputs; 0.3 is null.
SATURATED_HEAD = "0.0"
SATURATED_NULL_HEAD = "0.3"
_SATURATED_GAPS = (None, 1.0, 0.5)  # key gaps of heads 0.1 and 0.2 (head 0.0's is the argument)
_SATURATED_WEIGHTS = (1.0, 0.5, 0.25)  # how much each head's output moves the logit difference


def saturated_attention(gap: float = 20.0, *, kinds: int = 4, n: int = 64, seed: int = 0) -> Planted:
    """A 1-layer attention-only GPT-2 where patching a key moves a saturated softmax across.

    Prompts (see :func:`saturated_prompts`) are ``[BOS, x, y]``, read at the last token by
    ``mt.metrics.logit_diff``. Tokens are "high" (``0..kinds-1``) or "low" (``kinds..2*kinds-1``);
    token ``j`` of either kind votes ``1 + j / kinds`` (high: for the answer, low: against it).

    Ground truth, for cells ``mt.heads("*", kind="k")`` patched from the corrupted twins
    ``[BOS, low, high]`` (clean: ``[BOS, high, low]``):

    - head 0.0: the last query scores ``+gap/2`` on a high key and ``-gap/2`` on a low one, so it
      attends to the high token with weight ``1 - O(e^-gap)`` and writes its vote to the logit
      difference. Patching its key swaps the scores: it then attends to the clean low token, and the
      logit difference falls by about ``vote(x) + vote(y)`` (2 to 3.5). The gradient at the clean run
      is ``O(e^-gap)``: attribution patching sees nothing.
    - heads 0.1 and 0.2: the same with key gaps 1 and 0.5 (soft attention) and outputs scaled by 0.5
      and 0.25: smaller effects that attribution patching estimates well.
    - head 0.3 is null (zero ``W_O``).
    """
    if not (isinstance(gap, (int, float)) and gap > 0):
        raise ZooError(f"gap must be a positive number, got {gap!r}")
    if not (isinstance(kinds, int) and kinds >= 1):
        raise ZooError(f"kinds must be a positive int, got {kinds!r}")
    vocab = 2 * kinds + 3  # high, low, answer, wrong, BOS
    answer, bos = 2 * kinds, 2 * kinds + 2
    d_head = math.ceil((vocab + 3 + 2) / HEADS)
    d = HEADS * d_head
    hf = _gpt2(vocab, 3, d_head, n_layer=1)
    tok, pos, plane = 0, vocab, vocab + 3
    direction = _difference(plane, plane + 1, d)
    votes = 1.0 + torch.arange(kinds) / kinds
    with torch.no_grad():
        hf.transformer.wte.weight[:, tok : tok + vocab] = torch.eye(vocab)
        hf.transformer.wpe.weight[:, pos : pos + 3] = torch.eye(3)
        layer = _blocks(hf)[0]
        _identity_norm(layer.ln_1, total=2.0, square=2.0, d=d)
        _identity_norm(hf.transformer.ln_f, total=2.0, square=2.0 + float(votes.mean()) ** 2, d=d)
        for head, (head_gap, weight) in enumerate(zip(_SATURATED_GAPS, _SATURATED_WEIGHTS, strict=True)):
            half = (gap if head_gap is None else head_gap) / 2
            _, k, v, o = _head(layer, head, d_head)
            _query_bias(layer, head, d_head)[0] = math.sqrt(d_head)  # every query scores each key by its entry 0
            k[tok : tok + kinds, 0] = half
            k[tok + kinds : tok + 2 * kinds, 0] = -half
            k[tok + bos, 0] = -half - 10.0  # BOS draws no attention
            v[tok : tok + kinds, 0] = votes
            v[tok + kinds : tok + 2 * kinds, 0] = -votes
            o[0] = weight * direction
        _null_head(layer, HEADS - 1, d_head, torch.Generator().manual_seed(0))
        hf.lm_head.weight[answer] = direction
    return Planted(Model.from_hf(hf), saturated_prompts(n, kinds=kinds, seed=seed))


def saturated_prompts(n: int, *, kinds: int = 4, seed: int = 0) -> Prompts:
    """``n`` prompts ``[BOS, high, low]`` of :func:`saturated_attention`; each corrupted twin is
    ``[BOS, low, high]`` with fresh tokens."""
    bos, answer = 2 * kinds + 2, 2 * kinds
    generator = torch.Generator().manual_seed(seed)

    def tokens(first: int, second: int) -> torch.Tensor:
        a = first + torch.randint(0, kinds, (n, 1), generator=generator)
        b = second + torch.randint(0, kinds, (n, 1), generator=generator)
        return torch.cat([torch.full((n, 1), bos), a, b], 1)

    clean, corrupted = tokens(0, kinds), tokens(kinds, 0)
    return Prompts(clean, answers=torch.full((n,), answer), wrong=torch.full((n,), answer + 1), corrupted=corrupted)


# -- weight surgery --------------------------------------------------------------------------------


def _gpt2(vocab: int, n_ctx: int, d_head: int, n_layer: int) -> transformers.GPT2LMHeadModel:
    """A GPT-2 of the given shape with every parameter zero."""
    config = transformers.GPT2Config(
        vocab_size=vocab,
        n_positions=n_ctx,
        n_embd=HEADS * d_head,
        n_layer=n_layer,
        n_head=HEADS,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=_EPS,
        bos_token_id=vocab - 1,
        eos_token_id=vocab - 1,
        tie_word_embeddings=False,
        attn_implementation="eager",  # type: ignore[call-arg]  # a PretrainedConfig keyword, not in the typed signature
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    return model


def _blocks(hf: transformers.GPT2LMHeadModel) -> list[Any]:
    """GPT-2's blocks, typed ``Any``: torch types a submodule's attributes as ``Tensor | Module``."""
    return list(hf.transformer.h)


def _identity_norm(norm: torch.nn.LayerNorm, *, total: float, square: float, d: int) -> None:
    """Make ``norm`` the identity on residuals whose entries sum to ``total`` with squares summing to ``square``."""
    mean = total / d
    var = square / d - mean**2
    norm.weight.fill_(math.sqrt(var + _EPS))
    norm.bias.fill_(mean)


def _head(block: Any, head: int, d_head: int) -> tuple[torch.Tensor, ...]:
    """Views of one head's W_Q, W_K, W_V (``[d_model, d_head]``) and W_O (``[d_head, d_model]``)."""
    d = HEADS * d_head
    cols = slice(head * d_head, (head + 1) * d_head)
    w = block.attn.c_attn.weight
    q, k, v = (w[:, part * d : (part + 1) * d][:, cols] for part in range(3))
    return q, k, v, block.attn.c_proj.weight[cols]


def _query_bias(block: Any, head: int, d_head: int) -> torch.Tensor:
    return block.attn.c_attn.bias[head * d_head : (head + 1) * d_head]


def _null_head(block: torch.nn.Module, head: int, d_head: int, generator: torch.Generator) -> None:
    """Random W_Q, W_K, W_V (nonzero, input-dependent ``hook_z``); W_O stays zero."""
    for weight in _head(block, head, d_head)[:3]:
        weight.copy_(torch.randn(weight.shape, generator=generator))


def _difference(a: int, b: int, d: int) -> torch.Tensor:
    """Unit vector ``(e_a - e_b) / sqrt(2)``: orthogonal to the all-ones vector, so LayerNorm's mean ignores it."""
    vector = torch.zeros(d)
    vector[a], vector[b] = 2**-0.5, -(2**-0.5)
    return vector
