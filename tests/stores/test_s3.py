"""S3 through moto's server mode on 127.0.0.1 (``--s3-endpoint``, credentials from the
environment): a precomputed input segments to the TIFF run's labels; ``--blockwise --out
s3://bucket/labels`` from an N5 input writes a precomputed segmentation that CloudVolume and
TensorStore read back equal, with nothing staged left in the bucket; no credentials, one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import tifffile

import skoots_client
from skoots_client.errors import InputError, OutputError

from .stores_support import (
    bucket_keys,
    cloudvolume_zyx,
    expected_labels,
    one_line,
    s3_with_bucket,
    write_precomputed,
)

CLIENT = str(Path(sys.executable).parent / "skoots-client")


@pytest.fixture(scope="module")
def s3() -> str:
    """A moto S3 server with bucket ``data``, and its test credentials in this process's
    environment (the Dask workers it starts inherit them)."""
    with s3_with_bucket("data") as endpoint:
        yield endpoint


def test_s3_in_and_blockwise_s3_out(stores_folder: Path, e2e_repository: Path, s3: str, tmp_path: Path) -> None:
    import tensorstore as ts

    expected = expected_labels(stores_folder)
    kvstore = {"driver": "s3", "bucket": "data", "path": "raw/", "endpoint": s3, "aws_region": "us-east-1",
               "aws_credentials": {"type": "environment"}}
    write_precomputed(None, tifffile.imread(stores_folder / "v.tif"), kvstore=kvstore)
    options = dict(repository=e2e_repository, device="cpu", quiet=True, s3_endpoint=s3)
    skoots_client.segment("precomputed://s3://data/raw", out=tmp_path / "a.tif", **options)
    assert np.array_equal(tifffile.imread(tmp_path / "a.tif"), expected)

    text = skoots_client.segment(stores_folder / "v.n5" / "s0", out="s3://data/labels", table=tmp_path / "t.csv", blockwise=True,
                                 block=(4, 16, 16), workers=2, **options).summary
    assert "→ s3://data/labels\n" in text and "export" not in text  # written in place: no copy stage
    assert f"view in Neuroglancer: skoots-client view s3://data/labels --raw {stores_folder / 'v.n5' / 's0'}\n" in text
    link = text.splitlines()[-1].removeprefix("or open https://neuroglancer-demo.appspot.com/#!")
    assert json.loads(unquote(link))["layers"][0]["source"] == f"precomputed://{s3}/data/labels"  # moto's endpoint, path-style
    assert np.array_equal(cloudvolume_zyx("precomputed://moto://data/labels", s3_endpoint=s3), expected)
    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": {**kvstore, "path": "labels/"}}).result()
    assert np.array_equal(store.read().result()[..., 0].T, expected)
    keys = bucket_keys(s3, "data")
    assert "labels/info" in keys and "labels/segment_properties/info" in keys
    assert all(k.startswith(("raw/", "labels/")) for k in keys), keys  # nothing staged is left
    assert not (tmp_path / "labels.work").exists() and not Path("labels.work").exists()


def test_missing_credentials_are_one_line(stores_folder: Path, e2e_repository: Path, s3: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    write_precomputed(None, np.ones((4, 8, 8), np.uint16), kvstore={"driver": "s3", "bucket": "data", "path": "private/", "endpoint": s3,
                                                                     "aws_region": "us-east-1", "aws_credentials": {"type": "environment"}})
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    message = ("--out s3://data/labels2: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
               "(or AWS_PROFILE with ~/.aws/credentials)")
    as_keyword = message.replace("--out s3://data/labels2", "out='s3://data/labels2'")  # the API names its keyword
    with pytest.raises(OutputError, match=re.escape(as_keyword)):
        skoots_client.segment(stores_folder / "v.tif", out="s3://data/labels2", s3_endpoint=s3, repository=e2e_repository, quiet=True)
    result = subprocess.run([CLIENT, "segment", str(stores_folder / "v.tif"), "--out", "s3://data/labels2", "--s3-endpoint", s3,
                             "-r", str(e2e_repository)], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert result.returncode == 2 and one_line(result.stderr) == f"error: {message}"
    assert "labels2/info" not in bucket_keys(s3, "data")
    with pytest.raises(InputError, match=r"^precomputed://s3://data/private: access denied \(.*\); check the credentials \(AWS_\* variables, ~/.aws\) and the bucket's permissions$"):
        skoots_client.segment("precomputed://s3://data/private", s3_endpoint=s3, out=tmp_path / "p.tif", repository=e2e_repository, quiet=True)
