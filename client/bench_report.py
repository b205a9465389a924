"""``bench`` results as a table, JSON, perf_analyzer's CSV and a plot."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

from .atomic import staged
from .bench import BenchResult, Measurement
from .errors import InputError, OutputError
from .volume import describe_shape

__all__ = ["format_table", "to_dict", "to_json", "PERF_ANALYZER_COLUMNS", "to_csv", "write_csv", "plot"]

# (header, width, format, value)
_COLUMNS: list[tuple[str, int, str, Any]] = [
    ("batch", 5, "d", lambda m: m.batch),
    ("conc", 4, "d", lambda m: m.concurrency),
    ("proc", 4, "d", lambda m: m.processes),
    ("crops/s", 9, ".2f", lambda m: m.crops_per_s),
    ("Mvox/s", 8, ".2f", lambda m: m.mvoxels_per_s),
    ("avg ms", 9, ".1f", lambda m: m.latency_ms["avg"]),
    ("p50", 9, ".1f", lambda m: m.latency_ms["p50"]),
    ("p90", 9, ".1f", lambda m: m.latency_ms["p90"]),
    ("p95", 9, ".1f", lambda m: m.latency_ms["p95"]),
    ("p99", 9, ".1f", lambda m: m.latency_ms["p99"]),
    ("ser", 6, ".2f", lambda m: m.client_ms["serialise"]),
    ("snd+rcv", 9, ".1f", lambda m: m.client_ms["send_receive"]),
    ("deser", 6, ".3f", lambda m: m.client_ms["deserialise"]),
    ("queue", 8, ".1f", lambda m: m.server_ms["queue"]),
    ("in", 6, ".2f", lambda m: m.server_ms["compute_input"]),
    ("infer", 9, ".1f", lambda m: m.server_ms["compute_infer"]),
    ("out", 6, ".2f", lambda m: m.server_ms["compute_output"]),
    ("B/vox", 6, ".3f", lambda m: m.wire_bytes_per_voxel),
    ("req/s", 6, ".1f", lambda m: m.request_rate),
    ("win", 3, "d", lambda m: m.windows),
    ("stable", 8, "s", lambda m: "yes" if m.stable else "few reqs" if m.few_requests else "unstable"),
]


def _cell(value: Any, width: int, spec: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return f"{'-':>{width}}"
    return f"{value:>{width}{spec}}"


def format_table(result: BenchResult) -> str:
    """A fixed-width table, one row per setting, with a header naming the units."""
    lines = [
        f"{result.url} model {result.model}: crop {describe_shape(result.crop)}, max_batch_size {result.max_batch_size}, "
        f"windows of {result.duration:g}s, stable within {result.tolerance:.0%}",
        "latency, client (ser, snd+rcv, deser) and server (queue, in, infer, out) in ms per request; "
        "B/vox: gRPC bytes per crop voxel, both ways",
        " ".join(f"{name:>{width}}" for name, width, _, _ in _COLUMNS),
    ]
    for m in result.measurements:
        lines.append(" ".join(_cell(get(m), width, spec) for _, width, spec, get in _COLUMNS))
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """JSON has no NaN: missing figures become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_dict(result: BenchResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "url": result.url,
        "model": result.model,
        "crop": list(result.crop),
        "max_batch_size": result.max_batch_size,
        "window_seconds": result.duration,
        "stability_tolerance": result.tolerance,
        "settings": [],
    }
    for m in result.measurements:
        row = {k: _plain(v) for k, v in dataclasses.asdict(m).items()}
        row["in_flight"] = m.in_flight
        out["settings"].append(row)
    return out


def to_json(result: BenchResult) -> str:
    return json.dumps(to_dict(result), indent=2)


# perf_analyzer 2.41's `-f FILE` header after its first column ("Concurrency" or "Request Rate"),
# copied from its output: times in µs (whole), throughput in inferences (crops) per second.
PERF_ANALYZER_COLUMNS = (
    "Inferences/Second", "Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input",
    "Server Compute Infer", "Server Compute Output", "Client Recv", "p50 latency", "p90 latency", "p95 latency",
    "p99 latency",
)


def _us(ms: float) -> int:
    """Whole microseconds, as perf_analyzer writes them (0 where a stage counted no request)."""
    return 0 if math.isnan(ms) else int(ms * 1000)


def _perf_analyzer_row(m: Measurement, rate_mode: bool) -> list[Any]:
    server = [m.server_ms[s] for s in ("queue", "compute_input", "compute_infer", "compute_output")]
    # perf_analyzer's network time: the client's wait less the server's accounted time, at least 0.
    wait = m.latency_ms["avg"] - m.client_ms["serialise"] - m.client_ms["deserialise"]
    network = max(0.0, wait - sum(0.0 if math.isnan(v) else v for v in server))
    first = f"{m.request_rate * m.processes:g}" if rate_mode else m.in_flight
    return [
        first, f"{m.crops_per_s:.6g}", _us(m.client_ms["serialise"]), _us(network), *map(_us, server),
        _us(m.client_ms["deserialise"]), *(_us(m.latency_ms[f"p{q}"]) for q in (50, 90, 95, 99)),
    ]


def to_csv(result: BenchResult) -> str:
    """perf_analyzer's CSV (its ``-f FILE``): its header, one row per setting, sorted by
    throughput as perf_analyzer sorts them. Its CSV has no batch column: one batch size only."""
    if len({m.batch for m in result.measurements}) > 1:
        raise InputError("--csv writes perf_analyzer's columns, which have no batch column: give one --batch")
    rate_mode = any(not math.isnan(m.request_rate) for m in result.measurements)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["Request Rate" if rate_mode else "Concurrency", *PERF_ANALYZER_COLUMNS])
    for m in sorted(result.measurements, key=lambda m: m.crops_per_s):
        writer.writerow(_perf_analyzer_row(m, rate_mode))
    return buffer.getvalue()


def write_csv(result: BenchResult, path: Path) -> Path:
    """`to_csv` into ``path``, whole or not at all."""
    text = to_csv(result)
    try:
        with staged(path) as target:
            target.write_text(text)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    return path


def plot(result: BenchResult, path: Path) -> Path:
    """Throughput and p99 latency against requests in flight, one line per batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    for batch in sorted({m.batch for m in result.measurements}):
        rows = sorted((m for m in result.measurements if m.batch == batch), key=lambda m: m.in_flight)
        x = [m.in_flight for m in rows]
        top.plot(x, [m.crops_per_s for m in rows], marker="o", label=f"batch {batch}")
        bottom.plot(x, [m.latency_ms["p99"] for m in rows], marker="o", label=f"batch {batch}")
        for m in rows:
            if not m.stable:
                top.annotate("few requests" if m.few_requests else "unstable", (m.in_flight, m.crops_per_s), fontsize=7, textcoords="offset points", xytext=(4, 4))
    top.set_ylabel("throughput (crops/s)")
    bottom.set_ylabel("p99 latency (ms)")
    bottom.set_xlabel("requests in flight (concurrency x processes)")
    ticks = sorted({m.in_flight for m in result.measurements})
    for axis in (top, bottom):
        axis.set_xscale("log", base=2)
        axis.set_xticks(ticks, [str(t) for t in ticks])
        axis.minorticks_off()
        axis.grid(True, alpha=0.3)
        axis.set_ylim(bottom=0)
        axis.legend()
    top.set_title(f"{result.model} at {result.url}, crop {describe_shape(result.crop)}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
