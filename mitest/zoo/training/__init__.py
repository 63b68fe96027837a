"""Seeded scripts that train the zoo's models (``python -m mitest.zoo.training.<task>``)."""
