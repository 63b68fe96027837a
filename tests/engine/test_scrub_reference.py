"""Causal scrubbing (``mt.scrub``) against an independent, brute-force plain-torch reference.

The reference never goes through mitest's hooks: it is a hand-written float64 GPT-2 forward pass
that keeps every writer's contribution to the residual stream apart (the token embedding, each
head's ``z_h @ W_O[h]``, each MLP's output; the positional embedding and the attention output
bias are always added as they are), and it evaluates a hypothesis straight from the definition:

* To compute node N for reference prompt x, each input ("read") of N -- q, k and v separately
  when the edges into N name them, otherwise one read for all -- draws ONE random other prompt
  x_r of x's length. Every writer the read sees takes its clean value on x_r, except the claimed
  parents of the read (edges ``P -> N`` and ``P -> N.read``): each takes its own value computed
  recursively for a prompt x_P that agrees with x on P's feature (x itself when P has no feature
  or no other prompt agrees). The embedding's value for x_P is its clean embedding on x_P.
* The root ``output`` is the residual stream entering ``ln_f``, built the same way from the edges
  into ``output``; the metric reads the root prompt's own answer and targets.
* The fully resampled run (``Effect.corrupted``) claims no parents at all.

With TWO prompts of equal length every draw is forced ("a random other prompt" is the other one),
so the scrubbed metric is a deterministic function the reference computes exactly (part 1). With
more prompts the draws are random; part 2 recovers each draw from mitest's result, on hypotheses
whose value depends on one or two draws only, and checks where the draws come from.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import transformers

import mitest as mt
from tests.builders import random_gpt2

N_LAYER, N_HEAD, D_MODEL, VOCAB, SEQ = 3, 4, 32, 50, 6
D_HEAD = D_MODEL // N_HEAD
RTOL, ATOL = 1e-4, 1e-5


# -- the model and its float64 reference forward pass -----------------------------------------------


EMBED = ("embed",)  # writer keys: ("embed",), ("head", layer, head), ("mlp", layer)


def write_stage(writer: tuple) -> int:
    """Embedding 0, heads of layer L at 2L + 1, MLP L at 2L + 2; a read at stage s sees stages <= s."""
    if writer[0] == "embed":
        return 0
    return 2 * writer[1] + (1 if writer[0] == "head" else 2)


class Reference:
    """GPT-2 in float64 on one unpadded prompt ``tokens [seq]`` at a time, writers kept apart.

    Writers are keyed ``("embed",)``, ``("head", layer, head)`` (the head's ``z_h @ W_O[h]``) and
    ``("mlp", layer)``; every value is ``[seq, d_model]``.
    """

    def __init__(self, hf: transformers.GPT2LMHeadModel) -> None:
        self.hf, self.t = hf, hf.transformer
        self.n_layers = hf.config.n_layer
        self.eps = hf.config.layer_norm_epsilon

    def ln(self, x, norm):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * norm.weight.double() + norm.bias.double()

    @staticmethod
    def conv1d(x, layer):  # transformers' Conv1D: x @ weight + bias, weight stored [in, out]
        return x @ layer.weight.double() + layer.bias.double()

    @torch.no_grad()
    def qkv(self, layer, resid):
        """q, k, v ``[seq, head, d_head]`` of every head of ``layer`` reading ``resid [seq, d]``."""
        out = self.conv1d(self.ln(resid, self.t.h[layer].ln_1), self.t.h[layer].attn.c_attn)
        return [part.unflatten(-1, (N_HEAD, D_HEAD)) for part in out.split(D_MODEL, -1)]

    @torch.no_grad()
    def head_outputs(self, layer, q, k, v):
        """Each head's residual contribution ``z_h @ W_O[h]`` (no bias), causal attention."""
        seq = q.shape[0]
        scores = torch.einsum("qhd,khd->hqk", q, k) / D_HEAD**0.5
        causal = torch.ones(seq, seq, dtype=torch.bool).tril()
        z = torch.einsum("hqk,khd->qhd", scores.masked_fill(~causal, float("-inf")).softmax(-1), v)
        w_o = self.t.h[layer].attn.c_proj.weight.double()
        return {("head", layer, h): z[:, h] @ w_o[h * D_HEAD : (h + 1) * D_HEAD] for h in range(N_HEAD)}

    @torch.no_grad()
    def mlp(self, layer, resid):
        block = self.t.h[layer]
        return self.conv1d(block.mlp.act(self.conv1d(self.ln(resid, block.ln_2), block.mlp.c_fc)), block.mlp.c_proj)

    def residual(self, writes: dict, stage: int, seq: int):
        """The residual stream a reader at ``stage`` sees: positions, attention biases and ``writes``."""
        resid = self.t.wpe.weight.double()[:seq].clone()
        for layer in range(self.n_layers):
            if 2 * layer + 1 <= stage:
                resid = resid + self.t.h[layer].attn.c_proj.bias.double()
        for writer, value in writes.items():
            assert write_stage(writer) <= stage
            resid = resid + value
        return resid

    @torch.no_grad()
    def clean(self, tokens):
        """Every writer's clean contribution on ``tokens``, and the final residual stream."""
        writes = {EMBED: self.t.wte.weight.double()[tokens]}
        resid = self.residual(writes, 0, len(tokens))
        for layer in range(self.n_layers):
            heads = self.head_outputs(layer, *self.qkv(layer, resid))
            writes.update(heads)
            resid = resid + sum(heads.values()) + self.t.h[layer].attn.c_proj.bias.double()
            writes["mlp", layer] = self.mlp(layer, resid)
            resid = resid + writes["mlp", layer]
        return writes, resid

    @torch.no_grad()
    def logits(self, resid_final):
        return self.ln(resid_final, self.t.ln_f) @ self.hf.lm_head.weight.double().T


def ref_logit_diff(logits, answer, wrong) -> float:
    return float(logits[-1, answer] - logits[-1, wrong])


def ref_loss(logits, tokens) -> float:
    """Mean next-token loss over every position, targets the prompt's own tokens."""
    return float(-logits[:-1].log_softmax(-1).gather(1, tokens[1:, None]).mean())


# -- hypotheses, written once for both mitest and the reference -------------------------------------------


@dataclass(frozen=True)
class Node:
    """A hypothesis node, in terms both mitest (:meth:`site`) and the reference (:meth:`writers`) read."""

    kind: str  # "embed" | "heads" | "mlp"
    layer: int = -1
    heads: tuple[int, ...] = ()
    at: tuple[int, ...] | None = None  # the positions claimed (None: all)

    def site(self):
        if self.kind == "embed":
            site = mt.site("hook_embed")
        elif self.kind == "mlp":
            site = mt.mlp(self.layer)
        elif self.heads == tuple(range(N_HEAD)):
            site = mt.attn(self.layer)
        else:
            [site] = mt.heads(*(f"{self.layer}.{h}" for h in self.heads))
        return site if self.at is None else site.at(self.at)

    def writers(self) -> list[tuple]:
        if self.kind == "embed":
            return [EMBED]
        if self.kind == "mlp":
            return [("mlp", self.layer)]
        return [("head", self.layer, h) for h in self.heads]

    def read_stage(self) -> int:
        return 2 * self.layer + (0 if self.kind == "heads" else 1)


EMB = Node("embed")


def heads(layer: int, *which: int, at=None) -> Node:
    return Node("heads", layer, tuple(which) or tuple(range(N_HEAD)), at)


def mlp(layer: int, at=None) -> Node:
    return Node("mlp", layer, (), at)


@dataclass(frozen=True)
class Case:
    """One hypothesis, given to mitest as an ``mt.Hypothesis`` and to the reference as plain data."""

    nodes: dict  # name -> Node
    edges: list  # (parent, "child" | "child.q" | ... | "output")
    features: dict  # name -> f(token tuple) -> hashable

    def hypothesis(self) -> mt.Hypothesis:
        features = {name: (lambda prompt, f=f: f(prompt.tokens)) for name, f in self.features.items()}
        return mt.Hypothesis({name: node.site() for name, node in self.nodes.items()}, self.edges, features)


class Scrubbed:
    """The definition of causal scrubbing, evaluated on the reference.

    ``draw(pool)`` picks one prompt index from a non-empty pool; with two prompts every pool has
    one member and :func:`forced` makes the whole evaluation deterministic; a node's value for a
    prompt is then always the same, and computed once.
    """

    def __init__(self, ref: Reference, tokens: list[torch.Tensor], case: Case, draw) -> None:
        self.ref, self.tokens, self.draw = ref, tokens, draw
        self.nodes = case.nodes
        self.edges = [(parent, *_split_target(target)) for parent, target in case.edges]
        self.features = {name: [f(tuple(t.tolist())) for t in tokens] for name, f in case.features.items()}
        self.clean = [ref.clean(t)[0] for t in tokens]
        self.memo = {} if draw is forced else None

    def parents(self, child: str, read: str) -> list[str]:
        return [p for p, c, r in self.edges if c == child and r in (read, "all")]

    def split(self, name: str) -> bool:
        return any(c == name and r != "all" for _, c, r in self.edges)

    def same_length(self, x: int) -> list[int]:
        return [j for j in range(len(self.tokens)) if j != x and len(self.tokens[j]) == len(self.tokens[x])]

    def other(self, x: int) -> int:
        return self.draw(self.same_length(x))

    def agreeing(self, x: int, name: str) -> int:
        values = self.features.get(name)
        if values is None:
            return x
        pool = [j for j in self.same_length(x) if values[j] == values[x]]
        return self.draw(pool) if pool else x

    def read(self, x: int, parents: list[str], stage: int):
        """The residual stream one read of a node sees, for reference ``x``."""
        donor = self.other(x)
        writes = {w: v for w, v in self.clean[donor].items() if write_stage(w) <= stage}
        seq = len(self.tokens[x])
        for parent in parents:
            node = self.nodes[parent]
            value = self.value(parent, self.agreeing(x, parent))
            mask = torch.zeros(seq, dtype=torch.bool)
            mask[list(range(seq)) if node.at is None else list(node.at)] = True
            for writer in node.writers():
                writes[writer] = torch.where(mask[:, None], value[writer], writes[writer])
        return self.ref.residual(writes, stage, seq)

    def value(self, name: str, x: int) -> dict:
        """Node ``name``'s writers' values computed for reference ``x``."""
        if self.memo is None:
            return self._value(name, x)
        if (name, x) not in self.memo:
            self.memo[name, x] = self._value(name, x)
        return self.memo[name, x]

    def _value(self, name: str, x: int) -> dict:
        node = self.nodes[name]
        stage = node.read_stage()
        if node.kind == "embed":
            return {EMBED: self.clean[x][EMBED]}
        if node.kind == "mlp":
            return {("mlp", node.layer): self.ref.mlp(node.layer, self.read(x, self.parents(name, "all"), stage))}
        if self.split(name):
            q, k, v = (
                self.ref.qkv(node.layer, self.read(x, self.parents(name, read), stage))[i]
                for i, read in enumerate("qkv")
            )
        else:
            q, k, v = self.ref.qkv(node.layer, self.read(x, self.parents(name, "all"), stage))
        return self.ref.head_outputs(node.layer, q, k, v)

    @torch.no_grad()
    def logits(self, x: int, parents: list[str] | None = None):
        """Logits for root prompt ``x``: scrubbed, or fully resampled with ``parents=[]``."""
        parents = self.parents("output", "all") if parents is None else parents
        return self.ref.logits(self.read(x, parents, 2 * self.ref.n_layers))


def _split_target(target: str) -> tuple[str, str]:
    child, _, read = target.partition(".")
    return child, read or "all"


def forced(pool: list[int]) -> int:
    (only,) = pool  # two prompts: "a random other prompt" is the other one
    return only


# -- part 1: two prompts, every draw forced, mitest == the reference -----------------------------------


def two_prompts(seed: int = 3) -> mt.Prompts:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, VOCAB, (2, SEQ), generator=g)
    return mt.Prompts(tokens, answers=[7, 19], wrong=[31, 4])


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    hf = random_gpt2()
    return hf, mt.Model.from_hf(hf), two_prompts()


def test_reference_reproduces_transformers_logits(tiny):
    hf, _, prompts = tiny
    ref = Reference(hf)
    for tokens in [*prompts.tokens, torch.tensor([5, 9, 2])]:
        with torch.no_grad():
            expected = hf(input_ids=tokens[None]).logits[0]
        torch.testing.assert_close(ref.logits(ref.clean(tokens)[1]).float(), expected, atol=1e-5, rtol=0)


def all_writers(n_layers: int, per_head: tuple[int, ...] = ()) -> dict:
    """A node for every writer; the layers in ``per_head`` get one node per head."""
    nodes = {"emb": EMB}
    for layer in range(n_layers):
        if layer in per_head:
            nodes.update({f"h{layer}{h}": heads(layer, h) for h in range(N_HEAD)})
        else:
            nodes[f"attn{layer}"] = heads(layer)
        nodes[f"mlp{layer}"] = mlp(layer)
    return nodes


def complete(nodes: dict, split: tuple[str, ...] = ()) -> list:
    """Every node feeds every node that reads it, and the output; nodes in ``split`` get q/k/v edges."""
    edges = []
    for child, node in nodes.items():
        if node.kind == "embed":
            continue
        for parent, other in nodes.items():
            if write_stage(other.writers()[0]) <= node.read_stage():
                edges += [(parent, f"{child}.{r}") for r in "qkv"] if child in split else [(parent, child)]
    return edges + [(name, "output") for name in nodes]


CHAIN_NODES = {"emb": EMB, "a": heads(0, 1), "b": heads(1, 2), "m": mlp(1)}
# embed -> 0.1 -> 1.2.k, embed -> 1.2.q, (1.2.v reads only resampled writers), 1.2 -> MLP 1 -> output, 1.2 -> output
CHAIN_EDGES = [("emb", "a"), ("a", "b.k"), ("emb", "b.q"), ("emb", "m"), ("b", "m"), ("b", "output"), ("m", "output")]


MIXED_NODES = {"emb": EMB, "m0": mlp(0), "x": heads(1, 0), "y": heads(1, 1, 2), "h": heads(2, 3)}
MIXED_EDGES = [("emb", "m0"), ("m0", "x"), ("emb", "y"), ("x", "h.v"), ("y", "h.v"), ("m0", "h.q"), ("h", "output")]
MIXED_EDGES.append(("emb", "h"))  # a bare edge into a head node with split reads feeds all three


def constant(tokens):
    return 0


def own_prompt(tokens):  # every prompt differs: no other prompt agrees, the node reads its own
    return tokens


# expect: what the scrubbed metric must equal besides the reference ("corrupted", "clean", or
# None: it must differ from both, so the case tells the semantics apart)
CASES = {
    "empty hypothesis": (Case({}, [], {}), "corrupted"),
    "output <- last-layer head <- embedding": (
        Case({"emb": EMB, "h": heads(2, 1)}, [("emb", "h"), ("h", "output")], {}),
        None,
    ),
    "two-layer chain with split reads": (Case(CHAIN_NODES, CHAIN_EDGES, {}), None),
    "chain, constant feature on 0.1": (Case(CHAIN_NODES, CHAIN_EDGES, {"a": constant}), None),
    "chain, constant feature on 1.2 and the embedding": (
        Case(CHAIN_NODES, CHAIN_EDGES, {"b": constant, "emb": constant}),
        None,
    ),
    "chain, a feature no other prompt shares": (
        Case(CHAIN_NODES, CHAIN_EDGES, {"a": own_prompt, "b": own_prompt}),
        None,
    ),
    "two heads claimed at the last position only": (
        Case(
            {"emb": EMB, "h": heads(1, 0, 3, at=(-1,)), "m": mlp(2)},
            [("emb", "h"), ("h", "m"), ("emb", "m"), ("m", "output"), ("h", "output"), ("emb", "output")],
            {},
        ),
        None,
    ),
    "two nodes on one writer, bare and split edges, constant feature": (
        Case(MIXED_NODES, MIXED_EDGES, {"m0": constant}),
        None,
    ),
    "every writer, all edges": (Case(all_writers(N_LAYER), complete(all_writers(N_LAYER)), {}), "clean"),
    "every writer, split reads in the last layer": (
        Case(all_writers(N_LAYER), complete(all_writers(N_LAYER), split=(f"attn{N_LAYER - 1}",)), {}),
        "clean",
    ),
}

METRICS = {"logit_diff": mt.metrics.logit_diff, "loss": mt.metrics.loss("all")}


def reference_values(hf, prompts, case):
    """Per metric: the reference's clean, scrubbed and fully resampled values for both prompts."""
    ref = Reference(hf)
    tokens = list(prompts.tokens)
    scrub = Scrubbed(ref, tokens, case, forced)
    out = {}
    for name in METRICS:
        rows = []
        for x, t in enumerate(tokens):
            runs = (ref.logits(ref.clean(t)[1]), scrub.logits(x), scrub.logits(x, parents=[]))
            if name == "logit_diff":
                a, w = int(prompts.answers[x]), int(prompts.wrong[x])
                rows.append([ref_logit_diff(logits, a, w) for logits in runs])
            else:
                rows.append([ref_loss(logits, t) for logits in runs])
        out[name] = np.array(rows).T  # [clean | scrubbed | resampled, prompt]
    return out


def assert_close(got, expected, what):
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=what)


@pytest.mark.parametrize("name", CASES)
def test_scrubbing_matches_the_reference(tiny, name):
    hf, model, prompts = tiny
    case, expect = CASES[name]
    expected = reference_values(hf, prompts, case)
    differs = 0.0
    for metric_name, metric in METRICS.items():
        clean, scrubbed, resampled = expected[metric_name]
        effect = mt.measure(model, prompts, mt.scrub(case.hypothesis(), seed=5), metric)
        assert_close(effect.clean, clean, f"{name}: clean {metric_name}")
        assert_close(effect.intervened, scrubbed, f"{name}: scrubbed {metric_name}")
        assert_close(effect.corrupted, resampled, f"{name}: resampled {metric_name}")
        if expect == "clean":
            np.testing.assert_allclose(effect.intervened, effect.clean, rtol=1e-5, atol=1e-5)
        elif expect == "corrupted":
            np.testing.assert_allclose(effect.intervened, effect.corrupted, rtol=1e-6, atol=1e-6)
        else:
            differs = max(differs, min(np.abs(scrubbed - clean).max(), np.abs(scrubbed - resampled).max()))
        assert np.abs(clean - resampled).min() > 1e-2  # resampling changes every prompt
    if expect is None:  # the case tells scrubbing apart from both the clean and the resampled model
        assert differs > 1e-2


def test_scrubbing_in_batches_of_one_prompt_matches_the_reference(tiny):
    hf, model, prompts = tiny
    case, _ = CASES["two nodes on one writer, bare and split edges, constant feature"]
    _, scrubbed, resampled = reference_values(hf, prompts, case)["loss"]
    effect = mt.measure(model, prompts, mt.scrub(case.hypothesis()), METRICS["loss"], batch_size=1)
    assert_close(effect.intervened, scrubbed, "scrubbed loss, batch_size=1")
    assert_close(effect.corrupted, resampled, "resampled loss, batch_size=1")


def test_the_resampled_run_is_the_other_prompts_run_on_the_references_answers(tiny):
    """No claims: the final residual stream comes whole from the other prompt; the metric still
    reads the reference's own answer and targets."""
    hf, model, prompts = tiny
    with torch.no_grad():
        logits = hf(input_ids=prompts.tokens).logits.double()
    swapped = logits.flip(0)
    for metric_name, metric in METRICS.items():
        effect = mt.measure(model, prompts, mt.scrub(mt.Hypothesis({}, []), seed=1), metric)
        if metric_name == "logit_diff":
            expected = [ref_logit_diff(swapped[x], int(prompts.answers[x]), int(prompts.wrong[x])) for x in range(2)]
        else:
            expected = [ref_loss(swapped[x], prompts.tokens[x]) for x in range(2)]
        assert_close(effect.intervened, expected, f"empty hypothesis {metric_name}")
        assert_close(effect.corrupted, expected, f"resampled {metric_name}")


def test_a_constant_feature_reads_the_other_prompt_and_a_lone_feature_its_own(tiny):
    """Features decide where a parent is evaluated: a constant one moves it to the other prompt
    (the only other prompt that agrees), one no other prompt shares keeps it on the reference."""
    _, model, prompts = tiny

    def scrubbed(features):
        hypothesis = Case(CHAIN_NODES, CHAIN_EDGES, features).hypothesis()
        return mt.measure(model, prompts, mt.scrub(hypothesis), mt.metrics.logit_diff).intervened

    none, lone, const = scrubbed({}), scrubbed({"a": own_prompt}), scrubbed({"a": constant})
    np.testing.assert_allclose(lone, none, rtol=1e-6, atol=1e-6)
    assert np.abs(const - none).min() > 1e-2


# -- part 2: many prompts, the draws recovered from mitest's result -------------------------------------


def class_of(tokens):
    return tokens[1] % 2


def many_prompts(per_group: int = 10) -> mt.Prompts:
    """``4 * per_group`` prompts: lengths 7 and 8, and within each length both classes of ``class_of``."""
    g = torch.Generator().manual_seed(11)
    rows, answers, wrong = [], [], []
    for length in (7, 8):
        for parity in (0, 1):
            for _ in range(per_group):
                row = torch.randint(1, VOCAB, (length,), generator=g)
                row[1] = 2 * torch.randint(0, VOCAB // 2, (1,), generator=g) + parity
                rows.append(row.tolist())
                answers.append(int(torch.randint(0, VOCAB, (1,), generator=g)))
                wrong.append((answers[-1] + 1 + int(torch.randint(0, VOCAB - 1, (1,), generator=g))) % VOCAB)
    return mt.Prompts(rows, answers=answers, wrong=wrong)


def identify(observed: tuple, candidates: dict, tol: float = 3e-5) -> object:
    """The one candidate donor whose metric values match ``observed``; fails when none or several could.

    mitest runs in float32: its values sit within a few 1e-6 of the float64 reference's.
    """
    gaps = sorted((float(np.abs(np.subtract(values, observed)).max()), j) for j, values in candidates.items())
    assert gaps[0][0] < tol, f"no candidate within {tol:g} of {observed} (nearest {gaps[:2]})"
    assert len(gaps) == 1 or gaps[1][0] > 3 * tol, f"ambiguous: {gaps[:2]}"
    return gaps[0][1]


def chi_square(counts) -> float:
    counts = np.asarray(counts, dtype=float)
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.fixture(scope="module")
def many():
    """Two layers keep the complete hypothesis below (2 ** 4 passes per evaluation) cheap."""
    torch.set_num_threads(1)
    hf = random_gpt2(n_layer=2, seed=1)
    prompts = many_prompts()
    ref = Reference(hf)
    tokens = [prompts.tokens[i, : int(prompts.lengths[i])] for i in range(len(prompts))]
    return hf, mt.Model.from_hf(hf), prompts, ref, tokens, [ref.clean(t) for t in tokens]


def test_feature_donors_are_uniform_among_agreeing_prompts_of_the_same_length(many):
    """Every writer claimed with all edges, a feature on the last MLP only: the scrubbed model is the
    clean one with the last MLP's output taken from ONE donor p, drawn among the other prompts of
    the reference's length and class. The fully resampled run is the clean run of ONE donor r among
    the other prompts of that length. Both donors are recovered from the metrics and checked."""
    hf, model, prompts, ref, tokens, clean = many
    n, classes = len(prompts), [class_of(tuple(t.tolist())) for t in tokens]
    nodes = all_writers(2)
    hypothesis = Case(nodes, complete(nodes), {"mlp1": class_of}).hypothesis()

    def metrics(x, resid):  # logit_diff and the loss, both read on reference x
        logits = ref.logits(resid)
        return ref_logit_diff(logits, int(prompts.answers[x]), int(prompts.wrong[x])), ref_loss(logits, tokens[x])

    same = [[j for j in range(n) if j != x and len(tokens[j]) == len(tokens[x])] for x in range(n)]
    with_mlp_of = [  # candidates: the clean run of x with the last MLP's output of prompt j (x included)
        {j: metrics(x, clean[x][1] - clean[x][0]["mlp", 1] + clean[j][0]["mlp", 1]) for j in [x, *same[x]]}
        for x in range(n)
    ]
    run_of = [{j: metrics(x, clean[j][1]) for j in [x, *same[x]]} for x in range(n)]
    feature_ranks, resample_ranks = [], []
    for seed in range(6):
        scrub = mt.scrub(hypothesis, seed=seed)
        effects = [mt.measure(model, prompts, scrub, metric) for metric in METRICS.values()]  # the same draws
        for x in range(n):
            p = identify([e.intervened[x] for e in effects], with_mlp_of[x])
            assert p != x and classes[p] == classes[x], f"seed {seed}: prompt {x} got the feature donor {p}"
            feature_ranks.append([j for j in same[x] if classes[j] == classes[x]].index(p))
            r = identify([e.corrupted[x] for e in effects], run_of[x])
            assert r != x, f"seed {seed}: prompt {x} was resampled from itself"
            resample_ranks.append(same[x].index(r))
    # 240 draws each, uniform over the 9 agreeing prompts and over the 19 of the same length: the
    # chi-square statistics stay below the 0.1% critical values (26.1 for 8 degrees of freedom, 43.8 for 18)
    assert chi_square(np.bincount(feature_ranks, minlength=9)) < 26.1
    assert chi_square(np.bincount(resample_ranks, minlength=19)) < 43.8


def test_q_k_and_v_reads_each_draw_their_own_prompt(many):
    """Three prompts; the hypothesis claims only embedding -> attention layer 1's queries -> output.
    The final residual stream comes from one random other prompt r_o except attention layer 1's
    output, whose heads read q from another draw r_q (with the reference's own embedding), k from
    r_k and v from r_v. All four donors are recovered; independent draws agree about half of the
    time, draws shared between reads always would."""
    hf, model, _, ref, _, _ = many
    g = torch.Generator().manual_seed(5)
    tokens = torch.randint(1, VOCAB, (3, SEQ), generator=g)
    prompts = mt.Prompts(tokens, answers=[3, 8, 13], wrong=[20, 25, 30])
    hypothesis = mt.Hypothesis({"emb": "hook_embed", "attn": mt.attn(1)}, [("emb", "attn.q"), ("attn", "output")])

    clean = [ref.clean(t) for t in tokens]
    before = [  # each prompt's clean residual stream entering layer 1
        ref.residual({w: v for w, v in writes.items() if write_stage(w) <= 2}, 2, SEQ) for writes, _ in clean
    ]
    heads_out = [sum(writes["head", 1, h] for h in range(N_HEAD)) for writes, _ in clean]
    values = {}
    for x in range(3):
        for donors in itertools.product([j for j in range(3) if j != x], repeat=4):
            ro, rq, rk, rv = donors
            q_in = before[rq] - clean[rq][0][EMBED] + clean[x][0][EMBED]
            q, k, v = ref.qkv(1, q_in)[0], ref.qkv(1, before[rk])[1], ref.qkv(1, before[rv])[2]
            resid = clean[ro][1] - heads_out[ro] + sum(ref.head_outputs(1, q, k, v).values())
            values[x, donors] = ref_logit_diff(ref.logits(resid), int(prompts.answers[x]), int(prompts.wrong[x]))
    draws = []
    for seed in range(20):
        effect = mt.measure(model, prompts, mt.scrub(hypothesis, seed=seed), mt.metrics.logit_diff)
        for x in range(3):
            draws.append(identify([effect.intervened[x]], {d: [v] for (y, d), v in values.items() if y == x}))
    draws = np.array(draws)  # [60, (r_o, r_q, r_k, r_v)], none of them the reference itself
    for a, b in itertools.combinations(range(4), 2):
        agree = int((draws[:, a] == draws[:, b]).sum())
        assert 15 <= agree <= 45, f"donors {a} and {b} agree {agree} times of 60"
