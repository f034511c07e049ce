"""`python -m bench.int8_relus`: its recipe rows, its table, its usage errors, and one
run end to end (tiny model, generated photos)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.int8_relus import main, recipes, to_markdown
from tests.conftest import build_tiny_keras_model, make_run_with_photos

CLASSES = ("hat", "pants", "shoes")


@pytest.mark.parametrize(
    ("blocks", "names"),
    [
        (
            ["block2", "block1"],
            [
                "all blocks int8",
                "all blocks int8, ReLUs fused",
                "blocks 2, 1 float",
                "blocks 2, 1 float, ReLUs fused",
            ],
        ),
        (
            ["head"],
            [
                "all blocks int8",
                "all blocks int8, ReLUs fused",
                "blocks head float",
                "blocks head float, ReLUs fused",
            ],
        ),
    ],
)
def test_four_recipes_cross_blocks_with_the_fusion(blocks: list[str], names: list[str]) -> None:
    rows = recipes(blocks)
    assert list(rows) == names
    assert [r.fuse_relus for r in rows.values()] == [False, True, False, True]
    assert [r.float_blocks for r in rows.values()] == [(), (), tuple(blocks), tuple(blocks)]


def _row(agreement: float, accuracy: float, ms: float, partitions: int) -> dict[str, Any]:
    return {
        "agreement_pct": agreement,
        "accuracy_pct": accuracy,
        "size_mb": 26.4,
        "latency_1t_ms": ms,
        "rms_logit": 0.25,
        "xnnpack_partitions": partitions,
        "relu_ops": 3,
    }


def test_table_gives_speedups_against_float32() -> None:
    result: dict[str, Any] = {
        "command": "python -m bench.int8_relus runs/m --out o",
        "n_images": 4,
        "keras_accuracy_pct": 75.0,
        "runs": 3,
        "recipes": {
            "float32": _row(100.0, 75.0, 40.0, 1),
            "all blocks int8, ReLUs fused": _row(75.0, 50.0, 16.0, 2),
        },
    }
    table = to_markdown(result)
    assert "| float32 | 26.4 | 100.00% | +0.00 | 0.250 | 1 | 3 | 40.0 | 1.00x |" in table
    fused = "| all blocks int8, ReLUs fused | 26.4 | 75.00% | -25.00 | 0.250 | 2 | 3 | 16.0 |"
    assert f"{fused} 2.50x |" in table


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run_with_photos(
        tmp_path_factory.mktemp("int8_relus"),
        build_tiny_keras_model(n_classes=len(CLASSES)),
        classes=CLASSES,
    )


def test_run_measures_every_row(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.int8_relus

    # The all-int8 pair only: each int8 conversion of the tiny Xception takes ~12 s
    # in CI, and the --blocks rows go through the same code (their names: above).
    pair = dict(list(recipes(["block1"]).items())[:2])
    monkeypatch.setattr(bench.int8_relus, "recipes", lambda blocks: pair)
    out = tmp_path / "out"
    assert main([str(tiny_run), "--out", str(out), "--runs", "1", "--blocks", "block1"]) == 0
    result = json.loads((out / "int8_relus.json").read_text())
    rows = result["recipes"]
    assert list(rows) == ["float32", "all blocks int8", "all blocks int8, ReLUs fused"]
    assert rows["float32"]["agreement_pct"] == 100.0
    assert rows["float32"]["relu_ops"] == 11  # float RELUs: XNNPACK runs them, no split
    # the tiny model's logits are ~1e-5, so only the order is asserted
    assert rows["float32"]["rms_logit"] < rows["all blocks int8"]["rms_logit"]
    assert all(0 <= r["agreement_pct"] <= 100 and r["latency_1t_ms"] > 0 for r in rows.values())
    # Xception's 11 ReLUs after residual sums: blocks 3 and 4's stay (a convolution
    # reads their sums too), blocks 5-13's fuse into ADDs; block 1's float ReLUs are
    # fused into its convolutions either way.
    assert rows["all blocks int8"]["relu_ops"] == 11
    assert rows["all blocks int8, ReLUs fused"]["relu_ops"] == 2
    fused, plain = rows["all blocks int8, ReLUs fused"], rows["all blocks int8"]
    assert fused["xnnpack_partitions"] < plain["xnnpack_partitions"]
    assert (out / "int8_relus.md").read_text().startswith("`python -m bench.int8_relus")


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
