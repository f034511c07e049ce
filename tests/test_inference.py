"""The runtime: bundle checks, interpreter choice, predictions, the device CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference import (
    BundleError,
    Classifier,
    InferenceError,
    Prediction,
    RuntimeUnavailableError,
    read_bundle,
    softmax,
)
from inference.__main__ import main
from tests.conftest import LABELS, TINY_SIZE, make_image

IMAGES = Path(__file__).parent / "images"


def test_importing_the_runtime_never_imports_tensorflow() -> None:
    code = (
        "import sys, inference, inference.__main__; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prediction_is_json_ready(tiny_bundle: Path, tmp_path: Path) -> None:
    clf = Classifier.load(tiny_bundle, num_threads=1)
    assert clf.runtime.name == "ai-edge-litert"
    prediction = clf.predict_file(make_image(tmp_path / "a.jpg", color=(200, 10, 10)), top_k=4)
    data = json.loads(json.dumps(prediction.to_dict()))
    assert list(data["scores"]) == list(LABELS)
    assert all(type(v) is float for v in data["scores"].values())
    assert sum(data["scores"].values()) == pytest.approx(1.0)
    assert len(data["top"]) == 4
    assert data["top"][0]["label"] == data["label"] == max(data["scores"], key=data["scores"].get)
    probs = [t["score"] for t in data["top"]]
    assert probs == sorted(probs, reverse=True)


@pytest.mark.parametrize(
    ("data", "steps"),
    [
        ("jpeg", ["decode", "preprocess", "inference"]),
        (b"not an image", []),  # decode raised: no step recorded
    ],
)
def test_predict_bytes_times_its_steps(
    tiny_bundle: Path, tmp_path: Path, data: bytes | str, steps: list[str]
) -> None:
    clf = Classifier.load(tiny_bundle, num_threads=1)
    timings: dict[str, float] = {"parse": 1.5}  # the caller's own entries are kept
    if data == "jpeg":
        raw = make_image(tmp_path / "a.jpg", color=(10, 200, 10)).read_bytes()
        timed = clf.predict_bytes(raw, top_k=2, timings_ms=timings)
        assert timed.to_dict() == clf.predict_bytes(raw, top_k=2).to_dict()
    else:
        assert isinstance(data, bytes)
        with pytest.raises(InferenceError):
            clf.predict_bytes(data, timings_ms=timings)
    assert list(timings) == ["parse", *steps]
    assert all(v >= 0 for v in timings.values())


def test_softmax_is_stable_for_large_logits() -> None:
    p = softmax(np.array([1000.0, 0.0, -1000.0]))
    assert p.tolist() == pytest.approx([1.0, 0.0, 0.0])


def _copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_manifest(bundle: Path, **changes: object) -> None:
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda b: (b / "model.tflite").write_bytes(
                (b / "model.tflite").read_bytes()[:-1] + b"x"
            ),
            "does not match the manifest's model_sha256",
        ),
        (lambda b: (b / "manifest.json").unlink(), "has no manifest.json"),
        (lambda b: (b / "manifest.json").write_text("{not json"), "not valid JSON"),
        (
            lambda b: _edit_manifest(b, image_size=150),
            "does not match the manifest's image_size=150",
        ),
        (lambda b: _edit_manifest(b, labels=["a", "b"]), "the manifest lists 2 labels"),
        (lambda b: _edit_manifest(b, preprocessing="resnet"), "`preprocessing` must be 'xception'"),
        (lambda b: _edit_manifest(b, labels="dress"), "`labels` must be a list"),
        (lambda b: _edit_manifest(b, schema_version=9), "`schema_version` must be 1"),
        (lambda b: _edit_manifest(b, temperature=0), "`temperature` must be a number in (0, 100]"),
        (lambda b: _edit_manifest(b, temperature="2"), "Received: temperature='2'"),
        (lambda b: _edit_manifest(b, temperature=1e300), "Received: temperature=1e+300"),
        (lambda b: _edit_manifest(b, unsure_threshold=1.5), "`unsure_threshold` must be"),
        (lambda b: _edit_manifest(b, unsure_threshold=True), "Received: unsure_threshold=True"),
    ],
)
def test_bad_bundles_are_refused(tiny_bundle: Path, tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    bundle = _copy_bundle(tiny_bundle, tmp_path / "b")
    damage(bundle)
    with pytest.raises(BundleError) as info:
        Classifier.load(bundle)
    assert message in str(info.value)


def test_missing_bundle_folder(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        read_bundle(tmp_path / "nowhere")


@pytest.mark.parametrize("runtime", ["tflite-runtime", "no-such-runtime"])
def test_runtime_override(tiny_bundle: Path, runtime: str) -> None:
    error = ValueError if runtime == "no-such-runtime" else RuntimeUnavailableError
    with pytest.raises(error):
        Classifier.load(tiny_bundle, runtime=runtime)


def test_runtime_env_var(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("INFERENCE_RUNTIME", "tensorflow")
    image = make_image(tmp_path / "a.jpg", color=(10, 10, 200))
    assert main(["predict", str(image), "--model", str(tiny_bundle), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["runtime"]["name"] == "tensorflow"


def test_cli_reports_bad_images_and_still_classifies_the_rest(
    tiny_bundle: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    good = make_image(tmp_path / "good.jpg", color=(0, 200, 0))
    argv = [
        "predict",
        str(good),
        str(IMAGES / "truncated.jpg"),
        str(tmp_path / "missing.jpg"),
        str(IMAGES / "not_an_image.jpg"),
        "--model",
        str(tiny_bundle),
        "--json",
        "--top-k",
        "2",
    ]
    assert main(argv) == 1
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r.get("error", {}).get("code") for r in results] == [
        None,
        "CORRUPT_IMAGE",
        "FILE_NOT_FOUND",
        "UNSUPPORTED_FORMAT",
    ]
    assert len(results[0]["top"]) == 2


def test_cli_table_output(tiny_bundle: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    image = make_image(tmp_path / "shirt.jpg", color=(0, 200, 0))
    assert main(["predict", str(image), "--model", str(tiny_bundle)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(str(image))
    assert out.count("%") == 4  # the answer line, then top-3 rows


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "/nonexistent"], "Model bundle folder not found"),
        (["--top-k", "0"], "`top_k` must be >= 1"),
        (["--top-k", "99"], f"`top_k` must be from 1 to {len(LABELS)} (the bundle's classes)"),
        (["--threads", "0"], "`num_threads` must be >= 1"),
    ],
)
def test_cli_usage_errors_exit_2(
    tiny_bundle: Path, tmp_path: Path, argv: list[str], message: str, capsys
) -> None:  # type: ignore[no-untyped-def]
    image = make_image(tmp_path / "a.jpg", color=(0, 0, 0))
    base = ["predict", str(image), "--model", str(tiny_bundle)]
    assert main(base + argv) == 2
    assert message in capsys.readouterr().err


def test_bench_cli(tiny_bundle: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["bench", "--model", str(tiny_bundle), "--threads", "1", "2", "--runs", "3"]) == 0
    out = capsys.readouterr().out
    assert "ai-edge-litert" in out and "peak RSS" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("1 ", "2 "))]) == 2


@pytest.mark.integration
def test_float32_bundle_matches_keras_on_real_images(
    tiny_train_output: Path, tiny_bundle: Path, shared_data_dir: Path
) -> None:
    """Full path: file bytes -> decode -> preprocess -> interpreter vs Keras on the same file."""
    import keras

    model = keras.models.load_model(tiny_train_output / "model.keras")
    clf = Classifier.load(tiny_bundle)
    paths = [sorted(d.glob("*.jpg"))[0] for d in sorted((shared_data_dir / "test").iterdir())]
    reference = keras.utils.load_img(
        paths[0], target_size=(TINY_SIZE, TINY_SIZE), interpolation="nearest"
    )
    assert reference.size == (TINY_SIZE, TINY_SIZE)
    for path in paths:
        x = keras.applications.xception.preprocess_input(
            keras.utils.img_to_array(
                keras.utils.load_img(
                    path, target_size=(TINY_SIZE, TINY_SIZE), interpolation="nearest"
                )
            )
        )
        keras_logits = model.predict(x[np.newaxis], verbose=0)[0]
        lite_logits = np.array(clf.predict_file(path).logits)
        np.testing.assert_allclose(lite_logits, keras_logits, atol=1e-4)


@pytest.mark.parametrize(
    ("logits", "probabilities", "order"),
    [
        ((1.0, 3.0, 2.0), (0.09, 0.67, 0.24), ["pants", "shoes", "hat"]),
        # scores that round to a tie (a huge temperature) keep the model's order
        ((1.0, 3.0, 2.0), (1 / 3, 1 / 3, 1 / 3), ["pants", "shoes", "hat"]),
        ((5.0, 5.0, 1.0), (0.5, 0.5, 0.0), ["hat", "pants", "shoes"]),  # ties: first class
    ],
)
def test_top_is_in_logit_order_and_starts_with_the_label(
    logits: tuple[float, ...], probabilities: tuple[float, ...], order: list[str]
) -> None:
    prediction = Prediction(
        labels=("hat", "pants", "shoes"), logits=logits, probabilities=probabilities, top_k=3
    )
    assert [t["label"] for t in prediction.top()] == order
    assert prediction.top(1)[0]["label"] == prediction.label == order[0]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="/dev/full is Linux's")
def test_cli_says_when_it_cannot_write_its_output(tiny_bundle: Path, tmp_path: Path) -> None:
    image = make_image(tmp_path / "a.jpg", color=(0, 0, 0))
    argv = [sys.executable, "-m", "inference", "predict", str(image), "--model", str(tiny_bundle)]
    with open("/dev/full", "w") as full:
        done = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True, check=False)
    assert done.returncode == 2
    assert "error: cannot write the results to stdout" in done.stderr
    assert "Traceback" not in done.stderr
