"""The instance table against a naive per-label NumPy oracle, its streaming and merging, the
skeleton length, and the table files."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from skoots_client import instances, measure
from skoots_client.errors import InputError, OutputError
from skoots_client.instances import (
    PartialStats,
    check_table_path,
    label_properties,
    measure_slabs,
    measure_xyz,
    skeleton_length,
    write_table,
)
from skoots_client.label_write import write_labels
from skoots_client.voxel_size import VoxelSize

SIZE = VoxelSize((0.5, 0.25, 2.0))  # runtime X (rows, y), Y (columns, x), Z


def random_labels(shape_xyz=(23, 19, 17), seed=0, sparse_values=True) -> np.ndarray:
    """Instances of many shapes: random boxes over noise, some cut by the border, label values
    far apart (not 1..K), some split into pieces by others."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape_xyz, np.uint32)
    for _ in range(25):
        lo = rng.integers(0, np.array(shape_xyz) - 1)
        hi = lo + rng.integers(1, 9, size=3)
        labels[tuple(slice(a, b) for a, b in zip(lo, hi))] = rng.integers(1, 10**6 if sparse_values else 30)
    labels[rng.random(shape_xyz) < 0.05] = 0
    return labels


def oracle(labels_xyz: np.ndarray, raw_xyz: np.ndarray, size: VoxelSize) -> dict[str, list]:
    """One label at a time with plain NumPy, in the file's (z, y, x) = runtime (Z, X, Y) order."""
    zyx, raw = labels_xyz.transpose(2, 0, 1), raw_xyz.transpose(2, 0, 1).astype(np.float64)
    spacing = np.array(size.zyx)
    rows: dict[str, list] = {k: [] for k in ("label", "voxels", "volume", "centroid", "centroid_phys", "lo", "hi", "mean", "max", "border")}
    for label in np.unique(zyx[zyx > 0]):
        where = np.argwhere(zyx == label)
        rows["label"].append(int(label))
        rows["voxels"].append(len(where))
        rows["volume"].append(len(where) * spacing.prod())
        rows["centroid"].append(where.mean(axis=0))
        rows["centroid_phys"].append(where.mean(axis=0) * spacing)
        rows["lo"].append(where.min(axis=0))
        rows["hi"].append(where.max(axis=0) + 1)
        rows["mean"].append(raw[zyx == label].mean())
        rows["max"].append(raw[zyx == label].max())
        rows["border"].append(bool((where.min(axis=0) == 0).any() or (where.max(axis=0) == np.array(zyx.shape) - 1).any()))
    return rows


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("slab_voxels", [1, 19 * 23 * 5, 10**9])  # one plane, a few planes, all at once
def test_table_equals_the_naive_oracle(seed: int, slab_voxels: int) -> None:
    labels = random_labels(seed=seed)
    raw = np.random.default_rng(seed + 10).integers(0, 60000, size=labels.shape).astype(np.uint16)
    table = measure_xyz(labels, SIZE, raw, skeleton=False, slab_voxels=slab_voxels)
    expected = oracle(labels, raw, SIZE)
    assert table["label"].tolist() == expected["label"]
    assert table["voxels"].tolist() == expected["voxels"]
    assert np.allclose(table["volume_um3"], expected["volume"], rtol=1e-12)
    assert np.allclose(np.stack([table[f"centroid_{a}"] for a in "zyx"], 1), expected["centroid"], rtol=1e-12)
    assert np.allclose(np.stack([table[f"centroid_{a}_um"] for a in "zyx"], 1), expected["centroid_phys"], rtol=1e-12)
    assert np.array_equal(np.stack([table[f"bbox_{a}0"] for a in "zyx"], 1), expected["lo"])
    assert np.array_equal(np.stack([table[f"bbox_{a}1"] for a in "zyx"], 1), expected["hi"])
    assert np.allclose(table["mean_intensity"], expected["mean"], rtol=1e-12)
    assert np.array_equal(table["max_intensity"], expected["max"])
    assert table["touches_border"].tolist() == expected["border"]
    assert any(expected["border"]) and not all(expected["border"])


def test_partials_of_blocks_merge_to_the_whole() -> None:
    """What the blockwise mode does: measure blocks of any shape, anywhere, and sum them."""
    labels = random_labels(seed=4).transpose(2, 0, 1).copy()  # [Z, Y, X]
    raw = np.random.default_rng(5).random(labels.shape)
    whole = PartialStats.of_block(labels, raw_zyx=raw)
    parts = PartialStats.empty(intensity=True)
    for z in (slice(0, 7), slice(7, None)):
        for y in (slice(0, 11), slice(11, None)):
            for x in (slice(0, 5), slice(5, None)):
                parts = PartialStats.of_block(labels[z, y, x], (z.start, y.start, x.start), raw[z, y, x]).merge(parts)
    for name in ("labels", "count", "lo", "hi", "intensity_max"):
        assert np.array_equal(getattr(parts, name), getattr(whole, name)), name
    assert np.allclose(parts.coord_sum, whole.coord_sum) and np.allclose(parts.intensity_sum, whole.intensity_sum)


def test_empty_volume_has_an_empty_table() -> None:
    table = measure_xyz(np.zeros((4, 5, 6), np.uint8), SIZE)
    assert all(len(v) == 0 for v in table.values())
    assert list(table)[:3] == ["label", "voxels", "volume_um3"] and "skeleton_length_um" in table


def test_skeleton_length_of_a_straight_tube_and_a_bent_one() -> None:
    tube = np.zeros((7, 9, 40), bool)  # [Z, Y, X]: a 3x3 tube along x
    tube[2:5, 3:6, 5:35] = True
    length = skeleton_length(tube, (2.0, 0.5, 0.25))
    assert 0.25 * 25 <= length <= 0.25 * 30  # thinning shortens the ends by at most the radius
    bent = np.zeros((5, 40, 40), bool)
    bent[1:4, 5:8, 5:35] = True  # an L: 30 voxels along x, then 30 along y
    bent[1:4, 5:35, 32:35] = True
    assert 50 <= skeleton_length(bent, (1.0, 1.0, 1.0)) <= 62
    assert skeleton_length(np.ones((1, 1, 1), bool), (1, 1, 1)) == 0.0


def test_table_files_and_ngff_properties(tmp_path: Path) -> None:
    labels = random_labels(seed=2)
    table = measure_xyz(labels, SIZE)
    write_table(tmp_path / "t.csv", table)
    with open(tmp_path / "t.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(table["label"])
    assert float(rows[0]["volume_um3"]) == table["volume_um3"][0] and rows[0]["touches_border"] in ("True", "False")
    pq = pytest.importorskip("pyarrow.parquet")
    write_table(tmp_path / "t.parquet", table)
    back = pq.read_table(tmp_path / "t.parquet").to_pydict()
    assert back["label"] == table["label"].tolist() and back["skeleton_length_um"] == table["skeleton_length_um"].tolist()
    properties = label_properties(table)
    assert properties[0]["label-value"] == table["label"][0] and "label" not in properties[0]
    assert not list(tmp_path.glob(".*"))


def test_measure_reads_voxel_size_and_raw_from_files(tmp_path: Path) -> None:
    labels = random_labels(seed=6, sparse_values=False).astype(np.uint16)
    write_labels(tmp_path / "l.tif", labels, voxel_size=SIZE)
    raw = np.random.default_rng(1).integers(0, 255, size=labels.shape).astype(np.uint8)
    tifffile.imwrite(tmp_path / "raw.tif", raw.transpose(2, 0, 1))
    warnings: list[str] = []
    table = measure(tmp_path / "l.tif", raw=tmp_path / "raw.tif", out=tmp_path / "t.csv", warn=warnings.append)
    assert table.voxel_size.describe() == "z 2, y 0.5, x 0.25 um" and not warnings
    with open(tmp_path / "t.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    expected = oracle(labels, raw, SIZE)
    assert [int(r["label"]) for r in rows] == expected["label"]
    assert np.allclose([float(r["mean_intensity"]) for r in rows], expected["mean"])
    measure(tmp_path / "l.tif", out=tmp_path / "t.csv", voxel_size=VoxelSize((1.0, 1.0, 1.0), "nanometer"),
                 overwrite=True, warn=warnings.append, skeleton=False)
    assert len(warnings) == 1 and "differs from" in warnings[0]
    assert "volume_nm3" in open(tmp_path / "t.csv").readline() and "skeleton_length_nm" not in open(tmp_path / "t.csv").readline()


def test_measure_mistakes_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labels = random_labels(seed=6, sparse_values=False).astype(np.int16)
    labels[0, 0, 0] = -3
    tifffile.imwrite(tmp_path / "neg.tif", labels.transpose(2, 0, 1))
    with pytest.raises(InputError, match="the labels hold negative values"):
        measure(tmp_path / "neg.tif", out=tmp_path / "t.csv")
    tifffile.imwrite(tmp_path / "raw.tif", np.zeros((3, 4, 5), np.uint8))
    with pytest.raises(InputError, match=r"raw= is z 3, y 4, x 5, the labels z 17, y 23, x 19"):
        measure(tmp_path / "neg.tif", out=tmp_path / "t.csv", raw=tmp_path / "raw.tif")
    with pytest.raises(OutputError, match=r"^out='\S+t\.xlsx': unknown table type; use \.csv or \.parquet"):
        measure(tmp_path / "neg.tif", out=tmp_path / "t.xlsx")
    (tmp_path / "t.csv").write_text("")
    with pytest.raises(OutputError, match=r"--table \S+t\.csv exists; pass --overwrite"):
        check_table_path(tmp_path / "t.csv", overwrite=False)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(OutputError, match=r'Parquet needs pyarrow \(pip install "pyarrow>=14,<19"; .*\); or write \.csv'):
        check_table_path(tmp_path / "t.parquet", overwrite=False)


def test_the_table_is_a_dict_of_columns_and_a_dataframe_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17: pandas is not needed to measure; to_pandas() gives the same columns and rows."""
    import pandas  # the test extra's

    labels = random_labels(seed=2)
    raw = np.random.default_rng(3).integers(0, 60000, size=labels.shape).astype(np.uint16)
    table = measure_xyz(labels, SIZE, raw, skeleton=False)
    assert isinstance(table, dict) and len(table["label"]) > 10
    frame = table.to_pandas()
    assert isinstance(frame, pandas.DataFrame) and list(frame.columns) == list(table) and len(frame) == len(table["label"])
    for name, values in table.items():
        assert frame[name].dtype == values.dtype and np.array_equal(frame[name].to_numpy(), values)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r'^InstanceTable\.to_pandas needs pandas: pip install "pandas>=2\.1,<3" \(below 3'):
        table.to_pandas()


def test_measure_slabs_reads_only_slabs() -> None:
    labels = random_labels(seed=7).transpose(2, 0, 1)
    asked: list[tuple[int, int]] = []

    def read(z0: int, z1: int) -> np.ndarray:
        asked.append((z0, z1))
        return labels[z0:z1]

    measure_slabs(read, labels.shape, slab_voxels=labels.shape[1] * labels.shape[2] * 4)
    assert asked == [(z, min(z + 4, labels.shape[0])) for z in range(0, labels.shape[0], 4)]


def test_install_hints_name_what_the_index_has() -> None:
    """Issue 27 (6): the hints named skoots-triton[pandas], a distribution the package index
    does not have; they name the extras' own requirements, which it has."""
    import tomllib

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["pandas"] == [instances.PANDAS] and extras["parquet"] == [instances.PYARROW]
