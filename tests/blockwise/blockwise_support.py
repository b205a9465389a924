"""Helpers for the blockwise tests: a perfect network's answers, the in-memory labels of them,
and a blockwise run fed the same answers on a real Dask cluster."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from perfect_network import ideal_outputs

from skoots_client import postprocess
from skoots_client.blockwise.job import Job, StoredAnswers
from skoots_client.blockwise.pipeline import segment_job
from skoots_client.choices import LabelsDtype, NgffVersion
from skoots_client.in_memory import reference_interior
from skoots_client.normalize import Normalization
from skoots_client.progress import Watch
from skoots_client.specs import ModelSpec, OutputSpec
from skoots_client.volume_read import read_labels
from skoots_export.contract.wire import ModelParameters

CROP, OVERLAP = (24, 24, 8), (4, 4, 2)  # crop steps 16, 16, 4


def in_memory_labels(vectors: np.ndarray, skeleton: np.ndarray, parameters: ModelParameters, reference_borders: bool = False,
                     min_size: int = 0) -> np.ndarray:
    """The in-memory mode's post-processing of stitched answers (segment_volume's steps 7-10)."""
    skeleton_labels, _ = postprocess.label_skeleton(skeleton)
    labels = postprocess.assign_instances(vectors, skeleton_labels, parameters.vector_scaling, parameters.embedding_iterations)
    if reference_borders:
        interior = tuple(slice(lo, hi) for lo, hi in reference_interior(skeleton.shape))
        kept = labels[interior].copy()
        labels[...] = 0
        labels[interior] = kept
    return postprocess.renumber_labels(postprocess.remove_small_instances(labels, min_size))[0]


def answers_store(folder: Path, vectors: np.ndarray, skeleton: np.ndarray) -> Path:
    path = folder / "answers.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("vectors", data=vectors, chunks=(3, 32, 32, 16))
    group.create_array("skeleton", data=skeleton, chunks=(32, 32, 16))
    return path


PARAMETERS_FOR_TESTS = ModelParameters(crop=CROP, overlap=OVERLAP, vector_scaling=(4.0, 4.0, 2.0), embedding_iterations=2)


def job_for(folder: Path, shape: Sequence[int], parameters: ModelParameters, per_block: Sequence[int], answers: Path | None = None,
            reference_borders: bool = False) -> Job:
    label_halo, vector_halo = postprocess.halo_widths(parameters.vector_scaling, parameters.embedding_iterations)
    return Job(volume=answers or folder, channel=None, axes=None, normalization=Normalization("dtype"), work=folder / "work", shape=tuple(shape), per_block=tuple(per_block),
               reference_borders=reference_borders, parameters=parameters,
               source=StoredAnswers(answers) if answers is not None else ModelSpec(model="skoots", repository=folder),
               batch_size=1, threads=1, label_halo=label_halo, vector_halo=vector_halo)


def blockwise_labels(
    folder: Path, answers: Path, shape: Sequence[int], parameters: ModelParameters, per_block: Sequence[int], *,
    scheduler: str, reference_borders: bool = False, halos: Any = None, out_name: str = "labels.zarr", overwrite: bool = True,
    **options: Any,
) -> tuple[np.ndarray, Any]:
    """Labels ``[X, Y, Z]`` of a blockwise run on the answers, and the run's result."""
    out = folder / out_name
    job = job_for(folder, shape, parameters, per_block, answers, reference_borders)
    watch = options.pop("watch", None) or Watch(quiet=True)
    job = run_options(job, out, overwrite=overwrite, fingerprint={"test": str(answers)}, scheduler=scheduler, **options)
    if halos is not None:
        job = dataclasses.replace(job, label_halo=halos[0], vector_halo=halos[1])
    result = segment_job(job, watch)
    return read_labels(out).transpose(1, 2, 0), result


def run_options(job: Job, out: Path, *, overwrite: bool = False, fingerprint: dict[str, Any] | None = None, scheduler: str | None = None,
                voxel_size: Any = None, ngff_version: str = "0.4", min_size: int = 0, labels_dtype: str = "uint32",
                table: Path | None = None, resume: bool = False, skeletons: bool = False) -> Job:
    """``job`` with where its labels go and the run's options (what the plan gives a real run)."""
    output = OutputSpec(out=out, overwrite=overwrite, min_size=min_size, ngff_version=NgffVersion(ngff_version),
                        labels_dtype=LabelsDtype(labels_dtype), table=table, skeletons=skeletons)
    extra = {"voxel_size": voxel_size} if voxel_size is not None else {}
    return dataclasses.replace(job, output=output, fingerprint=fingerprint or {}, scheduler=scheduler, resume=resume, **extra)


@pytest.fixture(scope="session")
def local_cluster():
    """A real LocalCluster of two worker processes on 127.0.0.1 (one thread each)."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0")
    yield cluster
    cluster.close()


def tubes(shape: Sequence[int], count: int, scaling: Sequence[float], radius: float = 4.0, seed: int = 0):
    return ideal_outputs(shape, count, scaling, radius=radius, seed=seed)


def tube_answers(folder: Path, shape: Sequence[int], seed: int) -> tuple[Path, np.ndarray]:
    """A perfect network's stored answers for 40 tubes in ``shape`` (runtime X, Y, Z) with a raw
    TIFF beside them, and the in-memory labels they give: the blockwise output tests' input."""
    import tifffile

    vectors, skeleton = tubes(shape, 40, PARAMETERS_FOR_TESTS.vector_scaling, radius=5.0, seed=seed)
    raw = np.random.default_rng(0).integers(0, 999, (shape[2], shape[0], shape[1]), dtype=np.uint16)
    tifffile.imwrite(folder / "raw.tif", raw)
    return answers_store(folder, vectors, skeleton), in_memory_labels(vectors, skeleton, PARAMETERS_FOR_TESTS)


def stop_processes(processes: Sequence[subprocess.Popen]) -> None:
    """Stop ``dask scheduler`` / ``dask worker`` processes a test started: SIGINT (they close
    cleanly), then SIGKILL for any still running 20 s later."""
    for process in processes:
        process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
