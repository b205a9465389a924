"""`Location`: a local path or a store URL, and what callers ask of either (client/stores/location.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skoots_client.errors import InputError
from skoots_client.stores import Location, StoreUrl, parse


def test_a_local_file_is_its_path(tmp_path: Path) -> None:
    volume = tmp_path / "raw.tif"
    location = Location.parse(str(volume))
    assert location.target == volume and location.url is None and location.local == volume
    assert not location.exists and not location.is_file and not location.remote
    volume.write_bytes(b"")
    assert location.exists and location.is_file
    assert location.name == "raw.tif" and location.parent == tmp_path and str(location) == str(volume)
    assert location.work_dir == tmp_path / "raw.tif.work"


def test_a_local_store_url_is_its_folder(tmp_path: Path) -> None:
    (tmp_path / "vol.n5").mkdir()
    location = Location.parse(f"n5://{tmp_path}/vol.n5")
    assert location.url is not None and location.url.format == "n5"
    assert location.local == tmp_path / "vol.n5" and location.exists and not location.is_file and not location.remote
    assert location.name == "vol.n5" and location.parent == tmp_path
    assert location.work_dir == tmp_path / "vol.n5.work"
    assert str(location) == f"n5://{tmp_path}/vol.n5"


@pytest.mark.parametrize(("text", "name"), [
    ("s3://bucket/run/labels", "labels"),
    ("precomputed://https://example.org/em/raw", "raw"),
    ("zarr://http://127.0.0.1:8000/data/vol.zarr/", "vol.zarr"),
    ("s3://bucket", "bucket"),
])
def test_a_remote_store_has_no_local_path_and_works_here(text: str, name: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    location = Location.parse(text)
    assert location.remote and location.local is None and not location.exists and not location.is_file
    assert location.name == name and location.parent == tmp_path and location.local_work_dir == tmp_path / f"{name}.work"
    work = location.work_dir
    if location.url.scheme == "s3":  # beside it in the bucket: no worker needs a path of this machine
        expected = {"s3://bucket/run/labels": "run/labels.work", "s3://bucket": "bucket.work"}[text]
        assert (work.scheme, work.host, work.path, str(work)) == ("s3", "bucket", expected, f"s3://bucket/{expected}")
    else:  # an HTTP store is read-only: here
        assert work == tmp_path / f"{name}.work"
    assert str(location) == text and location.resolved() is location.target


def test_of_never_parses_text_and_parse_keeps_what_is_parsed_already(tmp_path: Path) -> None:
    url = parse("s3://bucket/labels")
    assert Location.of(url).url is url and Location.parse(url).url is url
    assert Location.of(Location.of(url)).target is url
    assert Location.of("s3://bucket/labels").target == Path("s3://bucket/labels")  # a path, as before
    path = Path("raw.tif")
    assert Location.parse(path).target is path
    assert Location.of(path).resolved() == Path.cwd() / "raw.tif"


def test_an_unknown_scheme_is_refused_naming_the_option() -> None:
    with pytest.raises(InputError, match=r"^--raw ftp://host/x: unknown scheme"):
        Location.parse("ftp://host/x", option="--raw")


def test_names_tells_a_location_from_data() -> None:
    import numpy as np

    assert all(Location.names(v) for v in ("raw.tif", Path("raw.tif"), parse("s3://b/k"), Location.of("x")))
    assert not Location.names(np.zeros((2, 2, 2))) and not Location.names(None)


def test_s3_endpoint_reaches_the_url() -> None:
    url = Location.parse("s3://bucket/key", s3_endpoint="http://127.0.0.1:9000").url
    assert isinstance(url, StoreUrl) and url.s3_endpoint == "http://127.0.0.1:9000"
