"""Fast tests of `python -m bench`: the multiply-add counter, the report, the CLI.

No timings are asserted (these machines are shared and noisy); the benchmark
itself is run by hand (`python -m bench`, `--quick`), not here.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench import _report
from bench.__main__ import main
from bench._config import FULL, QUICK, BenchConfig
from bench._flops import (
    PUBLISHED_XCEPTION_299_MACS,
    count_macs,
    fraction_of_peak,
    gemm_peak,
    gemm_worker,
    int8_gemm_worker,
    xception_macs,
)
from bench._report import headline, render_markdown, result_stem, write_result

# --- multiply-add counter ----------------------------------------------------


def test_count_macs_of_a_tiny_model_matches_the_hand_count() -> None:
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)  # valid: 6x6x4
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.SeparableConv2D(5, 3, padding="same", name="sep")(x)  # 6x6x5
    x = keras.layers.MaxPooling2D(2, name="pool")(x)  # 3x3x5
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)  # 3x3x10
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)  # 10
    outputs = keras.layers.Dense(2, name="dense")(x)
    count = count_macs(keras.Model(inputs, outputs))

    conv = 6 * 6 * (3 * 3 * 3) * 4  # H_out W_out k k C_in C_out
    sep = 6 * 6 * (3 * 3 * 4) + 6 * 6 * 4 * 5  # depthwise + pointwise
    dw = 3 * 3 * (3 * 3 * 5 * 2)  # H_out W_out k k C_in depth_multiplier
    dense = 10 * 2
    assert count.by_kind == {
        "Conv2D": conv,
        "SeparableConv2D": sep,
        "DepthwiseConv2D": dw,
        "Dense": dense,
    }
    assert count.macs == conv + sep + dw + dense == 6734
    # BN: one op per output element; max pool: k*k per pooled element; GAP: its input.
    assert count.other_ops == 6 * 6 * 4 + 3 * 3 * 5 * 4 + 3 * 3 * 10
    assert count.uncounted == ()


def test_count_macs_walks_nested_models() -> None:
    import keras

    inner_in = keras.Input((4, 4, 2))
    inner = keras.Model(inner_in, keras.layers.Conv2D(3, 1)(inner_in), name="inner")
    outer_in = keras.Input((4, 4, 2))
    outer = keras.Model(outer_in, inner(outer_in))
    assert count_macs(outer).macs == 4 * 4 * 2 * 3


def test_xception_at_299_matches_the_published_multiply_adds() -> None:
    macs = xception_macs(image_size=299).macs
    assert macs == pytest.approx(PUBLISHED_XCEPTION_299_MACS, rel=0.05)


def test_fraction_of_peak_is_achieved_flops_over_peak() -> None:
    # 1e9 multiply-adds in 20 ms = 100 GFLOP/s, half of a 200 GFLOP/s peak.
    assert fraction_of_peak(macs=10**9, latency_ms=20.0, peak_gflops=200.0) == pytest.approx(0.5)


def test_gemm_worker_answers_runs_and_peak_uses_the_median() -> None:
    worker = gemm_worker(threads=1, size=64)
    try:
        assert worker.wait_ready() == {"ready": True}
        seconds = worker.request("run 3")["seconds"]
    finally:
        worker.close()
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    peak = gemm_peak([1.0, 2.0, 4.0], threads=1, size=100)
    assert peak.gflops == pytest.approx(2 * 100**3 / 2.0 / 1e9)
    assert peak.best_gflops == pytest.approx(2 * 100**3 / 1.0 / 1e9)


def test_int8_gemm_worker_times_onnxruntime_matmulinteger() -> None:
    # onnxruntime: the `onnx` extra, installed by .ci/run (a failure here, not a skip)
    worker = int8_gemm_worker(threads=1, size=64)
    try:
        ready = worker.wait_ready()
        seconds = worker.request("run 3")["seconds"]
    finally:
        worker.close()
    assert ready["ready"] is True and ready["onnxruntime"]
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    peak = gemm_peak(seconds, threads=1, size=64, dtype="int8")
    assert peak.dtype == "int8" and peak.gflops <= peak.best_gflops


@pytest.mark.parametrize(
    ("variant", "ms", "expected"),
    [
        # 2e9 MACs = 4e9 ops; at 800 GOP/s the int8 floor is 5 ms
        ("int8", 10.0, "int8 10.0 ms: **50%**"),
        ("dynamic", 20.0, "dynamic 20.0 ms: **25%**"),
    ],
)
def test_report_gives_integer_variants_their_share_of_the_int8_peak(
    variant: str, ms: float, expected: str
) -> None:
    result = _fake_result()
    result["latency"]["rows"] = [r for r in result["latency"]["rows"] if r["variant"] != "int8"] + [
        _latency_row(variant, 1, ms)
    ]
    result["compute"]["int8_gemm"] = {
        "1": {"threads": 1, "gflops": 800.0, "best_gflops": 900.0, "runs": 20, "size": 2048}
    }
    md = render_markdown(result)
    assert "measured int8 GEMM peak **800 GOP/s**" in md
    assert "integer floor 5.0 ms per image" in md and expected in md
    # the latency table: 4e9 / (ms / 1000) / 1e9 GOP/s over 800
    share = 100 * (4e9 / (ms / 1000) / 1e9) / 800
    assert f"| {share:.0f}% of int8 |" in md
    assert "| 62% of float32 |" in md  # float32 at 40 ms against 160 GFLOP/s


def test_report_says_when_the_int8_peak_was_not_measured() -> None:
    md = render_markdown(_fake_result())  # no int8_gemm: onnxruntime missing
    assert "int8 GEMM peak: not measured (needs onnxruntime" in md


# --- report ------------------------------------------------------------------


def _latency_row(
    variant: str, threads: int, ms: float, *, method: str = "invoke"
) -> dict[str, Any]:
    engine = "keras" if variant == "keras" else "tflite"
    runtime = "tensorflow 2.21.0" if engine == "keras" else "ai-edge-litert 2.3.0"
    return {
        "engine": engine,
        "method": method,
        "variant": variant,
        "runtime": runtime,
        "threads": threads,
        "median_ms": ms,
        "p95_ms": ms * 1.2,
        "runs": 50,
        "throughput_per_s": 1000 / ms,
    }


def _fake_result() -> dict[str, Any]:
    training = {
        "image_size": 150,
        "batch_size": 32,
        "n_images": {"train": 3068, "validation": 341, "test": 372},
        "measured_images": {"train": 3068, "validation": 341, "test": 372},
        "extrapolated": False,
        "seed_epoch_s": 150.0,
        "seed_train_s": 135.0,
        "seed_validation_s": 15.0,
        "seed_trace_s": 8.0,
        "head_epoch_s": 0.5,
        "head_epochs_s": [0.5, 0.4, 0.6],
        "head_trace_s": 1.0,
        "extraction_s": 160.0,
        "extraction_trace_s": 2.0,
        "cache_read_s": 6.0,
        "load_average": {"extraction": [1.0, 1.0, 1.0]},
        "speedup": 300.0,
        "break_even_epochs": 160.0 / 149.5,
    }
    variant = {
        "runtime": "ai-edge-litert 2.3.0",
        "size_bytes": 22_400_000,
        "accuracy_pct": 84.0,
        "accuracy_delta_pts": -0.5,
        "agreement_pct": 98.9,
        "max_abs_logit_diff": 0.9,
        "loads_with": ["ai-edge-litert", "tensorflow"],
        "passed": True,
        "failures": [],
    }
    return {
        "schema": 1,
        "created_at": "2026-01-02T03:04:05+00:00",
        "date": "2026-01-02",
        "mode": "full",
        "command": "python -m bench",
        "wall_s": 600.0,
        "phases_s": {"training": 300.0, "latency": 60.0},
        "errors": {},
        "config": {"image_size": 150, "threads": [1, 2]},
        "machine": {
            "cpu_model": "Test CPU 9000",
            "logical_cores": 2,
            "usable_cores": 2,
            "physical_cores": 2,
            "memory_gib": 24.0,
            "simd": ["avx2"],
            "platform": "Linux",
            "python": "3.11.7",
            "packages": {"tensorflow-cpu": "2.21.0"},
            "load_average_start": [3.5, 3.0, 2.0],
            "load_average_end": [3.9, 3.1, 2.1],
        },
        "model": {
            "directory": "/work/bench/models/150px-full-abc",
            "image_size": 150,
            "subset": None,
            "reused": True,
        },
        "accuracy": {
            "images_dir": "data/test",
            "n_images": 372,
            "keras_accuracy_pct": 84.5,
            "variants": [
                {**variant, "variant": "float32", "size_bytes": 84_000_000, "accuracy_pct": 84.5},
                {**variant, "variant": "int8"},
            ],
        },
        "training": {"150": training},
        "latency": {
            "image": "x.jpg",
            "image_size": 150,
            "rounds": 10,
            "runs_per_round": 5,
            "warmup": 5,
            "rows": [
                _latency_row("keras", 1, 100.0, method="model(x)"),
                _latency_row("keras", 1, 80.0, method="predict"),
                _latency_row("float32", 1, 40.0),
                _latency_row("int8", 1, 10.0),
            ],
            "not_measured": ["tflite-runtime: cannot be imported"],
        },
        "compute": {
            "image_size": 150,
            "macs": 2 * 10**9,
            "macs_by_kind": {"Conv2D": 10**8, "SeparableConv2D": 19 * 10**8},
            "other_ops": 12 * 10**6,
            "other_fraction": 0.006,
            "xception_299_macs": 8.36e9,
            "published_299_macs": 8.4e9,
            "published_source": "Tan & Le 2019",
            "gemm": {
                "1": {"threads": 1, "gflops": 160.0, "best_gflops": 165.0, "runs": 20, "size": 2048}
            },
        },
        "cold_start": {
            "serve": {
                "python": "serve/bin/python",
                "total_s": 0.4,
                "runs_s": [0.4, 0.5, 0.4],
                "split_s": {"import_s": 0.2, "load_s": 0.1, "predict_s": 0.05, "startup_s": 0.05},
            },
            "keras": {
                "python": "venv/bin/python",
                "total_s": 8.0,
                "runs_s": [8.0, 8.2, 7.9],
                "split_s": {"import_s": 4.0, "load_s": 2.0, "predict_s": 1.5, "startup_s": 0.5},
            },
            "bundle_variant": "int8",
            "warmup": True,
        },
        "install": {
            "serve_mib": 155.0,
            "serve_biggest_mib": {"ai_edge_litert": 59.0},
            "training_mib": 1686.0,
            "training_biggest_mib": {"tensorflow": 1246.0, "x" * 40: 35.0},
            "tensorflow_mib": 1247.0,
            "dev_tools": ["pytest", "mypy"],
            "dev_tools_mib": 66.0,
            "training_without_dev_mib": 1620.0,
        },
        "lambda": {"skipped": "bench/serve.py has no measure_cold"},
    }


def test_report_renders_the_side_by_side_table_and_every_section() -> None:
    md = render_markdown(_fake_result())
    assert md.startswith("# Benchmark 2026-01-02 (full run)")
    assert "| figure | baseline | this toolchain | ratio |" in md
    # training: 150 / 0.5 = 300x; latency vs the faster Keras call (predict, 80 ms)
    assert "**300x** faster" in md
    assert "Keras predict: 80.0 | TFLite float32 (ai-edge-litert): 40.0 | **2.0x** faster" in md
    assert "TFLite int8 (ai-edge-litert): 10.0 | **8.0x** faster" in md
    assert "**20.0x** faster" in md  # cold start 8.0 / 0.4
    assert "**10.9x** smaller" in md  # 1686 / 155
    assert "Test CPU 9000" in md and "3.5 before the run" in md
    assert "other jobs shared the machine" in md  # load 3.5 on 2 cores
    # compute floor: 2e9 MACs at 160 GFLOP/s = 25 ms; float32 at 40 ms reaches 62%
    assert "compute floor 25.0 ms per image" in md and "**62%** of peak" in md
    assert "8.36 G multiply-adds; published 8.4 G" in md
    assert "- tflite-runtime: cannot be imported" in md
    assert "Skipped: bench/serve.py has no measure_cold" in md
    assert "x" * 40 not in md  # long site-packages names are shortened
    assert "## Change since" not in md


def test_report_marks_failed_and_missing_measurements() -> None:
    result = _fake_result()
    del result["cold_start"], result["install"]
    result["errors"] = {"cold_start": "RuntimeError: Cold-start run failed\nwith details"}
    md = render_markdown(result)
    assert (
        "Measurement `cold_start` failed: `RuntimeError: Cold-start run failed with details`" in md
    )
    assert "## Install size\n\nNot measured in this run." in md
    assert "cold start: new process" not in md  # no side-by-side row without both figures


def test_report_quick_mode_and_extrapolation_are_labelled() -> None:
    result = _fake_result()
    result["mode"] = "quick"
    result["training"]["150"]["extrapolated"] = True
    result["training"]["150"]["measured_images"] = {"train": 50, "validation": 50, "test": 50}
    md = render_markdown(result)
    assert "(quick run)" in md and "**Quick run**" in md
    assert "(extrapolated)" in md
    assert "extrapolated from 50 train / 50 validation / 50 test images" in md


def test_report_compares_headline_ratios_with_the_previous_run() -> None:
    before, now = _fake_result(), _fake_result()
    before["_stem"] = "2026-01-01"
    now["cold_start"]["serve"]["total_s"] = 0.8  # cold-start speed-up 20x -> 10x
    md = render_markdown(now, previous=before)
    assert "## Change since 2026-01-01" in md
    assert "| cold start speed-up | 20.00 | 10.00 | -50% |" in md
    figures = headline(now)
    assert figures["latency speed-up, TFLite float32 vs Keras, 1T"] == pytest.approx(2.0)
    assert figures["install size ratio"] == pytest.approx(1686 / 155)


def test_write_result_keeps_older_results(tmp_path: Path) -> None:
    first = _fake_result()
    json1, md1 = write_result(copy.deepcopy(first), out_dir=tmp_path)
    second = _fake_result()
    second["created_at"] = "2026-01-02T05:00:00+00:00"
    json2, md2 = write_result(second, out_dir=tmp_path)
    assert (json1.name, md1.name) == ("2026-01-02.json", "2026-01-02.md")
    assert (json2.name, md2.name) == ("2026-01-02-2.json", "2026-01-02-2.md")
    assert json.loads(json1.read_text())["created_at"] == first["created_at"]
    assert "## Change since 2026-01-02" in md2.read_text()
    assert result_stem(tmp_path, date="2026-01-02", quick=True) == "2026-01-02-quick"


def test_previous_result_ignores_the_other_mode(tmp_path: Path) -> None:
    quick = _fake_result()
    quick["mode"] = "quick"
    write_result(quick, out_dir=tmp_path)
    later = _fake_result()
    later["created_at"] = "2026-01-03T00:00:00+00:00"
    assert _report.previous_result(tmp_path, quick=False, before=later["created_at"]) is None
    found = _report.previous_result(tmp_path, quick=True, before=later["created_at"])
    assert found is not None and found["_stem"] == "2026-01-02-quick"


# --- config and CLI ----------------------------------------------------------


def test_bench_config_validates_and_picks_the_effort(tmp_path: Path) -> None:
    config = BenchConfig(quick=True, work_dir=tmp_path, with_299=True)
    assert config.effort is QUICK and config.mode == "quick"
    assert config.training_sizes == (150, 299)
    assert BenchConfig(work_dir=tmp_path).effort is FULL
    with pytest.raises(ValueError, match="`image_size` must be an int >= 71"):
        BenchConfig(work_dir=tmp_path, image_size=32)
    with pytest.raises(ValueError, match="`threads` must be a non-empty tuple"):
        BenchConfig(work_dir=tmp_path, threads=())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--image-size", "50"], "`image_size` must be an int >= 71"),
        (["--image-size", "big"], "invalid int value"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_cli_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--work-dir", str(tmp_path)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_a_missing_data_dir_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--quick",
            "--data-dir",
            str(tmp_path / "nowhere"),
            "--work-dir",
            str(tmp_path / "work"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "`data_dir` must be a dataset folder" in err and "CLOTHING_DATA_DIR" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_cli_refuses_a_missing_weights_file(
    tmp_path: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--data-dir",
            str(tiny_dataset),
            "--base-weights",
            str(tmp_path / "missing.weights.h5"),
            "--work-dir",
            str(tmp_path / "work"),
        ]
    )
    assert code == 2
    assert "`base_weights` must be 'imagenet' or an existing weights file" in (
        capsys.readouterr().err
    )


def test_report_renders_without_machine_fields() -> None:
    result = _fake_result()
    result["machine"] = {}
    assert "Machine: ?" in render_markdown(result)


@pytest.mark.parametrize(
    ("module", "argv", "words"),
    [
        ("bench.fuzz", ["--out", "FILE"], "must be a folder (created if missing)"),
        ("bench.fuzz", ["--model", "EMPTY", "--n", "1"], "has no manifest.json"),
        ("bench.page", ["screenshots", "--model", "EMPTY", "--out", "FILE"], "must be a folder"),
        ("bench.page", ["accuracy", "--model", "EMPTY", "--out", "OUT"], "has no manifest.json"),
        ("bench.serve", ["--model", "EMPTY"], "has no manifest.json"),
        ("bench.serve", ["--model", "EMPTY", "--repeat", "0"], "`--repeat` must be >= 1"),
        ("bench.inputs", ["--json", "EMPTY"], "--json must be a file in an existing folder"),
        ("bench.int8_relus", ["RUN", "--out", "FILE"], "must be a folder (created if missing)"),
        ("bench.dynamic_ops", ["RUN", "--out", "FILE"], "must be a folder (created if missing)"),
    ],
)
def test_bench_commands_refuse_bad_paths_before_working(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], module: str, argv: list[str], words: str
) -> None:
    import importlib

    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("mine")
    places = {"FILE": "file", "EMPTY": "empty", "OUT": "out", "RUN": "empty"}
    argv = [str(tmp_path / places[a]) if a in places else a for a in argv]
    try:
        code = importlib.import_module(module).main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert (tmp_path / "file").read_text() == "mine" and not (tmp_path / "out").exists()
