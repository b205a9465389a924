from __future__ import annotations

import io

from skoots_client.progress import ProgressLine


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_count_rate_and_eta_on_a_terminal() -> None:
    stream = Terminal()
    progress = ProgressLine(stream=stream)
    progress(0, 10)
    progress(10, 10)
    text = stream.getvalue()
    assert "10/10 crops" in text and "/s" in text and "ETA" in text and text.endswith("\n")


def test_progress_is_silent_when_quiet_or_not_a_terminal() -> None:
    for stream, enabled in ((Terminal(), False), (io.StringIO(), True)):
        progress = ProgressLine(enabled=enabled, stream=stream)
        progress(5, 10)
        progress(10, 10)
        assert stream.getvalue() == ""
