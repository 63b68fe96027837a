"""Sweeps: one intervention over every cell of a set (heads, layers, positions, neurons), decided as claims."""
