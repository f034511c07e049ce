"""bench.capacity: the arithmetic against values computed by hand from its formulas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import capacity
from bench.capacity import Measured

REPO = Path(__file__).resolve().parent.parent
# inference 10 ms at 1 thread, 5 ms at 2 (a 2x speed-up), 2 ms of other work.
M = Measured(inference_ms_1t=10.0, inference_ms_2t=5.0, other_ms=2.0, cold_start_s=0.5, source="t")
M_NO_2T = Measured(10.0, None, 2.0, 0.5, source="t")


@pytest.mark.parametrize(
    ("memory_mb", "expected"),
    [(1769, 1.0), (3538, 2.0), (884.5, 0.5), (1024, 1024 / 1769)],
)
def test_vcpus(memory_mb: float, expected: float) -> None:
    assert capacity.vcpus(memory_mb) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("measured", "memory_mb", "io_ms", "slowdown", "expected"),
    [
        (M, 1769, 0, 1, 12.0),  # 1 vCPU: 10 + 2
        (M, 884.5, 0, 1, 24.0),  # half a vCPU: (10 + 2) / 0.5
        (M, 3538, 0, 1, 7.0),  # 2 vCPUs: 10 / 2 + 2
        (M, 2653.5, 0, 1, 10 / 1.5 + 2),  # 1.5 vCPUs: gain 1 + (2 - 1) * 0.5
        (M, 7076, 0, 1, 7.0),  # 4 vCPUs: 2 threads at most
        (M_NO_2T, 3538, 0, 1, 12.0),  # no 2-thread figure: no gain
        (M, 1769, 5, 2, 29.0),  # 12 x 2 + 5
    ],
)
def test_image_ms(
    measured: Measured, memory_mb: float, io_ms: float, slowdown: float, expected: float
) -> None:
    got = capacity.image_ms(measured, memory_mb, io_ms=io_ms, slowdown=slowdown)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("ms", "memory_mb", "batch", "expected"),
    [
        (10.0, 1024, 1, 1e6 * (0.010 * 1 * 1e-5 + 2e-7)),  # 0.30
        (10.2, 1024, 1, 1e6 * (0.011 * 1 * 1e-5 + 2e-7)),  # billed 11 ms: 0.31
        (10.2, 1024, 50, 2e4 * (0.510 * 1 * 1e-5 + 2e-7)),  # 510 ms per call: 0.106
        (10.0, 2048, 1, 1e6 * (0.010 * 2 * 1e-5 + 2e-7)),  # 0.40
        (26.1, 1024, 1, 1e6 * (0.027 * 1 * 1e-5 + 2e-7)),  # 0.47
    ],
)
def test_cost_per_million(ms: float, memory_mb: int, batch: int, expected: float) -> None:
    got = capacity.cost_per_million(
        ms, memory_mb, batch_size=batch, price_gb_s=1e-5, price_per_request=2e-7
    )
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("rate", "ms", "expected"),
    [(100, 26.1, 3), (1000, 14.6, 15), (100, 10.0, 1), (1000, 0.5, 1), (1000, 100.0, 100)],
)
def test_littles_law(rate: float, ms: float, expected: int) -> None:
    assert capacity.concurrency_for(rate, ms) == expected


@pytest.mark.parametrize(
    ("limit", "expected"), [(500, 0.0), (1000, 0.0), (1001, 10.0), (3000, 20.0)]
)
def test_scaling_ramp(limit: int, expected: float) -> None:
    assert capacity.scaling_ramp_s(limit) == expected


@pytest.mark.parametrize(
    ("photos", "ms", "limit", "cold", "expected"),
    [
        (1_000_000, 10.0, 1000, 0.5, 10.5),  # 1e6 x 10 ms / 1000 = 10 s
        (1_000_000, 10.0, 2000, 0.0, 15.0),  # 5 s + one 10 s scaling step
        (1000, 20.0, 1, 1.0, 21.0),
    ],
)
def test_backfill(photos: int, ms: float, limit: int, cold: float, expected: float) -> None:
    got = capacity.backfill_s(photos, ms, concurrency_limit=limit, cold_start_s=cold)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("photos", "batch", "expected"),
    [(1_000_000, 50, 20_000 * 2 * 0.025 / 1000), (101, 50, 3 * 2 * 0.025 / 1000)],
)
def test_step_functions_cost(photos: int, batch: int, expected: float) -> None:
    assert capacity.step_functions_cost(photos, batch) == pytest.approx(expected)


def test_published_prices_are_the_ones_documented() -> None:
    assert capacity.PRICE_GB_S == {"x86_64": 0.0000166667, "arm64": 0.0000133334}
    assert round(capacity.PRICE_PER_REQUEST * 1e6, 10) == 0.20


# ---------------------------------------------------------------------------
# The command


def test_figures_come_from_the_report() -> None:
    path = REPO / "bench" / "results" / "2026-11-28.json"
    report = json.loads(path.read_text())
    got = capacity.measured_from_report(report, source="r")
    variant = report["cold_start"]["bundle_variant"]
    rows = [
        r
        for r in report["latency"]["rows"]
        if r["variant"] == variant and r["runtime"].startswith("ai-edge-litert")
    ]
    by_threads = {r["threads"]: r["median_ms"] for r in rows}
    warm = report["lambda"]["figures"]["warm_ms"]["base64"]
    assert got.inference_ms_1t == by_threads[1]
    assert got.inference_ms_2t == by_threads[2]
    assert got.other_ms == pytest.approx(warm["handler"] - warm["inference"])
    assert got.cold_start_s == report["lambda"]["figures"]["cold"]["cold_s"]


def test_flags_alone(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = capacity.main(
        ["--ms-per-image", "17.69", "--cold-start-s", "1", "--memory-mb", "1769",
         "--output", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    record = json.loads((tmp_path / "capacity.json").read_text())
    x86 = record["rows"][0]
    assert x86["ms_per_image"] == pytest.approx(17.69)  # 1 vCPU: as measured
    # 1 per call: 18 ms billed x 1769/1024 GB x price + the request price, per call.
    single = 1e6 * (0.018 * 1769 / 1024 * 0.0000166667 + 0.2e-6)
    assert x86["cost_per_million_single"] == pytest.approx(single)
    assert x86["concurrency"] == {"100.0": 2, "1000.0": 18}
    assert {p.name for p in tmp_path.iterdir()} == {"capacity.json", "capacity.md", "capacity.png"}
    assert "| x86_64 | 1769 | 1.00 | 17.7 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ms-per-image", "10", "--cold-start-s", "1", "--batch-size", "0"], "--batch-size"),
        (["--ms-per-image", "10", "--cold-start-s", "1", "--memory-mb", "64"], "--memory-mb"),
        (["--ms-per-image", "-1", "--cold-start-s", "1"], "inference_ms_1t"),
        (["--two-thread-ms", "5"], "--ms-per-image"),
        (["--from", "/nonexistent/report.json"], "Cannot read"),
    ],
)
def test_bad_arguments_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert capacity.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("drop", ["cold_start", "lambda", "latency"])
def test_report_without_a_figure(
    drop: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report: dict[str, Any] = json.loads((REPO / "bench/results/2026-11-28.json").read_text())
    del report[drop]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    assert capacity.main(["--from", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--ms-per-image" in err or "latency row" in err
    assert "Traceback" not in err
