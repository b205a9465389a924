"""The mesh stages of a blockwise ``--meshes`` run into a precomputed destination: after the
write stage, each write region meshed on a worker from its final labels, then the manifests.

``mesh``: a task reads its region's labels from the destination (written, not yet published:
the workers open it with ``assume_metadata``) with one voxel more on its high sides, meshes
them (client/meshes.py) and writes one fragment per id straight into ``mesh/``; the ids it
meshed go to the work store. ``manifest``: the client reads those id lists (small: one per
region, never a voxel), groups the ids, and each task writes its group's ``mesh/{id}:0``
manifests. Both mark their tasks done, so ``--resume`` redoes only unfinished regions and
groups; the ``mesh`` key reaches the ``info`` only when it is published, last (export.publish).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..atomic import crc
from ..meshes import MESH_DIR, fragment_name, read_extent
from ..stores.meshes import open_folder, scale_frame, write_box_meshes, write_manifests
from .blocks import Region
from .destination import Destination, read
from .job import Job
from .store import Stage
from .worker import cached, report

__all__ = ["STAGE", "MANIFEST_STAGE", "IDS_PER_TASK", "IDS", "ManifestGroup", "mesh_region", "manifest_groups",
           "write_manifest_group", "verify", "verify_manifests"]

STAGE: Stage = "mesh"
MANIFEST_STAGE: Stage = "manifest"
IDS_PER_TASK = 20000  # manifests per task: ~1 MB of JSON, a few seconds of small writes
IDS = "meshes"  # the work store's folder of each region's meshed ids


def _folder(destination: Destination) -> Any:
    placed = destination.store
    assert placed is not None, "meshes go into a precomputed destination"
    return cached(("mesh-folder", str(placed.url)), lambda: open_folder(placed.url))


def mesh_region(job: Job, name: str, region: Region, destination: Destination) -> dict[str, Any]:
    """Mesh write region ``region`` (named ``name``) from the destination's final labels and
    write its fragments; its ids kept in the work store and the region marked done."""
    started = time.perf_counter()
    placed = destination.store
    assert placed is not None, "meshes go into a precomputed destination"
    labels = read(destination, read_extent(region, placed.shape_xyz))  # type: ignore[arg-type]
    ids, written = write_box_meshes(_folder(destination), placed.url, labels, region, placed.shape_xyz,
                                    scale_frame(placed.spec["scale_metadata"]))
    job.store.save_npz(IDS, name, ids=ids)
    job.store.mark(STAGE, name, crc(ids), {"bytes": written, "ids": len(ids)})
    return report(started, bytes=written)


@dataclass(frozen=True)
class ManifestGroup:
    """One manifest task's fragments: per fragment its id (sorted) and the region it was meshed
    from (runtime ``x0, x1, y0, y1, z0, z1``); arrays, so the client holds no string per fragment."""

    name: str
    labels: np.ndarray
    boxes: np.ndarray

    def fragments(self) -> dict[int, list[str]]:
        """Each id's fragment names."""
        named: dict[int, list[str]] = {}
        for label, box in zip(self.labels.tolist(), self.boxes.tolist()):
            named.setdefault(int(label), []).append(fragment_name(label, list(zip(box[::2], box[1::2]))))
        return named


def manifest_groups(ids: Mapping[str, np.ndarray], regions: Mapping[str, Region], per_task: int = IDS_PER_TASK) -> list[ManifestGroup]:
    """The manifests to write, ``per_task`` ids a group, from each region's meshed ``ids`` (by
    region name): the same groups for the same ids, so a resumed run's markers name them."""
    names = list(ids)
    corners = np.array([[v for axis in regions[n] for v in axis] for n in names], np.int64).reshape(-1, 6)
    labels = np.concatenate([ids[n] for n in names]) if names else np.zeros(0, np.uint64)
    where = np.concatenate([np.full(len(ids[n]), k) for k, n in enumerate(names)]) if names else np.zeros(0, np.int64)
    order = np.lexsort((where, labels))
    labels, where = labels[order], where[order]
    unique, starts = np.unique(labels, return_index=True)
    groups = []
    for first in range(0, len(unique), per_task):
        last = min(first + per_task, len(unique))
        span = slice(starts[first], starts[last] if last < len(unique) else len(labels))
        groups.append(ManifestGroup(f"{int(unique[first])}-{int(unique[last - 1])}", labels[span], corners[where[span]]))
    return groups


def _ends(group_name: str) -> tuple[str, str]:
    first, last = group_name.split("-")
    return f"{MESH_DIR}/{first}:0", f"{MESH_DIR}/{last}:0"


def write_manifest_group(job: Job, group: ManifestGroup, destination: Destination) -> dict[str, Any]:
    """Write a group's manifests into the destination and mark it done (its first and last
    manifests' CRC)."""
    from ..meshes import manifest

    started = time.perf_counter()
    placed = destination.store
    assert placed is not None, "meshes go into a precomputed destination"
    fragments = group.fragments()
    written = write_manifests(_folder(destination), placed.url, fragments)
    first, last = min(fragments), max(fragments)
    checksum = crc(*(np.frombuffer(manifest(fragments[i]), np.uint8) for i in (first, last)))
    job.store.mark(MANIFEST_STAGE, group.name, checksum, {"bytes": written})
    return report(started, bytes=written)


def verify(job: Job, name: str, checksum: int, destination: Any = None) -> bool:
    """A meshed region: its ids in the work store, as its marker names them."""
    return crc(job.store.load_npz(IDS, name)["ids"]) == checksum


def verify_manifests(job: Job, name: str, checksum: int, destination: Any = None) -> bool:
    """A written manifest group: its first and last manifests in the destination, as marked."""
    from ..stores.writer import done

    folder = _folder(destination)
    url = destination.store.url
    data = [np.frombuffer(bytes(done(folder.read(key), url).value), np.uint8) for key in _ends(name)]
    return crc(*data) == checksum

