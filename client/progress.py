"""Progress of a run: a one-line display on stderr (crops done, crops/s, ETA), the caller's
callback, and cancelling."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

from .errors import ClientError


class ProgressLine:
    """Call with ``(done, total)``; draws only when enabled and the stream is a terminal."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, label: str = "crops") -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.label = label
        self._start = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.2:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else float("nan")
        width = 30
        filled = int(width * done / max(total, 1))
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {self.label}  {rate:.2f}/s  ETA {eta:5.0f}s "
        )
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


class Cancelled(ClientError):
    """The caller stopped the run: its ``cancel`` event was set, or its ``progress`` callback
    returned ``False``. Nothing the run would have written is left behind."""


class Watch:
    """How one run reports progress and learns it should stop.

    ``line`` draws the terminal progress line (unless ``quiet``); ``progress(stage, done,
    total)`` is the caller's callback, after each batch of crops (stage ``"infer"``) or block of
    a blockwise stage (``"infer"``, ``"label"``, ``"assign"``, ``"write"``, ``"pyramid"``); it
    cancels the run by returning ``False`` (``None`` carries on). ``cancel`` cancels it when set,
    from any thread. Either is checked at each report: the run stops within one batch.
    """

    def __init__(self, quiet: bool = False, progress: Callable[[str, int, int], Any] | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.quiet, self.progress, self.cancel = quiet, progress, cancel

    def stage(self, name: str, label: str | None = None) -> Callable[[int, int], None]:
        """The ``(done, total)`` reporter of stage ``name``; raises [`Cancelled`][skoots_client.Cancelled] when asked to stop."""
        line = ProgressLine(enabled=not self.quiet, label=label or name)

        def report(done: int, total: int) -> None:
            line(done, total)
            self.check()
            if self.progress is not None and self.progress(name, done, total) is False:
                raise Cancelled(f"cancelled by the progress callback at {name} {done}/{total}")
            self.check()

        return report

    def check(self) -> None:
        """Raise [`Cancelled`][skoots_client.Cancelled] if the ``cancel`` event is set."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled")
