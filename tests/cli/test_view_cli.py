"""``skoots-client view``: a result in a local Neuroglancer, as a user runs it (the console script
in a subprocess, real files, real loopback servers, Debian's headless Chromium for screenshots).

A screenshot shows the labels when its pixels hold each segment's colour: Neuroglancer colours a
segment by a hash of its id (``neuroglancer.segment_colors``), drawn opaque over the grey
background when the segment is selected (view selects the ids the output's segment properties
list), so the colours are exact."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from skoots_client.label_write import write_labels
from skoots_client.stores import parse, write_store_labels
from skoots_client.view import view
from skoots_client.view_browser import find_browser
from skoots_client.voxel_size import VoxelSize

CLIENT = Path(sys.executable).parent / "skoots-client"
SIZE = VoxelSize((0.05, 0.05, 0.2))
PROPERTIES = [{"label-value": 1}, {"label-value": 2}]


def client(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLIENT), *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.fixture(scope="module", autouse=True)
def _console_script() -> None:
    if not CLIENT.is_file():
        pytest.skip(f"no console script at {CLIENT}: install the project (pip install -e .)")


@pytest.fixture()
def chromium() -> None:
    if not all(shutil.which(name) for name in ("chromedriver",)) or not any(
            shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")):
        pytest.skip("no headless Chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")


def _labels() -> np.ndarray:
    """Runtime [X, Y, Z] labels: two boxes on both sides of the middle row, so every panel shows one."""
    labels = np.zeros((64, 64, 16), np.uint32)
    labels[8:40, 8:30, :] = 1
    labels[24:60, 34:60, 2:14] = 2
    return labels


@pytest.fixture()
def precomputed(tmp_path: Path) -> Path:
    out = tmp_path / "labels.precomputed"
    write_store_labels(parse(f"precomputed://{out}"), _labels(), voxel_size=SIZE, properties=PROPERTIES)
    return out


def _colour_counts(png: Path, over: int | None = None) -> dict[int, int]:
    """Pixels of each segment's Neuroglancer colour in ``png``; blended half and half with a grey
    of value ``over`` (a raw under segments that are not selected) when given."""
    from neuroglancer.segment_colors import hex_string_from_segment_id

    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3).astype(int)
    counts = {}
    for segment in (1, 2):
        colour = np.frombuffer(bytes.fromhex(hex_string_from_segment_id(0, segment)[1:]), np.uint8).astype(int)
        if over is not None:
            colour = (colour + over) / 2
        counts[segment] = int(np.all(np.abs(pixels - colour) <= 1, axis=1).sum())
    return counts


def _shows_labels(png: Path, over: int | None = None) -> None:
    counts = _colour_counts(png, over)
    assert min(counts.values()) > 2000, counts  # each object covers thousands of pixels in the 1280x960 view


def test_screenshot_shows_precomputed_labels_in_their_colours(chromium: None, precomputed: Path, tmp_path: Path) -> None:
    png = tmp_path / "view.png"
    done = client("view", precomputed, "--screenshot", png)
    assert done.returncode == 0, done.stderr
    assert Image.open(png).size == (1280, 960)
    _shows_labels(png)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial PNG left


# Zarr v2 through zarr://, v3 through zarr3://; a Chromium screenshot each (~5 s), so v2 in the slow run.
@pytest.mark.parametrize("ngff", [pytest.param("0.4", marks=pytest.mark.slow), "0.5"])
def test_screenshot_shows_ome_zarr_labels_through_zarr_source(chromium: None, tmp_path: Path, ngff: str) -> None:
    out = write_labels(tmp_path / "labels.ome.zarr", _labels(), voxel_size=SIZE, properties=PROPERTIES, ngff_version=ngff)
    png = tmp_path / "view.png"
    done = client("view", out, "--screenshot", png)
    assert done.returncode == 0, done.stderr
    _shows_labels(png)


def test_screenshot_shows_n5_labels_over_a_tiff_raw(chromium: None, tmp_path: Path) -> None:
    out = tmp_path / "labels.n5"
    write_store_labels(parse(f"n5://{out}"), _labels(), voxel_size=SIZE)
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, np.full((16, 64, 64), 200, np.uint8))  # [Z, Y, X]: a bright raw under the labels
    png = tmp_path / "view.png"
    done = client("view", out, "--raw", raw, "--screenshot", png)
    assert done.returncode == 0, done.stderr
    # N5 has no segment properties: nothing is selected, and Neuroglancer draws every segment
    # at half opacity over the raw (which takes the labels' voxel size: the TIFF states none)
    _shows_labels(png, over=200)
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    assert np.all(pixels == 200, axis=1).sum() > 2000  # the raw, where there are no objects


def test_screenshot_shows_tiff_labels_served_from_memory(chromium: None, tmp_path: Path) -> None:
    out = write_labels(tmp_path / "labels.tif", _labels(), voxel_size=SIZE)  # segment's default output
    png = tmp_path / "view.png"
    done = client("view", out, "--screenshot", png)
    assert done.returncode == 0, done.stderr
    _shows_labels(png)


def test_a_tiff_over_the_limit_is_refused_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from skoots_client import view_sources
    from skoots_client.errors import InputError

    out = write_labels(tmp_path / "labels.tif", _labels(), voxel_size=SIZE)
    monkeypatch.setattr(view_sources, "TIFF_LIMIT", 1 << 10)
    with pytest.raises(InputError, match=r"a TIFF is shown from memory, up to .* GiB; convert it to OME-Zarr or N5"):
        view(out)


def test_the_view_is_centred_on_labels_written_at_an_offset(tmp_path: Path) -> None:
    out = tmp_path / "offset.precomputed"
    write_store_labels(parse(f"precomputed://{out}"), _labels(), voxel_size=SIZE, offset=(1000, 2000, 100))  # runtime X, Y, Z
    with view(out) as shown:
        # Neuroglancer's x, y, z are the file's columns, rows, slices: runtime Y, X, Z
        assert list(shown.viewer.state.position) == pytest.approx([2000 + 32, 1000 + 32, 100 + 8])


def test_view_serves_the_viewer_and_the_output_on_loopback_with_cors(precomputed: Path) -> None:
    with view(precomputed) as shown:
        assert shown.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(shown.url, timeout=10) as page:
            assert b"neuroglancer" in page.read().lower()
        layer = shown.viewer.state.layers["labels"]
        source = layer.source[0].url
        assert source.startswith("precomputed://http://127.0.0.1:")
        with urllib.request.urlopen(source.removeprefix("precomputed://") + "/info", timeout=10) as info:
            assert info.headers["Access-Control-Allow-Origin"] == "*"
            assert json.load(info)["type"] == "segmentation"
        assert sorted(int(s) for s in layer.segments) == [1, 2]
        assert list(shown.viewer.state.dimensions.scales) == pytest.approx([50e-9, 50e-9, 200e-9])


def test_an_image_with_labels_inside_shows_each_label_image_over_the_image(tmp_path: Path) -> None:
    image = tmp_path / "image.ome.zarr"
    group = zarr.open_group(str(image), mode="w", zarr_format=2)
    group.create_array("0", shape=(16, 64, 64), dtype=np.uint8, fill_value=0)
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
                                   "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [0.2, 0.05, 0.05]}]}]}]
    zarr.open_group(str(image / "labels"), mode="w", zarr_format=2).attrs["labels"] = ["cells"]
    write_labels(image / "labels" / "cells.ome.zarr", _labels(), voxel_size=SIZE, properties=PROPERTIES)
    (image / "labels" / "cells.ome.zarr").rename(image / "labels" / "cells")  # what --labels-into writes
    with view(image) as shown:
        layers = shown.viewer.state.layers
        assert [layer.name for layer in layers] == ["image", "cells"]
        assert layers["image"].type == "image" and layers["cells"].type == "segmentation"
        with urllib.request.urlopen(layers["cells"].source[0].url.removeprefix("zarr://") + "/.zattrs", timeout=10) as attributes:
            assert "image-label" in json.load(attributes)


def test_a_remote_output_is_read_by_the_browser_where_it_is(precomputed: Path) -> None:
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(precomputed.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"precomputed://http://127.0.0.1:{server.server_address[1]}/{precomputed.name}"
        with view(url) as shown:
            layer = shown.viewer.state.layers["labels"]
            assert layer.source[0].url == url  # not copied, not proxied
            assert sorted(int(s) for s in layer.segments) == [1, 2]
    finally:
        server.shutdown()
        server.server_close()


def test_ctrl_c_stops_serving_without_a_traceback(precomputed: Path) -> None:
    import signal

    def as_from_a_shell() -> None:  # Ctrl-C as a terminal delivers it, whatever this test process holds back or ignores
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    process = subprocess.Popen([str(CLIENT), "view", str(precomputed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=as_from_a_shell)
    first = process.stdout.readline()
    assert first.startswith("Neuroglancer: http://127.0.0.1:")
    with urllib.request.urlopen(first.split()[1], timeout=60) as page:  # a loaded CI machine serves the client slowly
        assert page.status == 200
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"view did not stop on SIGINT: {out!r} {err!r}") from None
    assert process.returncode == 0 and "Traceback" not in err and err.strip().splitlines()[-1] == "stopped", err


def _refused(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for word in words:
        assert word in lines[0]


def test_missing_output_is_one_line(tmp_path: Path) -> None:
    _refused(client("view", tmp_path / "nothing.precomputed", "--screenshot", tmp_path / "v.png"), "no such file or folder")
    assert list(tmp_path.iterdir()) == []


def test_output_without_labels_is_one_line(tmp_path: Path) -> None:
    image = tmp_path / "image.zarr"
    zarr.save_array(str(image), np.zeros((4, 8, 8), np.float32))
    _refused(client("view", image, "--screenshot", tmp_path / "v.png"), "integers")
    raw = tmp_path / "raw.precomputed"
    raw.mkdir()
    (raw / "info").write_text(json.dumps({"type": "image", "data_type": "uint8", "num_channels": 1, "scales": [
        {"key": "s0", "size": [8, 8, 4], "resolution": [1, 1, 1], "voxel_offset": [0, 0, 0], "chunk_sizes": [[8, 8, 4]],
         "encoding": "raw"}]}))
    _refused(client("view", raw, "--screenshot", tmp_path / "v.png"), "holds no labels", "precomputed image")
    assert not (tmp_path / "v.png").exists()


def test_port_in_use_is_one_line(precomputed: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _refused(client("view", precomputed, "--port", port), f"--port {port}", "in use")


def test_screenshot_without_chromium_is_one_line(precomputed: Path, tmp_path: Path) -> None:
    png = tmp_path / "v.png"
    _refused(client("view", precomputed, "--screenshot", png, env={"PATH": str(CLIENT.parent)}), "Chromium", "apt-get install")
    assert not png.exists()


def test_screenshot_must_be_a_png(precomputed: Path, tmp_path: Path) -> None:
    _refused(client("view", precomputed, "--screenshot", tmp_path / "v.jpg"), ".png")
    assert list(tmp_path.iterdir()) == [precomputed]


def test_find_browser_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from skoots_client.errors import ViewerError

    monkeypatch.setenv("PATH", str(CLIENT.parent))
    with pytest.raises(ViewerError, match="no Chromium on PATH"):
        find_browser()
