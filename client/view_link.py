"""What ``segment`` says about seeing a precomputed result: the ``skoots-client view`` command,
and for one on HTTP, S3 or GCS a link that opens it in Neuroglancer's public demo client
(the state in the URL's fragment; the browser reads the data from where it was written).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .stores import StoreUrl

__all__ = ["DEMO_CLIENT", "neuroglancer_source", "neuroglancer_link", "view_lines"]

DEMO_CLIENT = "https://neuroglancer-demo.appspot.com/"


def neuroglancer_source(url: StoreUrl, format: str = "precomputed") -> str:
    """A remote store as a Neuroglancer source of ``format`` (``precomputed``, ``n5``, ``zarr``,
    ``zarr3``): ``precomputed://gs://…``, ``precomputed://s3://…`` (AWS), ``precomputed://https://…``;
    S3 behind another endpoint (MinIO, Ceph) by that endpoint's path-style URL."""
    key = url.path.strip("/")
    if url.scheme == "s3":
        endpoint = url.s3_endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            return f"{format}://{endpoint.rstrip('/')}/{url.host}/{key}"
    return f"{format}://{url.scheme}://{url.host}/{key}"


def neuroglancer_link(url: StoreUrl) -> str:
    """A link that opens the labels at ``url`` in Neuroglancer's demo client."""
    state = {"layers": [{"type": "segmentation", "source": neuroglancer_source(url), "name": "labels"}],
             "selectedLayer": {"layer": "labels"}, "layout": "4panel"}
    return f"{DEMO_CLIENT}#!" + quote(json.dumps(state, separators=(",", ":")), safe=":/,")


def view_lines(raw: Any, written: Any) -> list[str]:
    """The summary's lines for a precomputed output: the ``view`` command (with the input as
    ``--raw`` when it is a file or a store), and the demo client's link when it is remote."""
    if not isinstance(written, StoreUrl) or (written.format or "precomputed") != "precomputed":  # a URL without one: precomputed
        return []
    command = ["skoots-client", "view", written.text]
    if isinstance(raw, StoreUrl) or (isinstance(raw, Path) and raw.exists()):
        command += ["--raw", raw.text if isinstance(raw, StoreUrl) else str(raw)]
    lines = [f"view in Neuroglancer: {shlex.join(command)}"]
    if written.remote:
        lines.append(f"or open {neuroglancer_link(written)}")
    return lines
