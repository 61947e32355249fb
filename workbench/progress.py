"""Progress reporting and cancellation for long calls (profile, evaluate, sweep, sensitivity).

A dashboard passes a ``progress`` callback and a `CancelToken`; in a terminal or a
notebook the same calls show a tqdm bar instead. Interrupted (Ctrl+C, or a notebook's
kernel interrupt), the long calls keep what they measured, return it, and say so in one
line (`say_interrupted`).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from workbench.errors import CancelledError

T = TypeVar("T")

#: ``progress(fraction_done, message)``; fraction in [0, 1]
ProgressCallback = Callable[[float, str], None]


class CancelToken:
    """A thread-safe flag a UI sets to stop long work at its next checkpoint.

    Example:
        >>> token = CancelToken()
        >>> threading.Timer(5, token.cancel).start()
        >>> wb.sweep(m, data=data, cancel=token)  # raises CancelledError after ~5 s
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise `CancelledError` if cancellation was requested."""
        if self._event.is_set():
            raise CancelledError("cancelled by the user")


def track(
    items: Iterable[T],
    *,
    total: int | None = None,
    description: str = "",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    bar: bool = True,
) -> Iterator[T]:
    """Iterate ``items`` reporting progress and honouring cancellation between items.

    With no ``progress`` callback and ``bar=True``, shows a ``tqdm.auto`` bar (a widget
    in Jupyter, text in a terminal).
    """
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    count = total if total is not None else len(items)  # type: ignore[arg-type]
    iterator: Iterable[T] = items
    if progress is None and bar:
        from tqdm.auto import tqdm

        iterator = tqdm(items, total=count, desc=description, leave=False)
    for index, item in enumerate(iterator):
        if cancel is not None:
            cancel.check()
        if progress is not None:
            progress(index / max(count, 1), f"{description} {index + 1}/{count}".strip())
        yield item
    if progress is not None:
        progress(1.0, f"{description} done".strip())


def phase_bar(description: str) -> tuple[ProgressCallback, Callable[[], None]]:
    """A ``tqdm.auto`` bar driven like a ``progress(fraction, message)`` callback.

    For calls made of a few uneven phases (``wb.profile``) rather than a list of items.

    Returns:
        The callback, and a function that closes the bar.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=100, desc=description, leave=False, bar_format="{l_bar}{bar}| {elapsed}")

    def update(fraction: float, message: str) -> None:
        bar.set_description_str(f"{description}: {message}", refresh=False)
        bar.update(round(fraction * 100) - bar.n)

    return update, bar.close


def say_interrupted(what: str, kept: str) -> str:
    """Tell the user, in one line on stderr, that ``what`` stopped and what was kept.

    Args:
        what: the interrupted call, e.g. ``"sweep"``.
        kept: what the returned result holds and how to go on.

    Returns:
        The line, for the result's notes.
    """
    from tqdm.auto import tqdm

    line = f"workbench: {what} interrupted; {kept}"
    tqdm.write(line, file=sys.stderr)  # on its own line, not inside a bar still drawn
    return line
