from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).parent.parent))  # the demo's `examples` package
# Upstream skoots/bism for the parity tests live outside the venv: their `skoots` script would
# replace ours (see .ci/run).
_UPSTREAM = Path(__file__).parent.parent / ".upstream"
if _UPSTREAM.is_dir():
    sys.path.append(str(_UPSTREAM))

from checkpoints import TINY, skoots_cfg, write_checkpoint  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Each phase's report on the test item (``item.rep_call``), which napari's
    ``make_napari_viewer`` fixture reads to skip its leak check after a failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session", autouse=True)
def _one_graph_capture_per_network():
    """The exporter's torch.export capture and OpenVINO conversion once per network (graph_capture_memo)."""
    import graph_capture_memo

    with pytest.MonkeyPatch.context() as monkeypatch:
        graph_capture_memo.install(monkeypatch)
        yield


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SKOOTS checkpoint in the upstream format with a tiny network."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.trch", skoots_cfg(**TINY))


@pytest.fixture(scope="session")
def exported_repository(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    """Both variants of the tiny checkpoint, CPU instances, crop 24x24x8."""
    from skoots_export.contract.choices import Device
    from skoots_export.exporter import export_checkpoint

    repository = tmp_path_factory.mktemp("repo") / "model_repository"
    export_checkpoint(
        tiny_checkpoint,
        repository=repository,
        backend="both",
        device=Device.CPU,
        max_batch_size=4,
        crop=(24, 24, 8),
        overlap=(4, 4, 2),
    )
    return repository


# Small crops and a short reach, so a 60x52x20 volume has many crops and many instances.
E2E_EXPORT = dict(
    crop=(24, 24, 8), overlap=(4, 4, 2), dilations_3d=0, dilations_2d=1, vector_scaling=(4.0, 4.0, 2.0)
)


@pytest.fixture(scope="session")
def lively_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "lively.trch", skoots_cfg(**TINY), make_lively=True)


@pytest.fixture(scope="session")
def e2e_repository(tmp_path_factory: pytest.TempPathFactory, lively_checkpoint: Path) -> Path:
    """The lively model as a Python-backend model named ``skoots`` (what the CPU server runs)."""
    from skoots_export.contract.choices import Device
    from skoots_export.exporter import export_checkpoint

    repository = tmp_path_factory.mktemp("e2e") / "model_repository"
    export_checkpoint(
        lively_checkpoint, repository=repository, backend="python", device=Device.CPU, max_batch_size=4, **E2E_EXPORT
    )
    return repository


def served_inferences(url: str, model: str = "skoots") -> int:
    """Crops the server has answered for ``model`` since it started (its statistics API)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics(model, as_json=True)
    finally:
        client.close()
    return int(stats["model_stats"][0].get("inference_count", 0))


def settled_inferences(url: str) -> int:
    """The count once it has not moved for a second: requests a killed client left behind have
    been answered — unless one takes longer than that (a loaded machine), so tests allow for
    the window of such stragglers."""
    count = served_inferences(url)
    while True:
        time.sleep(1.0)
        again = served_inferences(url)
        if again == count:
            return count
        count = again


def start_server(repository: Path):
    from skoots_export.errors import ServerError
    from skoots_export.server import ServerConfig, TritonServer, find_binary

    try:
        binary = find_binary()
    except ServerError as e:
        pytest.skip(f"no tritonserver: {e}")
    return TritonServer(ServerConfig(repository=repository), binary).start(timeout=180)


def serving(repository: Path):
    """A fixture's body: a server on ``repository`` for the fixture's scope."""
    server = start_server(repository)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def triton_server(e2e_repository: Path):
    """A real tritonserver on 127.0.0.1 serving the lively model."""
    yield from serving(e2e_repository)


@pytest.fixture(scope="session")
def e2e_seed_repository(tmp_path_factory: pytest.TempPathFactory, lively_checkpoint: Path) -> Path:
    """The lively model with the seed's dilations (1 x 3x3x3, 3 x 3x3x1), for upstream comparisons."""
    from skoots_export.contract.choices import Device
    from skoots_export.exporter import export_checkpoint

    repository = tmp_path_factory.mktemp("seed") / "model_repository"
    export = {**E2E_EXPORT, "dilations_3d": 1, "dilations_2d": 3}
    export_checkpoint(lively_checkpoint, repository=repository, backend="python", device=Device.CPU, max_batch_size=4, **export)
    return repository


@pytest.fixture(scope="session")
def pytorch_backend() -> Path:
    """Triton's PyTorch backend for the wheel's server, built once into the user's cache (where
    ``.ci/run``'s ``skoots build-backend pytorch`` put it; seconds then, minutes on a fresh machine)."""
    from skoots_export.backend_build import build_pytorch_backend, cached_backend, find_vendor, missing_tools

    cached = cached_backend()
    if cached is not None:
        return cached
    missing = missing_tools()
    if missing:
        pytest.skip(f"the PyTorch backend build (skoots build-backend pytorch) needs apt packages {' '.join(p for _, p in missing)}")
    source = find_vendor(Path(__file__).parent)
    if source is None:
        pytest.skip("no cached PyTorch backend and no ../shared/vendor/triton-r24.10 to build it from (skoots build-backend pytorch --source DIR)")
    return build_pytorch_backend(source).backend_dir
