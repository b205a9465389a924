"""One way to write: aside under a unique name, then renamed into place."""

from __future__ import annotations

import doctest
import threading
from pathlib import Path

import numpy as np
import pytest

from skoots_client import atomic
from skoots_client.instances import write_table


def test_the_examples_run() -> None:
    assert doctest.testmod(atomic).failed == 0


def test_a_failed_write_leaves_the_old_file_and_nothing_beside_it(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("old")
    with pytest.raises(RuntimeError), atomic.staged(tmp_path / "t.csv") as target:
        target.write_text("half")
        raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"] and (tmp_path / "t.csv").read_text() == "old"


def test_a_folder_is_replaced_whole(tmp_path: Path) -> None:
    (tmp_path / "l.zarr").mkdir()
    (tmp_path / "l.zarr" / "old").write_text("x")
    with atomic.staged(tmp_path / "l.zarr") as target:
        target.mkdir()
        (target / "new").write_text("y")
    assert [p.name for p in tmp_path.iterdir()] == ["l.zarr"] and [p.name for p in (tmp_path / "l.zarr").iterdir()] == ["new"]


def test_two_runs_writing_one_table_do_not_collide(tmp_path: Path) -> None:
    """measure's fixed ``.NAME.partial`` name let two runs write into one temporary file."""
    tables = [{"label": np.arange(1, n + 1), "voxels": np.full(n, n)} for n in (2000, 3000)]
    errors: list[BaseException] = []

    def write(columns: dict) -> None:
        try:
            for _ in range(20):
                write_table(tmp_path / "t.csv", columns)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(t,)) for t in tables]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and [p.name for p in tmp_path.iterdir()] == ["t.csv"]
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert len(rows) - 1 in (2000, 3000) and len({r.split(",")[1] for r in rows[1:]}) == 1  # one writer's whole table


def test_write_aside_and_sealed_records(tmp_path: Path) -> None:
    atomic.write_aside(tmp_path / "b.npy", lambda aside: np.save(aside, np.arange(3)), durable=True)
    assert [p.name for p in tmp_path.iterdir()] == ["b.npy"] and np.load(tmp_path / "b.npy").tolist() == [0, 1, 2]
    record = atomic.seal("12 deadbeef {}", "\n")
    assert atomic.unseal(record, "\n") == "12 deadbeef {}" and atomic.unseal(record[:-3] + b"0\n", "\n") is None
    assert atomic.unseal(b"\xff\xfe") is None


def test_a_directory_is_built_complete_or_not_at_all(tmp_path: Path) -> None:
    (tmp_path / ".w.partial-left").mkdir()  # a run killed while building

    def fail(staging: Path) -> None:
        (staging / "a").write_text("x")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.build_directory(tmp_path / "w", fail)
    assert list(tmp_path.iterdir()) == []
    atomic.build_directory(tmp_path / "w", lambda staging: (staging / "a").write_text("x"))
    assert [p.name for p in tmp_path.iterdir()] == ["w"] and (tmp_path / "w" / "a").read_text() == "x"
