"""Own a ``tritonserver`` process: build its argv, start it, wait until ready, stop it.

The binary is ``tritonserver`` on PATH or, failing that, the one inside the ``nvidia-pytriton``
wheel (the ``server`` extra). That one only has the Python backend, and its stub must match
the running Python, find the wheel's bundled libraries, and take its site-packages from the
first ``python3`` on PATH — so we lay out a private backend directory and environment for it.
Triton's PyTorch backend, built here by ``skoots build-backend pytorch``, joins it there.

Not split: one class owns the server process's whole life (argv, environment, start,
readiness, logs, stop), as PyTriton's does; the functions beside it are its parts.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import errno
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .contract.net import direct_open, pem_problem
from .errors import PortInUseError, ServerError

__all__ = [
    "LOOPBACK", "WORKDIR_PREFIX", "OWNER_FILE", "ServerTls", "ServerConfig", "find_binary", "free_port", "port_in_use",
    "owner_record", "remove_stale_workdirs", "log_reason", "TritonServer", "stop_signals", "wait_for_signal",
]

LOOPBACK = "127.0.0.1"

# The three ports: how messages name each, the attribute (and ``skoots serve`` option) that
# holds it, and how tritonserver's log names the service.
_SERVICES = (("gRPC", "grpc_port", "GRPC"), ("HTTP", "http_port", "HTTP"), ("metrics", "metrics_port", "Metrics"))

# Times a start is tried again when another process takes a port we picked before the server
# binds it (free_port() cannot hold a port for a child that binds it seconds later).
_LAUNCHES = 3

WORKDIR_PREFIX = "skoots-serve-"
OWNER_FILE = "owner.pid"


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
    # A folder holding libtriton_pytorch.so built for the wheel's server (skoots build-backend pytorch).
    pytorch_backend: Path | None = None

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
        """The wheel's binary: its own backend is Python only (a PyTorch one built here can join it)."""
        return self.stubs is not None

    def core_library(self) -> Path:
        """The wheel's Triton core, which it ships renamed (``libtritonserver-<hash>.so``)."""
        found = sorted((self.bundled_libs or Path()).glob("libtritonserver*.so*"))
        if not found:
            raise ServerError(f"nvidia-pytriton has no libtritonserver in {self.bundled_libs}; reinstall it")
        return found[0]


def _torch_lib() -> Path | None:
    """This environment's torch ``lib`` folder (libtorch.so, libc10.so, ...), found without
    importing torch; None without torch (the backend then relies on its RUNPATH)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "lib"


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


def _bind(host: str, port: int) -> int | None:
    """Bind ``host:port`` as a server would (SO_REUSEADDR: connections of a gone server waiting
    out TIME_WAIT are no conflict) and let go; the port bound, or None when another socket holds it."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            return int(s.getsockname()[1])
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return None
        raise ServerError(f"cannot bind {host}: {e.strerror or e} — give an address of this machine (--host)") from e


def free_port(host: str = LOOPBACK) -> int:
    port = _bind(host, 0)
    assert port is not None  # port 0 is never in use
    return port


def port_in_use(host: str, port: int) -> bool:
    """Whether another process holds ``port`` on ``host``, so a server could not bind it."""
    return _bind(host, port) is None


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


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22), or None
    where there is no /proc: with the pid it names one process, even after the pid is reused."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_record() -> str:
    """This process's ``PID START-TIME``, which a later server compares to tell a live owner of a
    work directory from a reused PID."""
    started = _start_time(os.getpid())
    return f"{os.getpid()} {started}" if started else str(os.getpid())


def _owner_gone(record: str) -> bool:
    """Whether the process an ``owner.pid`` record names has ended. An unreadable record (one
    being written) counts as alive: a folder is only removed when its owner is surely gone."""
    pid_text, _, started = record.strip().partition(" ")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError):
        return False
    return bool(started) and _start_time(pid) not in (None, started)


def remove_stale_workdirs(root: Path | None = None) -> list[Path]:
    """Remove the private folders (``skoots-serve-*`` in the temporary directory) that servers
    of killed ``skoots serve`` runs left, and return them. Only folders of this user whose
    ``owner.pid`` names a process that has ended: a folder without one is being made, or was
    made by an older version, and is left alone."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        try:
            info = path.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue
            record = (path / OWNER_FILE).read_text()
        except OSError:
            continue
        if _owner_gone(record):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


# A line of tritonserver's log (glog): severity, date, time, thread, source:line] message.
_LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\]\s?(.*)$")
# Errors every start of the wheel's CPU-only server logs.
_LOG_NOISE = ("CudaDriverHelper has not been initialized",)
# A service that could not start (tritonserver exits next), and one that could not bind its port.
_SERVICE_FAILED = re.compile(r"^E.*\] \"failed to start \w+ service")
_PORT_TAKEN = re.compile(r"failed to start (\w+) service: .* already in use")


def log_reason(lines: Sequence[str]) -> str | None:
    """The line of a tritonserver log that says why it stopped, as one line: the first
    ``failed to …`` error (a service that could not bind, a model that did not load), else the
    last other error, else None."""
    errors = []
    for line in lines:
        match = _LOG_LINE.match(line)
        if match and match.group(1) in "EF":
            text = match.group(2).strip().strip('"')
        elif line.startswith("error: "):  # what main() prints on its way out
            text = line[len("error: "):]
        else:
            continue
        text = text.split("\\n")[0].strip()  # a model's Python traceback, escaped into one line
        if text and not any(noise in text for noise in _LOG_NOISE):
            errors.append(text)
    failures = [text for text in errors if text.lower().startswith("failed to")]
    return failures[0] if failures else errors[-1] if errors else None


def _last_words(lines: Sequence[str]) -> str:
    """The last log line that is not part of a table."""
    return next((line for line in reversed(lines) if line.strip() and not line.startswith(("|", "+"))), "(no output)")


class _PortTaken(Exception):
    """tritonserver could not bind the port held in ``attribute``."""

    def __init__(self, attribute: str) -> None:
        super().__init__(attribute)
        self.attribute = attribute


class TritonServer:
    """One ``tritonserver`` child process: ``start()``, ``grpc_url``, ``stop()``; a context manager.

    Its ports are claimed at construction: one given as 0 is picked free, one given explicitly
    that another process holds is a ``PortInUseError``. The process runs with ``--id`` set to
    ``server_id``, unique to this object: readiness counts only when that id answers.
    """

    def __init__(self, config: ServerConfig, binary: _Binary | None = None) -> None:
        self.config = config
        self.binary = binary or find_binary()
        self.logs: collections.deque[str] = collections.deque(maxlen=400)
        self.server_id = f"skoots-{os.getpid()}-{secrets.token_hex(4)}"
        self._process: subprocess.Popen[str] | None = None
        self._pump_thread: threading.Thread | None = None
        self._workdir: Path | None = None
        self.grpc_port = self.http_port = self.metrics_port = 0
        self._claim_ports()

    def _host(self, attribute: str) -> str:
        return self.config.host if attribute == "grpc_port" else self.config.plain_host

    def _claim_ports(self) -> None:
        """Check the ports given explicitly; keep or (re)pick the others so that all are free now."""
        given = [(f"--{a.replace('_', '-')}", getattr(self.config, a)) for _, a, _ in _SERVICES if getattr(self.config, a)]
        for i, (option, port) in enumerate(given):
            twin = next((other for other, same in given[i + 1:] if same == port), None)
            if twin:
                raise ServerError(f"{option} and {twin} are both {port}; give each its own port (0 picks a free one)")
        for _, attribute, _ in _SERVICES:
            host, wanted = self._host(attribute), getattr(self.config, attribute)
            if wanted:
                setattr(self, attribute, wanted)
                if port_in_use(host, wanted):
                    raise self._port_in_use(attribute)
                continue
            others = {getattr(self, a) for _, a, _ in _SERVICES if a != attribute}
            port = getattr(self, attribute)
            while not port or port in others or port_in_use(host, port):
                port = free_port(host)
            setattr(self, attribute, port)

    @property
    def grpc_url(self) -> str:
        return f"{self.config.host}:{self.grpc_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def poll(self) -> int | None:
        """The exit code once the process has ended, else None."""
        return self._process.poll() if self._process else None

    def _backend_dir(self) -> Path:
        """A private backend directory: the wheel's Python backend plus the stub for this Python,
        and the PyTorch backend when the config names one, beside an alias of the wheel's core
        under the name that backend links (``libtritonserver.so``; its RUNPATH holds ``$ORIGIN``)."""
        assert self._workdir is not None
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = (self.binary.stubs or Path()) / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServerError(f"nvidia-pytriton has no Python-backend stub for Python {version}; use Python 3.8-3.13")
        root = self._workdir / "backends"
        python = root / "python"
        python.mkdir(parents=True)
        for source in (*(self.binary.python_backend or Path()).glob("*.*"), stub):
            shutil.copy2(source, python / source.name)
        if self.config.pytorch_backend is not None:
            pytorch = root / "pytorch"
            pytorch.mkdir()
            for source in Path(self.config.pytorch_backend).resolve().iterdir():
                (pytorch / source.name).symlink_to(source)
            (pytorch / "libtritonserver.so").symlink_to(self.binary.core_library())
        return root

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
            f"--id={self.server_id}",
            "--exit-on-error=true",
            "--strict-readiness=true",
        ]
        if c.models:
            args += ["--model-control-mode=explicit"] + [f"--load-model={m}" for m in c.models]
        if self.binary.stubs is not None:
            args.append(f"--backend-directory={self._backend_dir()}")
        if c.tls is not None:
            args += c.tls.argv()
        return args + list(c.extra_args)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.binary.bundled_libs is not None:
            # The stub must find the wheel's libraries and the running interpreter's libpython,
            # and takes its site-packages from the first python3 on PATH.
            libs = [str(self.binary.bundled_libs), sysconfig.get_config_var("LIBDIR") or ""]
            torch_lib = _torch_lib() if self.config.pytorch_backend is not None else None
            if torch_lib is not None:
                # The backend's RUNPATH names the torch it was built against; a cached build
                # reused by another environment with the same torch takes that one's libraries.
                libs.insert(0, str(torch_lib))
            env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in libs if p] + [env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
            env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def model_states(self) -> dict[str, str]:
        """Each model of the repository and its state (``READY``, ``UNAVAILABLE``, ...; one not
        loaded has none and is left out), from the server's HTTP repository index."""
        host = LOOPBACK if self.config.plain_host in ("0.0.0.0", "::") else self.config.plain_host
        host = f"[{host}]" if ":" in host else host
        request = urllib.request.Request(f"http://{host}:{self.http_port}/v2/repository/index", data=b"{}", method="POST")
        try:
            with direct_open(request, timeout=10) as answer:
                index = json.load(answer)
        except (OSError, ValueError) as e:
            raise ServerError(f"tritonserver did not list its models: {e}") from e
        return {m["name"]: m["state"] for m in index if m.get("state")}

    def _port_in_use(self, attribute: str) -> PortInUseError:
        label = next(label for label, a, _ in _SERVICES if a == attribute)
        port, host, option = getattr(self, attribute), self._host(attribute), f"--{attribute.replace('_', '-')}"
        if getattr(self.config, attribute):
            return PortInUseError(f"{label} port {port} on {host} is in use by another process — pick another with {option} (0 picks a free one)")
        return PortInUseError(
            f"{label} ports picked free on {host} were taken by other processes before tritonserver bound them, "
            f"{_LAUNCHES} times — start again, or give one with {option}"
        )

    def start(self, timeout: float = 180.0) -> TritonServer:
        """Start the process and wait until it is ready; ``ServerError`` (one line, the reason
        from its log) when it ends or is not ready in ``timeout`` seconds."""
        if self._process is not None:
            return self
        if not Path(self.config.repository).is_dir():
            raise ServerError(f"model repository {self.config.repository} does not exist; run skoots export first")
        if self.config.tls is not None:
            self.config.tls.check()
        self._check_python_environment()
        remove_stale_workdirs()
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        launches = 0
        while True:
            self._claim_ports()
            self._launch()
            launches += 1
            try:
                self._wait_ready(deadline, timeout)
                return self
            except _PortTaken as taken:
                if getattr(self.config, taken.attribute) or launches == _LAUNCHES:
                    raise self._port_in_use(taken.attribute) from None
                self._process = None  # a port we picked was taken in the meantime: pick again

    def _check_python_environment(self) -> None:
        """Refuse to start (one line, the fix) when the Python the wheel's stub will use cannot
        run the repository's Python-backend models: it would report them READY and answer with
        empty outputs (serve_environment.py)."""
        from .serve_environment import environment_problem, serves_python_models, stub_python

        if self.binary.stubs is None or not serves_python_models(self.config.repository, tuple(self.config.models)):
            return
        python = stub_python(self.environment()["PATH"])
        problem = environment_problem(python) if python is not None else "no python3 on PATH for the Python-backend stub"
        if problem:
            raise ServerError(problem)

    def _launch(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))  # private: mode 0700
        (self._workdir / OWNER_FILE).write_text(owner_record())
        self.logs.clear()
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
        self._pump_thread = threading.Thread(target=self._pump, args=(self._process.stdout,), daemon=True, name="tritonserver-log")
        self._pump_thread.start()

    def _pump(self, stdout: Iterator[str]) -> None:
        try:
            for line in stdout:
                self.logs.append(line.rstrip())
        except (ValueError, OSError):  # closed by stop() while reading
            pass

    def ended(self, during: str) -> str:
        """One line: how the process ended ``during`` starting or serving, and why, from its log."""
        code = self.poll()
        how = f"exited with code {code}"
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"ended by signal {-code}"
        lines = list(self.logs)
        reason = log_reason(lines)
        why = reason or f"its log names no error; its last line: {_last_words(lines)}"
        return f"tritonserver {how} while {during}: {why}"

    def _failing(self) -> bool:
        """Whether the process has ended, or its log says a service failed to start (it exits next)."""
        return self.poll() is not None or any(_SERVICE_FAILED.match(line) for line in list(self.logs))

    @contextlib.contextmanager
    def _readiness_probe(self) -> Iterator[Callable[[], tuple[str | None, bool]]]:
        """A call that returns the id of the server answering on our port (None: nobody) and
        whether it is ours and ready: over gRPC, or with TLS over the loopback HTTP endpoint (a
        probe over TLS would need a certificate this process may not trust or hold)."""
        if self.config.tls is not None:
            base = f"http://{LOOPBACK}:{self.http_port}/v2"

            def http_answer() -> tuple[str | None, bool]:
                try:
                    with direct_open(base, timeout=2) as answer:
                        name = json.load(answer).get("name")
                    if name != self.server_id:
                        return name, False
                    with direct_open(f"{base}/health/ready", timeout=2) as answer:
                        return name, answer.status == 200
                except (OSError, ValueError, AttributeError):  # nobody, not Triton, not ready (HTTPError)
                    return None, False

            yield http_answer
            return
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(self.grpc_url)

        def grpc_answer() -> tuple[str | None, bool]:
            try:
                name = client.get_server_metadata(client_timeout=2).name
                return name, name == self.server_id and bool(client.is_server_ready(client_timeout=2))
            except InferenceServerException:
                return None, False

        try:
            yield grpc_answer
        finally:
            client.close()

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        """Poll until our own process answers ready; raise (after stopping it) when it ends or
        the deadline passes. Another server answering on the port does not count."""
        foreign = None
        with self._readiness_probe() as answer:
            while True:
                if self._failing():
                    self.stop()
                    taken = _PORT_TAKEN.search(log_reason(list(self.logs)) or "")
                    if taken:
                        raise _PortTaken(next(a for _, a, service in _SERVICES if service == taken.group(1)))
                    raise ServerError(self.ended("starting"))
                name, ready = answer()
                if ready:
                    # HTTP and metrics start right after gRPC: a port taken there shows in the log at once.
                    time.sleep(0.5)
                    if not self._failing():
                        return
                    continue
                foreign = name if name not in (None, self.server_id) else foreign
                if time.monotonic() > deadline:
                    tail = _last_words(list(self.logs))
                    self.stop()
                    other = f"; another server ({foreign!r}) answers on its port" if foreign else ""
                    raise ServerError(f"tritonserver not ready after {timeout:.0f}s{other}: {tail}")
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
            if self._pump_thread is not None:
                self._pump_thread.join(timeout=2)  # the log's last lines, for ended()
            if process.stdout is not None:
                process.stdout.close()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_signals() -> threading.Event:
    """An event that SIGINT/SIGTERM set from now on: installed before the banner says the server
    is up, so a Ctrl-C right after it stops the server cleanly."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def wait_for_signal(server: TritonServer, stop: threading.Event | None = None) -> None:
    """Block until SIGINT/SIGTERM (``stop`` is set), then stop the server; a server that ends by
    itself first is a ``ServerError`` with the reason from its log."""
    stop = stop or stop_signals()
    while not stop.is_set() and server.poll() is None:
        stop.wait(0.5)
    server.stop()
    if not stop.is_set():
        raise ServerError(server.ended("serving"))
