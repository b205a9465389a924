"""What a run says while it runs, through one channel (`Watch`): progress (a one-line
display on stderr, crops done, crops/s, ETA, and the caller's callback), notes, warnings, and
cancelling."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from .errors import ClientError
from .summary import warn_on_stderr

__all__ = ["ProgressLine", "Cancelled", "Watch"]


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
    """How one run reports what it does and learns it should stop: the one channel of its output.

    ``line`` draws the terminal progress line (unless ``quiet``); ``progress(stage, done,
    total)`` is the caller's callback, after each batch of crops (stage ``"infer"``) or block of
    a blockwise stage (``"infer"``, ``"label"``, ``"assign"``, ``"write"``, ``"pyramid"``); it
    cancels the run by returning ``False`` (``None`` carries on). ``cancel`` cancels it when set,
    from any thread. Either is checked at each report: the run stops within one batch.

    ``warn`` receives each warning about the input or the result as one line (default: printed
    on stderr as ``warning: ...``, quiet or not). ``note`` receives each note on how the run goes
    (it went blockwise, the Dask cluster it uses); without it a note is printed on stderr unless
    ``quiet``. ``render`` turns each warning and note into the caller's terms first (the API's
    keywords, the widget's fields: ``options.render``); the command line's flags by default.
    """

    def __init__(self, quiet: bool = False, progress: Callable[[str, int, int], Any] | None = None,
                 cancel: threading.Event | None = None, warn: Callable[[str], Any] | None = None,
                 note: Callable[[str], Any] | None = None, render: Callable[[str], str] | None = None) -> None:
        self.quiet, self.progress, self.cancel = quiet, progress, cancel
        self.on_warn, self.on_note, self.render = warn, note, render

    def warn(self, text: str | None) -> None:
        """Say ``text`` (one line; None or empty: nothing) as a warning."""
        if not text:
            return
        (self.on_warn or warn_on_stderr)(self.render(text) if self.render else text)

    def note(self, text: str) -> None:
        """Say ``text`` (one line) as a note: to ``note``, else on stderr unless ``quiet``."""
        text = self.render(text) if self.render else text
        if self.on_note is not None:
            self.on_note(text)
        elif not self.quiet:
            print(text, file=sys.stderr)

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
