"""`python -m bench.dynamic_ops`: its recipe rows, its table, and its usage errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bench.dynamic_ops import main, measure, recipes, to_markdown
from convert._quantize import FLOAT_OPS


@pytest.mark.parametrize(
    ("blocks", "names"),
    [
        (
            ["block1", "block3"],
            [
                "all ops quantized",
                "depthwise float",
                "blocks 1, 3 float",
                "blocks 1, 3 float + depthwise float",
            ],
        ),
        (
            ["head"],
            [
                "all ops quantized",
                "depthwise float",
                "blocks head float",
                "blocks head float + depthwise float",
            ],
        ),
    ],
)
def test_four_recipes_cross_blocks_with_the_op_lever(blocks: list[str], names: list[str]) -> None:
    rows = recipes(blocks)
    assert list(rows) == names
    assert [r["float_ops"] for r in rows.values()] == [(), FLOAT_OPS, (), FLOAT_OPS]
    assert [r["float_blocks"] for r in rows.values()] == [(), (), tuple(blocks), tuple(blocks)]


def _row(agreement: float, accuracy: float, ms: float) -> dict[str, float]:
    return {
        "agreement_pct": agreement,
        "accuracy_pct": accuracy,
        "size_mb": 23.1,
        "latency_1t_ms": ms,
    }


def test_table_gives_speedups_against_float32() -> None:
    result: dict[str, Any] = {
        "command": "python -m bench.dynamic_ops runs/m --out o",
        "n_images": 4,
        "keras_accuracy_pct": 75.0,
        "runs": 3,
        "recipes": {"float32": _row(100.0, 75.0, 40.0), "depthwise float": _row(75.0, 50.0, 10.0)},
    }
    table = to_markdown(result)
    assert "| float32 | 23.1 | 100.00% | +0.00 | 40.0 | 1.00x |" in table
    assert "| depthwise float | 23.1 | 75.00% | -25.00 | 10.0 | 4.00x |" in table


@pytest.mark.parametrize(
    ("logits", "agreement", "accuracy", "rms"),
    [
        ([[2.0, 0.0], [0.0, 2.0]], 100.0, 50.0, 0.0),  # the reference itself
        ([[0.0, 2.0], [0.0, 2.0]], 50.0, 0.0, np.sqrt(2.0)),  # row 0 flips: (4 + 4) / 4
        ([[3.0, 1.0], [1.0, 3.0]], 100.0, 50.0, 1.0),  # shifted by 1: same answers
    ],
)
def test_measure_compares_each_model_with_the_reference(
    monkeypatch: pytest.MonkeyPatch,
    logits: list[list[float]],
    agreement: float,
    accuracy: float,
    rms: float,
) -> None:
    import bench.dynamic_ops

    monkeypatch.setattr(bench.dynamic_ops, "tflite_invoker", lambda content, x: None)
    monkeypatch.setattr(
        bench.dynamic_ops,
        "time_interleaved",
        lambda calls, runs, warmup: [SimpleNamespace(median_ms=12.5) for _ in calls],
    )
    monkeypatch.setattr(bench.dynamic_ops, "tflite_logits", lambda content, x: np.array(logits))
    reference = np.array([[2.0, 0.0], [0.0, 2.0]])
    truth = np.array([0, 0])
    rows = measure({"m": b"12345"}, np.zeros((2, 4, 4, 3)), reference, truth, runs=1)
    assert rows["m"] == pytest.approx(
        {
            "agreement_pct": agreement,
            "accuracy_pct": accuracy,
            "rms_logit": rms,
            "size_mb": 5e-6,
            "latency_1t_ms": 12.5,
        }
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--runs", "0"], "`--runs` must be >= 1. Received: runs=0"),
        (["--blocks", "block15"], "invalid choice: 'block15'"),
    ],
)
def test_bad_usage_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path), "--out", str(tmp_path / "out"), *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_training_output_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
