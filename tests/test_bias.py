"""Bias correction (convert/_bias.py, bench/bias_correction.py): what the quantized
model's biases absorb."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convert._bias import _interpreter, _ops, bias_corrected, input_means
from convert._errors import ConvertError
from convert._export import needs_calibration, tflite_bytes
from convert._quantize import QuantRecipe, dynamic_range, tflite_logits
from tests.conftest import LABELS, build_tiny_keras_model, make_run_with_photos


@pytest.fixture(scope="module")
def toy() -> dict[str, Any]:
    """A small conv net on positive inputs (as after a ReLU), its float32 and dynamic
    flatbuffers, and photos: the weights' rounding then shifts the outputs' mean."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape=(16, 16, 3))
    x = keras.layers.Conv2D(48, 3, activation="relu")(inputs)
    # depth multiplier 2: output channel c reads input channel c // 2
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, activation="relu")(x)
    x = keras.layers.Conv2D(48, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    # A trained head has a bias; the convolutions' zero biases are one tensor in the
    # flatbuffer (the converter shares equal constants), which the correction must split.
    head = keras.layers.Dense(6, bias_initializer=keras.initializers.RandomNormal(seed=1))
    model = keras.Model(inputs, head(x))
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 1.0, size=(24, 16, 16, 3)).astype(np.float32)
    float_model = tflite_bytes(model, variant="float32")
    return {
        "float": float_model,
        "dynamic": dynamic_range(float_model),
        "images": images,
        "logits": tflite_logits(float_model, images),
    }


def _mean_error(content: bytes, toy: dict[str, Any]) -> float:
    """|mean over photos of (quantized - float) logits|, averaged over the classes."""
    diff = tflite_logits(content, toy["images"]) - toy["logits"]
    return float(np.abs(diff.mean(axis=0)).mean())


def test_corrected_biases_cancel_the_mean_shift(toy: dict[str, Any]) -> None:
    means = input_means(toy["float"], (x[np.newaxis] for x in toy["images"]))
    assert len(means) == 4  # three convolutions and the dense layer
    ops = _ops(_interpreter(toy["float"]))
    kinds = ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    assert [op["op_name"] for op in ops] == kinds
    assert ops[0]["inputs"][2] == ops[2]["inputs"][2]  # the convs' zero biases: one tensor
    fixed = bias_corrected(toy["float"], toy["dynamic"], means)
    assert len({op["inputs"][2] for op in _ops(_interpreter(fixed))}) == 4  # one each now
    corrected = dynamic_range(fixed)
    before, after = _mean_error(toy["dynamic"], toy), _mean_error(corrected, toy)
    assert after < 0.5 * before, (before, after)
    # only biases moved: the same net in float, the same int8 weights once quantized
    assert np.abs(tflite_logits(fixed, toy["images"]) - toy["logits"]).max() < 0.1
    assert _int8_weights(corrected) == _int8_weights(toy["dynamic"])
    assert len(_int8_weights(corrected)) == 4  # the depthwise one quantized too


def _int8_weights(content: bytes) -> list[bytes]:
    interpreter = _interpreter(content)
    return [
        interpreter.get_tensor(op["inputs"][1]).tobytes()
        for op in _ops(interpreter)
        if interpreter.get_tensor(op["inputs"][1]).dtype == np.int8
    ]


def test_nothing_quantized_nothing_corrected(toy: dict[str, Any]) -> None:
    means = input_means(toy["float"], (x[np.newaxis] for x in toy["images"]))
    fixed = bias_corrected(toy["float"], toy["float"], means)  # no int8 weights in it
    np.testing.assert_array_equal(tflite_logits(fixed, toy["images"]), toy["logits"])


def test_input_means_refuses_no_images(toy: dict[str, Any]) -> None:
    with pytest.raises(ConvertError, match=r"at least one photo.*--dynamic-bias-correction no"):
        input_means(toy["float"], iter(()))


def test_a_model_that_does_not_match_names_the_way_out(toy: dict[str, Any]) -> None:
    means = input_means(toy["float"], (x[np.newaxis] for x in toy["images"]))
    wrong = {name: mean[:-1] for name, mean in means.items()}  # a channel short
    with pytest.raises(ConvertError, match=r"Bias correction failed.*--dynamic-bias-correction no"):
        bias_corrected(toy["float"], toy["dynamic"], wrong)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_recipe_refuses_a_bias_correction_that_is_not_a_bool(value: Any) -> None:
    with pytest.raises(ValueError, match=r"`bias_correction` must be True or False\. Received"):
        QuantRecipe(bias_correction=value)


def test_bias_correction_is_dynamic_only_and_reads_the_calibration_images() -> None:
    recipe = QuantRecipe(bias_correction=True)
    assert needs_calibration("dynamic", recipe) and not needs_calibration("dynamic", None)
    with pytest.raises(ValueError, match="`bias_correction` applies to the dynamic variant only"):
        tflite_bytes(object(), variant="int8", recipe=recipe, representative_dataset=iter)
    with pytest.raises(ValueError, match="needs a `representative_dataset`"):
        tflite_bytes(object(), variant="dynamic", recipe=recipe)


# -- python -m bench.bias_correction ---------------------------------------------


def test_bench_measures_dynamic_with_and_without(
    tmp_path: Path, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bench's plumbing; the conversion itself is a double here (the real one, with
    the correction, runs in tests/test_quantize.py's recipe test and above)."""
    import bench.bias_correction
    from bench.bias_correction import main

    recipes: list[QuantRecipe] = []

    def convert(model: Any, *, variant: str, recipe: QuantRecipe, **kwargs: Any) -> bytes:
        assert variant == "dynamic" and kwargs["representative_dataset"] is not None
        recipes.append(recipe)
        return (tiny_bundle / "model.tflite").read_bytes()  # build_tiny_keras_model's

    monkeypatch.setattr(bench.bias_correction, "tflite_bytes", convert)
    run = make_run_with_photos(tmp_path, build_tiny_keras_model(), classes=LABELS, per_class=1)
    out = tmp_path / "out"
    argv = [str(run), "--out", str(out), "--calibration-size", "4"]
    assert main([*argv, "--dynamic-float-blocks", "block1"]) == 0
    assert [r.bias_correction for r in recipes] == [False, True]
    assert all(r.float_blocks == ("block1",) and r.equalize_alpha == 0.5 for r in recipes)
    result = json.loads((out / "bias_correction.json").read_text())
    assert (result["n_validation"], result["calibration_images"]) == (10, 4)
    assert result["rows"]["with"] == result["rows"]["without"]  # the same double twice
    assert result["rows"]["with"]["agreement_pct"] == 100.0  # float32 of the same model
    assert result["rows"]["with"]["rms_margin_diff"] < 1e-3
    assert "| with | 100.00% |" in (out / "bias_correction.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--calibration-size", "0"], "`--calibration-size` must be >= 1. Received: 0"),
        (["--dynamic-float-blocks", "none", "block1"], "none must stand alone"),
    ],
)
def test_bench_usage_errors(
    tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.bias_correction import main

    with pytest.raises(SystemExit) as info:
        main([str(tmp_path), "--out", str(tmp_path / "out"), *argv])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_bench_names_a_folder_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.bias_correction import main

    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("logits", "agreement", "margin_rms"),
    [
        ([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]], 100.0, 0.0),  # the reference itself
        ([[3.5, 1.0, 0.0], [0.0, 2.0, 1.5]], 100.0, float(np.sqrt((0.25 + 0.25) / 2))),
        ([[0.0, 1.0, 0.0], [0.0, 2.0, 1.0]], 50.0, float(np.sqrt((9.0 + 0.0) / 2))),
    ],
)
def test_bench_compare(logits: list[list[float]], agreement: float, margin_rms: float) -> None:
    from bench.bias_correction import compare

    reference = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])  # margins 2 and 1
    row = compare(np.array(logits), reference)
    assert row["agreement_pct"] == agreement
    assert row["rms_margin_diff"] == pytest.approx(margin_rms)
