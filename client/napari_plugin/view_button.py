"""The widget's "View in Neuroglancer" button: a result written to disk served in a local
Neuroglancer ([`view`][skoots_client.view]), started in a worker thread, opened in the browser."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import PushButton
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info

from ..errors import ClientError

__all__ = ["ViewButton"]


class ViewButton(PushButton):
    """Enabled by `offer` for a result on disk; a click serves it (the previous view closed)
    and opens the browser on its URL. ``shown`` is the running `View`, None before."""

    def __init__(self) -> None:
        super().__init__(text="View in Neuroglancer", enabled=False)
        self.shown: Any = None
        self._written: Any = None
        self._raw: str | None = None
        self.changed.connect(self.open_view)

    def offer(self, written: Any, raw: str | None = None) -> None:
        """The result to serve (None: nothing on disk, the button disabled) and the image file under it."""
        self._written, self._raw = written, raw
        self.enabled = written is not None

    def open_view(self, *_: Any) -> None:
        if self._written is None:
            return
        self.enabled = False
        worker = create_worker(_serve, self._written, self._raw, self.shown, _start_thread=False)
        worker.returned.connect(self._show)
        worker.finished.connect(lambda: setattr(self, "enabled", self._written is not None))
        worker.start()

    def _show(self, outcome: tuple[Any, ClientError | None]) -> None:
        import webbrowser

        self.shown, error = outcome
        if error is not None:
            show_error(str(error))
            return
        show_info(f"Neuroglancer: {self.shown.url}")
        webbrowser.open(self.shown.url)


def _serve(written: Any, raw: str | None, previous: Any) -> tuple[Any, ClientError | None]:
    """A worker's body: the previous view closed, a new one serving ``written`` (and ``raw``)."""
    from ..view import view

    if previous is not None:
        previous.close()
    try:
        return view(written, raw), None
    except ClientError as e:
        return None, e
