"""``bench`` results as a table, JSON, CSV and a plot."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

from .bench import BenchResult, Measurement
from .volume import describe_shape

__all__ = ["format_table", "to_dict", "to_json", "to_csv", "plot"]

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


def _flat(m: Measurement) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in dataclasses.asdict(m).items():
        if isinstance(value, dict):
            row.update({f"{key.removesuffix('_ms')}_{k}_ms": v for k, v in value.items()})
        else:
            row[key] = value
    row["in_flight"] = m.in_flight
    return row


def to_csv(result: BenchResult) -> str:
    """One header line and one row per setting; missing figures are empty cells."""
    rows = [_flat(m) for m in result.measurements]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["batch"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    return buffer.getvalue()


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
