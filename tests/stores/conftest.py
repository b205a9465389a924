from __future__ import annotations

from pathlib import Path

import pytest
import tifffile

from .stores_support import blobs, http_server, write_n5, write_precomputed, write_zarr3_sharded

SHAPE_ZYX = (12, 56, 56)  # 3 x 3 x 2 crops of the e2e model (24x24x8, overlap 4x4x2)


@pytest.fixture(scope="session")
def stores_folder(tmp_path_factory: pytest.TempPathFactory, e2e_repository: Path) -> Path:
    """One volume as a TIFF, an N5 dataset, a precomputed image, a sharded Zarr v3 array and a
    Zarr v2 array, and the in-memory mode's labels of the TIFF (``expected.tif``)."""
    import zarr

    import skoots_client

    folder = tmp_path_factory.mktemp("stores")
    zyx = blobs(SHAPE_ZYX, seed=3)
    tifffile.imwrite(folder / "v.tif", zyx)
    write_n5(folder / "v.n5" / "s0", zyx)
    write_precomputed(folder / "pre", zyx)
    write_zarr3_sharded(folder / "sharded.zarr", zyx)
    zarr.create_array(str(folder / "v2.zarr"), data=zyx, chunks=(4, 16, 16), zarr_format=2)
    image = zarr.open_group(str(folder / "img.ome.zarr"), mode="w", zarr_format=2)
    image.create_array("0", data=zyx, chunks=(4, 16, 16))
    image.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"],
                                   "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [40, 4, 8]}]}]}]
    skoots_client.segment(folder / "v.tif", out=folder / "expected.tif", repository=e2e_repository, device="cpu", quiet=True)
    assert tifffile.imread(folder / "expected.tif").max() >= 5
    return folder


@pytest.fixture(scope="session")
def served(stores_folder: Path) -> str:
    """``python -m http.server`` on 127.0.0.1 serving the stores' folder."""
    with http_server(stores_folder) as url:
        yield url
