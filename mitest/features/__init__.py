"""Claims on what a model computes without intervening: attention patterns, head scores, neurons."""
