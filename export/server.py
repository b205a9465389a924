"""Own a ``tritonserver`` process: build its argv, start it, wait until ready, stop it.

The binary is ``tritonserver`` on PATH or, failing that, the one inside the ``nvidia-pytriton``
wheel (the ``server`` extra). That one only has the Python backend, and its stub must match
the running Python, find the wheel's bundled libraries, and take its site-packages from the
first ``python3`` on PATH — so we lay out a private backend directory and environment for it.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Deque, Iterable, Iterator

from .errors import ServerError

LOOPBACK = "127.0.0.1"


def pem_problem(option: str, path: Path | None) -> str | None:
    """Why the PEM file ``path`` given with ``option`` is unusable (unreadable, not PEM), or None."""
    if path is None:
        return None
    try:
        text = Path(path).read_bytes()
    except OSError as e:
        return f"cannot read {option} {path}: {e.strerror or e}"
    if b"-----BEGIN " not in text:
        return f"{option} {path} is not a PEM file (no -----BEGIN line)"
    return None


@dataclass(frozen=True)
class ServerTls:
    """gRPC over TLS: the server's certificate and key (PEM); with ``root_cert``, clients must
    present a certificate signed by it (mutual TLS)."""

    cert: Path
    key: Path
    root_cert: Path | None = None

    def check(self) -> None:
        for option, path in (("--ssl-cert", self.cert), ("--ssl-key", self.key), ("--ssl-root-cert", self.root_cert)):
            problem = pem_problem(option, path)
            if problem:
                raise ServerError(problem)

    def argv(self) -> list[str]:
        args = ["--grpc-use-ssl=true", f"--grpc-server-cert={self.cert}", f"--grpc-server-key={self.key}"]
        if self.root_cert is not None:
            args += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={self.root_cert}"]
        return args


def is_loopback(host: str) -> bool:
    """Whether ``host`` binds this machine only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """The flags we give ``tritonserver``. Port 0 means: pick a free one.

    With ``tls`` only gRPC faces ``host``: HTTP and metrics (plain text, no authentication)
    stay on loopback, where readiness is polled.
    """

    repository: Path
    host: str = LOOPBACK
    grpc_port: int = 0
    http_port: int = 0
    metrics_port: int = 0
    models: tuple[str, ...] = ()
    log_verbose: int = 0
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    tls: ServerTls | None = None

    @property
    def plain_host(self) -> str:
        """Where HTTP and metrics bind."""
        return LOOPBACK if self.tls is not None else self.host


@dataclass(frozen=True)
class _Binary:
    path: Path
    bundled_libs: Path | None
    python_backend: Path | None
    stubs: Path | None

    @property
    def python_only(self) -> bool:
        """The wheel's binary: Python backend only, no libtorch."""
        return self.stubs is not None


def find_binary() -> _Binary:
    """``tritonserver`` on PATH, else the one in the ``nvidia-pytriton`` wheel."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return _Binary(Path(on_path), None, None, None)
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(
            "no tritonserver found: install the server extra (pip install 'skoots-triton[server]') "
            "or put a tritonserver binary on PATH"
        )
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        raise ServerError(f"nvidia-pytriton is installed but {binary} is missing; reinstall it")
    return _Binary(binary, root.parent.parent / "nvidia_pytriton.libs", root / "backends" / "python", root / "python_backend_stubs")


def free_port(host: str = LOOPBACK) -> int:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    except OSError as e:
        raise ServerError(f"cannot bind {host}: {e.strerror or e} — give an address of this machine (--host)") from e


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setsid()


def _child_setup() -> Callable[[], None]:
    """PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, so it is only set
    when starting from the main thread; otherwise atexit and stop() are what end the child."""
    return _die_with_parent if threading.current_thread() is threading.main_thread() else os.setsid


class TritonServer:
    """One ``tritonserver`` child process: ``start()``, ``grpc_url``, ``stop()``; a context manager."""

    def __init__(self, config: ServerConfig, binary: _Binary | None = None) -> None:
        self.config = config
        self.binary = binary or find_binary()
        self.logs: Deque[str] = collections.deque(maxlen=400)
        self._process: subprocess.Popen[str] | None = None
        self._workdir: Path | None = None
        self.grpc_port = config.grpc_port or free_port(config.host)
        self.http_port = config.http_port or free_port(config.plain_host)
        self.metrics_port = config.metrics_port or free_port(config.plain_host)

    @property
    def grpc_url(self) -> str:
        return f"{self.config.host}:{self.grpc_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def poll(self) -> int | None:
        """The exit code once the process has ended, else None."""
        return self._process.poll() if self._process else None

    def _python_backend_dir(self) -> Path:
        """A private backend directory: the wheel's Python backend plus the stub for this Python."""
        assert self._workdir is not None
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = (self.binary.stubs or Path()) / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServerError(f"nvidia-pytriton has no Python-backend stub for Python {version}; use Python 3.8-3.13")
        target = self._workdir / "backends" / "python"
        target.mkdir(parents=True)
        for source in (*(self.binary.python_backend or Path()).glob("*.*"), stub):
            shutil.copy2(source, target / source.name)
        return target.parent

    def argv(self) -> list[str]:
        c = self.config
        args = [
            str(self.binary.path),
            f"--model-repository={c.repository}",
            f"--grpc-address={c.host}",
            f"--grpc-port={self.grpc_port}",
            f"--http-address={c.plain_host}",
            f"--http-port={self.http_port}",
            f"--metrics-address={c.plain_host}",
            f"--metrics-port={self.metrics_port}",
            f"--log-verbose={c.log_verbose}",
            "--exit-on-error=true",
            "--strict-readiness=true",
        ]
        if c.models:
            args += ["--model-control-mode=explicit"] + [f"--load-model={m}" for m in c.models]
        if self.binary.stubs is not None:
            args.append(f"--backend-directory={self._python_backend_dir()}")
        if c.tls is not None:
            args += c.tls.argv()
        return args + list(c.extra_args)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.binary.bundled_libs is not None:
            # The stub must find the wheel's libraries and the running interpreter's libpython,
            # and takes its site-packages from the first python3 on PATH.
            libs = [str(self.binary.bundled_libs), sysconfig.get_config_var("LIBDIR") or ""]
            env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in libs if p] + [env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
            env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def start(self, timeout: float = 180.0) -> "TritonServer":
        if self._process is not None:
            return self
        if not Path(self.config.repository).is_dir():
            raise ServerError(f"model repository {self.config.repository} does not exist; run skoots export first")
        if self.config.tls is not None:
            self.config.tls.check()
        self._workdir = Path(tempfile.mkdtemp(prefix="skoots-serve-"))  # private: mode 0700
        try:
            self._process = subprocess.Popen(
                self.argv(),
                env=self.environment(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                preexec_fn=_child_setup(),
            )
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        threading.Thread(target=self._pump, daemon=True, name="tritonserver-log").start()
        self._wait_ready(timeout)
        return self

    def _pump(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self.logs.append(line.rstrip())

    @contextlib.contextmanager
    def _readiness_probe(self) -> Iterator[Callable[[], bool]]:
        """gRPC's readiness call, or with TLS the loopback HTTP endpoint's (a probe over TLS
        would need a certificate this process may not trust or hold)."""
        if self.config.tls is not None:
            url = f"http://{LOOPBACK}:{self.http_port}/v2/health/ready"

            def http_ready() -> bool:
                try:
                    with urllib.request.urlopen(url, timeout=2) as answer:
                        return answer.status == 200
                except OSError:  # URLError and connection errors
                    return False

            yield http_ready
            return
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(self.grpc_url)

        def grpc_ready() -> bool:
            try:
                return bool(client.is_server_ready(client_timeout=2))
            except InferenceServerException:
                return False

        try:
            yield grpc_ready
        finally:
            client.close()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._readiness_probe() as ready:
            while True:
                if self._process is not None and self._process.poll() is not None:
                    tail = " | ".join(load_failures(self.logs) or list(self.logs)[-5:])
                    self.stop()
                    raise ServerError(f"tritonserver exited with code {self._process.returncode} while starting: {tail}")
                if ready():
                    return
                if time.monotonic() > deadline:
                    tail = " | ".join(list(self.logs)[-5:])
                    self.stop()
                    raise ServerError(f"tritonserver not ready after {timeout:.0f}s: {tail}")
                time.sleep(0.2)

    def stop(self, grace: float = 20.0) -> None:
        """SIGINT, wait; SIGKILL the whole process group, wait. Safe to call twice."""
        process = self._process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGINT)
                process.wait(timeout=grace)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # stubs left in the group die too
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_LOAD_FAILURE = re.compile(r"failed to load '[^']+' version \d+: .*")


def load_failures(logs: Iterable[str]) -> list[str]:
    """The server log's ``failed to load 'NAME' version N: REASON`` lines, cut to that phrase and
    the reason's first line: why a model did not load, where the last lines only say that one
    did not."""
    failures: list[str] = []
    for line in logs:
        found = _LOAD_FAILURE.search(line)
        if found:
            failure = found.group(0).split("\\n")[0].rstrip('"').strip()
            failures += [failure] if failure not in failures else []
    return failures


def python_backend_models(repository: Path) -> list[str]:
    """Names of the models in ``repository`` whose config selects the Python backend."""
    from .model_config import config_from_text

    names = []
    for config_path in sorted(Path(repository).glob("*/config.pbtxt")):
        try:
            config = config_from_text(config_path.read_text())
        except Exception:  # noqa: BLE001 - a broken config is the server's to report
            continue
        if config.backend == "python":
            names.append(config_path.parent.name)
    return names


def wait_for_signal(server: TritonServer) -> int:
    """Block until SIGINT/SIGTERM or the server exits; stop it; return its exit code."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set() and server.poll() is None:
        stop.wait(0.5)
    code = server.poll() or 0
    server.stop()
    return code
