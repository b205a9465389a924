"""``skoots-client``: segment volumes with an exported SKOOTS model."""

from __future__ import annotations

import os

# gRPC's C core logs a TLS handshake failure on stderr by itself; our error line says it
# better. Read when grpc is imported, so before anything imports tritonclient.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from pathlib import Path  # noqa: E402
from typing import Annotated, Optional  # noqa: E402

import typer  # noqa: E402

from skoots_export.cli import option_triple  # noqa: E402
from skoots_export.console import VersionOption, run  # noqa: E402
from skoots_export.errors import ExportError  # noqa: E402

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


def default_output(volume: Path) -> Path:
    name = volume.name
    for suffix in (".ome.zarr", ".zarr", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return volume.with_name(name[: -len(suffix)] + "_labels.tif")
    return volume.with_name(name + "_labels.tif")


@app.command("segment")
def segment_command(
    volume: Annotated[Path, typer.Argument(help="Input volume: TIFF stack [Z, X, Y(, C)], Zarr array or OME-Zarr image.", readable=False)],
    url: Annotated[Optional[list[str]], typer.Option("--url", help="Triton gRPC address HOST:PORT; repeat to spread crops over several servers. Without it the model runs in this process.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model name on the server / in the repository (default: the SKOOTS model there; of one export's variants the libtorch, then OpenVINO, then Python-backend one).")] = None,
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Model repository for the in-process (no --url) mode.")] = Path("model_repository"),
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output labels: .tif/.tiff, .zarr or .ome.zarr (default: VOLUME_labels.tif beside the input).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    channel: Annotated[Optional[int], typer.Option(help="Channel of [Z, X, Y, C] input (default: the only one; channel 2 when there are more than 3).")] = None,
    batch: Annotated[Optional[int], typer.Option(help="Crops per request (default and maximum: the model's max_batch_size).")] = None,
    window: Annotated[int, typer.Option(help="Requests in flight per server.")] = 4,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take before it is retried.")] = 120.0,
    retries: Annotated[int, typer.Option(help="Retries per request when a server is unavailable or times out, waiting 0.5 s, 1 s, 2 s, … (at most 30 s) between them; a server still failing after them drops out, and the run fails when none is left.")] = 5,
    device: Annotated[str, typer.Option(help="Post-processing device: auto (GPU with CuPy when present), cpu or gpu.")] = "auto",
    crop: Annotated[Optional[str], typer.Option(help="Override the model's crop X,Y,Z.")] = None,
    overlap: Annotated[Optional[str], typer.Option(help="Override the model's overlap X,Y,Z.")] = None,
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
) -> None:
    """Segment a volume into instance labels."""
    from .model_source import Tls
    from .run import segment_file  # heavy imports only when segmenting

    try:
        crop_xyz, overlap_xyz = option_triple("--crop", crop), option_triple("--overlap", overlap)
        summary = segment_file(
            volume,
            out=out or default_output(volume),
            urls=url or [],
            model=model,
            repository=repository,
            overwrite=overwrite,
            channel=channel,
            batch=batch,
            window=window,
            timeout=timeout,
            retries=retries,
            device=device,
            crop=crop_xyz,
            overlap=overlap_xyz,
            embedding_iterations=embedding_iterations,
            reference_borders=reference_borders,
            save_intermediates=save_intermediates,
            quiet=quiet,
            preview=preview,
            resume=resume,
            work_dir=work_dir,
            tls=Tls(root_cert, private_key, cert_chain) if ssl or root_cert or private_key or cert_chain else None,
        )
    except (ClientError, ExportError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if not quiet:
        typer.echo(summary)


@app.command("evaluate")
def evaluate_command(
    prediction: Annotated[Path, typer.Argument(help="Predicted labels (TIFF, Zarr), e.g. the output of segment.")],
    ground_truth: Annotated[Path, typer.Argument(help="Ground-truth labels of the same volume, same shape and axis order.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the scores as JSON instead of a table.")] = False,
) -> None:
    """Score predicted instance labels against ground truth: precision, recall, F1 and AP at
    IoU 0.5 and 0.75, adjusted Rand index, variation of information (split, merge), counts."""
    import json

    from .evaluate import evaluate_files, format_table

    try:
        scores = evaluate_files(prediction, ground_truth)
    except ClientError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if json_output:
        typer.echo(json.dumps({"prediction": str(prediction), "ground_truth": str(ground_truth), **scores.to_dict()}, indent=2))
    else:
        typer.echo(f"{prediction} against {ground_truth}\n{format_table(scores)}")


@app.command("bench")
def bench_command(
    url: Annotated[str, typer.Option("--url", help="Triton gRPC address HOST:PORT to load.")],
    model: Annotated[Optional[str], typer.Option(help="Model name on the server (default: its SKOOTS model, as segment picks it).")] = None,
    concurrency: Annotated[str, typer.Option(help="Requests in flight per client process, one setting each: C1,C2,...")] = "1,2,4,8",
    batch: Annotated[Optional[str], typer.Option(help="Crops per request, one setting each: B1,B2,... (default: the model's max_batch_size).")] = None,
    duration: Annotated[float, typer.Option(help="Seconds per measurement window.")] = 5.0,
    warmup: Annotated[float, typer.Option(help="Seconds of load before each setting's first window.")] = 2.0,
    processes: Annotated[int, typer.Option(help="Client processes loading the server at once; results are merged.")] = 1,
    stability: Annotated[float, typer.Option(help="A setting counts once three consecutive windows agree within this many percent (throughput and average latency).")] = 10.0,
    max_windows: Annotated[int, typer.Option(help="Windows per setting before it is reported as unstable.")] = 10,
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
    from .volume_io import check_destination

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
