"""The whole induction circuit as one hypothesis: tested by causal scrubbing, by path patching and
by a circuit hypothesis test (minimality).

The claim, as data: the token embedding feeds the previous-token head 0.0; head 0.0 and the
embedding feed the induction heads' keys; the embedding alone feeds their queries and values; the
induction heads and the embedding feed the logits. Everything else (head 0.0's direct path to the
logits, its path into the queries and values, the other layer-0 heads) is claimed to be irrelevant,
and causal scrubbing resamples it from random other prompts. Model and prompts as in
test_induction_necessity.py; docs/circuits.md explains each kind of claim.
"""

import mitest as mt

INDUCTION_CIRCUIT = mt.Hypothesis(
    nodes={
        "tokens": "hook_embed",
        "previous": mt.heads("0.0"),
        "induction": mt.heads("1.0", "1.1", "1.2", "1.3"),
    },
    edges=[
        ("tokens", "previous"),
        ("previous", "induction.k"),
        ("tokens", "induction.k"),
        ("tokens", "induction.q"),
        ("tokens", "induction.v"),
        ("induction", "output"),
        ("tokens", "output"),
    ],
)
REPEAT_LOSS = mt.metrics.loss("second_half")
EVERY_HEAD = mt.heads(*(f"{layer}.{head}" for layer in range(2) for head in range(4)))  # its MLPs are zero
CIRCUIT = mt.heads("0.0", "1.0", "1.1", "1.2", "1.3")


def test_the_induction_circuit_explains_the_repeat_loss(mi, induction_model, repeated):
    """Causal scrubbing of the induction circuit recovers at least 90% of the repeat loss that
    resampling everything destroys (the reference model recovers 99.7%)."""
    effect = mi.measure(induction_model, repeated, mt.scrub(INDUCTION_CIRCUIT, seed=mi.seed), metric=REPEAT_LOSS)
    effect.expect_recovery(at_least=0.9)


def test_the_previous_token_head_reaches_the_answer_through_the_keys(mi, induction_model, next_token):
    """Path patching: only head 0.0's direct path into the induction heads' keys carries the corrupted
    first copy (every other path held clean), and that alone lowers the logit difference of the
    answer over the last token by at least 2."""
    keys = mt.heads("1.0", "1.1", "1.2", "1.3", kind="k")
    effect = mi.measure(induction_model, next_token, mt.path_patch(mt.heads("0.0"), keys), metric=mt.metrics.logit_diff)
    effect.expect_decrease(at_least=2.0)


def test_the_previous_token_head_is_not_read_at_the_queries(mi, induction_model, next_token):
    """The same path into the induction heads' queries changes the logit difference by less than 0.25
    either way (equivalence, TOST): head 0.0 composes with layer 1 through the keys only."""
    queries = mt.heads("1.0", "1.1", "1.2", "1.3", kind="q")
    effect = mi.measure(
        induction_model, next_token, mt.path_patch(mt.heads("0.0"), queries), metric=mt.metrics.logit_diff
    )
    effect.expect_no_change(within=0.25)


def test_every_head_of_the_induction_circuit_matters(mi, induction_model, repeated):
    """Minimality (Shi et al. 2024): with every other head mean-ablated, removing any one head from the
    circuit {0.0, 1.0-1.3} loses at least 5% of the behaviour (Holm-corrected over the 5 heads; the
    weakest, 1.1, loses 6.3%, head 0.0 all of it)."""
    test = mi.circuit(induction_model, repeated, CIRCUIT, REPEAT_LOSS, components=EVERY_HEAD)
    test.expect_minimal(at_least=0.05)
