"""The engine: the only code that installs hooks or runs forward passes. Specs are compiled to edits
(:mod:`mitest.engine.compile`), run in batches (:mod:`mitest.engine.runner`) and returned as an Effect
(:mod:`mitest.engine.measure`)."""
