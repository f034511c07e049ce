"""`python -m bench.quant_levers`: the photo split, the tables, the usage errors, and
one run end to end (tiny model, generated photos)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.quant_levers import compare, held_in, main, to_markdown
from tests.conftest import TINY_SIZE, build_tiny_keras_model, make_run_with_photos

CLASSES = ("hat", "pants", "shoes")


@pytest.mark.parametrize(
    ("train", "calibration", "expected"),
    [
        (["a", "b", "c"], ["b"], ["a", "c"]),
        (["a", "b"], [], ["a", "b"]),
        (["a", "b"], ["a", "b"], []),
    ],
)
def test_held_in_drops_the_calibration_sample(
    train: list[str], calibration: list[str], expected: list[str]
) -> None:
    assert held_in([Path(p) for p in train], [Path(p) for p in calibration]) == [
        Path(p) for p in expected
    ]


@pytest.mark.parametrize(
    ("logits", "reference", "agreement", "rms"),
    [
        ([[1, 0], [0, 1]], [[1, 0], [0, 1]], 100.0, 0.0),
        ([[1, 0], [1, 0]], [[1, 0], [0, 1]], 50.0, np.sqrt(0.5)),
        ([[0, 3], [3, 0]], [[1, 0], [0, 1]], 0.0, np.sqrt(5.0)),
    ],
)
def test_compare_gives_agreement_and_rms(
    logits: list[list[float]], reference: list[list[float]], agreement: float, rms: float
) -> None:
    out = compare(np.array(logits, dtype=np.float32), np.array(reference, dtype=np.float32))
    assert out["agreement_pct"] == pytest.approx(agreement)
    assert out["rms_logit_diff"] == pytest.approx(rms)


def test_tables_show_rows_errors_and_both_photo_sets() -> None:
    result = {
        "command": "python -m bench.quant_levers run --out o",
        "n_validation": 341,
        "n_train": 2868,
        "equalization": {
            "int8 all blocks quantized, alpha none": {
                "agreement_pct": 97.65,
                "rms_logit_diff": 0.5,
            },
            "int8 all blocks quantized, alpha 0.75": {"error": "cannot load"},
        },
        "runs": 10,
        "int16x8": {
            "stride": 3,
            "n_images": 114,
            "float32": {"agreement_pct": 100.0, "rms_logit_diff": 1e-5, "latency_1t_ms": 31.6},
            "int16x8": {"agreement_pct": 99.12, "rms_logit_diff": 0.0312, "latency_1t_ms": 688.0},
        },
        "selection_photos": {
            "int8 blocks 2, 1 float": {
                "validation_agreement_pct": 98.53,
                "train_agreement_pct": 99.9,
            }
        },
    }
    table = to_markdown(result)
    assert "| int8 all blocks quantized, alpha none | 97.65% | 0.5000 |" in table
    assert "| int8 all blocks quantized, alpha 0.75 | — | — (cannot load) |" in table
    assert "| float32 | 100.00% | 0.0000 | 31.6 |" in table
    assert "| 16x8 | 99.12% | 0.0312 | 688.0 |" in table
    assert "1-thread medians of 10 runs" in table
    assert "on 2868 train photos" in table
    assert "| int8 blocks 2, 1 float | 98.53% | 99.90% |" in table


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run_with_photos(
        tmp_path_factory.mktemp("quant_levers"),
        build_tiny_keras_model(n_classes=len(CLASSES)),
        classes=CLASSES,
    )


def test_run_measures_every_row(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.quant_levers

    # dynamic's rows only: each int8 calibration of the tiny Xception costs ~10 s in
    # CI, and int8 goes through the same row code (and test_quantize, test_convert).
    monkeypatch.setattr(bench.quant_levers, "VARIANTS", ("dynamic",))
    out = tmp_path / "out"
    argv = [str(tiny_run), "--out", str(out), "--alphas", "0.5", "--calibration-size", "4"]
    assert main([*argv, "--runs", "1", "--x16-stride", "2"]) == 0
    result = json.loads((out / "quant_levers.json").read_text())
    assert (result["n_validation"], result["n_train"]) == (9, 5)
    assert sorted(result["equalization"]) == sorted(
        f"dynamic {recipe}, alpha {alpha}"
        for recipe in ("all blocks quantized", "blocks 1, 3, 2 float")
        for alpha in ("none", "0.5")
    )
    x16 = result["int16x8"]
    rows = [*result["equalization"].values(), x16["float32"], x16["int16x8"]]
    assert all(0 <= r["agreement_pct"] <= 100 and r["rms_logit_diff"] >= 0 for r in rows)
    assert x16["float32"]["agreement_pct"] == 100.0  # the float32 export is measured too
    assert x16["n_images"] == 5 and x16["int16x8"]["latency_1t_ms"] > 0
    shipped = ("dynamic blocks 1, 3, 2 float",)
    assert set(result["selection_photos"]) == set(shipped)
    for name in shipped:
        row = result["selection_photos"][name]
        validation = result["equalization"][f"{name}, alpha none"]["agreement_pct"]
        assert row["validation_agreement_pct"] == validation
        assert 0 <= row["train_agreement_pct"] <= 100
    markdown = (out / "quant_levers.md").read_text()
    assert markdown.startswith("`python -m bench.quant_levers")
    assert markdown.count("\n## ") == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--alphas", "0"], "`--alphas` must be distinct values in (0, 1]. Received: alphas=[0.0]"),
        (["--alphas", "0.5", "1.5"], "Received: alphas=[0.5, 1.5]"),
        (["--alphas", "0.5", "0.5"], "Received: alphas=[0.5, 0.5]"),
        (
            ["--dynamic-float-blocks", "none", "block1"],
            "`--dynamic-float-blocks`: none must stand alone. "
            "Received: dynamic_float_blocks=['none', 'block1']",
        ),
        (["--int8-float-blocks", "block15"], "invalid choice: 'block15'"),
        (["--x16-stride", "0"], "`--x16-stride` must be >= 1. Received: x16_stride=0"),
        (["--runs", "0"], "`--runs` must be >= 1. Received: runs=0"),
        (
            ["--calibration-size", "0"],
            "`--calibration-size` must be >= 1. Received: calibration_size=0",
        ),
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


@pytest.mark.parametrize(
    ("run", "extra", "message"),
    [
        ("missing", [], "error:"),
        ("tiny", ["--calibration-size", "9"], "All 9 train photos are in the calibration sample"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    tiny_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    run: str,
    extra: list[str],
    message: str,
) -> None:
    run_dir = tiny_run if run == "tiny" else tmp_path / "nope"
    assert main([str(run_dir), "--out", str(tmp_path / "out"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_run_without_separable_convs_or_photos_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import keras

    make_run_with_photos(
        tmp_path, _one_layer_model(keras.layers.Conv2D(4, 3)), classes=CLASSES, per_class=2
    )
    data = tmp_path / "data"
    assert (
        main([str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--calibration-size", "2"])
        == 2
    )
    assert "must have a SeparableConv2D layer" in capsys.readouterr().err
    for photo in (data / "validation").rglob("*.jpg"):
        photo.unlink()
    assert main([str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 2
    assert f"No images found in {str(data / 'validation')!r}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _one_layer_model(layer: Any) -> Any:
    import keras

    inputs = keras.Input(shape=(TINY_SIZE, TINY_SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(layer(inputs))
    return keras.Model(inputs, keras.layers.Dense(len(CLASSES))(x))
