"""Results: the claim record, run files and their renderers, baselines and the release gate, and
all-or-nothing writes. No torch."""
