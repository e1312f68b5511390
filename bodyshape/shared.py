"""Process-wide objects that are expensive to build and read-only once built.

The body model, the measurer and the rembg session are each built once per process (per
device for the body model) and then shared by every thread: Gradio runs handlers in a
thread pool, Triton's Python backend and the training loop use them too. :class:`Shared`
is the one way to hold such an object: built on first use, under a lock, exactly once,
so two threads that ask at the same time get the same object and never a half-built one.
Objects held here must not change after construction; anything they cache must be
built in their constructor or guarded by their own lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Shared(Generic[T]):
    """A lazily built, thread-safe, process-wide instance per key (a device, say)."""

    def __init__(self, build: Callable[..., T], name: str) -> None:
        self._build = build
        self._name = name
        self._lock = threading.RLock()  # re-entrant: a builder may ask for another key
        self._built: dict[Hashable, T] = {}

    def get(self, key: Hashable = None) -> T:
        """The instance for ``key``, built by ``build(key)`` (or ``build()``) on first use."""
        obj = self._built.get(key)
        if obj is not None:
            return obj
        with self._lock:
            if key not in self._built:
                self._built[key] = self._build() if key is None else self._build(key)
            return self._built[key]

    def clear(self) -> None:
        """Forget the built instances (tests, or after the files behind them changed)."""
        with self._lock:
            self._built.clear()

    def __repr__(self) -> str:
        return f"Shared({self._name}, built={list(self._built)})"
