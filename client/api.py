"""The Python API: [`segment`][skoots_client.segment] and [`measure`][skoots_client.measure],
what ``skoots-client segment`` and ``skoots-client measure`` run.

Every option of the command line is a keyword of the same name and default
(`OPTIONS` describes each once). Triples (``crop``,
``overlap``, ``block``, ``voxel_size``) are ``(z, y, x)`` tuples or named text, as napari names
the axes (client/keyword_triples.py); a mistake is named by its keyword (``overwrite=True``).

Not split: most of its lines are the docstrings of ``segment`` and ``measure``, which document
every keyword statically (mkdocstrings reads the source; a test holds them to the registry).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .choices import Device, LabelsDtype, NgffVersion, Precision, Runtime, SharedMemory, choice
from .errors import InputError
from .keyword_triples import Triple, tile_value, triple, voxel_size_value
from .options import TILE_DEFAULT
from .result import Segmentation

__all__ = ["DeviceChoice", "RuntimeChoice", "PrecisionChoice", "NgffChoice", "LabelsDtypeChoice", "SharedMemoryChoice", "segment", "measure"]

DeviceChoice = Device | Literal["auto", "cpu", "gpu"]
RuntimeChoice = Runtime | Literal["auto", "openvino", "torchscript", "cuda"]
PrecisionChoice = Precision | Literal["fp32", "bf16"]
NgffChoice = NgffVersion | Literal["0.4", "0.5"]
LabelsDtypeChoice = LabelsDtype | Literal["uint32", "uint64"]
SharedMemoryChoice = SharedMemory | Literal["none", "system"]


def segment(
    volume: Any,
    *,
    url: str | Sequence[str] | None = None,
    model: str | Path | None = None,
    repository: str | Path = "model_repository",
    out: str | Path | None = None,
    overwrite: bool = False,
    channel: int | None = None,
    axes: str | None = None,
    normalize: str | None = None,
    batch: int | None = None,
    window: int = 4,
    timeout: float = 120.0,
    retries: int | None = None,
    retry_for: float = 60.0,
    shared_memory: SharedMemoryChoice = "none",
    device: DeviceChoice = "auto",
    crop: Triple = None,
    tile: Triple = TILE_DEFAULT,
    overlap: Triple = None,
    embedding_iterations: int | None = None,
    reference_borders: bool = False,
    save_intermediates: bool = False,
    quiet: bool = False,
    preview: str | Path | None = None,
    resume: bool = False,
    work_dir: str | Path | None = None,
    ssl: bool = False,
    root_cert: str | Path | None = None,
    private_key: str | Path | None = None,
    cert_chain: str | Path | None = None,
    blockwise: bool = False,
    block: Triple = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    scheduler: str | None = None,
    cluster: str | None = None,
    cluster_options: Mapping[str, Any] | None = None,
    max_jobs: int | None = None,
    voxel_size: Any = None,
    unit: str | None = None,
    table: str | Path | None = None,
    skeletons: bool = False,
    meshes: bool = False,
    labels_into: str | Path | None = None,
    label_name: str = "skoots",
    level: int | None = None,
    ngff_version: NgffChoice = "0.4",
    mask: str | Path | None = None,
    min_size: int = 0,
    labels_dtype: LabelsDtypeChoice = "uint32",
    skip_below: float | None = None,
    fill_missing: bool = False,
    runtime: RuntimeChoice = "auto",
    threads: int | None = None,
    precision: PrecisionChoice = "fp32",
    progress: Callable[[str, int, int], Any] | None = None,
    cancel: threading.Event | None = None,
    warn: Callable[[str], None] | None = None,
    note: Callable[[str], None] | None = None,
    s3_endpoint: str | None = None,
    roi: Any = None,
) -> Segmentation:
    """Segment a 3-D volume into instance labels.

    Runs the model in this process (from ``repository``, or from the repository that ``model``
    names) or on Triton servers (``url``), then the post-processing of the reference
    semantics; the labels equal ``skoots-client segment``'s on the same input and options.
    Each keyword is that command's option of the same name (``reference_borders`` is
    ``--reference-borders``) with the same default, except ``progress``, ``cancel``, ``warn`` and ``note``,
    which only a program can give. Triples (``crop``, ``overlap``, ``block``, ``voxel_size``)
    are ``(z, y, x)`` tuples or named text (``"z=20,y=300,x=300"``), as napari names the axes.

    Parameters
    ----------
    volume : numpy.ndarray, dask.array.Array, zarr.Array, str or pathlib.Path
        ``[Z, Y, X]`` or ``[Z, Y, X, C]`` as napari shows it (other orders: ``axes``), or the path
        of a TIFF, Zarr or OME-Zarr file, or an N5 / Neuroglancer precomputed / Zarr volume by
        path or URL (``n5://``, ``precomputed://``, ``https://``, ``s3://``...). Lazy arrays are
        read crop by crop. ``blockwise``, ``resume``, ``work_dir`` and ``level`` need a path.
    url : str or list of str, optional
        Triton gRPC address ``HOST:PORT``, or several to spread crops over. Without it the model
        runs in this process.
    model : str or pathlib.Path, optional
        The model's name on the servers / in the repository (default: the SKOOTS model there), or
        the path of a model repository to run in-process (``model="model_repository"``), or of a
        SKOOTS BioImage Model Zoo package (``model="skoots.zip"``, from ``skoots export --bioimageio``).
    repository : str or pathlib.Path
        Model repository for the in-process mode, when ``model`` does not name one.
    out : str or pathlib.Path, optional
        Also write the labels there: ``.tif``, ``.zarr`` or ``.ome.zarr``, or
        ``precomputed://`` / ``n5://`` a path or URL; default: keep them in memory only.
    overwrite : bool
        Replace an existing ``out``, ``table`` or ``labels_into`` labels group.
    channel : int, optional
        Channel of a multi-channel volume (default: the only one; channel 2 of more than 3, with
        a warning).
    axes : str, optional
        The volume's axis order, one letter per dimension as napari names them: ``"ZYX"`` (the
        default reading), ``"CZYX"``, ``"ZCYX"``, ``"XYZ"``...; overrides a file's own names.
    normalize : str, optional
        How voxels become network input: ``"auto"`` (the model's rule), ``"dtype"``,
        ``"minmax"``, ``"percentile[:LOW,HIGH]"`` or ``"mean-std:M,S"``.
    batch : int, optional
        Crops per request (default and maximum: the model's ``max_batch_size``).
    window : int
        Requests in flight per server.
    timeout : float
        Seconds a request may take before it is retried.
    retries : int, optional
        At most this many resends per request (default: as many as ``retry_for`` allows).
    retry_for : float
        Seconds a failing request is sent again, with growing waits; a server still failing after
        them drops out, and the run fails when none is left.
    shared_memory : {"none", "system"} or SharedMemory
        ``"system"``: requests and answers through Triton system shared memory (``/dev/shm``)
        instead of gRPC messages, for a server on this machine (a loopback ``url``); the regions
        are removed when the run ends, however it ends.
    device : {"auto", "cpu", "gpu"} or Device
        Where post-processing runs: ``"auto"`` is a GPU with CuPy when there is one.
    crop, overlap : tuple of 3 ints or str, optional
        Override the model's crop / overlap: ``(z, y, x)`` or named text ``"z=20,y=300,x=300"``.
    tile : {"crop", "auto"}, tuple of 3 ints or str
        How much of the volume the network sees at once: ``"crop"`` (the model's crop),
        ``"auto"`` (the largest tile of whole crop steps with the model's overlap that fits the
        memory budget: in-process the network's activation estimate against the memory left by
        post-processing, on Triton the model config's ``max_tile_voxels``) or a size ``(z, y, x)``
        / named text. ``reference_borders`` always uses the model's crop (a size with it is refused).
    embedding_iterations : int, optional
        Override the model's embedding iterations.
    reference_borders : bool
        Leave the reference's unwritten frames background, to reproduce published results.
    save_intermediates : bool
        Also write skeleton, vectors and probability beside ``out`` (``.zarr``).
    quiet : bool
        No progress line on stderr (``progress`` is still called).
    preview : str or pathlib.Path, optional
        Also write a PNG: the raw maximum projection over Z beside the labels in colour.
    resume : bool
        Keep finished crops in a work directory (``OUT.work`` beside ``out``) and take those
        already there: a killed run continues where it stopped.
    work_dir : str or pathlib.Path, optional
        The work directory for ``resume`` (implies it); with ``blockwise`` also an ``s3://`` or
        ``gs://`` URL (``s3_endpoint`` applies), so workers need no shared file system.
    ssl : bool
        Talk to the servers over TLS; implied by the certificate keywords.
    root_cert : str or pathlib.Path, optional
        CA certificate (PEM) to trust (default: the system's).
    private_key : str or pathlib.Path, optional
        Client key (PEM), for servers that require client certificates; with ``cert_chain``.
    cert_chain : str or pathlib.Path, optional
        Client certificate chain (PEM) for ``private_key``.
    blockwise : bool
        Segment block by block on a Dask cluster (the same labels), for volumes larger than
        memory; chosen by itself when the volume would not fit. Needs ``out`` or ``labels_into``.
    block : tuple of 3 ints or str, optional
        Block size ``(z, y, x)`` in voxels (or named text) for ``blockwise``, rounded to whole crop
        steps (default: the largest blocks whose estimated work fits 1.5 GB).
    workers : int, optional
        Worker processes of the local Dask cluster (default: the cores).
    threads_per_worker : int
        Threads per Dask worker process.
    scheduler : str, optional
        Join the Dask cluster at ``tcp://HOST:PORT`` instead of starting one (implies
        ``blockwise``).
    cluster : str, optional
        ``"slurm"``, ``"pbs"``, ``"lsf"`` or ``"sge"``: start the Dask workers as batch jobs
        through dask-jobqueue (the ``cluster`` extra; implies ``blockwise``), configured by
        ``cluster_options`` and dask's ``jobqueue.yaml``. A job that ends is replaced and its
        blocks redone.
    cluster_options : dict, optional
        Keywords of dask-jobqueue's cluster for ``cluster``: ``queue``, ``walltime``, ``memory``,
        ``cores``, ``processes``, ``job_extra_directives``, ... (an unknown key is refused).
    max_jobs : int, optional
        At most this many worker jobs at once for ``cluster`` (default 1), scaled adaptively
        between one and ``max_jobs``.
    voxel_size : tuple of 3 floats, str or VoxelSize, optional
        ``(z, y, x)`` in ``unit`` (micrometres by default), or named text with a unit suffix
        (``"z=2,y=0.5,x=0.5um"``); default: what the file states.
    unit : str, optional
        Unit of ``voxel_size``: ``"um"``, ``"nm"``, ``"mm"``, ``"cm"``, ``"m"`` or ``"angstrom"``;
        alone, the unit of a scale the file states without one.
    table : str or pathlib.Path, optional
        Also write the instance table (``.csv``, or ``.parquet`` with pyarrow).
    skeletons : bool
        Also write each instance's skeleton, traced from the skeleton the network predicted:
        Neuroglancer skeletons in a ``precomputed://`` ``out``, else SWC files ``ID.swc`` in
        ``LABELS_skeletons/`` beside the labels; with ``table``, its graph length column.
    meshes : bool
        Also write each instance's surface mesh into a ``precomputed://`` ``out``, in
        Neuroglancer's legacy mesh format (the ``info``'s ``mesh`` key, vertices in nm).
    labels_into : str or pathlib.Path, optional
        Write the labels into this OME-Zarr image's ``labels/NAME`` group, with its levels.
    label_name : str
        ``NAME`` of that group.
    level : int, optional
        Segment resolution level N of an OME-Zarr image, a precomputed volume or an N5 group.
    ngff_version : {"0.4", "0.5"} or NgffVersion
        OME-NGFF version of an ``.ome.zarr`` ``out``: 0.4 (Zarr v2) or 0.5 (Zarr v3).
    mask : str or pathlib.Path, optional
        Foreground mask volume (nonzero = foreground), same axes as the volume: crops without
        foreground are not inferred and stay background.
    min_size : int
        Remove instances of fewer voxels than this before renumbering (0 keeps every one).
    labels_dtype : {"uint32", "uint64"} or LabelsDtype
        The labels' type in memory and in every output format: ``uint32`` (``uint64`` with a note
        in the summary if the instances do not fit it), or ``uint64`` (Paintera's).
    skip_below : float, optional
        Do not infer crops whose raw maximum is below this; they stay background.
    fill_missing : bool
        Read chunks missing from an N5, precomputed or Zarr volume as zeros, and say how many
        through ``warn``; by default a missing chunk (or a chunk read that keeps failing) is an error.
    runtime : {"auto", "openvino", "torchscript", "cuda"} or Runtime
        What runs the model in-process (no ``url``); ``"auto"``: the fastest the machine has.
    threads : int, optional
        In-process inference threads on the CPU (default: all cores).
    precision : {"fp32", "bf16"} or Precision
        In-process precision; ``bf16`` with OpenVINO on CPUs that compute it natively.
    progress : callable, optional
        ``progress(stage, done, total)`` after each batch of crops (stage ``"infer"``) or each
        block of a blockwise stage; returning ``False`` cancels the run.
    cancel : threading.Event, optional
        Set it (from any thread) to stop the run within one batch.
    warn : callable, optional
        Receives each warning about the input or the result as one line (default: printed on
        stderr as ``warning: ...``).
    note : callable, optional
        Receives each note on how the run goes as one line (it went blockwise because the volume
        does not fit in memory, the Dask cluster it uses); default: printed on stderr unless ``quiet``.
    s3_endpoint : str, optional
        Endpoint of an S3-compatible store that is not AWS (``http://127.0.0.1:9000``), for an
        ``s3://`` volume or ``out``.
    roi : str or sequence of 3 (start, stop) pairs or slices, optional
        Segment only this box, in z, y, x from the volume's first voxel: text
        (``"0:40,100:612,100:612"`` in voxels, ``"0:2,0:10,0:10um"`` in physical units) or
        ``((z0, z1), (y0, y1), (x0, x1))`` / ``(slice(z0, z1), ...)`` in voxels. Only the box is
        read; the output's metadata states where it sits.

    Returns
    -------
    Segmentation
        ``.labels`` (``uint32`` ``[Z, Y, X]``, or ``labels_dtype``; ``np.asarray(result)`` is the
        same), ``.table``, ``.voxel_size``, ``.summary``.

    Raises
    ------
    skoots_client.errors.ClientError
        A problem with the input, a keyword, the model or a server: one line that names the
        keyword (``overwrite=True``, ``crop=``); [`Cancelled`][skoots_client.Cancelled]
        when cancelled. Nothing is left half-written. Blockwise,
        [`BlockFailures`][skoots_client.BlockFailures] when blocks failed after their retries:
        one line per block, ``.failures`` and ``.stats`` (each stage's done / failed /
        remaining blocks); the finished blocks are kept for ``resume=True``.

    Examples
    --------
    >>> import numpy as np
    >>> import skoots_client as skoots
    >>> volume = np.random.default_rng(0).integers(0, 2**16, (16, 40, 40), dtype=np.uint16)  # [Z, Y, X]
    >>> result = skoots.segment(volume, model="model_repository", quiet=True)
    >>> result.labels.shape, result.labels.dtype
    ((16, 40, 40), dtype('uint32'))
    >>> np.array_equal(np.asarray(result), result.labels)
    True
    >>> table = skoots.measure(result.labels, raw=volume, voxel_size=(0.05, 0.012, 0.012))
    >>> len(table["label"]) == result.labels.max()
    True
    """
    from .model_source import Tls
    from .options import as_keyword, in_terms, render
    from .plan import ClusterSpec, InputSpec, ModelSpec, OutputSpec, ResumeSpec
    from .progress import Watch
    from .roi import parse_roi
    from .run import run_segment
    from .summary import warn_on_stderr
    from .volume_read import volume_from_array

    with in_terms(as_keyword) as terms:
        told = warn or warn_on_stderr
        urls = [url] if isinstance(url, str) else list(url or [])
        model_name, repository = _model_source(model, Path(repository), bool(urls))
        tls = Tls(_path(root_cert), _path(private_key), _path(cert_chain)) if ssl or root_cert or private_key or cert_chain else None
        return run_segment(
            InputSpec(
                _location(volume, s3_endpoint, "input") if _is_location(volume) else volume_from_array(volume, channel, axes),
                channel=channel, axes=axes, normalize=normalize, voxel_size=voxel_size_value(voxel_size, unit), level=level,
                mask=_path(mask), skip_below=skip_below, fill_missing=fill_missing, roi=parse_roi(roi),
            ),
            OutputSpec(
                out=None if out is None else _location(out, s3_endpoint, "--out"), labels_into=_path(labels_into),
                label_name=label_name, overwrite=overwrite, table=_path(table), skeletons=skeletons, preview=_path(preview),
                save_intermediates=save_intermediates, meshes=meshes, min_size=min_size,
                labels_dtype=choice(LabelsDtype, labels_dtype, "--labels-dtype"),
                ngff_version=choice(NgffVersion, ngff_version, "--ngff-version", "use 0.4 (Zarr v2) or 0.5 (Zarr v3)"),
            ),
            ModelSpec(
                urls=tuple(urls), model=model_name, repository=repository, tls=tls, window=window, timeout=timeout,
                retries=retries, retry_for=retry_for, shared_memory=choice(SharedMemory, shared_memory, "--shared-memory"), batch=batch, runtime=choice(Runtime, runtime, "--runtime"), threads=threads,
                precision=choice(Precision, precision, "--precision"), crop=triple("--crop", crop), tile=tile_value(tile),
                overlap=triple("--overlap", overlap), embedding_iterations=embedding_iterations,
                reference_borders=reference_borders, device=choice(Device, device, "--device", "choose auto, cpu or gpu"),
            ),
            ResumeSpec(resume=resume, work_dir=None if work_dir is None else _location(work_dir, s3_endpoint, "--work-dir")),
            ClusterSpec(blockwise=blockwise, block=triple("--block", block), workers=workers,
                        threads_per_worker=threads_per_worker, scheduler=scheduler, cluster=cluster,
                        cluster_options=None if cluster_options is None else dict(cluster_options), max_jobs=max_jobs),
            warn=told,
            watch=Watch(quiet, progress, cancel, note=note, render=lambda text: render(text, terms)),
        )


def measure(
    labels: Any,
    raw: Any = None,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    channel: int | None = None,
    voxel_size: Any = None,
    unit: str | None = None,
    skeleton: bool = True,
    warn: Callable[[str], None] | None = None,
    s3_endpoint: str | None = None,
) -> Any:
    """Measure instance labels: one row per instance.

    Columns: voxel count, volume, centroid and bounding box (in voxels and in the voxel
    size's unit), mean and maximum raw intensity (with ``raw``), skeleton length (with
    ``skeleton``) and whether the instance touches the volume border.

    Parameters
    ----------
    labels : numpy.ndarray, dask.array.Array, zarr.Array, str or pathlib.Path
        Labels ``[Z, Y, X]`` (0 is background), e.g. ``segment(...).labels``, or a label file.
    raw : array or path, optional
        The volume the labels segment, ``[Z, Y, X]`` (or ``[Z, Y, X, C]`` with ``channel``).
    out : str or pathlib.Path, optional
        Also write the table there (``.csv``, or ``.parquet`` with pyarrow).
    overwrite : bool
        Replace an existing ``out``.
    channel : int, optional
        Channel of a multi-channel ``raw`` (as for `segment`).
    voxel_size : tuple of 3 floats, str or VoxelSize, optional
        ``(z, y, x)`` in ``unit`` (micrometres by default), or named text with a unit suffix
        (``"z=2,y=0.5,x=0.5um"``); default: what the labels' (or the raw's) file states, else voxels.
    unit : str, optional
        Unit of ``voxel_size`` (``"um"``, ``"nm"``...); alone, the unit of a scale the file states
        without one.
    skeleton : bool
        Measure each instance's skeleton length (3-D thinning per instance; the slowest column).
    warn : callable, optional
        Receives each warning as one line (default: printed on stderr as ``warning: ...``).
    s3_endpoint : str, optional
        Endpoint of an S3-compatible store that is not AWS, for ``s3://`` labels or raw.

    Returns
    -------
    InstanceTable
        A ``dict`` of NumPy columns (``.to_pandas()`` gives a DataFrame); ``.voxel_size`` is the
        voxel size it was measured with.

    Examples
    --------
    >>> import numpy as np
    >>> import skoots_client as skoots
    >>> labels = np.zeros((4, 8, 8), np.uint32)
    >>> labels[1:3, 2:5, 2:6] = 1
    >>> table = skoots.measure(labels, voxel_size=(2.0, 0.5, 0.5), skeleton=False)
    >>> int(table["voxels"][0]), float(table["volume_um3"][0])
    (24, 12.0)
    """
    from .destinations import check_not_input
    from .instances import check_table_path, measure_xyz, write_table
    from .options import as_keyword, in_terms
    from .stores import Location
    from .summary import warn_on_stderr
    from .volume_read import open_labels, read_volume, volume_from_array
    from .voxel_size_read import read_voxel_size, resolve_voxel_size

    with in_terms(as_keyword):
        out = _path(out)
        labels_path = _location(labels, s3_endpoint, "labels") if _is_location(labels) else None
        raw_path = _location(raw, s3_endpoint, "--raw") if _is_location(raw) else None
        if out is not None:
            local = [Location.of(p).local for p in (labels_path, raw_path) if p is not None]  # a remote volume is never local
            check_not_input("--out", out, [p for p in local if p is not None])
            check_table_path(out, overwrite, "--out")
        opened = open_labels(labels_path) if labels_path is not None else _labels_from_array(labels)
        raw_volume = None if raw is None else read_volume(raw_path, channel) if raw_path is not None else volume_from_array(raw, channel)
        stated = (read_voxel_size(labels_path) if labels_path else None) or (read_voxel_size(raw_path) if raw_path else None)
        size = resolve_voxel_size(voxel_size_value(voxel_size, unit), stated, labels_path or Path("<labels>"), warn or warn_on_stderr)
        columns = measure_xyz(opened.data, size, None if raw_volume is None else raw_volume.data, skeleton=skeleton)
        if out is not None:
            write_table(out, columns)
        return columns


def _labels_from_array(labels: Any) -> Any:
    from .volume import Volume

    if not all(hasattr(labels, a) for a in ("shape", "dtype", "__getitem__")) or len(labels.shape) != 3:
        raise InputError("labels must be a 3-D array [Z, Y, X] of integers, or the path of a label file")
    if np.dtype(labels.dtype).kind not in "iub":
        raise InputError(f"labels hold {np.dtype(labels.dtype).name} values; labels are integers (0 is background)")
    return Volume(_transposed(labels), Path("<labels>"))


class _transposed:
    """A ``[Z, Y, X]`` array seen as the runtime's ``[X, Y, Z]`` (rows, columns, slices), lazily."""

    def __init__(self, array: Any) -> None:
        self._array = array
        z, y, x = array.shape
        self.shape, self.dtype = (y, x, z), array.dtype

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        sx, sy, sz = key
        return np.asarray(self._array[sz, sx, sy]).transpose(1, 2, 0)


def _model_source(model: str | Path | None, repository: Path, served: bool) -> tuple[str | None, Path]:
    """``model`` as a name, or as the repository to run in-process when it is a folder of models
    or a SKOOTS zoo package (.zip)."""
    if model is None or served:
        return (None if model is None else str(model)), repository
    path = Path(model)
    a_model_there = path.name == str(model) and (repository / path.name).is_dir()  # a plain name the repository holds
    if path.is_dir() and any(path.glob("*/config.pbtxt")) and not a_model_there:
        return None, path
    if path.suffix.lower() == ".zip" and path.is_file():  # a SKOOTS BioImage Model Zoo package
        from .model_source import zoo_repository

        return None, zoo_repository(path)
    if not a_model_there and (isinstance(model, Path) or path.name != str(model) or path.is_dir()):  # a path, not a name
        from .errors import ModelError

        why = "it holds no exported model: no */config.pbtxt" if path.is_dir() else "no such folder"
        raise ModelError(f"no model repository at {model} ({why}); give a folder written by skoots export, "
                         f"or a model's name in repository={str(repository)!r}")
    return str(model), repository


def _is_location(value: Any) -> bool:
    """A path or URL (rather than an array)."""
    from .stores import Location

    return Location.names(value)


def _location(value: Any, s3_endpoint: str | None, option: str) -> Any:
    """A local path, or an N5 / precomputed / Zarr store named by URL (``n5://``, ``s3://``, ...)."""
    from .stores import Location

    return Location.parse(value, s3_endpoint=s3_endpoint, option=option).target


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)
