"""``skoots-client``: segment volumes with an exported SKOOTS model."""

from __future__ import annotations

import os

# gRPC's C core logs a TLS handshake failure on stderr by itself; our error line says it
# better. Read when grpc is imported, so before anything imports tritonclient.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from pathlib import Path  # noqa: E402
from typing import Annotated, Optional  # noqa: E402

import typer  # noqa: E402

from skoots_export.contract.console import VersionOption, run  # noqa: E402
from skoots_export.contract.errors import SkootsError  # noqa: E402
from skoots_export.contract.triples import TRIPLE_HELP  # noqa: E402

from .choices import Device, LabelsDtype, NgffVersion, Precision, Runtime  # noqa: E402
from .errors import ClientError  # noqa: E402

app = typer.Typer(
    help="Segment 3-D microscopy volumes with a SKOOTS model on Triton (or in-process).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _commands(version: VersionOption = False) -> None:
    """Segment 3-D microscopy volumes with a SKOOTS model on Triton (or in-process)."""


def default_output(volume: Path, level: int | None = None) -> Path:
    if level is not None:  # IMAGE.ome.zarr --level 1: IMAGE_level1_labels.tif beside it
        return default_output(volume.with_name(volume.name.split(".")[0] + f"_level{level}"))
    if volume.parent.name.lower().endswith((".zarr", ".n5")):  # IMAGE.ome.zarr/1: IMAGE_1_labels.tif beside the image
        return default_output(volume.parent.with_name(volume.parent.name.split(".")[0] + f"_{volume.name}"))
    name = volume.name
    for suffix in (".ome.zarr", ".zarr", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return volume.with_name(name[: -len(suffix)] + "_labels.tif")
    return volume.with_name(name + "_labels.tif")


@app.command("segment")
def segment_command(
    volume: Annotated[str, typer.Argument(help="Input volume: TIFF stack [Z, Y, X(, C)] as Fiji/napari name the axes (other orders: --axes), Zarr array or OME-Zarr image; or an N5 dataset, Neuroglancer precomputed volume or Zarr array by path or URL (\\[n5:// | precomputed:// | zarr://] then a path, http(s)://, s3:// or gs://; see docs/data-stores.md).")],
    url: Annotated[Optional[list[str]], typer.Option("--url", help="Triton gRPC address HOST:PORT; repeat to spread crops over several servers. Without it the model runs in this process.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model name on the server / in the repository (default: the SKOOTS model there; of one export's variants the libtorch, then OpenVINO, then Python-backend one).")] = None,
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Model repository for the in-process (no --url) mode.")] = Path("model_repository"),
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output labels: .tif/.tiff, .zarr or .ome.zarr, or precomputed://PATH-or-URL (Neuroglancer segmentation) or n5://PATH-or-URL; s3://… and gs://… write precomputed (default: VOLUME_labels.tif beside the input).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    channel: Annotated[Optional[int], typer.Option(help="Channel of multi-channel input (default: the only one; channel 2 when there are more than 3, with a warning).")] = None,
    axes: Annotated[Optional[str], typer.Option("--axes", help="Axis order of the file as Fiji/napari name the axes, one letter per dimension: Z, Y (rows), X (columns), optionally C (channel) and T (a single time point), e.g. ZYX (the default reading), XYZ, YXZ, ZCYX, CZYX. Overrides the file's own axis names.")] = None,
    normalize: Annotated[Optional[str], typer.Option("--normalize", help="How voxels become network input: auto (the model's rule: its dataset mean/std, else x/2**16 for uint16, x/2**8 for uint8, float as is), dtype (that dtype rule even when the model has a mean/std), minmax ((x - min) / (max - min)), percentile[:LOW,HIGH] ((x - pLOW) / (pHIGH - pLOW), default 1,99.8, not clipped), or mean-std:M,S ((x - M) / S). minmax and percentile take their numbers once from a fixed sample of the whole volume, so every crop gets the same mapping.")] = None,
    batch: Annotated[Optional[int], typer.Option(help="Crops per request (default and maximum: the model's max_batch_size).")] = None,
    window: Annotated[int, typer.Option(help="Requests in flight per server.")] = 4,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take before it is retried.")] = 120.0,
    retries: Annotated[Optional[int], typer.Option(help="At most this many resends per request (default: as many as --retry-for allows).")] = None,
    retry_for: Annotated[float, typer.Option("--retry-for", help="Seconds a request that fails (server unavailable, past --timeout, an answer missing outputs) is sent again, waiting 0.5 s, 1 s, 2 s, … (at most 30 s) between tries; longer than a server restart. A server still failing after them drops out, and the run fails when none is left.")] = 60.0,
    device: Annotated[Device, typer.Option(help="Post-processing device: auto (GPU with CuPy when present), cpu or gpu.")] = Device.AUTO,
    crop: Annotated[Optional[str], typer.Option(help="Override the model's crop. " + TRIPLE_HELP)] = None,
    overlap: Annotated[Optional[str], typer.Option(help="Override the model's overlap. " + TRIPLE_HELP)] = None,
    embedding_iterations: Annotated[Optional[int], typer.Option(help="Override the model's embedding iterations N.")] = None,
    reference_borders: Annotated[bool, typer.Option("--reference-borders", help="Leave the reference's unwritten frames background, to reproduce published results.")] = False,
    save_intermediates: Annotated[bool, typer.Option("--save-intermediates", help="Also write skeleton, vectors and probability beside the output (.zarr).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.")] = False,
    preview: Annotated[Optional[Path], typer.Option("--preview", help="Also write a PNG: the raw max projection over Z beside the labels in distinct colours.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Keep finished crops in a work directory as they arrive (OUT.work beside the output) and take those already there: a killed or failed run continues where it stopped. Removed once the labels are written.")] = False,
    work_dir: Annotated[Optional[Path], typer.Option("--work-dir", help="Work directory for --resume (implies it).")] = None,
    ssl: Annotated[bool, typer.Option("--ssl", help="Talk to the servers over TLS (gRPC); implied by the certificate options.")] = False,
    root_cert: Annotated[Optional[Path], typer.Option("--root-cert", help="CA certificate (PEM) to trust for --ssl, e.g. the one that signed a self-made server certificate (default: the system's).")] = None,
    private_key: Annotated[Optional[Path], typer.Option("--private-key", help="Client key (PEM), for servers that require client certificates; with --cert-chain.")] = None,
    cert_chain: Annotated[Optional[Path], typer.Option("--cert-chain", help="Client certificate chain (PEM) for --private-key.")] = None,
    blockwise: Annotated[bool, typer.Option("--blockwise", help="Segment block by block on a Dask cluster (same labels): for volumes larger than memory, or to spread the client's work over processes and machines. Chosen by itself when the volume would not fit in memory.")] = False,
    block: Annotated[Optional[str], typer.Option("--block", help="Block size X,Y,Z in voxels for --blockwise, rounded to whole crop steps (default: the largest blocks whose estimated work fits 1.5 GB; measured, a worker then peaks near 1.5 GB with a small model in-process and ~0.8 GB with none; a large model in-process adds its weights and activations). The summary says the block used.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Worker processes of the local Dask cluster for --blockwise (default: the cores).")] = None,
    threads_per_worker: Annotated[int, typer.Option("--threads-per-worker", help="Threads per Dask worker process for --blockwise.")] = 1,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Join the Dask cluster at tcp://HOST:PORT instead of starting a local one (implies --blockwise; workers must see the input, the work directory and the output's folder).")] = None,
    voxel_size: Annotated[Optional[str], typer.Option("--voxel-size", help="Voxel size, with a unit suffix (0.5,0.5,2um or x=0.5,y=0.5,z=2um) or --unit; default: what the input file states (OME-Zarr scale, OME-TIFF PhysicalSize, ImageJ spacing/resolution). Written to the output and used by --table. " + TRIPLE_HELP)] = None,
    unit: Annotated[Optional[str], typer.Option("--unit", help="Unit of --voxel-size: um (default), nm, mm, cm, m or angstrom; alone, the unit of a scale the file states without one.")] = None,
    table: Annotated[Optional[Path], typer.Option("--table", help="Also write the instance table (.csv, or .parquet with pyarrow): one row per instance — voxels, volume, centroid, bounding box, raw intensity, skeleton length, touches border; see `skoots-client measure --help`.")] = None,
    labels_into: Annotated[Optional[Path], typer.Option("--labels-into", help="Write the labels into this OME-Zarr image's labels/NAME group (napari shows them over the image), with the image's resolution levels; the image's own arrays are not touched. Without --out, nothing else is written; with --blockwise, written block by block (then without --out).")] = None,
    label_name: Annotated[str, typer.Option("--label-name", help="NAME of the labels group for --labels-into.")] = "skoots",
    level: Annotated[Optional[int], typer.Option("--level", help="Segment resolution level N of an OME-Zarr image, a precomputed volume (its N-th scale) or an N5 group (its dataset sN); 0 = full resolution, with that level's voxel size; the same as giving the level's path.")] = None,
    ngff_version: Annotated[NgffVersion, typer.Option("--ngff-version", help="OME-NGFF version of an .ome.zarr --out: 0.4 (Zarr v2) or 0.5 (Zarr v3). --labels-into follows the image's.")] = NgffVersion.V0_4,
    mask: Annotated[Optional[Path], typer.Option("--mask", help="Foreground mask volume (nonzero = foreground), any resolution, same axes as the input: crops whose whole window holds no foreground are not inferred and stay background.")] = None,
    min_size: Annotated[int, typer.Option("--min-size", help="Remove instances of fewer than this many voxels (counted over the whole volume, after assignment) before renumbering; the same in the in-memory and blockwise modes. Voxels, not a physical volume: with --voxel-size 0.5,0.5,2um, 0.5 um3 is 1 voxel. Default 0: keep every instance.")] = 0,
    labels_dtype: Annotated[LabelsDtype, typer.Option("--labels-dtype", help="The labels' type in every output format (TIFF, Zarr, OME-Zarr, N5, precomputed): uint32 (past 2**32 - 1 instances uint64, with a note), or uint64 (what Paintera and most EM tools expect in N5 and Zarr).")] = LabelsDtype.UINT32,
    skip_below: Annotated[Optional[float], typer.Option("--skip-below", help="Do not infer crops whose raw maximum (input units, before normalising) is below this value; they stay background.")] = None,
    fill_missing: Annotated[bool, typer.Option("--fill-missing", help="Read chunks missing from an N5, precomputed or Zarr input as zeros (and say how many), instead of failing: a missing chunk is an error by default.")] = False,
    runtime: Annotated[Runtime, typer.Option(help="In-process (no --url) inference runtime: auto (a CUDA GPU with TorchScript, else OpenVINO on the CPU when the model has its IR, else TorchScript on the CPU), openvino, torchscript or cuda.")] = Runtime.AUTO,
    threads: Annotated[Optional[int], typer.Option(help="In-process inference threads on the CPU (default: all cores).")] = None,
    precision: Annotated[Precision, typer.Option(help="In-process precision: fp32, or bf16 with OpenVINO on CPUs with AVX512_BF16 or AMX (faster; vectors differ by ~1e-2).")] = Precision.FP32,
    roi: Annotated[Optional[str], typer.Option("--roi", help="Segment only this box of the volume, in z, y, x order from its first voxel: z0:z1,y0:y1,x0:x1 in voxels (half open; an empty side is the volume's edge: :,100:612,:), or with a unit after the last number in physical units of the voxel size (0:2,0:10,0:10um; widened to whole voxels). Only the box is read; the labels are the box's, and their metadata states where it sits (the input's offset + the box's start).")] = None,
    s3_endpoint: Annotated[Optional[str], typer.Option("--s3-endpoint", help="Endpoint of an S3-compatible store that is not AWS (MinIO, Ceph, ...), e.g. http://127.0.0.1:9000, for s3:// input and --out; credentials and region come from the AWS_* variables or ~/.aws.")] = None,
) -> None:
    """Segment a volume into instance labels."""
    from .api import segment  # heavy imports only when segmenting
    from .stores import Location

    try:
        location = Location.parse(volume, s3_endpoint=s3_endpoint)  # a path, or N5 / precomputed / Zarr by URL (client/stores)
        source, local = location.target, location.parent / location.name
        result = segment(
            source,
            out=out if out is not None or labels_into is not None else default_output(local, level),
            url=url or [],
            s3_endpoint=s3_endpoint,
            model=model,
            repository=repository,
            overwrite=overwrite,
            channel=channel,
            batch=batch,
            window=window,
            timeout=timeout,
            retries=retries,
            retry_for=retry_for,
            device=device,
            crop=crop,
            overlap=overlap,
            embedding_iterations=embedding_iterations,
            reference_borders=reference_borders,
            save_intermediates=save_intermediates,
            quiet=quiet,
            preview=preview,
            resume=resume,
            work_dir=work_dir,
            ssl=ssl,
            root_cert=root_cert,
            private_key=private_key,
            cert_chain=cert_chain,
            blockwise=blockwise,
            block=block,
            workers=workers,
            threads_per_worker=threads_per_worker,
            scheduler=scheduler,
            normalize=normalize,
            axes=axes,
            voxel_size=voxel_size,
            unit=unit,
            table=table,
            labels_into=labels_into,
            label_name=label_name,
            ngff_version=ngff_version,
            mask=mask,
            skip_below=skip_below,
            fill_missing=fill_missing,
            min_size=min_size,
            labels_dtype=labels_dtype,
            runtime=runtime,
            threads=threads,
            precision=precision,
            level=level,
            roi=roi,
        )
    except SkootsError as e:
        from .errors import Interrupted

        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(130 if isinstance(e, Interrupted) else 2) from None
    if not quiet:
        typer.echo(result.summary)


@app.command("measure")
def measure_command(
    labels: Annotated[str, typer.Argument(help="Label volume (TIFF, Zarr, OME-Zarr; N5, precomputed or Zarr by path or URL), e.g. the output of segment.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Instance table to write: .csv, or .parquet (needs pyarrow).")],
    raw: Annotated[Optional[str], typer.Option("--raw", help="The volume the labels segment (a path or URL, as for segment): adds mean and max intensity per instance.")] = None,
    channel: Annotated[Optional[int], typer.Option(help="Channel of a multi-channel --raw (as for segment).")] = None,
    voxel_size: Annotated[Optional[str], typer.Option("--voxel-size", help="Voxel size with a unit suffix or --unit; default: what the labels' (or raw's) file states. " + TRIPLE_HELP)] = None,
    unit: Annotated[Optional[str], typer.Option("--unit", help="Unit of --voxel-size: um (default), nm, mm, cm, m or angstrom; alone, the unit of a scale the file states without one.")] = None,
    skeleton: Annotated[bool, typer.Option("--skeleton/--no-skeleton", help="Measure each instance's skeleton length (3-D thinning per instance; the slowest column).")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing table.")] = False,
) -> None:
    """Measure existing labels: one row per instance with voxel count, volume, centroid and
    bounding box (voxels and physical units), mean/max raw intensity, skeleton length and
    whether it touches the volume border."""
    from .api import measure

    try:
        table = measure(labels, raw, out=out, overwrite=overwrite, channel=channel, voxel_size=voxel_size, unit=unit,
                        skeleton=skeleton, warn=lambda text: typer.echo(f"warning: {text}", err=True))
    except SkootsError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{labels}: {len(table['label'])} instances, voxel size {table.voxel_size.describe()} → {out}")


@app.command("evaluate")
def evaluate_command(
    prediction: Annotated[str, typer.Argument(help="Predicted labels (TIFF, Zarr, OME-Zarr; N5, precomputed or Zarr by path or URL), e.g. the output of segment.")],
    ground_truth: Annotated[str, typer.Argument(help="Ground-truth labels of the same volume (any of those formats), same shape.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the scores as JSON instead of a table.")] = False,
) -> None:
    """Score predicted instance labels against ground truth: precision, recall, F1 and AP at
    IoU 0.5 and 0.75, adjusted Rand index, variation of information (split, merge), counts."""
    import json

    from .evaluate import evaluate_files, format_scores

    try:
        scores = evaluate_files(prediction, ground_truth)
    except ClientError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if json_output:
        typer.echo(json.dumps({"prediction": str(prediction), "ground_truth": str(ground_truth), **scores.to_dict()}, indent=2))
    else:
        typer.echo(f"{prediction} against {ground_truth}\n{format_scores(scores)}")


@app.command("bench")
def bench_command(
    url: Annotated[str, typer.Option("--url", help="Triton gRPC address HOST:PORT to load.")],
    model: Annotated[Optional[str], typer.Option(help="Model name on the server (default: its SKOOTS model, as segment picks it).")] = None,
    concurrency: Annotated[str, typer.Option(help="Requests in flight per client process, one setting each: C1,C2,...")] = "1,2,4,8",
    batch: Annotated[Optional[str], typer.Option(help="Crops per request, one setting each: B1,B2,... (default: the model's max_batch_size).")] = None,
    duration: Annotated[float, typer.Option(help="Seconds per measurement window. A setting measures for at most (--max-windows + 1) x this after its warm-up.")] = 5.0,
    warmup: Annotated[float, typer.Option(help="Seconds of load before each setting's first window.")] = 2.0,
    processes: Annotated[int, typer.Option(help="Client processes loading the server at once; results are merged.")] = 1,
    stability: Annotated[float, typer.Option(help="A setting counts once three consecutive windows agree within this many percent (throughput and average latency). When fewer than three windows (of at least 3 requests each) fit in a setting's time, stability is not judged: every answer is reported, merged, as 'few reqs'.")] = 10.0,
    max_windows: Annotated[int, typer.Option(help="Windows per setting before it is reported as unstable; with --duration, bounds a setting's time.")] = 10,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take.")] = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON instead of the table.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the results as CSV instead of the table.")] = False,
    plot: Annotated[Optional[Path], typer.Option(help="Also draw throughput and p99 latency against concurrency into this image (.png, .svg or .pdf).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr.")] = False,
) -> None:
    """Load-test a model on a Triton server with synthetic crops (what perf_analyzer reports)."""
    from .bench import bench, parse_counts
    from .bench_report import format_table, plot as draw, to_csv, to_json
    from .errors import InputError, OutputError
    from .destinations import check_destination

    try:
        if as_json and as_csv:
            raise InputError("--json and --csv both print to stdout; choose one")
        if plot is not None:
            check_destination("--plot", plot, (".png", ".svg", ".pdf"), "unknown image type; use .png, .svg or .pdf")
        result = bench(
            url,
            model,
            concurrency=parse_counts("--concurrency", concurrency),
            batch=parse_counts("--batch", batch) if batch is not None else None,
            duration=duration,
            warmup=warmup,
            processes=processes,
            tolerance=stability / 100,
            max_windows=max_windows,
            timeout=timeout,
            progress=None if quiet else (lambda line: typer.echo(line, err=True)),
        )
        if plot is not None:
            try:
                draw(result, plot)
            except OSError as e:
                raise OutputError(f"cannot write {plot}: {e.strerror or e}") from e
    except ClientError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(to_json(result) if as_json else to_csv(result).rstrip("\n") if as_csv else format_table(result))


def main() -> None:
    run(app, "skoots-client")
