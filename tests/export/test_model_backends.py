"""Which models ``skoots serve`` loads, given the backends its tritonserver has: every model it
can run, one line for each it cannot, and one-line refusals of what cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from skoots_export.errors import ServerError
from skoots_export.model_backends import BUILD_STEP, plan_models, servable_models
from skoots_export.server import _Binary

WHEEL = _Binary(Path("tritonserver"), Path("libs"), Path("python"), Path("stubs"))  # what find_binary() finds in the wheel
ON_PATH = _Binary(Path("/opt/tritonserver/bin/tritonserver"), None, None, None)

CONFIGS = {
    "skoots": 'platform: "pytorch_libtorch"\ninstance_group [{ kind: KIND_CPU }]',
    "skoots_gpu": 'platform: "pytorch_libtorch"\ninstance_group [{ kind: KIND_GPU }]',
    "skoots_python": 'backend: "python"\ninstance_group [{ kind: KIND_AUTO }]',
    "skoots_openvino": 'backend: "openvino"\ninstance_group [{ kind: KIND_CPU }]',
}


def repository(folder: Path, *names: str) -> Path:
    for name in names:
        (folder / name).mkdir(parents=True)
        (folder / name / "config.pbtxt").write_text(f'name: "{name}"\n{CONFIGS[name]}\n')
    return folder


@pytest.fixture()
def built(tmp_path: Path) -> Path:
    """A folder holding a (stand-in) libtriton_pytorch.so: what plan_models checks for."""
    folder = tmp_path / "backend" / "pytorch"
    folder.mkdir(parents=True)
    (folder / "libtriton_pytorch.so").write_bytes(b"")
    return folder


def test_the_python_backend_alone_serves_the_python_model_and_names_the_build_for_the_libtorch_one(tmp_path: Path) -> None:
    names, reasons = servable_models(repository(tmp_path, *CONFIGS), frozenset({"python"}))
    assert names == ["skoots_python"]
    assert reasons[0] == f"skoots (pytorch_libtorch) needs Triton's PyTorch backend: build it with {BUILD_STEP}"
    assert "skoots_openvino needs Triton's OpenVINO backend" in reasons[2]


def test_with_the_build_cpu_libtorch_models_are_served_and_gpu_ones_name_the_cpu_export(tmp_path: Path, built: Path) -> None:
    plan = plan_models(repository(tmp_path, *CONFIGS), WHEEL, (), built)
    assert plan.models == ("skoots", "skoots_python") and plan.pytorch_backend == built
    assert plan.backends == {"skoots": "pytorch", "skoots_gpu": "pytorch", "skoots_python": "python", "skoots_openvino": "openvino"}
    gpu = next(line for line in plan.warnings if line.startswith("skoots_gpu"))
    assert "KIND_GPU instance group and the PyTorch backend built here is CPU only: export with skoots export --device cpu" in gpu


def test_a_requested_model_that_cannot_be_served_is_one_line(tmp_path: Path, built: Path) -> None:
    folder = repository(tmp_path, "skoots_gpu", "skoots_python")
    with pytest.raises(ServerError, match=r"^skoots_gpu \(pytorch_libtorch\) has a KIND_GPU instance group .* skoots export --device cpu"):
        plan_models(folder, WHEEL, ("skoots_gpu",), built)
    assert plan_models(folder, WHEEL, ("skoots_python",), built).models == ("skoots_python",)


def test_a_pytorch_backend_folder_without_the_library_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match=rf"^--pytorch-backend .*empty has no libtriton_pytorch.so; build one with {BUILD_STEP}$"):
        plan_models(repository(tmp_path / "repo", "skoots"), WHEEL, (), tmp_path / "empty")


def test_a_tritonserver_on_path_loads_everything_and_refuses_a_pytorch_backend(tmp_path: Path, built: Path) -> None:
    folder = repository(tmp_path, *CONFIGS)
    plan = plan_models(folder, ON_PATH, (), None)
    assert plan.models == () and plan.warnings == () and plan.pytorch_backend is None
    with pytest.raises(ServerError, match=r"^--pytorch-backend is for the nvidia-pytriton tritonserver; the tritonserver on PATH brings its own backends$"):
        plan_models(folder, ON_PATH, (), built)


def test_a_repository_with_nothing_servable_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no-cache"))  # no cached build
    with pytest.raises(ServerError, match=r"has no model this tritonserver can serve \(skoots \(pytorch_libtorch\) needs Triton's PyTorch backend: build it with skoots build-backend pytorch\); export one with skoots export --backend python"):
        plan_models(repository(tmp_path / "repo", "skoots"), WHEEL, (), None)


def test_a_wheel_without_its_core_library_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match=r"^nvidia-pytriton has no libtritonserver in .*; reinstall it$"):
        _Binary(Path("tritonserver"), tmp_path, Path("python"), Path("stubs")).core_library()


def test_model_states_of_a_server_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    from skoots_export.server import ServerConfig, TritonServer

    server = TritonServer(ServerConfig(repository=tmp_path), WHEEL)  # ports claimed, nothing started
    with pytest.raises(ServerError, match=r"^tritonserver did not list its models: "):
        server.model_states()


def test_the_pytorch_backend_joins_the_server_only_for_a_model_that_runs_on_it(tmp_path: Path, built: Path) -> None:
    folder = repository(tmp_path, "skoots_gpu", "skoots_python")
    assert plan_models(folder, WHEEL, (), built).pytorch_backend is None
    assert plan_models(folder, WHEEL, ("skoots_python",), built).pytorch_backend is None
