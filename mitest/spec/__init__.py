"""Specs: what a claim is about, as frozen, self-validating data (positions, sites, metrics, prompts,
interventions, circuit hypotheses). Nothing here runs a model."""
