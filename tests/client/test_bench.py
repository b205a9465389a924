"""The load tester's statistics, checked against oracles on numbers whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skoots_client.bench import (
    NAIVE_INPUTS,
    NAIVE_OUTPUTS,
    Record,
    Window,
    is_stable,
    latency_summary,
    measure_windows,
    message_bytes,
    parse_counts,
    parse_rates,
    per_request_ms,
    percentile,
    request_intervals,
    server_delta,
    summarise,
    synthetic_crops,
)
from skoots_client.errors import InputError


def perf_analyzer_percentile(values, q):
    """perf_analyzer's SummarizeLatency, literally: ``size_t index = (percentile / 100.0) *
    (latencies.size() - 1) + 0.5;`` into the sorted latencies (C++ truncates the double)."""
    index = int((q / 100.0) * (len(values) - 1) + 0.5)
    return sorted(values)[index]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 99, 100, 101, 250])
@pytest.mark.parametrize("q", [1, 50, 90, 95, 99, 100])
def test_percentile_is_perf_analyzers(n: int, q: float) -> None:
    values = list(np.random.default_rng(n).exponential(size=n))
    assert percentile(values, q) == perf_analyzer_percentile(values, q)
    assert percentile(values, q) in values, "an observed latency, never an interpolated one"


def test_percentile_rounds_half_up_like_perf_analyzer() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 3.0  # index 1.5 + 0.5 = 2 (the nearest rank would say 2.0)
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0


def test_percentile_of_nothing_is_nan_and_q_is_checked() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match=r"percentile 0 must lie in \(0, 100\]"):
        percentile([1.0], 0)


def test_latency_summary() -> None:
    latencies = [float(v) for v in range(1, 101)]
    assert latency_summary(latencies) == {"avg": 50.5, "p50": 51.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}


def snapshot(*versions):
    stages = ("success", "queue", "compute_input", "compute_infer", "compute_output")
    return [{"inference_stats": {s: {"count": str(c), "ns": str(ns)} for s in stages}} for c, ns in versions]


def test_server_delta_sums_versions_and_divides_per_request() -> None:
    before = snapshot((10, 1_000_000), (5, 0))
    after = snapshot((14, 9_000_000), (7, 2_000_000))
    delta = server_delta(before, after)
    assert delta["queue"] == (6, 10_000_000)
    assert per_request_ms(delta)["compute_infer"] == pytest.approx(10 / 6)


def test_server_delta_with_empty_stages_and_no_requests() -> None:
    """Triton leaves a stage's count and ns out while they are zero."""
    empty = [{"inference_stats": {"success": {}, "queue": {}}}]
    delta = server_delta(empty, empty)
    assert delta["compute_infer"] == (0, 0)
    assert math.isnan(per_request_ms(delta)["queue"])


def window(crops_per_s: float, latency: float, seconds: float = 1.0) -> Window:
    n = max(1, int(round(crops_per_s * seconds)))
    records = tuple(Record(float(i), latency, 0.0, latency, 0.0, 1) for i in range(n))
    return Window(seconds, records, {})


def test_stability_needs_three_windows_within_tolerance_on_throughput_and_latency() -> None:
    """perf_analyzer's rule: max / min of the last three windows at most 1 + tolerance."""
    assert not is_stable([window(100, 0.1), window(100, 0.1)], 0.1)
    assert is_stable([window(50, 0.5), window(100, 0.1), window(105, 0.1), window(96, 0.1)], 0.1)
    assert not is_stable([window(90, 0.1), window(100, 0.1), window(110, 0.1)], 0.1), "each within 10 % of the mean, but 110/90 > 1.1"
    assert not is_stable([window(100, 0.1), window(100, 0.1), window(130, 0.1)], 0.1)
    assert not is_stable([window(100, 0.1), window(100, 0.1), window(100, 0.13)], 0.1)
    assert is_stable([window(100, 0.1), window(100, 0.1), window(100, 0.13)], 0.35)


def test_summarise_merges_windows() -> None:
    records_a = tuple(Record(float(i), 0.010 * (i + 1), 0.001, 0.008, 0.0005, 4) for i in range(10))
    records_b = tuple(Record(10.0 + i, 0.020, 0.002, 0.016, 0.0005, 4) for i in range(10))
    server = {"success": (10, 100_000_000), "queue": (10, 10_000_000), "compute_input": (10, 0),
              "compute_infer": (10, 80_000_000), "compute_output": (10, 0)}
    windows = [Window(2.0, records_a, server), Window(2.0, records_b, server)]
    m = summarise(windows, batch=4, concurrency=2, processes=3, crop=(10, 10, 10), stable=True, measured=5)
    latencies = [r.latency for r in records_a + records_b]
    assert m.requests == 20 and m.seconds == 4.0 and m.in_flight == 6 and m.windows == 5
    assert m.crops_per_s == 80 / 4.0
    assert m.mvoxels_per_s == pytest.approx(80 * 1000 / 4.0 / 1e6)
    assert m.latency_ms["avg"] == pytest.approx(np.mean(latencies) * 1e3)
    assert m.latency_ms["p99"] == pytest.approx(max(latencies) * 1e3)
    assert m.client_ms["serialise"] == pytest.approx(1.5)
    assert m.server_ms == pytest.approx({"request": 10.0, "queue": 1.0, "compute_input": 0.0, "compute_infer": 8.0, "compute_output": 0.0})


def test_our_wire_contract_costs_nine_bytes_per_crop_voxel_and_the_naive_one_twenty_four() -> None:
    crop = (300, 300, 20)
    voxels = 4 * int(np.prod(crop))
    ours = sum(message_bytes(4, crop))
    naive = sum(message_bytes(4, crop, NAIVE_INPUTS, NAIVE_OUTPUTS))
    assert 9 * voxels < ours < 9 * voxels + 1000
    assert 24 * voxels < naive < 24 * voxels + 1000


def test_synthetic_crops_are_normalised_fp16() -> None:
    crops = synthetic_crops(2, (6, 5, 4))
    assert crops.shape == (2, 1, 6, 5, 4) and crops.dtype == np.float16
    assert 0 <= crops.min() and crops.max() <= 1


def test_parse_counts() -> None:
    assert parse_counts("--concurrency", "4,1,2,2") == [1, 2, 4]
    for bad in ("", "0", "1,x", "-1", "1.5"):
        with pytest.raises(InputError, match="positive integers separated by commas"):
            parse_counts("--concurrency", bad)


def test_parse_rates() -> None:
    assert parse_rates("--request-rate", "10,2.5,10") == [2.5, 10.0]
    for bad in ("", "0", "1,x", "-1", "inf", "nan"):
        with pytest.raises(InputError, match="positive numbers separated by commas"):
            parse_rates("--request-rate", bad)


def test_request_intervals_are_constant_or_exponential_of_mean_one_over_the_rate() -> None:
    assert request_intervals(8.0, "constant", 4, np.random.default_rng(0)).tolist() == [0.125] * 4
    gaps = request_intervals(8.0, "poisson", 20000, np.random.default_rng(0))
    assert gaps.mean() == pytest.approx(0.125, rel=0.03)
    assert gaps.std() == pytest.approx(0.125, rel=0.03), "an exponential's deviation equals its mean"
    with pytest.raises(ValueError, match="distribution 'gauss'"):
        request_intervals(8.0, "gauss", 4, np.random.default_rng(0))


class Answers:
    """Synthetic answers in order of their end, as the bench clients hand them to
    :func:`measure_windows` (``take_answer`` / ``take_until``): timings, no server."""

    def __init__(self, ends: list[float], crops: int = 1) -> None:
        self.records = [Record(end, 1.0, 0.0, 1.0, 0.0, crops) for end in ends]

    def take_answer(self, after: float, deadline: float | None = None) -> Record | None:
        answer = next((r for r in self.records if r.end > after), None)
        if answer is None or (deadline is not None and answer.end > deadline):
            return None
        self.records.remove(answer)
        return answer

    def take_until(self, end: float) -> list[Record]:
        taken = [r for r in self.records if r.end <= end]
        self.records = [r for r in self.records if r.end > end]
        return taken


def test_a_setting_whose_requests_are_too_slow_ends_at_its_time_bound_with_too_few_requests() -> None:
    """Issue 17: 14 s requests and 5 s windows of at least 3 answers each: 3+ windows took 2 to 7
    minutes per setting. Now it ends (10 + 1) x 5 s after its warm-up, reports every answer it
    measured and says it had too few to judge stability."""
    answers = Answers([14.0 * k for k in range(1, 40)])
    windows, counted, few = measure_windows(answers, list, begin=0.0, duration=5.0, tolerance=0.1, max_windows=10)
    assert few and counted == 0
    assert [r.end for w in windows for r in w.records] == [28.0, 42.0], "the answers within 55 s after the first (at 14 s)"
    m = summarise(windows, batch=1, concurrency=1, processes=1, crop=(4, 4, 4), stable=False, measured=counted, few_requests=few)
    assert m.few_requests and not m.stable and m.requests == 2 and m.crops_per_s == pytest.approx(2 / 28.0)


def test_fast_settings_are_judged_as_before_within_the_bound() -> None:
    steady = Answers([0.1 * k for k in range(1, 400)])
    windows, counted, few = measure_windows(steady, list, begin=0.0, duration=1.0, tolerance=0.1, max_windows=10)
    assert not few and counted == 3 and len(windows) == 3 and is_stable(windows, 0.1)
    assert all(len(w.records) == 10 for w in windows)
    # Rates that never settle: max_windows windows, the last three reported, unstable.
    ends, t = [], 0.0
    for k in range(400):
        t += 0.1 if (k // 10) % 2 else 0.05
        ends.append(t)
    windows, counted, few = measure_windows(Answers(ends), list, begin=0.0, duration=0.5, tolerance=0.05, max_windows=6)
    assert not few and counted == 6 and len(windows) == 3 and not is_stable(windows, 0.05)
