"""``view``: a result in a local Neuroglancer — labels (with the meshes and skeletons their
precomputed ``info`` names), the raw volume, at their voxel size — and screenshots of it.

Neuroglancer's Python package serves its own client and the viewer state from a server on
127.0.0.1; local stores are served beside it by its static file server (CORS, on a free
port of 127.0.0.1, one per folder, under a random token), remote ones the browser reads itself.
`View.screenshot` opens the view in a headless Chromium (view_browser.py) and waits for
Neuroglancer's own screenshot, which it sends only once every visible chunk has loaded.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from .errors import OutputError, ViewerError
from .extras import require
from .view_browser import find_browser, headless_browser
from .view_sources import Source, label_sources, raw_source

__all__ = ["SCREENSHOT_SIZE", "LOAD_TIMEOUT", "View", "view", "check_screenshot"]

SCREENSHOT_SIZE = (1280, 960)  # pixels, width x height: four 640x480 panels
LOAD_TIMEOUT = 180.0  # seconds for a screenshot's data to load (software WebGL on a busy CPU is slow)


class View:
    """A local Neuroglancer showing a result: ``url`` to open in a browser; `screenshot`
    renders it to a PNG; `close` stops serving (also on leaving a ``with`` block)."""

    def __init__(self, viewer: Any, servers: Sequence[Any]) -> None:
        self.viewer = viewer
        self.url: str = viewer.get_viewer_url()
        self._servers = list(servers)

    def __enter__(self) -> View:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the static file servers and forget the viewer (idempotent)."""
        for server in self._servers:
            server.stop()
        self._servers = []

    def screenshot(self, png: str | os.PathLike[str], size: Sequence[int] = SCREENSHOT_SIZE,
                   timeout: float = LOAD_TIMEOUT) -> Path:
        """Render the view at ``size`` (width, height) in a headless Chromium, once its data
        has loaded, to ``png`` (written whole or not at all).

        Raises
        ------
        ViewerError
            No Chromium, or the data did not load within ``timeout`` seconds.
        OutputError
            ``png`` cannot be written.
        """
        path = check_screenshot(png)
        with headless_browser(self.url, size):
            image = _capture(self.viewer, size, timeout)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            partial.write_bytes(image)
            os.replace(partial, path)
        except OSError as e:
            partial.unlink(missing_ok=True)
            raise OutputError(f"--screenshot {png}: cannot write it ({e.strerror or e})") from e
        return path


def check_screenshot(png: str | os.PathLike[str]) -> Path:
    """``png`` as the screenshot's path, refused before anything starts when it cannot be one."""
    path = Path(png)
    if path.suffix.lower() != ".png":
        raise OutputError(f"--screenshot {png}: a screenshot is a PNG; give a path ending in .png")
    if not path.parent.is_dir():
        raise OutputError(f"--screenshot {png}: no folder {path.parent}; create it or give another path")
    return path


def _capture(viewer: Any, size: Sequence[int], timeout: float) -> bytes:
    """Neuroglancer's screenshot (sent when the view is fully loaded) at ``size``, within ``timeout``."""
    with viewer.config_state.txn() as config:
        config.show_ui_controls = False
        config.show_panel_borders = False
        config.viewer_size = list(size)
    deadline = time.monotonic() + timeout
    for _ in range(5):  # the first reply can come before the canvas took the size
        reply: Future[Any] = Future()
        viewer.async_screenshot(reply.set_result)
        try:
            shot = reply.result(timeout=max(0.0, deadline - time.monotonic())).screenshot
        except FutureTimeout:
            raise ViewerError(f"--screenshot: the view's data did not load in {timeout:.0f} s; check that the "
                              "output is readable (open the printed URL in a browser without --screenshot)") from None
        if (shot.width, shot.height) == tuple(size):
            break
    return shot.image


def _start_server(port: int) -> None:
    """Neuroglancer's server on 127.0.0.1:``port`` (0: a free one); one already running is kept
    unless it is on another port than the one asked for."""
    import logging

    import neuroglancer
    import neuroglancer.server

    logging.getLogger("tornado.access").setLevel(logging.ERROR)  # a Zarr source's probes are 404s by design
    running = neuroglancer.server.global_server
    if running is not None:
        if port in (0, running.port):
            return
        neuroglancer.stop()
    neuroglancer.set_server_bind_address("127.0.0.1", port)
    try:
        neuroglancer.server.start()
    except OSError as e:
        raise ViewerError(f"--port {port}: 127.0.0.1:{port} is in use ({e.strerror or e}); "
                          "give another --port, or leave it out for a free one") from e


def _serve(folders: Sequence[Path]) -> dict[Path, Any]:
    """A CORS static file server on 127.0.0.1 for each folder."""
    from neuroglancer.static_file_server import StaticFileServer

    return {folder: StaticFileServer(str(folder), bind_address="127.0.0.1", daemon=True) for folder in dict.fromkeys(folders)}


def _layer(source: Source, servers: dict[Path, Any]) -> Any:
    import neuroglancer

    if source.array is not None:
        data: Any = neuroglancer.LocalVolume(
            source.array, dimensions=neuroglancer.CoordinateSpace(names=["z", "y", "x"], units="nm", scales=source.nm_zyx),
            volume_type=source.kind)
    else:
        assert source.url is not None
        data = source.url.replace("{served}", servers[source.serve].url) if source.serve is not None else source.url
    if source.kind == "segmentation":
        return neuroglancer.SegmentationLayer(source=data, segments=list(source.segments))
    return neuroglancer.ImageLayer(source=data)


def _place(state: Any, first: Source, panel: int) -> None:
    """Axes x, y, z at ``first``'s voxel size; zoomed so its xy extent fills a ``panel``-pixel panel."""
    import neuroglancer

    z, y, x = first.nm_zyx
    state.dimensions = neuroglancer.CoordinateSpace(names=["x", "y", "z"], units="nm", scales=[x, y, z])
    depth, rows, columns = first.shape_zyx
    x0, y0, z0 = first.corner_xyz
    state.position = [x0 + columns / 2, y0 + rows / 2, z0 + depth / 2]
    state.cross_section_scale = 1.1 * max(rows, columns) / panel
    state.projection_scale = 1.3 * max(rows * y, columns * x, depth * z) / x
    state.layout = "4panel"


def view(out: str | os.PathLike[str], raw: str | os.PathLike[str] | None = None, *, port: int = 0,
         screenshot: str | os.PathLike[str] | None = None, size: Sequence[int] = SCREENSHOT_SIZE,
         timeout: float = LOAD_TIMEOUT) -> View:
    """Show segment's output ``out`` (precomputed, N5, OME-Zarr or Zarr by path or URL; a TIFF
    from memory) in a local Neuroglancer on 127.0.0.1:``port`` (0: a free port), with ``raw``
    (any volume segment reads) under the labels. The labels' meshes and skeletons show when
    their precomputed ``info`` has ``mesh`` / ``skeletons``; the ids their segment properties
    list are selected. Returns the running `View` (its ``url``); with ``screenshot``, renders
    it to that PNG in a headless Chromium first and returns it closed.

    Raises
    ------
    InputError
        ``out`` or ``raw`` missing, unreadable, or ``out`` without labels; the neuroglancer
        extra not installed.
    ViewerError
        The port is taken; ``screenshot`` without Chromium; the data did not load in ``timeout`` s.
    OutputError
        ``screenshot`` is not a writable ``.png`` path.
    """
    require("neuroglancer", "skoots-client view", "neuroglancer")
    if screenshot is not None:
        check_screenshot(screenshot)
        require("selenium", "--screenshot", "neuroglancer")
        find_browser()
    labels, image = label_sources(str(out))
    under = raw_source(str(raw), like=labels[0]) if raw is not None else image
    layers = ([under] if under is not None else []) + labels
    _start_server(port)
    import neuroglancer

    servers = _serve([layer.serve for layer in layers if layer.serve is not None])
    viewer = neuroglancer.Viewer()
    try:
        with viewer.txn() as state:
            for layer in layers:
                state.layers[layer.name] = _layer(layer, servers)
            _place(state, labels[0], min(size) // 2)
            state.selected_layer.layer = labels[0].name
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    shown = View(viewer, list(servers.values()))
    if screenshot is not None:
        with shown:
            shown.screenshot(screenshot, size, timeout)
    return shown
