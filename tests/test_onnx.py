"""ONNX bundles: export (tf2onnx), manifest, parity with Keras and TFLite, runtime choice.

One tiny model (Xception weights=None at 71 px, its last layer rescaled so the
logits spread ~1 instead of ~1e-5: a float tolerance then means something) is
converted once to float32 (.tflite) and onnx; every test reads those bundles.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convert import CheckConfig, ConvertConfig, ConvertError, check_bundles, convert_model
from convert._onnx import onnx_operators
from inference import (
    FORMAT_RUNTIMES,
    BundleError,
    Classifier,
    InferenceConfig,
    RuntimeUnavailableError,
    preprocess_file,
    read_bundle,
    sha256_file,
)
from inference._runtime import runtime_order
from tests.conftest import LABELS, TINY_SIZE, build_tiny_keras_model, make_dataset

CALIBRATION = {"temperature": 0.5, "unsure_threshold": 0.3, "unsure_goal": 0.97}


@pytest.fixture(scope="session")
def onnx_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny training output with O(1) logits, its dataset, float32 + onnx bundles."""
    root = tmp_path_factory.mktemp("onnx")
    data = make_dataset(root / "data", classes=LABELS, per_class=2)
    model = build_tiny_keras_model()
    images = sorted((data / "train").rglob("*.jpg"))
    x = np.stack([preprocess_file(p, image_size=TINY_SIZE) for p in images])
    spread = float(np.std(model.predict(x, verbose=0)))
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel / spread, bias / spread])
    train_dir = root / "train"
    train_dir.mkdir()
    model.save(train_dir / "model.keras")
    metrics = {"labels": list(LABELS), "image_size": TINY_SIZE, "data_dir": str(data)}
    (train_dir / "metrics.json").write_text(json.dumps({**metrics, **CALIBRATION}))
    out = root / "bundles"
    convert_model(ConvertConfig(train_dir=train_dir, out_dir=out, variants=("float32", "onnx")))
    return {"train": train_dir, "data": data, "out": out}


def copy_bundle(source: Path, dest: Path, **manifest_changes: Any) -> Path:
    """A copy of a bundle folder with manifest fields replaced (None: removed)."""
    shutil.copytree(source, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    for key, value in manifest_changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


# -- the bundle ---------------------------------------------------------------


def test_onnx_bundle_has_the_same_manifest_fields(onnx_run: dict[str, Path]) -> None:
    onnx_dir, float_dir = onnx_run["out"] / "onnx", onnx_run["out"] / "float32"
    assert sorted(p.name for p in onnx_dir.iterdir()) == ["manifest.json", "model.onnx"]
    ours = json.loads((onnx_dir / "manifest.json").read_text())
    theirs = json.loads((float_dir / "manifest.json").read_text())
    assert (ours["format"], theirs["format"]) == ("onnx", "tflite")
    assert ours["variant"] == "onnx"
    assert ours["model_sha256"] == sha256_file(onnx_dir / "model.onnx")
    same = ("labels", "image_size", "preprocessing", "resize", "output", "source_model_sha256")
    assert {k: ours[k] for k in same} == {k: theirs[k] for k in same}
    assert {k: ours[k] for k in CALIBRATION} == CALIBRATION  # temperature, threshold
    assert ours["converter"]["tf2onnx"] and ours["converter"]["opset"] == "17"
    read = read_bundle(onnx_dir)
    assert read.model_path == onnx_dir / "model.onnx"
    assert ours["operators"] == [dict(op) for op in onnx_operators(read.model_bytes)]
    names = {op["name"] for op in ours["operators"]}
    assert {"Conv", "MatMul"} <= names  # Xception's convolutions and the dense head
    assert all(op["version"] == 17 for op in ours["operators"] if "domain" not in op)


def test_publish_is_atomic_for_onnx(onnx_run: dict[str, Path], tmp_path: Path) -> None:
    """A failing variant after onnx leaves nothing at --out (convert publishes all or nothing)."""
    out = tmp_path / "bundles"
    with pytest.raises(ConvertError, match="calibration"):
        # int8 needs calibration images; an empty folder fails after onnx converted.
        empty = tmp_path / "empty"
        empty.mkdir()
        convert_model(
            ConvertConfig(
                train_dir=onnx_run["train"],
                out_dir=out,
                variants=("onnx", "int8"),
                calibration_dir=empty,
            )
        )
    assert not out.exists()
    assert not list(tmp_path.glob(".bundles.*"))


# -- parity -------------------------------------------------------------------


@pytest.fixture(scope="module")
def logits(onnx_run: dict[str, Path]) -> dict[str, np.ndarray]:
    """Logits of the test split by Keras, the ONNX bundle and the float32 TFLite bundle."""
    import keras

    images = sorted((onnx_run["data"] / "test").rglob("*.jpg"))
    x = np.stack([preprocess_file(p, image_size=TINY_SIZE) for p in images])
    model = keras.models.load_model(onnx_run["train"] / "model.keras", compile=False)
    onnx = Classifier.load(onnx_run["out"] / "onnx")
    tflite = Classifier.load(onnx_run["out"] / "float32")
    return {
        "keras": np.asarray(model.predict(x, verbose=0)),
        "onnx": np.stack([onnx.logits(row) for row in x]),
        "float32": np.stack([tflite.logits(row) for row in x]),
    }


@pytest.mark.parametrize(
    ("reference", "tolerance"),
    [("keras", 1e-4), ("float32", 1e-4)],  # float rounding only: the check's float32 bar
)
def test_onnx_logits_match(logits: dict[str, np.ndarray], reference: str, tolerance: float) -> None:
    ours, theirs = logits["onnx"], logits[reference]
    assert ours.shape == theirs.shape == (len(LABELS) * 2, len(LABELS))
    assert float(np.std(theirs)) > 0.1  # the rescaled head: a tolerance that can fail
    assert np.max(np.abs(ours - theirs)) <= tolerance
    assert (ours.argmax(axis=1) == theirs.argmax(axis=1)).all()


def test_onnx_prediction_contract(onnx_run: dict[str, Path]) -> None:
    """Same Prediction as the TFLite bundle: logits, calibrated scores, unsure."""
    image = sorted((onnx_run["data"] / "test").rglob("*.jpg"))[0]
    ours = Classifier.load(onnx_run["out"] / "onnx").predict_file(image)
    theirs = Classifier.load(onnx_run["out"] / "float32").predict_file(image)
    assert ours.temperature == theirs.temperature == CALIBRATION["temperature"]
    assert ours.unsure_threshold == CALIBRATION["unsure_threshold"]
    np.testing.assert_allclose(ours.probabilities, theirs.probabilities, atol=1e-4)
    assert (ours.label, ours.unsure) == (theirs.label, theirs.unsure)
    assert set(ours.to_dict()) == set(theirs.to_dict())


# -- which runtime ------------------------------------------------------------

OK_ONNX, OK_LITERT, OK_TF = "onnxruntime", "ai-edge-litert", "tensorflow"


@pytest.mark.parametrize(
    ("bundle", "env_runtime", "expected"),
    [
        ("onnx", None, OK_ONNX),  # the format picks
        ("onnx", "onnxruntime", OK_ONNX),
        ("onnx", "ai-edge-litert", RuntimeUnavailableError),
        ("onnx", "tensorflow", RuntimeUnavailableError),
        ("float32", None, OK_LITERT),
        ("float32", "ai-edge-litert", OK_LITERT),
        ("float32", "tensorflow", OK_TF),
        ("float32", "onnxruntime", RuntimeUnavailableError),
        ("float32", "no-such-runtime", ValueError),
    ],
)
def test_runtime_from_format_and_env(
    onnx_run: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    bundle: str,
    env_runtime: str | None,
    expected: str | type[Exception],
) -> None:
    monkeypatch.setenv("MODEL_DIR", str(onnx_run["out"] / bundle))
    if env_runtime is None:
        monkeypatch.delenv("INFERENCE_RUNTIME", raising=False)
    else:
        monkeypatch.setenv("INFERENCE_RUNTIME", env_runtime)
    if isinstance(expected, str):
        assert Classifier.from_config(InferenceConfig.from_env()).runtime.name == expected
        return
    with pytest.raises(expected) as info:  # an unknown name: already from_env's ValueError
        Classifier.from_config(InferenceConfig.from_env())
    if expected is RuntimeUnavailableError:  # names the runtime and what would run it
        message = str(info.value)
        assert repr(env_runtime) in message
        assert all(
            repr(name) in message
            for name in runtime_order("onnx" if bundle == "onnx" else "tflite")
        )


@pytest.mark.parametrize(
    ("model_format", "runtime", "expected"),
    [
        ("tflite", None, FORMAT_RUNTIMES["tflite"]),
        ("onnx", None, ("onnxruntime",)),
        ("onnx", "onnxruntime", ("onnxruntime",)),
        ("tflite", "tflite-runtime", ("tflite-runtime",)),
        ("onnx", "tflite-runtime", RuntimeUnavailableError),
        ("tflite", "onnxruntime", RuntimeUnavailableError),
        ("keras", None, ValueError),
    ],
)
def test_runtime_order_table(
    model_format: str, runtime: str | None, expected: tuple[str, ...] | type[Exception]
) -> None:
    if isinstance(expected, tuple):
        assert runtime_order(model_format, runtime) == expected
    else:
        with pytest.raises(expected):
            runtime_order(model_format, runtime)


def test_bundle_without_format_loads_as_tflite(onnx_run: dict[str, Path], tmp_path: Path) -> None:
    old = copy_bundle(onnx_run["out"] / "float32", tmp_path / "old", format=None)
    assert "format" not in json.loads((old / "manifest.json").read_text())
    clf = Classifier.load(old)
    assert (clf.manifest.format, clf.runtime.name) == ("tflite", "ai-edge-litert")


@pytest.mark.parametrize("value", ["ONNX", "pt", 3, ""])
def test_unknown_format_is_a_bundle_error(
    onnx_run: dict[str, Path], tmp_path: Path, value: object
) -> None:
    bad = copy_bundle(onnx_run["out"] / "onnx", tmp_path / "bad", format=value)
    with pytest.raises(BundleError, match=r"`format` must be one of \['onnx', 'tflite'\]"):
        read_bundle(bad)


def test_onnx_format_needs_model_onnx(onnx_run: dict[str, Path], tmp_path: Path) -> None:
    """A manifest saying onnx next to a model.tflite: the missing file is named."""
    bad = copy_bundle(onnx_run["out"] / "float32", tmp_path / "bad", format="onnx")
    with pytest.raises(BundleError, match=r"has no model\.onnx"):
        read_bundle(bad)


# -- threads ------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_set_intra_op_threads(onnx_run: dict[str, Path], threads: int) -> None:
    clf = Classifier.load(onnx_run["out"] / "onnx", num_threads=threads)
    options = clf._interpreter._session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (threads, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_threads_from_env(onnx_run: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_DIR", str(onnx_run["out"] / "onnx"))
    monkeypatch.setenv("INFERENCE_THREADS", "2")
    clf = Classifier.from_config(InferenceConfig.from_env())
    assert clf._interpreter._session.get_session_options().intra_op_num_threads == 2


@pytest.mark.parametrize("threads", [0, -1])
def test_bad_threads_are_refused(onnx_run: dict[str, Path], threads: int) -> None:
    with pytest.raises(ValueError, match=f"Received: num_threads={threads}"):
        Classifier.load(onnx_run["out"] / "onnx", num_threads=threads)


# -- broken bundles -----------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b"\x00" * 64,  # zeros
        lambda b: b"not a protobuf" + b[100:],  # garbage header
        lambda b: b"",  # empty
    ],
    ids=["truncated", "zeros", "garbage", "empty"],
)
def test_corrupt_model_onnx_is_a_typed_error(
    onnx_run: dict[str, Path], tmp_path: Path, damage: Any
) -> None:
    """A damaged model.onnx whose manifest was updated to match still fails, typed."""
    bad = tmp_path / "bad"
    shutil.copytree(onnx_run["out"] / "onnx", bad)
    content = damage((bad / "model.onnx").read_bytes())
    (bad / "model.onnx").write_bytes(content)
    with pytest.raises(BundleError, match="sha256"):  # the manifest's hash catches it first
        Classifier.load(bad)
    copy = copy_bundle(bad, tmp_path / "rehashed", model_sha256=sha256_file(bad / "model.onnx"))
    with pytest.raises(RuntimeUnavailableError, match=r"onnxruntime .* cannot load the model"):
        Classifier.load(copy)


def test_missing_onnxruntime_says_how_to_install(
    onnx_run: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(RuntimeUnavailableError, match=r"pip install '\.\[serve,onnx\]'"):
        Classifier.load(onnx_run["out"] / "onnx")


def test_cli_predict_with_wrong_runtime_exits_cleanly(
    onnx_run: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from inference.__main__ import main

    image = sorted((onnx_run["data"] / "test").rglob("*.jpg"))[0]
    args = ["predict", str(image), "--model", str(onnx_run["out"] / "onnx")]
    assert main([*args, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["runtime"]["name"] == "onnxruntime"
    assert answer["results"][0]["label"] in LABELS
    code = main([*args, "--runtime", "ai-edge-litert"])
    assert code != 0
    err = capsys.readouterr().err
    assert "cannot run an 'onnx' bundle" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("model_format", "runtime", "words"),
    [
        ("onnx", "ai-edge-litert", "cannot run an 'onnx' bundle"),
        ("tflite", "onnxruntime", "cannot run a 'tflite' bundle"),
    ],
)
def test_runtime_mismatch_message_reads_well(model_format: str, runtime: str, words: str) -> None:
    with pytest.raises(RuntimeUnavailableError, match=words):
        runtime_order(model_format, runtime)


# -- the conversion check -----------------------------------------------------


def test_check_measures_onnx_like_the_others(onnx_run: dict[str, Path]) -> None:
    report = check_bundles(
        CheckConfig(
            train_dir=onnx_run["train"],
            out_dir=onnx_run["out"],
            images_dir=onnx_run["data"] / "test",
            latency_runs=3,
            warmup_runs=1,
            reference_runtime=None,
        )
    )
    by_variant = {r.variant: r for r in report.results}
    assert set(by_variant) == {"float32", "onnx"}
    onnx = by_variant["onnx"]
    assert onnx.passed, onnx.failures  # float32's bar: 100% agreement, |Δlogit| <= 1e-4
    assert onnx.model_format == "onnx" and onnx.runtime.startswith("onnxruntime ")
    assert onnx.agreement_pct == 100.0 and onnx.max_abs_logit_diff <= 1e-4
    assert onnx.accuracy_pct == by_variant["float32"].accuracy_pct
    assert [x.threads for x in onnx.latency] == [1, 2]
    assert all(x.runtime.startswith("onnxruntime ") and x.median_ms > 0 for x in onnx.latency)
    assert [(x.runtime, x.status) for x in onnx.loads_with] == [("onnxruntime", "ok")]
    assert onnx.decision_changes == 0


def test_check_with_a_tflite_runtime_still_checks_onnx(onnx_run: dict[str, Path]) -> None:
    """--runtime names the TFLite runtime; ONNX bundles keep onnxruntime."""
    report = check_bundles(
        CheckConfig(
            train_dir=onnx_run["train"],
            out_dir=onnx_run["out"],
            images_dir=onnx_run["data"] / "test",
            max_images=4,
            threads=(1,),
            latency_runs=2,
            warmup_runs=0,
            runtime="tensorflow",
            reference_runtime=None,
        )
    )
    runtimes = {r.variant: r.runtime.split()[0] for r in report.results}
    assert runtimes == {"float32": "tensorflow", "onnx": "onnxruntime"}


# -- bench.onnx ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["onnxruntime", "ai-edge-litert"])
def test_install_size_counts_the_wheel_files(name: str) -> None:
    from bench.onnx import distribution_bytes, install_size

    size = install_size(name)
    assert size.own_bytes == distribution_bytes(name) > 1_000_000  # both ship native code
    assert size.with_dependencies_bytes >= size.own_bytes
    assert "numpy" not in size.dependencies  # every serve install has it


def test_bench_onnx_end_to_end(onnx_run: dict[str, Path], tmp_path: Path) -> None:
    from bench.onnx import main

    out = tmp_path / "bench"
    argv = [str(onnx_run["train"]), "--out", str(out), "--bundles", str(onnx_run["out"])]
    argv += ["--images", str(onnx_run["data"] / "test"), "--latency-runs", "2", "--cold-runs", "1"]
    assert main(argv) == 0
    result = json.loads((out / "onnx_vs_litert.json").read_text())
    assert set(result["runtimes"]) == {"ai-edge-litert", "onnxruntime"}
    for data in result["runtimes"].values():
        assert data["agreement_pct"] == 100.0
        assert [x["threads"] for x in data["latency"]] == [1, 2]
        assert data["cold_start"]["total_s"] > data["cold_start"]["load_s"] > 0
    assert result["faster_at_fewest_threads"] in result["runtimes"]
    markdown = (out / "onnx_vs_litert.md").read_text()
    assert "| onnxruntime " in markdown and "| ai-edge-litert " in markdown
    assert (out / "onnx_vs_litert.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("extra", [["--cold-runs", "0"], ["--threads", "0"], ["--max-images", "0"]])
def test_bench_onnx_bad_usage_exits_2(
    onnx_run: dict[str, Path], tmp_path: Path, extra: list[str]
) -> None:
    from bench.onnx import main

    with pytest.raises(SystemExit) as info:
        main([str(onnx_run["train"]), "--out", str(tmp_path / "b"), *extra])
    assert info.value.code == 2
    assert not (tmp_path / "b").exists()


# -- onnx-int8, measured but not shipped ---------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activations": "uint4"}, r"`activations` must be one of \['uint8', 'int8'\]"),
        ({"calibration": []}, "`calibration` must hold at least one image"),
    ],
)
def test_quantize_int8_refuses_bad_arguments(
    onnx_run: dict[str, Path], kwargs: dict[str, Any], message: str
) -> None:
    from convert._onnx import quantize_int8

    content = (onnx_run["out"] / "onnx" / "model.onnx").read_bytes()
    arguments: dict[str, Any] = {"calibration": [np.zeros((TINY_SIZE, TINY_SIZE, 3))], **kwargs}
    with pytest.raises(ValueError, match=message):
        quantize_int8(content, **arguments)


def test_quantize_int8_gives_an_integer_model(onnx_run: dict[str, Path]) -> None:
    from convert._onnx import quantize_int8

    content = (onnx_run["out"] / "onnx" / "model.onnx").read_bytes()
    images = sorted((onnx_run["data"] / "train").rglob("*.jpg"))[:4]
    calibration = [preprocess_file(p, image_size=TINY_SIZE) for p in images]
    quantized = quantize_int8(content, calibration)
    names = {op["name"] for op in onnx_operators(quantized)}
    assert {"QuantizeLinear", "DequantizeLinear"} <= names
    assert len(quantized) < 0.4 * len(content)  # int8 weights


def test_onnx_int8_is_not_a_variant() -> None:
    """It missed int8's bar on validation images (README, "ONNX Runtime"): not offered."""
    with pytest.raises(ValueError, match="variants"):
        ConvertConfig(train_dir=".", out_dir="out", variants=("onnx-int8",))


@pytest.mark.parametrize("extra", [["--calibration-size", "0"], ["--runs", "0"]])
def test_bench_onnx_int8_bad_usage_exits_2(
    onnx_run: dict[str, Path], tmp_path: Path, extra: list[str]
) -> None:
    from bench.onnx_int8 import main

    with pytest.raises(SystemExit) as info:
        main([str(onnx_run["train"]), "--out", str(tmp_path / "q"), *extra])
    assert info.value.code == 2
    assert not (tmp_path / "q").exists()
