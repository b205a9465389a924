"""A one-line progress display on stderr: crops done, crops/s, ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


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
