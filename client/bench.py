"""Load-test a Triton server with synthetic crops, reporting what perf_analyzer reports.

``skoots-client bench`` measures perf_analyzer's quantities itself, with perf_analyzer's
definitions (docs/benchmarks.md maps them; tests/functional/test_bench_vs_perf_analyzer.py checks
the figures against perf_analyzer 2.41's). For each setting (crops per request B, then either
requests in flight C per client process or a request rate R, P processes) the clients send FP16
crops of the model's crop shape. With C, in a closed loop — each request is sent as soon as the
previous one of its slot has been answered; with R, on a schedule — request k at the sum of k
intervals of 1/R seconds (constant) or drawn from an exponential of mean 1/R (Poisson), whatever
the answers, by `RATE_THREADS` sending threads (a request whose time comes while all are waiting
for answers goes late and is counted as delayed). Both record,
per request, when it ended, its latency and the client's serialise / send+receive /
deserialise times. The server's queue and compute times come from the difference of two
``get_inference_statistics`` snapshots.

Latency, as perf_analyzer's: from just before a request is sent to its answer, decoded.
Percentiles, as perf_analyzer's: the value at sorted index ``round(q/100 * (n - 1))``.

Stability, as perf_analyzer decides it: time is cut into measurement windows of about
``duration`` seconds. Each window runs from one answer to the first answer at least
``duration`` later (and at least `MIN_REQUESTS` answers later), so it spans whole
request periods: with slow requests, a window cut at a fixed time would count one answer more
or less than its share, an error of up to one request in a few. A setting's result is the last three windows, merged, once
their throughputs, and their average latencies, each differ by at most ``tolerance`` (max / min
<= 1 + tolerance: perf_analyzer's ``-s``); after ``max_windows`` windows without that, the last three are reported and
marked unstable. A setting's wall time is bounded: it measures for at most ``(max_windows + 1)
* duration`` seconds after its warm-up (plus the wait for a window's first answer and for the
requests in flight at the end). When fewer than three whole windows fit in that time — requests
too slow for the window length, e.g. 14 s requests and 5 s windows, where each window waits for
three answers — stability cannot be judged: every answer measured is reported, merged, and the
setting is marked as having too few requests. Average latency, not p99, judges stability (perf_analyzer's default too): a
window's p99 is the largest of its few dozen latencies, which does not settle on a shared CPU.

The pure functions here (`percentile`, `latency_summary`, `server_delta`,
`is_stable`, `message_bytes`, `summarise`, `request_intervals`) take numbers and return
numbers; `measure_throughput` owns the clients.

Not split: one measurement (settings, closed-loop clients, windows, the stability rule, the
server's statistics) read top to bottom; its report formats already live in bench_report.py.
"""

from __future__ import annotations

import math
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from skoots_export.contract.wire import INPUT, SKELETON, VECTORS

from .errors import ClientError, InferenceTimeoutError, InputError, ModelError, ServerUnavailableError

__all__ = [
    "PERCENTILES", "MIN_REQUESTS", "STABLE_WINDOWS", "SERVER_STAGES", "CLIENT_STAGES", "TensorLayout", "OUR_INPUTS",
    "OUR_OUTPUTS", "NAIVE_INPUTS", "NAIVE_OUTPUTS", "GRPC_PREFIX", "Record", "Window", "Measurement", "BenchResult",
    "percentile", "latency_summary", "server_delta", "per_request_ms", "is_stable", "message_bytes", "summarise",
    "synthetic_crops", "DISTRIBUTIONS", "RATE_THREADS", "request_intervals", "RequestRates", "LoadSettings", "measure_throughput",
    "measure_windows", "parse_counts", "parse_rates", "bench",
]

PERCENTILES = (50, 90, 95, 99)
MIN_REQUESTS = 3
STABLE_WINDOWS = 3
SERVER_STAGES = ("queue", "compute_input", "compute_infer", "compute_output")
CLIENT_STAGES = ("serialise", "send_receive", "deserialise")

# (name, Triton datatype, channels, bytes per element) of a contract's tensors.
TensorLayout = tuple[str, str, int, int]
OUR_INPUTS: tuple[TensorLayout, ...] = ((INPUT.name, "FP16", 1, 2),)
OUR_OUTPUTS: tuple[TensorLayout, ...] = ((VECTORS.name, "FP16", 3, 2), (SKELETON.name, "UINT8", 1, 1))
# What a straightforward export would send: FP32 crops in, the network's five FP32 channels out.
NAIVE_INPUTS: tuple[TensorLayout, ...] = (("INPUT__0", "FP32", 1, 4),)
NAIVE_OUTPUTS: tuple[TensorLayout, ...] = (("OUTPUT__0", "FP32", 5, 4),)
GRPC_PREFIX = 5  # each gRPC message: a compression flag and a 4-byte length
DISTRIBUTIONS = ("constant", "poisson")  # perf_analyzer's --request-distribution
RATE_THREADS = 16  # threads sending a request-rate schedule: the bound on its requests in flight


@dataclass(frozen=True)
class Record:
    """One answered request: when it ended (``time.monotonic``, shared by processes on Linux),
    its latency and the client's stages, in seconds, and how many crops it carried."""

    end: float
    latency: float
    serialise: float
    send_receive: float
    deserialise: float
    crops: int
    delayed: bool = False  # sent later than its schedule said (request-rate mode)


@dataclass(frozen=True)
class Window:
    """One measurement window: its length, the requests answered in it, and the server's
    statistics over it as ``{stage: (requests, nanoseconds)}``."""

    seconds: float
    records: tuple[Record, ...]
    server: dict[str, tuple[int, int]]

    @property
    def crops_per_s(self) -> float:
        return sum(r.crops for r in self.records) / self.seconds

    @property
    def latency_avg(self) -> float:
        return float(np.mean([r.latency for r in self.records])) if self.records else math.nan


@dataclass(frozen=True)
class Measurement:
    """The result of one setting: throughput, latency (ms), client and server stages (ms per
    request), and gRPC message bytes per crop voxel."""

    batch: int
    concurrency: int
    processes: int
    stable: bool
    windows: int
    requests: int
    seconds: float
    crops_per_s: float
    mvoxels_per_s: float
    latency_ms: dict[str, float]
    client_ms: dict[str, float]
    server_ms: dict[str, float]
    wire_bytes_per_voxel: float
    few_requests: bool = False  # too few answers within the setting's time bound to judge stability
    request_rate: float = math.nan  # requests/s per client process scheduled (NaN: concurrency mode)
    delayed: int = 0  # requests sent later than scheduled (request-rate mode)

    @property
    def in_flight(self) -> int:
        return self.concurrency * self.processes


@dataclass(frozen=True)
class BenchResult:
    """Everything ``bench`` measured against one model on one server."""

    url: str
    model: str
    crop: tuple[int, int, int]
    max_batch_size: int
    duration: float
    tolerance: float
    measurements: list[Measurement] = field(default_factory=list)

    @property
    def best(self) -> Measurement:
        """The setting with the highest throughput: the server's saturated rate."""
        return max(self.measurements, key=lambda m: m.crops_per_s)


def percentile(values: Sequence[float], q: float) -> float:
    """perf_analyzer's percentile: the sorted value at index ``round(q/100 * (n - 1))``
    (half up; an observed latency, never an interpolated one). NaN for no values.

    Examples
    --------
    >>> percentile([4.0, 1.0, 3.0, 2.0], 50)
    3.0
    >>> percentile([4.0, 1.0, 3.0, 2.0], 99)
    4.0
    """
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} must lie in (0, 100]")
    if len(values) == 0:
        return math.nan
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    return float(ordered[int(q / 100 * (len(ordered) - 1) + 0.5)])


def latency_summary(latencies: Sequence[float]) -> dict[str, float]:
    """``avg`` and ``p50``/``p90``/``p95``/``p99`` of ``latencies``, in the same unit."""
    out = {"avg": float(np.mean(latencies)) if len(latencies) else math.nan}
    out.update({f"p{q}": percentile(latencies, q) for q in PERCENTILES})
    return out


def _stage_totals(model_stats: Iterable[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    totals = {stage: (0, 0) for stage in ("success", *SERVER_STAGES)}
    for version in model_stats:
        stats = version.get("inference_stats", {})
        for stage in totals:
            entry = stats.get(stage, {})
            count, ns = totals[stage]
            totals[stage] = (count + int(entry.get("count", 0)), ns + int(entry.get("ns", 0)))
    return totals


def server_delta(before: Iterable[dict[str, Any]], after: Iterable[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """``{stage: (requests, nanoseconds)}`` between two ``get_inference_statistics`` snapshots
    (as JSON ``model_stats`` lists; versions are summed). ``success`` is the whole time a
    request spent in the server."""
    a, b = _stage_totals(before), _stage_totals(after)
    return {stage: (b[stage][0] - a[stage][0], b[stage][1] - a[stage][1]) for stage in a}


def per_request_ms(delta: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Milliseconds per request of each server stage (NaN where no request was counted)."""
    return {stage: (ns / count / 1e6 if count else math.nan) for stage, (count, ns) in delta.items()}


def is_stable(windows: Sequence[Window], tolerance: float, count: int = STABLE_WINDOWS) -> bool:
    """True when the last ``count`` windows' throughputs, and their average latencies, each
    differ by at most ``tolerance`` (0.1 = 10 %): max / min <= 1 + tolerance, perf_analyzer's rule."""
    if len(windows) < count:
        return False
    recent = windows[-count:]
    for values in ([w.crops_per_s for w in recent], [w.latency_avg for w in recent]):
        if not min(values) > 0 or max(values) / min(values) > 1 + tolerance:
            return False
    return True


def message_bytes(
    batch: int,
    crop: Sequence[int],
    inputs: Sequence[TensorLayout] = OUR_INPUTS,
    outputs: Sequence[TensorLayout] = OUR_OUTPUTS,
    model: str = "skoots",
) -> tuple[int, int]:
    """Bytes of one request and of its reply as gRPC messages (protobuf plus gRPC's 5-byte
    prefix; HTTP/2 and TCP framing not counted), for ``batch`` crops of shape ``crop``.

    The messages are built as tritonclient and Triton build them, with empty tensor contents;
    each content's length is then added as protobuf encodes it, so no payload is allocated.
    """
    from tritonclient.grpc import service_pb2

    voxels = batch * int(np.prod(crop))

    def shape(channels: int) -> list[int]:
        return [batch, channels, *crop]

    request = service_pb2.ModelInferRequest(model_name=model)
    payload_in = []
    for name, datatype, channels, size in inputs:
        request.inputs.add(name=name, datatype=datatype, shape=shape(channels))
        request.raw_input_contents.append(b"")
        payload_in.append(voxels * channels * size)
    for name, *_ in outputs:
        request.outputs.add(name=name)
    reply = service_pb2.ModelInferResponse(model_name=model, model_version="1")
    payload_out = []
    for name, datatype, channels, size in outputs:
        reply.outputs.add(name=name, datatype=datatype, shape=shape(channels))
        reply.raw_output_contents.append(b"")
        payload_out.append(voxels * channels * size)

    def grown(message: Any, payloads: list[int]) -> int:
        # An empty bytes field costs its tag and a one-byte length; n bytes cost the tag,
        # the varint of n, and n.
        return message.ByteSize() + sum(_varint_size(n) - 1 + n for n in payloads) + GRPC_PREFIX

    return grown(request, payload_in), grown(reply, payload_out)


def _varint_size(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def summarise(
    windows: Sequence[Window],
    *,
    batch: int,
    concurrency: int,
    processes: int,
    crop: Sequence[int],
    stable: bool,
    measured: int,
    few_requests: bool = False,
    request_rate: float = math.nan,
) -> Measurement:
    """Merge the counted ``windows`` of a setting into one `Measurement`."""
    records = [r for w in windows for r in w.records]
    seconds = sum(w.seconds for w in windows)
    crops = sum(r.crops for r in records)
    voxels = int(np.prod(crop))
    delta: dict[str, tuple[int, int]] = {}
    for w in windows:
        for stage, (count, ns) in w.server.items():
            c0, n0 = delta.get(stage, (0, 0))
            delta[stage] = (c0 + count, n0 + ns)
    server = per_request_ms(delta)
    request_bytes, reply_bytes = message_bytes(batch, crop)
    return Measurement(
        batch=batch,
        concurrency=concurrency,
        processes=processes,
        stable=stable,
        windows=measured,
        requests=len(records),
        seconds=seconds,
        crops_per_s=crops / seconds if seconds > 0 else math.nan,
        mvoxels_per_s=crops * voxels / seconds / 1e6 if seconds > 0 else math.nan,
        latency_ms={k: v * 1e3 for k, v in latency_summary([r.latency for r in records]).items()},
        client_ms={s: (float(np.mean([getattr(r, s) for r in records])) * 1e3 if records else math.nan) for s in CLIENT_STAGES},
        server_ms={"request": server.get("success", math.nan), **{s: server.get(s, math.nan) for s in SERVER_STAGES}},
        wire_bytes_per_voxel=(request_bytes + reply_bytes) / (batch * voxels),
        few_requests=few_requests,
        request_rate=request_rate,
        delayed=sum(r.delayed for r in records),
    )


def synthetic_crops(batch: int, crop: Sequence[int], seed: int = 0) -> np.ndarray:
    """``[batch, 1, X, Y, Z]`` FP16 crops of uniform noise in [0, 1): normalised voxels."""
    rng = np.random.default_rng(seed)
    return rng.random((batch, 1, *crop), dtype=np.float32).astype(np.float16)


def request_intervals(rate: float, distribution: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` seconds between requests sent at ``rate`` per second, as perf_analyzer's
    ``--request-distribution``: each ``1 / rate`` (constant), or drawn from an exponential of
    mean ``1 / rate`` (poisson: the gaps between arrivals of a Poisson process).

    >>> request_intervals(4.0, "constant", 3, np.random.default_rng(0)).tolist()
    [0.25, 0.25, 0.25]
    """
    if distribution == "constant":
        return np.full(count, 1.0 / rate)
    if distribution == "poisson":
        return rng.exponential(1.0 / rate, count)
    raise ValueError(f"distribution {distribution!r}: one of {DISTRIBUTIONS}")


class _Schedule:
    """The send times of a request-rate setting, handed out in order to the sending threads."""

    def __init__(self, rate: float, distribution: str, seed: int, start: float) -> None:
        self.rate, self.distribution = rate, distribution
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.due = start
        self.intervals: list[float] = []

    def take(self) -> float:
        with self.lock:
            if not self.intervals:
                self.intervals = request_intervals(self.rate, self.distribution, 1024, self.rng).tolist()[::-1]
            due = self.due
            self.due += self.intervals.pop()
            return due


# --- the clients -------------------------------------------------------------------------

_ERRORS = {cls.__name__: cls for cls in (ServerUnavailableError, InferenceTimeoutError, ModelError, ClientError)}


def _client(
    url: str, model: str, batch: int, concurrency: int, timeout: float, seed: int, stop: Any, channel: Any,
    rate: float | None = None, distribution: str = "constant", shared_memory: str = "none",
) -> None:
    """One client: ``concurrency`` threads sharing one gRPC channel, each sending ``batch``
    crops in a closed loop until ``stop`` is set — or, given a ``rate``, `RATE_THREADS` threads
    sending on its schedule. Reports on ``channel``: ``("ready",)``, ``("record", Record)`` per
    answer, ``("error", kind, text)``. Runs in a thread or a process."""
    from .model_source import TritonEndpoint

    threads_wanted = concurrency if rate is None else RATE_THREADS
    try:
        endpoint = TritonEndpoint(url, model, concurrency=threads_wanted, timeout=timeout, retries=0, shared_memory=shared_memory)
    except ClientError as e:
        channel.put(("error", type(e).__name__, str(e)))
        return
    crops = synthetic_crops(batch, endpoint.info.parameters.crop, seed)
    channel.put(("ready",))
    schedule = None if rate is None else _Schedule(rate, distribution, seed, time.monotonic())

    def loop() -> None:
        timings: dict[str, float] = {}
        while not stop.is_set():
            delayed = False
            if schedule is not None:
                due = schedule.take()
                if stop.wait(max(due - time.monotonic(), 0.0)):
                    return
                delayed = time.monotonic() - due > 0.001  # sent over a millisecond late: its threads were all busy
            started = time.monotonic()
            try:
                endpoint.infer(crops, timings=timings)
            except ClientError as e:
                channel.put(("error", type(e).__name__, str(e)))
                return
            end = time.monotonic()
            record = Record(end, end - started, timings["serialise"], timings["send_receive"], timings["deserialise"], batch, delayed)
            channel.put(("record", record))

    threads = [threading.Thread(target=loop, daemon=True, name=f"skoots-bench-{i}") for i in range(threads_wanted)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    endpoint.close()


class _Clients:
    """``processes`` clients (threads of this process when there is one, else spawned
    processes), all reporting on one channel."""

    def __init__(
        self, url: str, model: str, batch: int, concurrency: int, processes: int, timeout: float,
        rate: float | None = None, distribution: str = "constant", shared_memory: str = "none",
    ) -> None:
        self.processes = processes
        self.timeout = timeout
        schedule = (rate, distribution)
        if processes == 1:
            self.stop: Any = threading.Event()
            self.channel: Any = queue.SimpleQueue()
            self.workers: list[Any] = [
                threading.Thread(target=_client, args=(url, model, batch, concurrency, timeout, 0, self.stop, self.channel, *schedule, shared_memory), daemon=True)
            ]
        else:
            # spawn, not fork: a forked child would inherit this process's gRPC state.
            context = multiprocessing.get_context("spawn")
            self.stop = context.Event()
            self.channel = context.Queue()
            self.workers = [
                context.Process(target=_client, args=(url, model, batch, concurrency, timeout, i, self.stop, self.channel, *schedule, shared_memory), daemon=True)
                for i in range(processes)
            ]
        for worker in self.workers:
            worker.start()
        self.records: list[Record] = []

    def _get(self, timeout: float) -> Any:
        try:
            return self.channel.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def _handle(self, message: Any) -> bool:
        if message[0] == "record":
            self.records.append(message[1])
        elif message[0] == "error":
            raise _ERRORS.get(message[1], ClientError)(message[2])
        return message[0] == "ready"

    def wait_ready(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        ready = 0
        while ready < self.processes:
            message = self._get(deadline - time.monotonic())
            if message is None:
                raise ServerUnavailableError(f"bench clients did not connect within {limit:.0f}s")
            ready += self._handle(message)

    def take_answer(self, after: float, deadline: float | None = None) -> Record | None:
        """Remove and return the earliest answer that ended after ``after``, waiting for one if
        none has; older answers are dropped. None once ``time.monotonic()`` passes ``deadline``
        with no such answer ended by then."""
        while True:
            self.records = [r for r in self.records if r.end > after]
            if self.records:
                answer = min(self.records, key=lambda r: r.end)
                if deadline is not None and answer.end > deadline:
                    return None
                self.records.remove(answer)
                return answer
            wait = self.timeout + 5
            if deadline is not None:
                if time.monotonic() >= deadline:
                    return None
                wait = min(wait, deadline - time.monotonic())
            message = self._get(wait)
            if message is None:
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                raise InferenceTimeoutError(f"no answer within {self.timeout:.0f}s — check the server, or raise --timeout")
            self._handle(message)

    def take_until(self, end: float) -> list[Record]:
        """Remove and return the answers received so far that ended by ``end``."""
        taken = [r for r in self.records if r.end <= end]
        self.records = [r for r in self.records if r.end > end]
        return taken

    def collect_until(self, moment: float) -> None:
        """Take reports until ``time.monotonic()`` reaches ``moment``."""
        while True:
            left = moment - time.monotonic()
            if left <= 0:
                break
            message = self._get(min(left, 0.05))
            if message is not None:
                self._handle(message)
        while (message := self._get(0)) is not None:
            self._handle(message)

    def close(self) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(timeout=self.timeout + 5)
            if isinstance(worker, multiprocessing.process.BaseProcess) and worker.is_alive():
                worker.terminate()
                worker.join(timeout=5)


@dataclass(frozen=True)
class RequestRates:
    """perf_analyzer's request-rate mode: one setting per rate (requests per second per client
    process), send times spaced by ``distribution`` (``constant`` or ``poisson``)."""

    rates: tuple[float, ...]
    distribution: str = "constant"


@dataclass(frozen=True)
class LoadSettings:
    """How each setting is loaded and judged: the bench's options other than the settings."""

    duration: float = 5.0
    warmup: float = 2.0
    processes: int = 1
    tolerance: float = 0.1
    max_windows: int = 10
    timeout: float = 120.0
    distribution: str = "constant"  # of a request-rate setting's send times
    shared_memory: str = "none"  # "system": requests through /dev/shm (a server on this machine)


def measure_throughput(
    url: str,
    model: str,
    *,
    batch: int,
    concurrency: int,
    crop: Sequence[int],
    statistics: Callable[[], list[dict[str, Any]]],
    load: LoadSettings = LoadSettings(),
    on_window: Callable[[int, Window], None] | None = None,
    request_rate: float | None = None,
) -> Measurement:
    """Load ``model`` at ``url`` with one setting until it is stable (see the module's notes):
    ``concurrency`` requests in flight per client process, or, given ``request_rate``, that
    many requests per second per client process (``concurrency`` is then ignored).

    ``statistics()`` returns the server's ``model_stats`` for the model (one snapshot).
    Raises ``ClientError`` when a client cannot connect or a request fails.
    """
    if request_rate is not None:
        concurrency = RATE_THREADS
    clients = _Clients(url, model, batch, concurrency, load.processes, load.timeout, request_rate, load.distribution, load.shared_memory)
    try:
        clients.wait_ready(limit=60 + load.timeout)
        clients.collect_until(time.monotonic() + load.warmup)
        windows, counted, few = measure_windows(clients, statistics, begin=time.monotonic(), duration=load.duration,
                                                tolerance=load.tolerance, max_windows=load.max_windows, on_window=on_window)
    finally:
        clients.close()
    return summarise(windows, batch=batch, concurrency=concurrency, processes=load.processes, crop=crop,
                     stable=not few and is_stable(windows, load.tolerance), measured=counted, few_requests=few,
                     request_rate=math.nan if request_rate is None else request_rate)


def measure_windows(
    answers: Any,
    statistics: Callable[[], list[dict[str, Any]]],
    *,
    begin: float,
    duration: float,
    tolerance: float,
    max_windows: int,
    on_window: Callable[[int, Window], None] | None = None,
) -> tuple[list[Window], int, bool]:
    """Cut the answers of one setting into windows until they are stable, ``max_windows`` are
    measured, or the setting's time (``(max_windows + 1) * duration`` after ``begin``, the end
    of its warm-up) runs out; see the module's notes.

    ``answers`` gives answers in order of their end (``take_answer(after, deadline)``,
    ``take_until(end)``: `_Clients`). Returns the windows to report, how many whole
    windows were measured, and whether too few answers fit in the time to judge stability
    (then every window, the one the time cut included, is reported).
    """
    deadline = begin + (max_windows + 1) * duration
    start = answers.take_answer(after=begin).end  # windows run from one answer to another
    before = statistics()
    windows: list[Window] = []
    out_of_time = False
    while len(windows) < max_windows and not is_stable(windows, tolerance) and not out_of_time:
        records: list[Record] = []
        while True:
            # A window's first answer is awaited whatever the time, so no window is empty.
            answer = answers.take_answer(after=start, deadline=deadline if records else None)
            if answer is None:
                out_of_time = True
                break
            records.append(answer)
            if answer.end - start >= duration and len(records) >= MIN_REQUESTS:
                break
        end = records[-1].end
        # Answers that ended together with the last one belong to this window too.
        records += answers.take_until(end)
        after = statistics()
        window = Window(end - start, tuple(records), server_delta(before, after))
        windows.append(window)
        if on_window:
            on_window(len(windows), window)
        start, before = end, after
    whole = windows[:-1] if out_of_time else windows
    if len(whole) < STABLE_WINDOWS:
        return windows, len(whole), True
    return whole[-STABLE_WINDOWS:], len(whole), False


def parse_counts(option: str, text: str) -> list[int]:
    """``"1,2,4"`` → ``[1, 2, 4]``; ``InputError`` unless positive integers."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise InputError(f"{option} {text!r}: give positive integers separated by commas, e.g. 1,2,4")
    return sorted(set(values))


def parse_rates(option: str, text: str) -> list[float]:
    """``"10,2.5"`` → ``[2.5, 10.0]``; ``InputError`` unless positive finite numbers."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0 < v < math.inf for v in values):
        raise InputError(f"{option} {text!r}: give requests per second as positive numbers separated by commas, e.g. 5,10")
    return sorted(set(values))


def bench(
    url: str,
    model: str | None = None,
    *,
    concurrency: Sequence[int] = (1, 2, 4, 8),
    batch: Sequence[int] | None = None,
    load: LoadSettings = LoadSettings(),
    request_rate: RequestRates | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Measure every (batch, concurrency) setting against ``model`` at ``url`` (None: the
    server's SKOOTS model, picked as ``segment`` picks it) — or, given ``request_rate``, every
    (batch, request rate) setting instead (perf_analyzer's request-rate mode).

    ``batch`` defaults to the model's ``max_batch_size`` (what ``segment`` sends); ``load``
    holds the windows, stability, client processes, timeout and transport (``shared_memory``
    "system": requests and answers through Triton system shared memory, for a server on this
    machine); a ``request_rate``'s distribution overrides ``load.distribution``.
    Raises ``ClientError`` for bad settings, an unreachable server or a model that does not
    speak the contract — before any load is sent.
    """
    from .model_source import TritonEndpoint

    if request_rate is not None:
        load = replace(load, distribution=request_rate.distribution)
    if (not load.duration > 0 or load.warmup < 0 or load.processes < 1 or not 0 < load.tolerance < 1
            or load.max_windows < STABLE_WINDOWS or not load.timeout > 0):
        raise InputError(
            f"--duration and --timeout must be positive, --warmup not negative, --processes at least 1, "
            f"--stability between 0 and 100 %, --max-windows at least {STABLE_WINDOWS}"
        )
    distribution = load.distribution
    if distribution not in DISTRIBUTIONS:
        raise InputError(f"--request-distribution {distribution!r}: use {' or '.join(DISTRIBUTIONS)}")
    if request_rate is not None and not (request_rate.rates and all(0 < r < math.inf for r in request_rate.rates)):
        raise InputError(f"--request-rate {', '.join(map(str, request_rate.rates))}: give requests per second as positive numbers")
    endpoint = TritonEndpoint(url, model, concurrency=1, timeout=load.timeout, retries=0, shared_memory=load.shared_memory)
    model = endpoint.model  # the one picked when none was named: every client process loads it
    assert model is not None  # connecting picked one
    try:
        info = endpoint.info
        batches = list(batch) if batch else [info.max_batch_size]
        too_big = [b for b in batches if b > info.max_batch_size]
        if too_big:
            raise InputError(f"--batch {too_big[0]} exceeds the model's max_batch_size {info.max_batch_size}; use 1..{info.max_batch_size}")
        crop = info.parameters.crop
        endpoint.inference_statistics()  # fail now, not after the warm-up, if statistics are off
        result = BenchResult(url, model, crop, info.max_batch_size, load.duration, load.tolerance)
        settings: list[tuple[int, float | None]] = (
            [(c, None) for c in concurrency] if request_rate is None else [(RATE_THREADS, r) for r in request_rate.rates]
        )
        for b in batches:
            for c, rate in settings:
                load_name = f"concurrency {c}x{load.processes}" if rate is None else f"request rate {rate:g}/s x{load.processes} ({distribution})"

                def report(index: int, window: Window, b: int = b, load_name: str = load_name) -> None:
                    if progress:
                        progress(
                            f"batch {b} {load_name}: window {index}: {window.crops_per_s:.2f} crops/s, "
                            f"avg {window.latency_avg * 1e3:.1f} ms over {len(window.records)} requests"
                        )

                result.measurements.append(
                    measure_throughput(
                        url, model, batch=b, concurrency=c, crop=crop, statistics=endpoint.inference_statistics,
                        load=load, on_window=report, request_rate=rate,
                    )
                )
    finally:
        endpoint.close()
    return result
