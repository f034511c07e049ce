"""bench/_ops.py and `python -m bench.profile`: where a variant's time goes, per op kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench._flops import count_macs
from bench._ops import OpSpec, graph_ops, keras_op, tflite_bytes, time_models
from bench.profile import _ort_groups, main, render
from tests.conftest import build_tiny_keras_model


def test_graph_ops_count_the_same_multiply_adds_as_the_keras_counter(tiny_bundle: Path) -> None:
    ops = graph_ops(tiny_bundle / "model.tflite")
    assert "DELEGATE" not in {op.op for op in ops}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MAX_POOL_2D"} <= {op.op for op in ops}
    # the tiny bundle is converted from this seeded model (tests/conftest.py)
    assert sum(op.macs for op in ops) == count_macs(build_tiny_keras_model()).macs


@pytest.mark.parametrize(
    ("spec", "group", "macs"),
    [
        (OpSpec("CONV_2D", ((1, 9, 9, 728),), (1, 9, 9, 728), (728, 1, 1, 728)),
         "CONV_2D 1x1 (pointwise)", 81 * 728 * 728),
        (OpSpec("CONV_2D", ((1, 18, 18, 256),), (1, 9, 9, 728), (728, 1, 1, 256)),
         "CONV_2D 1x1 stride 2", 81 * 256 * 728),
        (OpSpec("CONV_2D", ((1, 150, 150, 3),), (1, 74, 74, 32), (32, 3, 3, 3)),
         "CONV_2D 3x3", 74 * 74 * 32 * 27),
        (OpSpec("DEPTHWISE_CONV_2D", ((1, 9, 9, 728),), (1, 9, 9, 728), (1, 3, 3, 728)),
         "DEPTHWISE_CONV_2D 3x3", 81 * 9 * 728),
        (OpSpec("FULLY_CONNECTED", ((1, 2048),), (1, 100), (100, 2048)),
         "FULLY_CONNECTED", 2048 * 100),
        (OpSpec("ADD", ((1, 9, 9, 728), (1, 9, 9, 728)), (1, 9, 9, 728)), "ADD", 0),
    ],
)  # fmt: skip
def test_op_groups_and_multiply_adds(spec: OpSpec, group: str, macs: int) -> None:
    assert spec.group == group
    assert spec.macs == macs


@pytest.mark.parametrize(
    "spec",
    [
        OpSpec("CONV_2D", ((1, 15, 15, 3),), (1, 7, 7, 8), (8, 3, 3, 3)),  # valid, stride 2
        OpSpec("CONV_2D", ((1, 8, 8, 16),), (1, 8, 8, 24), (24, 1, 1, 16)),  # pointwise
        OpSpec("CONV_2D", ((1, 8, 8, 16),), (1, 4, 4, 24), (24, 1, 1, 16)),  # 1x1 stride 2
        OpSpec("DEPTHWISE_CONV_2D", ((1, 8, 8, 16),), (1, 8, 8, 16), (1, 3, 3, 16)),
        OpSpec("MAX_POOL_2D", ((1, 8, 8, 16),), (1, 4, 4, 16)),
        OpSpec("ADD", ((1, 4, 4, 8), (1, 4, 4, 8)), (1, 4, 4, 8)),
        OpSpec("RELU", ((1, 4, 4, 8),), (1, 4, 4, 8)),
    ],
)
def test_one_op_model_has_the_shapes_of_the_op_it_stands_for(spec: OpSpec, tmp_path: Path) -> None:
    path = tmp_path / "op.tflite"
    path.write_bytes(tflite_bytes(keras_op(spec), variant="float32"))
    [rebuilt] = [op for op in graph_ops(path) if op.op == spec.op]
    assert rebuilt == spec


def test_keras_op_refuses_an_op_it_cannot_rebuild() -> None:
    with pytest.raises(ValueError, match="SOFTMAX"):
        keras_op(OpSpec("SOFTMAX", ((1, 10),), (1, 10)))


def test_time_models_gives_a_median_per_model() -> None:
    small = OpSpec("RELU", ((1, 4, 4, 8),), (1, 4, 4, 8))
    big = OpSpec("CONV_2D", ((1, 32, 32, 64),), (1, 32, 32, 64), (64, 3, 3, 64))
    models = {key: tflite_bytes(keras_op(key), variant="float32") for key in (small, big)}
    turns: list[int] = []
    seconds = time_models(
        models, threads=1, rounds=3, budget_s=0.01, each_round=lambda: turns.append(1)
    )
    assert len(turns) == 3  # the GEMM peaks' turn, once per round
    assert set(seconds) == {small, big}
    assert 0 < seconds[small] < seconds[big]  # 38 M multiply-adds against 128 maxima


def _event(name: str, op: str, dur_us: float, ts: int) -> dict[str, Any]:
    return {"cat": "Node", "name": name, "dur": dur_us, "ts": ts, "args": {"op_name": op}}


def test_ort_groups_take_the_median_run_per_op_type() -> None:
    runs = [{"ts": 0, "dur": 100}, {"ts": 200, "dur": 100}, {"ts": 400, "dur": 100}]
    events = [
        _event("conv_a_kernel_time", "Conv", 1000, 10),
        _event("conv_b_kernel_time", "Conv", 3000, 20),
        _event("relu_kernel_time", "Relu", 500, 30),
        _event("conv_a_fence_before", "Conv", 9999, 40),  # not a kernel event
        _event("conv_a_kernel_time", "Conv", 1000, 210),  # the second run
        _event("conv_b_kernel_time", "Conv", 9000, 220),  # a slow outlier
        _event("relu_kernel_time", "Relu", 700, 230),
        _event("conv_a_kernel_time", "Conv", 2000, 410),  # the third run
        _event("conv_b_kernel_time", "Conv", 3000, 420),
        _event("relu_kernel_time", "Relu", 600, 430),
        _event("conv_a_kernel_time", "Conv", 7777, 700),  # outside every timed run
    ]
    groups = _ort_groups(events, runs=runs)
    assert groups["Conv"] == {"ops": 2, "macs": 0, "ms": pytest.approx(5.0)}  # 4, 10, 5 ms
    assert groups["Relu"] == {"ops": 1, "macs": 0, "ms": pytest.approx(0.6)}


def test_render_gives_shares_and_fractions_of_the_right_peak() -> None:
    profile = {
        "variant": "int8",
        "runtime": "ai-edge-litert",
        "method": "one-op models",
        "whole_ms": 10.0,
        "overhead_us": 0.5,
        "macs": 2 * 10**9,
        "groups": {
            "CONV_2D 1x1 (pointwise)": {"ops": 35, "macs": 2 * 10**9, "ms": 6.0},
            "RELU": {"ops": 11, "macs": 0, "ms": 2.0},
        },
    }
    text = "\n".join(render([profile], {"float32": 150.0, "int8": 800.0}, threads=1))
    # 4e9 ops in 6 ms = 667 GOP/s = 83% of 800; the RELUs are a quarter of the ops' 8 ms
    assert "| CONV_2D 1x1 (pointwise) | 35 | 2.000 | 6.00 | 75.0% | 667 | 83% |" in text
    assert "| RELU | 11 | 0.000 | 2.00 | 25.0% | 0 | — |" in text
    assert "sum of the ops: 8.0 ms (80% of the whole)" in text
    assert "**50%** of the int8 peak (floor 5.0 ms)" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variants", "float64"], "Received: 'float64'"),
        (["--variants", "int8"], "No int8 bundle in --bundles"),
        (["--threads", "0"], "Received: --threads=0"),
    ],
)
def test_cli_refuses_bad_usage(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--bundles", str(tmp_path), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
