"""Prompt families (templates as Hypothesis strategies and seeded samplers) and per-prompt property
claims searched over them."""
