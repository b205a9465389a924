"""``segment --blockwise`` end to end through a real model: in-process on a LocalCluster started
by the client, through a real tritonserver on a cluster of ``dask scheduler`` + ``dask worker``
processes, with a worker killed and with the client killed and resumed — always the in-memory
mode's labels, bitwise."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from blockwise.blockwise_support import stop_processes
from conftest import settled_inferences
from test_segment_e2e import blobs_volume, run_client

import skoots_client

DASK = str(Path(sys.executable).parent / "dask")
CLIENT = str(Path(sys.executable).parent / "skoots-client")
SHAPE_ZXY = (12, 56, 56)  # 3 x 3 x 2 crops of the e2e model (24x24x8, overlap 4x4x2), none snapped
BLOCK = "16,16,4"  # one crop per block: 18 blocks, objects cross their faces, edges and corners (the command line's X,Y,Z)
BLOCK_ZYX = (4, 16, 16)  # the same block as the API takes it
BLOCKS = 18


@pytest.fixture(scope="module")
def volume(tmp_path_factory, e2e_repository: Path) -> tuple[Path, np.ndarray]:
    """A volume, and the in-memory mode's labels of it ([Z, X, Y])."""
    folder = tmp_path_factory.mktemp("blockwise")
    tifffile.imwrite(folder / "v.tif", blobs_volume(SHAPE_ZXY, seed=3))
    skoots_client.segment(folder / "v.tif", out=folder / "expected.tif", repository=e2e_repository, device="cpu", quiet=True,
                          tile="crop")  # the blocks below are one crop each
    expected = tifffile.imread(folder / "expected.tif")
    assert expected.max() >= 5
    return folder / "v.tif", expected


def labels_of(path: Path) -> np.ndarray:
    if path.name.endswith(".ome.zarr"):
        return zarr.open_group(str(path), mode="r")["0"][...]
    if path.name.endswith(".zarr"):
        return zarr.open_array(str(path), mode="r")[...]
    return tifffile.imread(path)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes (one thread each) on 127.0.0.1."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    file = folder / "scheduler.json"
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        workers = [subprocess.Popen([DASK, "worker", address, "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1",
                                     "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        with Client(address) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        stop_processes([*workers, scheduler])


def test_in_memory_switches_to_blockwise_above_its_memory_estimate(e2e_repository: Path, volume, tmp_path: Path, capsys,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process model, a LocalCluster the client starts and closes; TIFF output."""
    path, expected = volume
    out = tmp_path / "labels.tif"
    # A machine with less memory than the in-memory mode's estimate (14 B a voxel), yet more
    # than twice what the TIFF's labels take (4 B a voxel), so that the TIFF is still written.
    monkeypatch.setattr("skoots_client.memory.available_memory", lambda: 10 * int(np.prod(SHAPE_ZXY)))
    notes: list[str] = []
    text = skoots_client.segment(path, out=out, repository=e2e_repository, device="cpu", quiet=True, block=BLOCK_ZYX, workers=2, tile="crop",
                                 note=notes.append).summary
    assert "segmenting blockwise (blockwise=True)" in notes[0] and notes[1].startswith("Dask scheduler tcp://127.0.0.1:")
    assert "segmenting blockwise" not in capsys.readouterr().err, "quiet: notes go to the callback, not stderr"
    got = tifffile.imread(out)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert re.search(rf"^blockwise: {BLOCKS} blocks of at most z \d+, y \d+, x \d+ voxels on 2 workers", text, re.MULTILINE), text
    assert not (tmp_path / "labels.tif.work").exists(), "the work directory is removed once the labels are in place"


def test_in_memory_switch_refuses_what_blockwise_cannot_do_before_any_work(e2e_repository: Path, volume, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from skoots_client.errors import ClientError

    path, _ = volume
    monkeypatch.setattr("skoots_client.memory.available_memory", lambda: 1000)  # a machine too small for the in-memory mode
    with pytest.raises(ClientError, match=re.escape("preview= needs the labels in memory, which blockwise=True never holds")):
        skoots_client.segment(path, out=tmp_path / "l.zarr", preview=tmp_path / "p.png", repository=e2e_repository, device="cpu",
                              quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_normalize_axes_and_skip_below_blockwise_equal_in_memory(e2e_repository: Path, tmp_path: Path) -> None:
    """--normalize percentile is computed once by the client and every block maps intensities
    by it; workers read the input in the --axes order the client did and skip the crops
    --skip-below rules out, as the in-memory mode does."""
    data = blobs_volume(SHAPE_ZXY, seed=5).transpose(1, 2, 0)  # stored [X, Y, Z]
    path = tmp_path / "xyz.zarr"
    stored = data // 4 + 1000
    stored[:28] = 1000  # dark where X < 28: the crops there are not inferred
    zarr.open_array(str(path), mode="w", shape=data.shape, dtype=data.dtype)[...] = stored
    threshold = 1001.0
    options = dict(repository=e2e_repository, device="cpu", quiet=True, normalize="percentile", axes="XYZ", skip_below=threshold,
                   tile="crop")
    text = skoots_client.segment(path, out=tmp_path / "expected.zarr", **options).summary
    assert "percentile" in text
    got = skoots_client.segment(path, out=tmp_path / "blockwise.zarr", blockwise=True, block=BLOCK_ZYX, workers=2, **options).summary
    expected = labels_of(tmp_path / "expected.zarr")
    assert expected.max() >= 3
    assert "percentile" in got and "from --axes" in got
    skipped = re.search(r"skipped (\d+) of", text).group(1)
    assert int(skipped) > 0 and f"skipped {skipped} of" in got
    blockwise = labels_of(tmp_path / "blockwise.zarr")
    assert blockwise.dtype == expected.dtype and np.array_equal(blockwise, expected)


def test_blockwise_ome_zarr_states_the_voxel_size_and_its_table_is_the_in_memory_one(e2e_repository: Path, volume, tmp_path: Path) -> None:
    """Scale and units as the in-memory writer states them, as NGFF 0.5 (Zarr v3); --table from
    the blocks' summed partial statistics equals the in-memory table (floats to rounding)."""
    import csv

    from skoots_client.voxel_size import VoxelSize
    from skoots_client.voxel_size_read import read_voxel_size

    path, expected = volume
    size = VoxelSize((0.5, 0.25, 2.0), "micrometer")
    options = dict(repository=e2e_repository, device="cpu", quiet=True, voxel_size=size, ngff_version="0.5", tile="crop")
    skoots_client.segment(path, out=tmp_path / "memory.ome.zarr", table=tmp_path / "memory.csv", **options)
    out = tmp_path / "labels.ome.zarr"
    text = skoots_client.segment(path, out=out, table=tmp_path / "blockwise.csv", blockwise=True, block=BLOCK_ZYX, workers=2, **options).summary
    assert read_voxel_size(out) == size and "voxel size" in text and "instance table" in text
    group = zarr.open_group(str(out), mode="r")
    assert group.metadata.zarr_format == 3 and group.attrs["ome"]["version"] == "0.5"
    assert group.attrs["ome"]["multiscales"][0]["axes"][0] == {"name": "z", "type": "space", "unit": "micrometer"}
    assert np.array_equal(labels_of(out), expected)

    def rows(name: str) -> list[dict[str, str]]:
        with open(tmp_path / name) as f:
            return list(csv.DictReader(f))

    memory, blockwise = rows("memory.csv"), rows("blockwise.csv")
    assert len(blockwise) == len(memory) == expected.max()
    for a, b in zip(memory, blockwise):
        assert a.keys() == b.keys()
        for key in a:
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-9) if a[key] not in ("True", "False") else a[key] == b[key]
    properties = group.attrs["ome"]["image-label"]["properties"]
    assert len(properties) == len(memory) and properties[0]["label-value"] == 1


def test_triton_servers_and_a_joined_dask_cluster(triton_server, dask_cluster: str, volume, tmp_path: Path) -> None:
    path, expected = volume
    out = tmp_path / "labels.ome.zarr"
    url = triton_server.grpc_url
    result = run_client("segment", str(path), "--tile", "crop", "--url", url, "--url", url, "--blockwise", "--block", BLOCK,
                        "--scheduler", dask_cluster, "--device", "cpu", "--out", str(out))
    assert result.returncode == 0, result.stderr
    got = labels_of(out)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert re.search(rf"^blockwise: {BLOCKS} blocks of at most z \d+, y \d+, x \d+ voxels on 2 workers", result.stdout, re.MULTILINE)
    assert f"model skoots (python backend) on {url}, {url}" in result.stdout.splitlines()
    assert f"Dask scheduler {dask_cluster}" in result.stderr
    from distributed import Client

    def kept() -> int:  # nested: sent by value, the workers cannot import this file
        from skoots_client.blockwise.worker import STATE

        return len(STATE.opened) + len(STATE.endpoints) + len(STATE.scratch)

    with Client(dask_cluster, timeout="10s") as client:  # the workers outlive the run: they keep no endpoints, models or buffers
        assert set(client.run(kept).values()) == {0}


@pytest.mark.slow
def test_two_tritonservers_on_a_local_cluster(triton_server, e2e_repository: Path, volume, tmp_path: Path) -> None:
    from conftest import start_server

    path, expected = volume
    second = start_server(e2e_repository)
    try:
        result = run_client("segment", str(path), "--tile", "crop", "--url", triton_server.grpc_url, "--url", second.grpc_url, "--blockwise",
                            "--block", BLOCK, "--workers", "2", "--batch", "1", "--device", "cpu", "--out", str(tmp_path / "l.zarr"))
    finally:
        second.stop()
    assert result.returncode == 0, result.stderr
    assert np.array_equal(labels_of(tmp_path / "l.zarr"), expected)


def test_min_size_in_memory_is_the_oracles_and_blockwise_equals_it(e2e_repository: Path, volume, tmp_path: Path) -> None:
    """--min-size through the real model: the in-memory labels are the undisturbed run's without
    its instances under the size, renumbered by first appearance; blockwise equals them bitwise."""
    from skoots_client import postprocess

    path, expected = volume
    runtime = expected.transpose(1, 2, 0)  # [X, Y, Z]: the order first appearance is counted in
    sizes = np.bincount(runtime.ravel())[1:]
    min_size = int(np.median(sizes))
    oracle = runtime.copy()
    oracle[np.isin(runtime, np.flatnonzero(sizes < min_size) + 1)] = 0
    oracle = postprocess.renumber_labels(oracle)[0].transpose(2, 0, 1)
    options = dict(repository=e2e_repository, device="cpu", quiet=True, min_size=min_size, tile="crop")
    text = skoots_client.segment(path, out=tmp_path / "m.tif", **options).summary
    kept = tifffile.imread(tmp_path / "m.tif")
    assert kept.dtype == oracle.dtype and np.array_equal(kept, oracle) and 0 < kept.max() < expected.max()
    assert f"{kept.max()} instances" in text
    skoots_client.segment(path, out=tmp_path / "b.zarr", blockwise=True, block=BLOCK_ZYX, workers=2, **options)
    assert np.array_equal(labels_of(tmp_path / "b.zarr"), kept)
    refused = run_client("segment", str(path), "--tile", "crop", "-r", str(e2e_repository), "--min-size", "-1", "--out", str(tmp_path / "n.tif"))
    assert refused.returncode == 2
    assert refused.stderr == "error: --min-size -1: give a voxel count of at least 0 (0 keeps every instance)\n"


def test_unreachable_scheduler_is_one_line_and_writes_nothing(e2e_repository: Path, volume, tmp_path: Path) -> None:
    path, _ = volume
    result = run_client("segment", str(path), "--tile", "crop", "-r", str(e2e_repository), "--scheduler", "tcp://127.0.0.1:9",
                        "--out", str(tmp_path / "l.zarr"), "--resume")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no Dask scheduler at tcp://127.0.0.1:9") and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_block_must_be_positive(e2e_repository: Path, volume, tmp_path: Path) -> None:
    path, _ = volume
    result = run_client("segment", str(path), "--tile", "crop", "-r", str(e2e_repository), "--blockwise", "--block", "0,16,4", "--out", str(tmp_path / "l.zarr"))
    assert result.returncode == 2 and result.stderr == "error: block z 4, y 0, x 16: block sizes must be positive\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options, message", [
    ({"save_intermediates": True}, "save_intermediates=True needs the labels in memory, which blockwise=True never holds: drop it"),
    ({"preview": Path("p.png")}, "preview= needs the labels in memory"),
    ({"labels_into": Path("image.ome.zarr")}, "blockwise=True writes the labels to one place: give out= or labels_into=, not both"),
    ({"save_intermediates": True, "preview": Path("p.png")},
     "save_intermediates=True, preview= need the labels in memory, which blockwise=True never holds: drop them"),
    ({"device": "gpu"}, "blockwise=True post-processes on the workers' CPUs; drop device='gpu'"),
    ({"workers": 0}, "workers= and threads_per_worker= must be at least 1"),
])
def test_options_blockwise_cannot_honour_are_refused(e2e_repository: Path, volume, tmp_path: Path, options, message) -> None:
    from skoots_client.errors import ClientError

    path, _ = volume
    options = {k: tmp_path / v if isinstance(v, Path) else v for k, v in options.items()}
    with pytest.raises(ClientError, match=re.escape(message)):
        skoots_client.segment(path, out=tmp_path / "l.zarr", repository=e2e_repository, blockwise=True, quiet=True,
                              **{"device": "cpu", **options})
    assert [p.name for p in tmp_path.iterdir()] == []


def markers(work: Path, stage: str) -> int:
    folder = work / "done" / stage
    return len([p for p in folder.iterdir() if not p.name.startswith(".")]) if folder.is_dir() else 0


@pytest.mark.slow
def test_a_worker_killed_mid_run_changes_nothing(triton_server, dask_cluster: str, volume, tmp_path: Path) -> None:
    from distributed import Client

    path, expected = volume
    out, work = tmp_path / "labels.zarr", tmp_path / "labels.zarr.work"
    client = subprocess.Popen([CLIENT, "segment", str(path), "--tile", "crop", "--url", triton_server.grpc_url, "--block", BLOCK, "--scheduler",
                               dask_cluster, "--device", "cpu", "--out", str(out), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while markers(work, "infer") < 2 and client.poll() is None:
        time.sleep(0.02)
    with Client(dask_cluster) as dask:
        pids = dask.run(os.getpid)
    os.kill(sorted(pids.values())[0], signal.SIGKILL)
    _, stderr = client.communicate(timeout=600)
    assert client.returncode == 0, stderr
    assert np.array_equal(labels_of(out), expected)
    with Client(dask_cluster) as dask:
        dask.wait_for_workers(2, timeout=120)  # the nanny restarted it


@pytest.mark.slow
def test_client_sigkill_then_resume_redoes_only_unfinished_blocks(triton_server, dask_cluster: str, volume, tmp_path: Path) -> None:
    path, expected = volume
    url = triton_server.grpc_url
    out, work = tmp_path / "labels.zarr", tmp_path / "labels.zarr.work"
    argv = [CLIENT, "segment", str(path), "--tile", "crop", "--url", url, "--block", BLOCK, "--scheduler", dask_cluster, "--device", "cpu",
            "--out", str(out), "--resume", "--batch", "1"]
    client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while markers(work, "infer") < BLOCKS // 2 and client.poll() is None:
        time.sleep(0.01)
    assert client.poll() is None
    client.send_signal(signal.SIGKILL)
    client.communicate()
    # The killed client's running tasks finish on the cluster's workers (a thread cannot be
    # stopped): wait until no marker has appeared for 5 s, long enough on a loaded machine.
    kept, still = markers(work, "infer"), 0
    while still < 5:
        time.sleep(1.0)
        now = markers(work, "infer")
        kept, still = now, (still + 1 if now == kept else 0)
    before = settled_inferences(url)
    assert 0 < kept < BLOCKS
    finish = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert finish.returncode == 0, finish.stderr
    resumed = int(re.search(r"resumed (\d+) infer", finish.stdout).group(1))
    assert resumed == kept
    # One crop per block: exactly the blocks not marked are inferred again.
    assert settled_inferences(url) - before == BLOCKS - kept
    assert np.array_equal(labels_of(out), expected)
    assert not work.exists()


def test_labels_into_blockwise_equal_in_memory_at_every_level_kept_on_failure_and_resumed(e2e_repository: Path, tmp_path: Path) -> None:
    """Issue 17 (6a, 1, 2): --labels-into --blockwise writes labels/cells of an ome-zarr-py
    t,c,z,y,x image block by block, every level bitwise the in-memory --labels-into's. A failure
    once the labels are finished (a file where labels/ should be) keeps them in their hidden
    folder beside the image and says so, --resume finishes from there without redoing a block; the --table
    of a scale without a unit names its columns _units in both modes."""
    import csv
    import logging
    import shutil

    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    from skoots_client.errors import OutputError

    logging.getLogger("ome_zarr").setLevel(logging.ERROR)
    memory, image = tmp_path / "memory.ome.zarr", tmp_path / "img.ome.zarr"
    write_image(blobs_volume(SHAPE_ZXY, seed=3)[None, None], zarr.open_group(str(memory), mode="w", zarr_format=2), axes="tczyx",
                fmt=FormatV04(), scale={"z": 0.05, "y": 0.012, "x": 0.012})
    shutil.copytree(memory, image)
    options = dict(repository=e2e_repository, device="cpu", quiet=True, label_name="cells", tile="crop")
    skoots_client.segment(memory, out=None, labels_into=memory, table=tmp_path / "memory.csv", **options)
    (image / "labels").write_text("in the way")
    blockwise = dict(blockwise=True, block=BLOCK_ZYX, workers=2, table=tmp_path / "blockwise.csv", **options)
    with pytest.raises(OutputError, match=r"the labels are kept in \S+/\.img\.ome\.zarr\.cells\.partial-\w+/cells \(Zarr; napari and zarr open "
                                          r"it\); run again with resume=True"):  # built beside the image, renamed into it
        skoots_client.segment(image, out=None, labels_into=image, **blockwise)
    (image / "labels").unlink()
    text = skoots_client.segment(image, out=None, labels_into=image, resume=True, **blockwise).summary
    assert f"→ {image / 'labels' / 'cells'}" in text and f"resumed {BLOCKS} infer, {BLOCKS} assign" in text
    assert not (tmp_path / "img.ome.zarr.work").exists() and not list(tmp_path.glob(".img.ome.zarr.cells.partial-*"))
    ours, theirs = zarr.open_group(str(image / "labels" / "cells"), mode="r"), zarr.open_group(str(memory / "labels" / "cells"), mode="r")
    assert ours.attrs["multiscales"] == theirs.attrs["multiscales"]
    paths = [d["path"] for d in theirs.attrs["multiscales"][0]["datasets"]]
    assert len(paths) >= 3 and theirs[paths[0]].shape == (1, *SHAPE_ZXY)
    for path in paths:
        assert ours[path].dtype == theirs[path].dtype and np.array_equal(ours[path][...], theirs[path][...]), path
    assert theirs[paths[0]][...].max() >= 5
    assert zarr.open_group(str(image / "labels"), mode="r").attrs["labels"] == ["cells"]
    rows = {name: list(csv.DictReader(open(tmp_path / name))) for name in ("memory.csv", "blockwise.csv")}
    assert list(rows["memory.csv"][0]) == list(rows["blockwise.csv"][0]) and "volume_units3" in rows["memory.csv"][0]
    assert [r["voxels"] for r in rows["memory.csv"]] == [r["voxels"] for r in rows["blockwise.csv"]]
