"""``skoots-client``: segment volumes with an exported SKOOTS model."""

from __future__ import annotations

import os

__all__ = ["app", "default_output", "segment_command", "measure_command", "evaluate_command", "bench_command", "view_command", "main"]

# gRPC's C core logs a TLS handshake failure on stderr by itself; our error line says it
# better. Read when grpc is imported, so before anything imports tritonclient.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from pathlib import Path
from typing import Annotated

import typer

from skoots_export.contract.console import VersionOption, run
from skoots_export.contract.errors import SkootsError
from skoots_export.contract.triples import TRIPLE_HELP, option_triple

from .choices import Device, LabelsDtype, NgffVersion, Precision, Runtime, SharedMemory
from .errors import ClientError
from .options import OPTIONS, TILE_DEFAULT, TILE_WORDS, as_flag, in_terms

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


def _flag(name: str) -> typer.models.OptionInfo:
    """``segment``'s option ``name`` as client/options.py describes it: its flags and help."""
    option = OPTIONS[name]
    return typer.Option(option.flag, *([option.short] if option.short else []), help=option.help)


def _zyx(flag: str, text: str | None) -> tuple[int, int, int] | None:
    """A triple flag's text (positional X,Y,Z in the seed's order, or named) as the API's ``(z, y, x)``.

    >>> _zyx("--crop", "300,280,20"), _zyx("--crop", "x=280,y=300,z=20")
    ((20, 300, 280), (20, 300, 280))
    """
    parsed = option_triple(flag, text)  # the runtime's (X, Y, Z): rows, columns, slices
    if parsed is None:
        return None
    rows, columns, slices = parsed
    return (slices, rows, columns)


@app.command("segment")
def segment_command(
    volume: Annotated[str, typer.Argument(help="Input volume: TIFF stack [Z, Y, X(, C)] as Fiji/napari name the axes (other orders: --axes), Zarr array or OME-Zarr image; or an N5 dataset, Neuroglancer precomputed volume or Zarr array by path or URL (\\[n5:// | precomputed:// | zarr://] then a path, http(s)://, s3:// or gs://; see docs/data-stores.md).")],
    url: Annotated[list[str] | None, _flag("url")] = None,
    model: Annotated[str | None, _flag("model")] = None,
    repository: Annotated[Path, _flag("repository")] = Path("model_repository"),
    out: Annotated[str | None, _flag("out")] = None,
    overwrite: Annotated[bool, _flag("overwrite")] = False,
    channel: Annotated[int | None, _flag("channel")] = None,
    axes: Annotated[str | None, _flag("axes")] = None,
    normalize: Annotated[str | None, _flag("normalize")] = None,
    batch: Annotated[int | None, _flag("batch")] = None,
    window: Annotated[int, _flag("window")] = 4,
    timeout: Annotated[float, _flag("timeout")] = 120.0,
    retries: Annotated[int | None, _flag("retries")] = None,
    retry_for: Annotated[float, _flag("retry_for")] = 60.0,
    shared_memory: Annotated[SharedMemory, _flag("shared_memory")] = SharedMemory.NONE,
    device: Annotated[Device, _flag("device")] = Device.AUTO,
    crop: Annotated[str | None, _flag("crop")] = None,
    tile: Annotated[str, _flag("tile")] = TILE_DEFAULT,
    overlap: Annotated[str | None, _flag("overlap")] = None,
    embedding_iterations: Annotated[int | None, _flag("embedding_iterations")] = None,
    reference_borders: Annotated[bool, _flag("reference_borders")] = False,
    save_intermediates: Annotated[bool, _flag("save_intermediates")] = False,
    quiet: Annotated[bool, _flag("quiet")] = False,
    preview: Annotated[Path | None, _flag("preview")] = None,
    resume: Annotated[bool, _flag("resume")] = False,
    work_dir: Annotated[str | None, _flag("work_dir")] = None,
    ssl: Annotated[bool, _flag("ssl")] = False,
    root_cert: Annotated[Path | None, _flag("root_cert")] = None,
    private_key: Annotated[Path | None, _flag("private_key")] = None,
    cert_chain: Annotated[Path | None, _flag("cert_chain")] = None,
    blockwise: Annotated[bool, _flag("blockwise")] = False,
    block: Annotated[str | None, _flag("block")] = None,
    workers: Annotated[int | None, _flag("workers")] = None,
    threads_per_worker: Annotated[int, _flag("threads_per_worker")] = 1,
    scheduler: Annotated[str | None, _flag("scheduler")] = None,
    cluster: Annotated[str | None, _flag("cluster")] = None,
    cluster_options: Annotated[list[str] | None, _flag("cluster_options")] = None,
    max_jobs: Annotated[int | None, _flag("max_jobs")] = None,
    voxel_size: Annotated[str | None, _flag("voxel_size")] = None,
    unit: Annotated[str | None, _flag("unit")] = None,
    table: Annotated[Path | None, _flag("table")] = None,
    skeletons: Annotated[bool, _flag("skeletons")] = False,
    meshes: Annotated[bool, _flag("meshes")] = False,
    labels_into: Annotated[Path | None, _flag("labels_into")] = None,
    label_name: Annotated[str, _flag("label_name")] = "skoots",
    level: Annotated[int | None, _flag("level")] = None,
    ngff_version: Annotated[NgffVersion, _flag("ngff_version")] = NgffVersion.V0_4,
    mask: Annotated[Path | None, _flag("mask")] = None,
    min_size: Annotated[int, _flag("min_size")] = 0,
    labels_dtype: Annotated[LabelsDtype, _flag("labels_dtype")] = LabelsDtype.UINT32,
    skip_below: Annotated[float | None, _flag("skip_below")] = None,
    fill_missing: Annotated[bool, _flag("fill_missing")] = False,
    runtime: Annotated[Runtime, _flag("runtime")] = Runtime.AUTO,
    threads: Annotated[int | None, _flag("threads")] = None,
    precision: Annotated[Precision, _flag("precision")] = Precision.FP32,
    roi: Annotated[str | None, _flag("roi")] = None,
    s3_endpoint: Annotated[str | None, _flag("s3_endpoint")] = None,
) -> None:
    """Segment a volume into instance labels."""
    from .api import segment  # heavy imports only when segmenting
    from .jobqueue_options import parse_cluster_options
    from .stores import Location
    from .voxel_size import voxel_size_option

    try:
        location = Location.parse(volume, s3_endpoint=s3_endpoint)  # a path, or N5 / precomputed / Zarr by URL (client/stores)
        source, local = location.target, location.parent / location.name
        with in_terms(as_flag):
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
                shared_memory=shared_memory,
                device=device,
                crop=_zyx("--crop", crop),
                tile=tile if tile.strip().lower() in TILE_WORDS else _zyx("--tile", tile),
                overlap=_zyx("--overlap", overlap),
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
                block=_zyx("--block", block),
                workers=workers,
                threads_per_worker=threads_per_worker,
                scheduler=scheduler,
                cluster=cluster,
                cluster_options=None if cluster_options is None else parse_cluster_options(cluster_options),
                max_jobs=max_jobs,
                normalize=normalize,
                axes=axes,
                voxel_size=voxel_size_option(voxel_size, None if voxel_size is None else unit),
                unit=unit if voxel_size is None else None,
                table=table,
                skeletons=skeletons,
                meshes=meshes,
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
    raw: Annotated[str | None, typer.Option("--raw", help="The volume the labels segment (a path or URL, as for segment): adds mean and max intensity per instance.")] = None,
    channel: Annotated[int | None, typer.Option(help="Channel of a multi-channel --raw (as for segment).")] = None,
    voxel_size: Annotated[str | None, typer.Option("--voxel-size", help="Voxel size with a unit suffix or --unit; default: what the labels' (or raw's) file states. " + TRIPLE_HELP)] = None,
    unit: Annotated[str | None, typer.Option("--unit", help="Unit of --voxel-size: um (default), nm, mm, cm, m or angstrom; alone, the unit of a scale the file states without one.")] = None,
    skeleton: Annotated[bool, typer.Option("--skeleton/--no-skeleton", help="Measure each instance's skeleton length (3-D thinning per instance; the slowest column).")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing table.")] = False,
) -> None:
    """Measure existing labels: one row per instance with voxel count, volume, centroid and
    bounding box (voxels and physical units), mean/max raw intensity, skeleton length and
    whether it touches the volume border."""
    from .api import measure
    from .voxel_size import voxel_size_option

    try:
        with in_terms(as_flag):
            table = measure(labels, raw, out=out, overwrite=overwrite, channel=channel,
                            voxel_size=voxel_size_option(voxel_size, None if voxel_size is None else unit),
                            unit=unit if voxel_size is None else None, skeleton=skeleton,
                            warn=lambda text: typer.echo(f"warning: {text}", err=True))
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
    model: Annotated[str | None, typer.Option(help="Model name on the server (default: its SKOOTS model, as segment picks it).")] = None,
    concurrency: Annotated[str | None, typer.Option(help="Requests in flight per client process, one setting each: C1,C2,... (default 1,2,4,8).")] = None,
    request_rate: Annotated[str | None, typer.Option(help="Instead of --concurrency: requests per second per client process, one setting each: R1,R2,... (perf_analyzer's request-rate mode).")] = None,
    request_distribution: Annotated[str, typer.Option(help="Spacing of --request-rate's requests: constant (1/R apart) or poisson (exponential gaps of mean 1/R).")] = "constant",
    batch: Annotated[str | None, typer.Option(help="Crops per request, one setting each: B1,B2,... (default: the model's max_batch_size).")] = None,
    duration: Annotated[float, typer.Option(help="Seconds per measurement window. A setting measures for at most (--max-windows + 1) x this after its warm-up.")] = 5.0,
    warmup: Annotated[float, typer.Option(help="Seconds of load before each setting's first window.")] = 2.0,
    processes: Annotated[int, typer.Option(help="Client processes loading the server at once; results are merged.")] = 1,
    stability: Annotated[float, typer.Option(help="A setting counts once three consecutive windows agree within this many percent (throughput and average latency). When fewer than three windows (of at least 3 requests each) fit in a setting's time, stability is not judged: every answer is reported, merged, as 'few reqs'.")] = 10.0,
    max_windows: Annotated[int, typer.Option(help="Windows per setting before it is reported as unstable; with --duration, bounds a setting's time.")] = 10,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take.")] = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON instead of the table.")] = False,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Also write the results in perf_analyzer's CSV columns (its -f FILE; times in µs) to this file; - prints them instead of the table.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Also draw throughput and p99 latency against concurrency into this image (.png, .svg or .pdf).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr.")] = False,
    shared_memory: Annotated[SharedMemory, typer.Option("--shared-memory", help="none (gRPC messages) or system: requests and answers through Triton system shared memory, for a server on this machine (a loopback --url).")] = SharedMemory.NONE,
) -> None:
    """Load-test a model on a Triton server with synthetic crops (what perf_analyzer reports)."""
    from .bench import LoadSettings, RequestRates, bench, parse_counts, parse_rates
    from .bench_report import format_table, to_csv, to_json, write_csv
    from .bench_report import plot as draw
    from .destinations import check_destination
    from .errors import InputError, OutputError

    csv_out = csv_file is not None and str(csv_file) == "-"
    try:
        if as_json and csv_out:
            raise InputError("--json and --csv - both print to stdout; choose one")
        if concurrency is not None and request_rate is not None:
            raise InputError("--concurrency and --request-rate are two ways to load the server; choose one")
        if plot is not None and request_rate is not None:
            raise InputError("--plot draws against concurrency; leave it out with --request-rate")
        batches = parse_counts("--batch", batch) if batch is not None else None
        if csv_file is not None and batches is not None and len(batches) > 1:
            raise InputError("--csv writes perf_analyzer's columns, which have no batch column: give one --batch")
        if csv_file is not None and not csv_out:
            check_destination("--csv", csv_file, (".csv",), "give a .csv file, or - to print it")
        if plot is not None:
            check_destination("--plot", plot, (".png", ".svg", ".pdf"), "unknown image type; use .png, .svg or .pdf")
        result = bench(
            url,
            model,
            concurrency=parse_counts("--concurrency", concurrency if concurrency is not None else "1,2,4,8"),
            batch=batches,
            request_rate=RequestRates(tuple(parse_rates("--request-rate", request_rate)), request_distribution) if request_rate is not None else None,
            load=LoadSettings(duration, warmup, processes, stability / 100, max_windows, timeout, shared_memory=shared_memory.value),
            progress=None if quiet else (lambda line: typer.echo(line, err=True)),
        )
        if plot is not None:
            try:
                draw(result, plot)
            except OSError as e:
                raise OutputError(f"cannot write {plot}: {e.strerror or e}") from e
        if csv_file is not None and not csv_out:
            write_csv(result, csv_file)
    except ClientError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(to_json(result) if as_json else to_csv(result).rstrip("\n") if csv_out else format_table(result))


@app.command("view")
def view_command(
    out: Annotated[str, typer.Argument(help="segment's output: precomputed, N5, OME-Zarr or Zarr (a path or URL: precomputed://gs://..., s3://, https://), or a TIFF (shown from memory, up to 2 GiB).")],
    raw: Annotated[str | None, typer.Option("--raw", help="The volume that was segmented, shown under the labels (any volume segment reads).")] = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port of the viewer on 127.0.0.1 (default: a free one).")] = 0,
    screenshot: Annotated[Path | None, typer.Option("--screenshot", help="Render the view to this PNG in a headless Chromium once its data has loaded, and exit.")] = None,
) -> None:
    """Open a result in a local Neuroglancer (on 127.0.0.1): the labels with their meshes and
    skeletons when the output has them, and --raw under them, at the voxel size. Prints the URL
    and serves until Ctrl-C; with --screenshot, writes the PNG and exits."""
    import time

    from .view import view

    try:
        shown = view(out, raw, port=port, screenshot=screenshot)
    except ClientError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if screenshot is not None:
        typer.echo(f"{out} → {screenshot}")
        return
    try:
        typer.echo(f"Neuroglancer: {shown.url}\n(serving {out} on 127.0.0.1; Ctrl-C to stop)")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        shown.close()
        typer.echo("stopped", err=True)


def main() -> None:
    run(app, "skoots-client")
