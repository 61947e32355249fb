"""Results measured by the dashboard, cached by what produced them.

A result (a `Profile`, an evaluated variant) is keyed by the model, its recipe, the
backend, the device and the batch size, so a control returned to a previous value shows
the earlier result at once instead of measuring again. Results are never mutated after
they are stored, so one process-wide cache is shared safely by every browser session.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunKey:
    """What a measurement depends on (all of it: two equal keys give the same result).

    Attributes:
        model: the model's key (a sample name, or an upload's name and fingerprint).
        recipe: the variant's label (``"baseline"`` for the model itself).
        backend: backend name.
        device: device string.
        batch_size: batch size.
        kind: what was measured (``"profile"``, ``"profile+layers"``, ``"variant"``).
    """

    model: str
    recipe: str
    backend: str
    device: str
    batch_size: int
    kind: str = "profile"


class ResultCache:
    """A thread-safe least-recently-used mapping from `RunKey` to an immutable result.

    Args:
        capacity: entries kept; the least recently used is dropped beyond it.
    """

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        """The result stored under ``key`` (marked recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        """Store ``value`` under ``key``; the caller must not mutate it afterwards."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __contains__(self, key: Any) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        """Forget every result (tests start from an empty cache)."""
        with self._lock:
            self._items.clear()


#: the process-wide cache of measured results (shared by sessions; results are immutable)
RESULTS = ResultCache()
