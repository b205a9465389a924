"""What ``segment`` prints to see a precomputed result: the ``view`` command and, for a remote
output, a link whose fragment is the Neuroglancer state that opens it."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest

from skoots_client.stores import parse
from skoots_client.view_link import neuroglancer_link, view_lines


def _state(link: str) -> dict:
    client, fragment = link.split("#!", 1)
    assert client == "https://neuroglancer-demo.appspot.com/"
    return json.loads(unquote(fragment))


@pytest.mark.parametrize(("out", "source"), [
    ("precomputed://gs://bucket/run/labels", "precomputed://gs://bucket/run/labels"),
    ("s3://bucket/labels", "precomputed://s3://bucket/labels"),
    ("precomputed://https://example.org/data/labels/", "precomputed://https://example.org/data/labels"),
])
def test_a_remote_output_links_to_neuroglancer_with_its_source(out: str, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    state = _state(neuroglancer_link(parse(out)))
    assert state["layers"] == [{"type": "segmentation", "source": source, "name": "labels"}]


def test_s3_behind_another_endpoint_is_linked_path_style() -> None:
    url = parse("s3://bucket/labels", s3_endpoint="http://127.0.0.1:9000")
    assert _state(neuroglancer_link(url))["layers"][0]["source"] == "precomputed://http://127.0.0.1:9000/bucket/labels"


def test_view_lines_only_for_precomputed(tmp_path: Path) -> None:
    raw = tmp_path / "raw volume.tif"
    raw.touch()
    assert view_lines(raw, parse(f"precomputed://{tmp_path}/seg")) == [
        f"view in Neuroglancer: skoots-client view precomputed://{tmp_path}/seg --raw '{raw}'"]
    assert view_lines(raw, parse(f"n5://{tmp_path}/seg")) == []
    assert view_lines(raw, tmp_path / "labels.tif") == []
    lines = view_lines(None, parse("gs://bucket/seg"))
    assert lines[0] == "view in Neuroglancer: skoots-client view gs://bucket/seg" and lines[1].startswith("or open https://")
