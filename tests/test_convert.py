"""Fast tests of the conversion stage: tiny Xception(weights=None) at 71 px, generated images.

The tiny model is converted to every variant once per session (`tiny_run`);
bad-input and atomicity tests stop before (or fake) the slow conversion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import convert._convert
from convert import (
    DEFAULT_RECIPES,
    TFLITE_VARIANTS,
    CheckConfig,
    ConvertConfig,
    ConvertError,
    builtin_operators,
    check_bundles,
    convert_model,
    report_to_markdown,
    write_report,
)
from convert.__main__ import _parsers, _recipes, main
from inference import Classifier, preprocess_file, read_bundle, sha256_file
from tests.conftest import (
    LABELS,
    REPO,
    TINY_SIZE,
    build_tiny_keras_model,
    make_dataset,
    make_image,
    unit_logit_spread,
)
from train.output import write_train_output

CALIBRATION = {"temperature": 0.5, "unsure_threshold": 0.3, "unsure_goal": 0.97}
VARIANTS = TFLITE_VARIANTS  # the ONNX variants have their own tests: tests/test_onnx.py


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny training output with O(1) logits, its dataset, and all four bundles.

    Xception(weights=None) has untrained BatchNorm statistics, so its logits are
    ~1e-5 and any float tolerance would pass; rescaling the last layer to unit
    logit spread makes "float32 matches Keras within 1e-5" a real test.
    """
    root = tmp_path_factory.mktemp("convert")
    data = make_dataset(root / "data", classes=LABELS, per_class=2)
    model = build_tiny_keras_model()
    images = sorted((data / "train").rglob("*.jpg"))
    x = np.stack([preprocess_file(p, image_size=TINY_SIZE) for p in images])
    unit_logit_spread(model, x)
    train_dir = root / "train"
    metrics = {
        "labels": list(LABELS),
        "image_size": TINY_SIZE,
        "data_dir": str(data),
        **CALIBRATION,  # as train/calibrate.py writes them
    }
    write_train_output(train_dir, model, metrics)
    out = root / "bundles"
    # calibration_dir=None: int8 calibrates on metrics.json's data_dir/train.
    convert_model(
        ConvertConfig(train_dir=train_dir, out_dir=out, variants=VARIANTS, calibration_size=8)
    )
    return {"train": train_dir, "data": data, "out": out}


def run_cli(argv: list[str]) -> int:
    """`python -m convert` in-process; argparse's usage errors arrive as SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def siblings(path: Path) -> list[str]:
    """Hidden staging/backup folders convert_model may leave next to `path`."""
    return sorted(p.name for p in path.parent.glob(f".{path.name}.*"))


# -- conversion ---------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_is_a_valid_bundle(tiny_run: dict[str, Path], variant: str) -> None:
    import tensorflow as tf

    bundle_dir = tiny_run["out"] / variant
    bundle = read_bundle(bundle_dir)  # verifies model_sha256 against the file
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["labels"] == list(LABELS)
    assert manifest["image_size"] == TINY_SIZE
    assert manifest["variant"] == variant
    assert (manifest["preprocessing"], manifest["resize"], manifest["output"]) == (
        "xception",
        "nearest",
        "logits",
    )
    assert manifest["model_sha256"] == sha256_file(bundle_dir / "model.tflite")
    assert manifest["source_model_sha256"] == sha256_file(tiny_run["train"] / "model.keras")
    assert {k: manifest[k] for k in CALIBRATION} == CALIBRATION  # copied from metrics.json
    assert manifest["converter"]["tensorflow"] == tf.__version__
    created = datetime.fromisoformat(manifest["created_at"])
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0
    operators = manifest["operators"]
    assert operators == [dict(op) for op in builtin_operators(bundle.model_bytes)]
    names = {op["name"] for op in operators}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= names
    assert all(isinstance(op["version"], int) and op["version"] >= 1 for op in operators)
    # Float in, float out, whatever the variant.
    clf = Classifier.load(bundle_dir)
    assert clf._input["dtype"] == np.float32 and clf._output["dtype"] == np.float32
    assert sorted(p.name for p in bundle_dir.iterdir()) == ["manifest.json", "model.tflite"]


def int8_weights(bundle: Path) -> int:
    """How many int8 tensors a bundle's model holds."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(bundle / "model.tflite")).get_tensor_details()
    return sum(d["dtype"] == np.int8 for d in details)


def test_quantized_variants_use_quantized_kernels(tiny_run: dict[str, Path]) -> None:
    def ops(variant: str) -> dict[str, int]:
        manifest = json.loads((tiny_run["out"] / variant / "manifest.json").read_text())
        return {op["name"]: op["version"] for op in manifest["operators"]}

    assert "DEQUANTIZE" not in ops("float32")
    assert "DEQUANTIZE" in ops("float16")  # float16 weights, dequantized at load
    # dynamic: int8 weights feeding float-in kernels (ai-edge-quantizer, issue 13, keeps
    # the operator versions, so the weights' type is the evidence)
    assert int8_weights(tiny_run["out"] / "dynamic") > 0
    assert int8_weights(tiny_run["out"] / "float32") == 0
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(ops("int8"))  # float edges around int8 compute
    sizes = {v: (tiny_run["out"] / v / "model.tflite").stat().st_size for v in VARIANTS}
    assert sizes["float16"] < 0.6 * sizes["float32"]
    # int8 weights are a quarter of float32's; the default recipes keep the entry
    # blocks (and dynamic's depthwise kernels) in float, about 0.30 of float32 in all.
    assert sizes["dynamic"] < 0.35 * sizes["float32"] and sizes["int8"] < 0.35 * sizes["float32"]


def test_float32_logits_match_keras(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    import keras

    model = keras.models.load_model(tiny_run["train"] / "model.keras")
    clf = Classifier.load(tiny_run["out"] / "float32")
    paths = [
        make_image(tmp_path / f"{i}.jpg", color=(40 * i, 255 - 30 * i, 90), size=(120, 90), seed=i)
        for i in range(6)
    ]
    expected = model.predict(
        np.stack([preprocess_file(p, image_size=TINY_SIZE) for p in paths]), verbose=0
    )
    actual = np.stack([clf.predict_file(p).logits for p in paths])
    assert np.std(expected) > 0.1  # logits of real magnitude (see tiny_run)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


def test_builtin_operators_refuses_non_tflite() -> None:
    with pytest.raises(ValueError, match="Not a TFLite flatbuffer"):
        builtin_operators(b"\x00" * 64)


# -- bad inputs: a clear error, exit status 2, nothing written ----------------


def _dense_model(path: Path) -> None:
    import keras

    inputs = keras.Input(shape=(10,))
    keras.Model(inputs, keras.layers.Dense(len(LABELS))(inputs)).save(path)


def _grey_model(path: Path) -> None:
    import keras

    inputs = keras.Input(shape=(TINY_SIZE, TINY_SIZE, 1))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    keras.Model(inputs, keras.layers.Dense(len(LABELS))(x)).save(path)


def _zip_not_keras(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "not a model")


BAD_INPUTS: list[tuple[str, Any, list[str], str]] = [
    # (id, how to break the training output, extra argv, expected stderr text)
    ("missing-dir", "delete", [], "Training output folder not found"),
    ("missing-model", lambda t: (t / "model.keras").unlink(), [], "No model.keras in"),
    (
        "not-a-zip",
        lambda t: (t / "model.keras").write_bytes(b"GIF89a not a model"),
        [],
        "is not a Keras model file",
    ),
    (
        "zip-not-keras",
        lambda t: _zip_not_keras(t / "model.keras"),
        [],
        "is not a loadable Keras model",
    ),
    ("input-not-image", lambda t: _dense_model(t / "model.keras"), [], "must be (H, W, 3) images"),
    ("input-grey", lambda t: _grey_model(t / "model.keras"), [], "must be (H, W, 3) images"),
    (
        "metrics-no-labels",
        lambda t: (t / "metrics.json").write_text('{"image_size": 71}'),
        [],
        "`labels` must be a list",
    ),
    (
        "unknown-variant",
        None,
        ["--variants", "float32", "float64"],
        "`variants` must be a non-empty tuple of distinct names from "
        "['float32', 'float16', 'dynamic', 'int8', 'onnx']. "
        "Received: variants=('float32', 'float64')",
    ),
    (
        "onnx-int8-not-offered",
        None,
        ["--variants", "onnx", "onnx-int8"],
        "`onnx-int8` is not offered: onnxruntime's static int8 quantization missed int8's "
        'agreement bar on the validation split (README "ONNX Runtime"). '
        "Valid variants: float32 float16 dynamic int8 onnx",
    ),
    (
        "float-blocks-none-not-alone",
        None,
        ["--variants", "int8", "--int8-float-blocks", "none", "block1"],
        "--int8-float-blocks: `none` (all quantized) must stand alone, not beside block names. "
        "Received: --int8-float-blocks none block1",
    ),
    (
        "int8-float-blocks-without-int8",
        None,
        ["--variants", "float32", "--int8-float-blocks", "block1"],
        "--int8-float-blocks applies to the int8 variant, which --variants does not include. "
        "Received: --variants float32",
    ),
    (
        "dynamic-float-blocks-without-dynamic",
        None,
        ["--dynamic-float-blocks", "none"],
        "--dynamic-float-blocks applies to the dynamic variant, which --variants does not "
        "include. Received: --variants float32",
    ),
    (
        "dynamic-float-ops-none-not-alone",
        None,
        ["--variants", "dynamic", "--dynamic-float-ops", "none", "DEPTHWISE_CONV_2D"],
        "--dynamic-float-ops: `none` must stand alone, not beside op names. "
        "Received: --dynamic-float-ops none DEPTHWISE_CONV_2D",
    ),
    (
        "dynamic-float-ops-without-dynamic",
        None,
        ["--dynamic-float-ops", "none"],
        "--dynamic-float-ops applies to the dynamic variant, which --variants does not "
        "include. Received: --variants float32",
    ),
    (
        "dynamic-float-ops-unknown-op",
        None,
        ["--variants", "dynamic", "--dynamic-float-ops", "CONV_2D"],
        "argument --dynamic-float-ops: invalid choice: 'CONV_2D'",
    ),
    (
        "int8-no-calibration",
        None,
        ["--variants", "int8"],
        "Variant 'int8' needs calibration images: pass --calibration-dir",
    ),
    (
        # the default dynamic recipe equalizes on the calibration images
        "dynamic-no-calibration",
        None,
        ["--variants", "dynamic", "int8"],
        "Variants 'dynamic' and 'int8' need calibration images: pass --calibration-dir",
    ),
    (
        "dynamic-no-calibration-says-how-to-do-without",
        None,
        ["--variants", "dynamic"],
        "with a train split (or pass --dynamic-equalize none --dynamic-bias-correction no).",
    ),
    (
        "dynamic-bias-correction-without-dynamic",
        None,
        ["--variants", "int8", "--dynamic-bias-correction", "no"],
        "--dynamic-bias-correction applies to the dynamic variant, which --variants does not",
    ),
    (
        "dynamic-equalize-out-of-range",
        None,
        ["--variants", "dynamic", "--dynamic-equalize", "0"],
        "argument --dynamic-equalize: expected a number in (0, 1] or none. Received: '0'",
    ),
    (
        "dynamic-equalize-not-a-number",
        None,
        ["--variants", "dynamic", "--dynamic-equalize", "half"],
        "argument --dynamic-equalize: expected a number in (0, 1] or none. Received: 'half'",
    ),
    (
        "dynamic-equalize-without-dynamic",
        None,
        ["--dynamic-equalize", "0.5"],
        "--dynamic-equalize applies to the dynamic variant, which --variants does not "
        "include. Received: --variants float32",
    ),
    (
        "int8-fuse-relus-without-int8",
        None,
        ["--int8-fuse-relus", "no"],
        "--int8-fuse-relus applies to the int8 variant, which --variants does not "
        "include. Received: --variants float32",
    ),
    (
        "int8-fuse-relus-bad-choice",
        None,
        ["--variants", "int8", "--int8-fuse-relus", "maybe"],
        "argument --int8-fuse-relus: invalid choice: 'maybe'",
    ),
    (
        "int8-empty-calibration",
        None,
        ["--variants", "int8", "--calibration-dir", "EMPTY"],
        "none found in",
    ),
    ("bad-threshold", None, ["--min-agreement", "float17=5"], "expected VARIANT=NUMBER"),
    (
        "agreement-over-100",
        None,
        ["--min-agreement", "float32=150"],
        "--min-agreement float32=150: `min_agreement_pct` must be a number in [0, 100]. "
        "Received: min_agreement_pct=150.0",
    ),
    (
        "negative-logit-diff",
        None,
        ["--max-logit-diff", "float32=-1"],
        "`max_abs_logit_diff` must be a number >= 0. Received: max_abs_logit_diff=-1.0",
    ),
    (
        "metrics-bad-temperature",
        lambda t: (t / "metrics.json").write_text(
            json.dumps({"labels": list(LABELS), "image_size": 71, "temperature": -1})
        ),
        [],
        "`temperature` must be a number in (0, 100] or null. Received: temperature=-1",
    ),
    (
        "metrics-bad-unsure-threshold",
        lambda t: (t / "metrics.json").write_text(
            json.dumps({"labels": list(LABELS), "image_size": 71, "unsure_threshold": "0.9"})
        ),
        [],
        "`unsure_threshold` must be a number in [0, 1] or null",
    ),
]


@pytest.mark.parametrize(
    ("breakage", "extra", "message"),
    [case[1:] for case in BAD_INPUTS],
    ids=[c[0] for c in BAD_INPUTS],
)
def test_bad_input_exits_2_and_writes_nothing(
    tiny_train_output: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    breakage: Any,
    extra: list[str],
    message: str,
) -> None:
    import shutil

    train = tmp_path / "train"
    shutil.copytree(tiny_train_output, train)  # tiny_train_output: no data_dir in metrics.json
    if breakage == "delete":
        shutil.rmtree(train)
    elif breakage is not None:
        breakage(train)
    (tmp_path / "EMPTY").mkdir()
    extra = [str(tmp_path / "EMPTY") if a == "EMPTY" else a for a in extra]
    out = tmp_path / "bundles"
    assert run_cli([str(train), "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and siblings(out) == []


def test_existing_out_dir_is_refused_unless_force(
    tiny_train_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundles"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run_cli([str(tiny_train_output), "--out", str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and siblings(out) == []


def test_force_refuses_to_delete_the_source(tiny_train_output: Path) -> None:
    config = ConvertConfig(
        train_dir=tiny_train_output, out_dir=tiny_train_output.parent, force=True
    )
    with pytest.raises(ConvertError, match="would delete the source model"):
        convert_model(config)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"variants": ()}, "`variants` must be a non-empty tuple"),
        ({"variants": ("int8", "int8")}, "Received: variants=('int8', 'int8')"),
        ({"variants": ["float32"]}, "Received: variants=['float32']"),
        (
            {"calibration_size": 0},
            "`calibration_size` must be an int >= 1. Received: calibration_size=0",
        ),
    ],
)
def test_convert_config_rejects_bad_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as exc:
        ConvertConfig(train_dir=Path("t"), out_dir=Path("o"), **overrides)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"variants": ("float64",)}, "`variants` must be None or a non-empty tuple"),
        ({"threads": (0,)}, "`threads` must be a non-empty tuple of ints >= 1"),
        ({"latency_runs": 0}, "`latency_runs` must be an int >= 1. Received: latency_runs=0"),
        ({"runtime": "onnx"}, "`runtime` must be None or one of"),
        ({"max_images": 0}, "`max_images` must be None or an int >= 1"),
    ],
)
def test_check_config_rejects_bad_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as exc:
        CheckConfig(train_dir=Path("t"), out_dir=Path("o"), **overrides)
    assert message in str(exc.value)


# -- atomicity: a failure part-way leaves nothing a runtime could load ---------


@pytest.mark.parametrize("error", [RuntimeError("converter crashed"), KeyboardInterrupt()])
@pytest.mark.parametrize("existing", [False, True])
def test_failure_midway_leaves_nothing(
    tiny_run: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    existing: bool,
) -> None:
    content = (tiny_run["out"] / "float32" / "model.tflite").read_bytes()
    calls: list[str] = []

    def flaky(
        model: Any, *, variant: str, representative_dataset: Any = None, recipe: Any = None
    ) -> bytes:
        calls.append(variant)
        if len(calls) == 2:
            raise error
        return content

    monkeypatch.setattr(convert._convert, "tflite_bytes", flaky)
    out = tmp_path / "bundles"
    if existing:
        (out / "float32").mkdir(parents=True)
        (out / "float32" / "old.txt").write_text("old")
    config = ConvertConfig(
        train_dir=tiny_run["train"], out_dir=out, variants=("float32", "float16"), force=existing
    )
    with pytest.raises(type(error)):
        convert_model(config)
    assert calls == ["float32", "float16"]
    assert siblings(out) == []
    if existing:  # the old folder is untouched
        assert [p.name for p in (out / "float32").iterdir()] == ["old.txt"]
    else:
        assert not out.exists()


def test_force_replaces_the_whole_folder(
    tiny_run: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = (tiny_run["out"] / "float32" / "model.tflite").read_bytes()
    monkeypatch.setattr(convert._convert, "tflite_bytes", lambda model, **kw: content)
    out = tmp_path / "bundles"
    (out / "int8").mkdir(parents=True)
    result = convert_model(ConvertConfig(train_dir=tiny_run["train"], out_dir=out, force=True))
    assert result.bundles == {"float32": out / "float32"}
    assert sorted(p.name for p in out.iterdir()) == ["float32"] and siblings(out) == []
    read_bundle(out / "float32")


# -- check ---------------------------------------------------------------------


def test_check_passes_float32_and_writes_reports(tiny_run: dict[str, Path]) -> None:
    config = CheckConfig(
        train_dir=tiny_run["train"],
        out_dir=tiny_run["out"],
        variants=("float32",),
        images_dir=tiny_run["data"] / "test",
        latency_runs=3,
        warmup_runs=1,
    )
    (tiny_run["out"] / "report.json").unlink(missing_ok=True)
    report = check_bundles(config)
    assert not (tiny_run["out"] / "report.json").exists()  # the caller writes it
    write_report(report, tiny_run["out"])
    assert report.passed, report.results[0].failures
    (result,) = report.results
    assert result.agreement_pct == 100.0 and result.max_abs_logit_diff <= 1e-5
    assert result.n_images == report.n_images == report.n_labeled == 2 * len(LABELS)
    assert result.accuracy_delta_pts == 0.0
    assert [lat.threads for lat in result.latency] == [1, 2]
    assert all(0 < lat.median_ms <= lat.p95_ms for lat in result.latency + result.reference_latency)
    assert [lat.runtime.split()[0] for lat in result.reference_latency] == ["tensorflow"] * 2
    loads = {x.runtime: x for x in result.loads_with}
    assert set(loads) == {"ai-edge-litert", "tflite-runtime", "tensorflow"}
    assert loads["ai-edge-litert"].status == "ok" and loads["ai-edge-litert"].version
    assert loads["tensorflow"].status == "ok"
    saved = json.loads((tiny_run["out"] / "report.json").read_text())
    assert saved["passed"] is True
    assert saved["variants"][0]["variant"] == "float32"
    assert (
        saved["variants"][0]["size_bytes"]
        == (tiny_run["out"] / "float32/model.tflite").stat().st_size
    )
    table = (tiny_run["out"] / "report.md").read_text()
    assert table == report_to_markdown(report)
    assert "| float32 | ai-edge-litert" in table and "| float32 | tensorflow" in table
    # calibrated answers: the Keras model's, computed here independently
    import keras

    model = keras.models.load_model(tiny_run["train"] / "model.keras", compile=False)
    images = sorted((tiny_run["data"] / "test").rglob("*.jpg"))
    z = model.predict(
        np.stack([preprocess_file(p, image_size=TINY_SIZE) for p in images]), verbose=0
    )
    z = z.astype(np.float64) / CALIBRATION["temperature"]
    scores = np.exp(z - z.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    unsure = scores.max(axis=1) < CALIBRATION["unsure_threshold"]
    assert 0 < unsure.sum() < len(images)  # the threshold splits this set: a real check
    assert report.temperature == CALIBRATION["temperature"]
    assert report.keras_unsure_pct == pytest.approx(100 * unsure.mean())
    assert result.unsure_pct == pytest.approx(100 * unsure.mean())  # float32 = Keras
    assert result.decision_changes == 0 and result.max_abs_score_diff < 1e-4
    assert saved["keras_unsure_pct"] == report.keras_unsure_pct
    assert saved["variants"][0]["decision_changes"] == 0
    assert (
        "Scores: softmax(logits / 0.500)" in table and "Unsure below a top score of 0.300" in table
    )


def test_check_cli_exits_1_when_a_threshold_is_missed(
    tiny_run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    out = tmp_path / "bundles"
    shutil.copytree(tiny_run["out"], out)
    argv = ["check", str(tiny_run["train"]), "--out", str(out), "--variants", "float16"]
    argv += ["--images", str(tiny_run["data"] / "test"), "--latency-runs", "1", "--threads", "1"]
    argv += ["--reference-runtime", "none", "--max-images", "6"]
    argv += ["--min-agreement", "float16=0", "--max-logit-diff", "float16=0"]
    assert run_cli(argv) == 1
    captured = capsys.readouterr()
    assert "**FAIL**: max |logit diff|" in captured.out
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is False and report["variants"][0]["failures"]
    # The same bundle passes with the flag left at its default (no logit bound for float16).
    argv = argv[: argv.index("--max-logit-diff")]
    assert run_cli(argv) == 0


def test_check_refuses_a_bundle_of_another_model(
    tiny_run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    train = tmp_path / "train"
    shutil.copytree(tiny_run["train"], train)
    with open(train / "model.keras", "ab") as f:
        f.write(b"\0")  # another file, still a zip
    argv = ["check", str(train), "--out", str(tiny_run["out"]), "--images", str(tiny_run["data"])]
    assert run_cli(argv) == 2
    assert "was converted from a different model" in capsys.readouterr().err


def test_check_needs_images_when_metrics_has_no_data_dir(
    tiny_run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    train = tmp_path / "train"
    shutil.copytree(tiny_run["train"], train)
    (train / "metrics.json").write_text(
        json.dumps({"labels": list(LABELS), "image_size": TINY_SIZE})
    )
    assert run_cli(["check", str(train), "--out", str(tiny_run["out"])]) == 2
    assert "No check images: pass --images" in capsys.readouterr().err


def test_cli_help_and_usage_errors_in_a_fresh_process(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "convert"]
    done = subprocess.run([*run, "--help"], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "python -m convert runs/150 --out bundles" in done.stdout
    assert "Keras model -> TFLite and ONNX bundles" in done.stdout
    usage = done.stdout.split("\n\n")[0]
    assert "python -m convert check TRAIN_OUTPUT_DIR" in usage
    assert "python -m convert select TRAIN_OUTPUT_DIR" in usage
    done = subprocess.run(
        [*run, "select", "--help"], cwd=REPO, capture_output=True, text=True, check=False
    )
    description = done.stdout.split("\n\n")[1]
    assert done.returncode == 0 and description.startswith("`python -m convert select`: choose")
    assert "select_recipes" not in done.stdout
    assert "--variants int8 \\\n        --target int8=99" in done.stdout  # no run of spaces
    done = subprocess.run(
        [*run, str(tmp_path), "--out", str(tmp_path / "o"), "--variants", "float64"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "Received: variants=('float64',)" in done.stderr
    done = subprocess.run([*run, "check"], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "--out" in done.stderr


def test_tiny_bundle_fixture_comes_from_convert_model(tiny_bundle: Path) -> None:
    manifest = read_bundle(tiny_bundle).manifest
    assert manifest.variant == "float32" and manifest.image_size == TINY_SIZE
    assert manifest.converter["api"] == "tf.lite.TFLiteConverter.from_keras_model"
    assert manifest.operators and manifest.source_model_sha256


def test_outputs_honour_the_umask(tiny_run: dict[str, Path]) -> None:
    # tempfile's 0700/0600 modes would make a bundle COPY'd into an image unreadable
    # to a non-root runtime user.
    umask = os.umask(0)
    os.umask(umask)
    out = tiny_run["out"]
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    assert (out / "int8").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (out / "int8" / "model.tflite").stat().st_mode & 0o777 == 0o666 & ~umask


DEFAULT_DYNAMIC = DEFAULT_RECIPES["dynamic"]


ALPHA = DEFAULT_DYNAMIC.equalize_alpha
NONE3 = ["--dynamic-float-blocks", "none", "--dynamic-float-ops", "none", "--dynamic-equalize"]


@pytest.mark.parametrize(
    ("flags", "blocks", "ops", "alpha"),
    [
        ([], DEFAULT_DYNAMIC.float_blocks, DEFAULT_DYNAMIC.float_ops, ALPHA),
        # each flag changes its own field and keeps the others' defaults
        (["--dynamic-float-blocks", "block1"], ("block1",), DEFAULT_DYNAMIC.float_ops, ALPHA),
        (["--dynamic-float-ops", "none"], DEFAULT_DYNAMIC.float_blocks, (), ALPHA),
        (
            ["--dynamic-equalize", "none"],
            DEFAULT_DYNAMIC.float_blocks,
            DEFAULT_DYNAMIC.float_ops,
            None,
        ),
        (
            ["--dynamic-equalize", "0.25"],
            DEFAULT_DYNAMIC.float_blocks,
            DEFAULT_DYNAMIC.float_ops,
            0.25,
        ),
        # all three none: the TFLite converter's own dynamic range
        ([*NONE3, "none"], (), (), None),
    ],
)
def test_dynamic_recipe_flags(
    flags: list[str], blocks: tuple[str, ...], ops: tuple[str, ...], alpha: float | None
) -> None:
    args = _parsers()[0].parse_args(["runs/m", "--out", "b", "--variants", "dynamic", *flags])
    recipe = _recipes(args)["dynamic"]
    assert (recipe.float_blocks, recipe.float_ops, recipe.equalize_alpha) == (blocks, ops, alpha)
    assert recipe.selective == bool(blocks or ops)


@pytest.mark.parametrize(
    ("flags", "correct"),
    [
        ([], DEFAULT_DYNAMIC.bias_correction),
        (["--dynamic-bias-correction", "yes"], True),
        (["--dynamic-bias-correction", "no"], False),
    ],
)
def test_dynamic_bias_correction_flag(flags: list[str], correct: bool) -> None:
    args = _parsers()[0].parse_args(["runs/m", "--out", "b", "--variants", "dynamic", *flags])
    recipe = _recipes(args)["dynamic"]
    assert recipe.bias_correction is correct
    # and nothing else of the recipe moves
    assert replace(recipe, bias_correction=DEFAULT_DYNAMIC.bias_correction) == DEFAULT_DYNAMIC


DEFAULT_INT8 = DEFAULT_RECIPES["int8"]


@pytest.mark.parametrize(
    ("flags", "blocks", "fuse"),
    [
        ([], DEFAULT_INT8.float_blocks, DEFAULT_INT8.fuse_relus),
        (["--int8-fuse-relus", "no"], DEFAULT_INT8.float_blocks, False),
        (["--int8-fuse-relus", "yes"], DEFAULT_INT8.float_blocks, True),
        (["--int8-float-blocks", "none", "--int8-fuse-relus", "no"], (), False),
    ],
)
def test_int8_recipe_flags(flags: list[str], blocks: tuple[str, ...], fuse: bool) -> None:
    args = _parsers()[0].parse_args(["runs/m", "--out", "b", "--variants", "int8", *flags])
    recipe = _recipes(args)["int8"]
    assert (recipe.float_blocks, recipe.fuse_relus, recipe.equalize_alpha) == (blocks, fuse, None)
