"""The induction circuit as a heatmap: mean-ablating each of the eight heads on its own, only the
previous-token head 0.0 and the four layer-1 induction heads raise the loss on the repeat.

Model and prompts as in test_induction_necessity.py; the sweep runs every head as its own cell
(``mt.sweep``), exactly as eight ``mt.measure`` calls, and the claim covers all eight cells at once.
"""

import mitest as mt

CIRCUIT = ["0.0", "1.0", "1.1", "1.2", "1.3"]
REPEAT_LOSS = mt.metrics.loss("second_half")


def test_only_the_circuit_heads_matter(induction_model, repeated):
    """Each circuit head raises the repeat loss by at least 0.1 nats when mean-ablated alone, and each
    of the other three heads changes it by less than 0.05 nats either way."""
    sweep = mt.sweep(induction_model, repeated, mt.ablate(mt.heads("*"), method="mean"), REPEAT_LOSS)
    sweep.expect_only(CIRCUIT, 0.1, others_within=0.05, direction="increase")
