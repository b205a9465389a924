"""``skoots``: the server-side command line (export a checkpoint; serve a repository)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Literal

import typer

from .contract.choices import Backend, Device
from .contract.console import VersionOption, run
from .contract.errors import SkootsError
from .contract.net import is_loopback
from .contract.triples import TRIPLE_HELP, option_triple
from .contract.units import length_unit
from .contract.wire import INPUT, OUTPUTS, TORCH_VERSION
from .errors import ExportOptionError, ServerError

__all__ = ["app", "BuildableBackend", "fail", "export_command", "serve_command", "build_backend_command", "main"]

app = typer.Typer(
    help="SKOOTS on Triton: turn SKOOTS checkpoints into Triton models and serve them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _commands(version: VersionOption = False) -> None:
    """SKOOTS on Triton: turn SKOOTS checkpoints into Triton models and serve them."""


class BuildableBackend(str, enum.Enum):
    """Triton backends ``skoots build-backend`` builds."""

    pytorch = "pytorch"


def fail(error: Exception) -> typer.Exit:
    """Print a user error as one line on stderr; the caller raises the returned exit."""
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(2)


@app.command("export")
def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="SKOOTS training checkpoint (.trch): a dict with cfg and model_state_dict; or a SKOOTS BioImage Model Zoo package (.zip) written by --bioimageio.")],
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Triton model repository to write into (created if missing).")] = Path("model_repository"),
    name: Annotated[str, typer.Option(help="Model name in the repository; with several variants the Python-backend copy is NAME_python and the OpenVINO-backend one NAME_openvino.")] = "skoots",
    backend: Annotated[str, typer.Option(help="Variants to write: libtorch (pytorch_libtorch platform, for GPU servers), python (Python backend: OpenVINO on CPUs, else model.pt with torch), openvino (Triton's OpenVINO backend, CPU servers), both (libtorch and python), all (libtorch, python and openvino) or onnx (Triton's ONNX Runtime backend: model.onnx from torch.export; needs the bioimageio extra). The libtorch and python variants also hold the OpenVINO IR beside model.pt; without TorchScript the libtorch variant is skipped with a warning.")] = "all",
    device: Annotated[Literal["gpu", "cpu"], typer.Option(help="Instance kind in the config: gpu (KIND_GPU, float16 autocast; the Python-backend model KIND_AUTO: the GPU where there is one, else the CPU) or cpu (KIND_CPU, float32). The OpenVINO-backend model is always KIND_CPU.")] = "gpu",  # Device, never auto
    max_batch: Annotated[int, typer.Option(help="max_batch_size: crops per request the dynamic batcher may merge.")] = 8,
    max_tile_voxels: Annotated[int | None, typer.Option(help="The largest tile (voxels of one crop) a client's --tile auto sends this model, written to the config as max_tile_voxels (default: what the network's activation estimate fits into 16 GiB at --max-batch crops per request).")] = None,
    instances: Annotated[int, typer.Option(help="Model instances per device.")] = 1,
    version: Annotated[int, typer.Option(help="Model version directory to (re)write; other versions are kept.")] = 1,
    crop: Annotated[str | None, typer.Option(help="Crop the client tiles with (seed: 300,300,20); keep the training crop. " + TRIPLE_HELP)] = None,
    overlap: Annotated[str | None, typer.Option(help="Overlap trimmed from each crop side (seed: 10,10,5). " + TRIPLE_HELP)] = None,
    vector_scaling: Annotated[str | None, typer.Option(help="Vector scaling (default: cfg.SKOOTS.VECTOR_SCALING). " + TRIPLE_HELP)] = None,
    anisotropy: Annotated[str | None, typer.Option(help="Voxel anisotropy (default: cfg.SKOOTS.ANISOTROPY). " + TRIPLE_HELP)] = None,
    prob_threshold: Annotated[float | None, typer.Option(help="Object probability threshold baked into the graph (seed: 0.5).")] = None,
    skeleton_threshold: Annotated[float | None, typer.Option(help="Skeleton probability threshold baked into the graph (seed: 0.8).")] = None,
    dilations_3d: Annotated[int | None, typer.Option(help="3x3x3 skeleton dilations per crop (seed: 1).")] = None,
    dilations_2d: Annotated[int | None, typer.Option(help="3x3x1 skeleton dilations per crop after the 3-D ones (seed: 3).")] = None,
    embedding_iterations: Annotated[int | None, typer.Option(help="Embedding iterations N (seed: 2).")] = None,
    dataset_mean: Annotated[float | None, typer.Option(help="Normalise input as (x - mean) / std (default: the checkpoint's dataset_mean, else x / dtype range).")] = None,
    dataset_std: Annotated[float | None, typer.Option(help="Standard deviation for --dataset-mean.")] = None,
    training_voxel_size: Annotated[str | None, typer.Option(help="Voxel size the model was trained at, recorded in the config (unit: --voxel-unit). " + TRIPLE_HELP)] = None,
    voxel_unit: Annotated[str | None, typer.Option(help="Unit of --training-voxel-size, in any case: micrometer (um, µm, the default), nanometer (nm), millimeter (mm), centimeter (cm), meter (m) or angstrom.")] = None,
    bioimageio: Annotated[Path | None, typer.Option("--bioimageio", help="Write a BioImage Model Zoo package (format 0.5, a .zip) of the network instead of a model repository: TorchScript and ONNX weights, test tensors, and the SKOOTS constants in its config for the decoder. Needs the bioimageio extra.")] = None,
    trust_checkpoint: Annotated[bool, typer.Option("--trust-checkpoint", help="Load with full pickle: runs any code in the file. Only for checkpoints from a source you trust.")] = False,
) -> None:
    """Export a SKOOTS checkpoint to TorchScript in a Triton model repository.

    Constants not given as options come from the checkpoint's model card (its ``model_card``
    entry, or a sidecar CHECKPOINT.yaml / MODEL.yaml beside it), then cfg.SKOOTS, then the
    seed's defaults; the summary says which for each.
    """
    from .exporter import VARIANT_FILES, export_checkpoint  # torch loads here, not for --help

    try:
        if voxel_unit is not None and training_voxel_size is None:
            raise ExportOptionError("--voxel-unit needs --training-voxel-size (the voxel size the model was trained at)")
        constants = dict(
            crop=option_triple("--crop", crop),
            overlap=option_triple("--overlap", overlap),
            vector_scaling=option_triple("--vector-scaling", vector_scaling, float),
            anisotropy=option_triple("--anisotropy", anisotropy, float),
            prob_threshold=prob_threshold,
            skeleton_threshold=skeleton_threshold,
            dilations_3d=dilations_3d,
            dilations_2d=dilations_2d,
            embedding_iterations=embedding_iterations,
            dataset_mean=dataset_mean,
            dataset_std=dataset_std,
            training_voxel_size=option_triple("--training-voxel-size", training_voxel_size, float),
            voxel_unit=None if voxel_unit is None else length_unit(voxel_unit, "--voxel-unit"),
        )
        if bioimageio is not None:
            return _export_zoo(checkpoint, bioimageio, trust_checkpoint, constants)
        result = export_checkpoint(
            checkpoint,
            repository=repository,
            name=name,
            backend=backend,
            device=Device(device),
            max_batch_size=max_batch,
            max_tile_voxels=max_tile_voxels,
            version=version,
            instances=instances,
            trust_checkpoint=trust_checkpoint,
            **constants,
        )
    except SkootsError as e:
        raise fail(e) from None
    for line in result.warnings:
        typer.echo(f"warning: {line}", err=True)
    for path, kind in result.models:
        # OpenVINO: CPU only; OpenVINO and ONNX: one crop per request (see build_model_config)
        batch = 1 if kind in (Backend.OPENVINO, Backend.ONNX) else result.max_batch_size
        where = Device.CPU if kind is Backend.OPENVINO else result.device
        model_file = next(f for f in VARIANT_FILES[kind] if (path / str(version) / f).is_file())
        typer.echo(f"wrote {path}/config.pbtxt and {path}/{version}/{model_file} ({kind.value} backend, {where.value}, max_batch_size {batch})")
    typer.echo(f"input   {INPUT.name} {INPUT.data_type} [B, {', '.join(map(str, INPUT.dims))}]")
    for spec in OUTPUTS:
        typer.echo(f"output  {spec.name} {spec.data_type} [B, {', '.join(map(str, spec.dims))}]")
    for key, value in result.parameters.to_strings().items():
        source = result.sources.get(key)
        typer.echo(f"param   {key} = {value}" + (f"  ({source})" if source else ""))
    typer.echo(f"param   {TORCH_VERSION} = {result.torch_version}  (model.pt loads in this torch/libtorch release or a newer one)")


def _export_zoo(checkpoint: Path, out: Path, trust_checkpoint: bool, constants: dict) -> None:
    """``export --bioimageio OUT.zip``: the package and its summary (errors go to the caller)."""
    from .bioimageio_package import CHANNELS, ZOO_FORMAT, export_bioimageio

    result = export_bioimageio(checkpoint, out, trust_checkpoint=trust_checkpoint, **constants)
    for line in result.warnings:
        typer.echo(f"warning: {line}", err=True)
    sizes = ", ".join(f"{axis} {low}+n*{result.step}" for axis, low in zip("zyx", result.minimum))
    typer.echo(f"wrote {result.path} (BioImage Model Zoo format {ZOO_FORMAT}; weights: {', '.join(result.weights)})")
    typer.echo(f"input   raw [batch, channel, z, y, x], {sizes}")
    typer.echo(f"output  prediction [batch, channel, z, y, x]: {', '.join(CHANNELS)}; halo {list(result.parameters.overlap[::-1])} [z, y, x]")
    for key, value in result.parameters.to_strings().items():
        source = result.sources.get(key)
        typer.echo(f"config  {key} = {value}" + (f"  ({source})" if source else ""))
    typer.echo(f"check it offline with: bioimageio test {result.path}")


@app.command("serve")
def serve_command(
    repository: Annotated[Path, typer.Argument(help="Model repository to serve.")] = Path("model_repository"),
    host: Annotated[str, typer.Option(help="Address to bind. The default, 127.0.0.1, is reachable from this machine only.")] = "127.0.0.1",
    grpc_port: Annotated[int, typer.Option(help="gRPC port (0: pick a free one).")] = 0,
    http_port: Annotated[int, typer.Option(help="HTTP port (0: pick a free one).")] = 0,
    metrics_port: Annotated[int, typer.Option(help="Metrics port (0: pick a free one).")] = 0,
    model: Annotated[list[str] | None, typer.Option("--model", help="Load only these models (repeatable). Default: every model the server has a backend for.")] = None,
    pytorch_backend: Annotated[Path | None, typer.Option("--pytorch-backend", help="Folder with libtriton_pytorch.so for the nvidia-pytriton server. Default: the one skoots build-backend pytorch cached for this torch, if built.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the models to be ready.")] = 300.0,
    ssl_cert: Annotated[Path | None, typer.Option("--ssl-cert", help="Serve gRPC over TLS with this certificate (PEM); with --ssl-key. HTTP and metrics then stay on 127.0.0.1.")] = None,
    ssl_key: Annotated[Path | None, typer.Option("--ssl-key", help="Private key (PEM) of --ssl-cert.")] = None,
    ssl_root_cert: Annotated[Path | None, typer.Option("--ssl-root-cert", help="CA certificate (PEM): clients must present a certificate it signed (mutual TLS).")] = None,
) -> None:
    """Start Triton on a model repository, print its gRPC URL, run until Ctrl-C."""
    from .model_backends import plan_models
    from .server import ServerConfig, ServerTls, TritonServer, find_binary, stop_signals, wait_for_signal
    from .torch_compat import check_repository

    try:
        if not repository.is_dir():
            raise ServerError(f"model repository {repository} does not exist; run skoots export first")
        if (ssl_cert is None) != (ssl_key is None) or (ssl_root_cert is not None and ssl_cert is None):
            raise ServerError("--ssl-cert and --ssl-key come together (--ssl-root-cert needs them too)")
        tls = ServerTls(ssl_cert, ssl_key, ssl_root_cert) if ssl_cert is not None and ssl_key is not None else None
        binary = find_binary()
        plan = plan_models(repository, binary, tuple(model or ()), pytorch_backend)
        for line in plan.warnings:
            typer.echo(f"warning: {line}", err=True)
        models = plan.models
        if binary.python_only:  # its backends run model.pt with this environment's torch
            problem = check_repository(repository, models)
            if problem:
                raise ServerError(problem)
        if not is_loopback(host):
            exposure = (
                "gRPC is reachable from other machines over TLS, with client certificates" if tls and tls.root_cert else
                "gRPC is reachable from other machines over TLS, without client authentication (--ssl-root-cert requires it)" if tls else
                "the server is reachable from other machines, unencrypted and without authentication (see --ssl-cert)"
            )
            typer.echo(f"warning: binding {host}: {exposure}", err=True)
        server = TritonServer(
            ServerConfig(repository=repository, host=host, grpc_port=grpc_port, http_port=http_port,
                         metrics_port=metrics_port, models=models, tls=tls, pytorch_backend=plan.pytorch_backend),
            binary,
        )
        server.start(timeout=timeout)
        states = server.model_states()
    except SkootsError as e:
        raise fail(e) from None
    stop = stop_signals()
    plain = server.config.plain_host
    typer.echo(f"serving {repository}:")
    for name, state in sorted(states.items()):
        typer.echo(f"  {name:<24} {state:<12} {plan.backends.get(name, '?')}")
    typer.echo(f"grpc {server.grpc_url}{' (TLS)' if tls else ''}  http {plain}:{server.http_port}  metrics {plain}:{server.metrics_port}")
    typer.echo(
        f"segment with: skoots-client segment VOLUME --url {server.grpc_url}"  # the client finds the model
        + (" --ssl --root-cert CA.pem" if tls else "")
        + (" --private-key KEY.pem --cert-chain CERT.pem" if tls and tls.root_cert else "")
    )
    try:
        wait_for_signal(server, stop)
    except ServerError as e:  # the server ended by itself: not the user's doing
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None


@app.command("build-backend")
def build_backend_command(
    backend: Annotated[BuildableBackend, typer.Argument(help="The Triton backend to build: pytorch (libtriton_pytorch.so, CPU only).")],
    source: Annotated[Path | None, typer.Option(help="Folder with Triton r24.10's core, common, backend and pytorch_backend (checkouts or NAME-r24.10.tar.gz). Default: shared/vendor/triton-r24.10 in this folder or a parent.")] = None,
    jobs: Annotated[int | None, typer.Option(min=1, help="Parallel compile jobs (default: the CPU count).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Build again even when the cache holds a build for this torch.")] = False,
) -> None:
    """Build Triton's PyTorch backend against this environment's torch, for skoots serve.

    The build (a few minutes) is cached under ~/.cache/skoots-triton/backends (or
    $XDG_CACHE_HOME) per Triton release, torch version and C++ ABI; skoots serve uses it.
    """
    from .backend_build import build_pytorch_backend

    try:
        result = build_pytorch_backend(source, jobs=jobs, force=force, progress=typer.echo)
    except SkootsError as e:
        raise fail(e) from None
    how = "reused the cached build" if result.reused else f"built in {result.seconds:.0f} s"
    typer.echo(f"{how}: {result.backend_dir} — skoots serve loads pytorch_libtorch models with it")


def main() -> None:
    run(app, "skoots")


if __name__ == "__main__":
    main()
