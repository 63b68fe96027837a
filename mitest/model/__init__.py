"""The model under test: ``mt.Model``, the per-architecture site layouts, the residual-stream graph and
the cache of runs kept on each model."""
