"""A byte-bounded, least-recently-used store for clean-run results and captured activations."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch


def nbytes(value: Any) -> int:
    """Approximate memory held by tensors and arrays inside ``value``."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    return 0


class RunCache:
    """Results keyed by what produced them; the oldest are dropped past ``max_bytes``.

    The cache belongs to one model and is cleared when its weights change (``version``). It is safe
    to use from several threads: a value two threads compute at once is computed twice, stored once.
    """

    def __init__(self, max_bytes: int = 2 * 1024**3) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._version: Hashable = None
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0

    def sync(self, version: Hashable) -> None:
        """Drop everything if the model's weights changed since the last call."""
        with self._lock:
            if version != self._version:
                self.clear()
                self._version = version

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The value stored under ``key``, computing and storing it on a miss (outside the lock)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
            self.misses += 1
        value = compute()
        with self._lock:
            if key in self._items:  # another thread stored it meanwhile: keep one copy
                return self._items[key][0]
            size = nbytes(value)
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
        return value

    def lookup(self, key: Hashable) -> tuple[bool, Any]:
        """``(True, value)`` when ``key`` is stored (counted as a hit), else ``(False, None)``; one atomic step."""
        with self._lock:
            if key not in self._items:
                return False, None
            self._items.move_to_end(key)
            self.hits += 1
            return True, self._items[key][0]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def clear(self) -> None:
        """Forget every stored result."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
