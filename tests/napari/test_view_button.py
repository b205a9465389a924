"""The widget's "View in Neuroglancer" button: enabled for a result written to disk, it serves
that output in a local Neuroglancer on 127.0.0.1 and opens the browser on it (here a
``BROWSER`` command that records the URL it is given). Xvfb and napari as test_widget.py."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari", reason="the napari extra is not installed (pip install '.[napari]')")
os.environ["QT_QPA_PLATFORM"] = "xcb"  # before pytest-qt makes the QApplication

from skoots_client.label_write import write_labels
from skoots_client.napari_plugin.widget import SegmentationWidget
from skoots_client.result import Segmentation
from skoots_client.voxel_size import VoxelSize


@pytest.fixture(autouse=True)
def _display() -> None:
    if not os.environ.get("DISPLAY"):
        pytest.skip("no X display: install Xvfb (apt install xvfb) for pytest-xvfb to start one")


@pytest.fixture()
def opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the browser was asked to go: ``BROWSER`` is a command that writes its URL there."""
    import webbrowser

    opened = tmp_path / "opened.txt"
    monkeypatch.setenv("BROWSER", f"{sys.executable} -c \"import sys; open(r'{opened}', 'w').write(sys.argv[1])\" %s")
    monkeypatch.setattr(webbrowser, "_tryorder", None)  # read BROWSER again
    return opened


def test_view_in_neuroglancer_serves_a_written_result_on_loopback(qtbot, make_napari_viewer, opened: Path, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((4, 16, 16), np.uint8), name="blobs")
    widget = SegmentationWidget(viewer)
    assert not widget.neuroglancer.enabled  # nothing written yet

    labels_xyz = np.zeros((16, 16, 4), np.uint32)
    labels_xyz[2:8, 2:8, :] = 7
    out = write_labels(tmp_path / "labels.ome.zarr", labels_xyz, voxel_size=VoxelSize((0.1, 0.1, 0.5)),
                       properties=[{"label-value": 7}])
    widget._show_result(layer, Segmentation(summary="", voxel_size=VoxelSize((0.1, 0.1, 0.5)), instances=1,
                                            labels_xyz=labels_xyz, written=out))  # what a run that wrote `out` shows
    assert widget.neuroglancer.enabled

    widget.neuroglancer.clicked.emit()  # a click
    qtbot.waitUntil(lambda: opened.is_file() and bool(opened.read_text()), timeout=60_000)
    try:
        url = opened.read_text()
        assert url == widget.neuroglancer.shown.url and url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200
        state = widget.neuroglancer.shown.viewer.state
        source = state.layers["labels"].source[0].url
        assert source.startswith("zarr://http://127.0.0.1:") and [int(s) for s in state.layers["labels"].segments] == [7]
        with urllib.request.urlopen(source.removeprefix("zarr://") + "/.zattrs", timeout=10) as attributes:
            assert "image-label" in json.load(attributes)  # the output itself, served to the browser
    finally:
        if widget.neuroglancer.shown is not None:
            widget.neuroglancer.shown.close()
