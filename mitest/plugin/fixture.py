"""The ``mi`` fixture: mitest bound to the pytest session."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mitest.errors import MitestError

if TYPE_CHECKING:  # the plugin imports no torch at run time
    from mitest.circuits.circuit import CircuitTest
    from mitest.claims.effect import Effect
    from mitest.model.model import Model
    from mitest.plugin.candidates import Source
    from mitest.plugin.session import State


class Mi:
    """The ``mi`` fixture: ``mt.measure`` bound to the session, plus the suite's settings.

    Models cache their clean runs and means, so every test that measures the same session-scoped
    model and prompts reuses them.
    """

    def __init__(self, state: State) -> None:
        self.alpha = state.options.alpha
        self.seed = state.options.seed
        self.n = state.options.n
        self._state = state

    def model(self, name: str, default: Source) -> Model:
        """The model under test called ``name``: the ``--mitest-model NAME=PATH`` candidate when one is
        given, else ``default`` (a zoo name, a saved model directory relative to the rootdir, or a
        function returning an ``mt.Model``). Loaded once per session."""
        return self._state.candidates.model(name, default)

    @contextlib.contextmanager
    def claim(self, name: str) -> Iterator[None]:
        """Name the claims decided inside the block, so the baseline matches them by name rather than
        by their place in the test (adding a claim above them then changes nothing)."""
        if not isinstance(name, str) or not name.strip() or name.strip().isdigit() or "::" in name or "#" in name:
            raise MitestError(f"mi.claim needs a name that is not a number and holds no '::' or '#', got {name!r:.80}")
        self._state.naming.append(name.strip())
        try:
            yield
        finally:
            self._state.naming.pop()

    def measure(self, model: Any, prompts: Any, intervention: Any, metric: Any, **kwargs: Any) -> Effect:
        """``mt.measure`` with the session's caches; claims on the result are recorded for reports."""
        from mitest.engine.measure import measure

        return measure(model, prompts, intervention, metric, **kwargs)

    def circuit(self, model: Any, prompts: Any, circuit: Any, metric: Any, **kwargs: Any) -> CircuitTest:
        """``mt.circuit`` with the session's caches; its claims are recorded for reports."""
        from mitest.circuits.circuit import circuit as circuit_test

        return circuit_test(model, prompts, circuit, metric, **kwargs)
