"""The worked examples in examples/: the X/O toy CNN and the ImageNet prediction.

The X/O weights are small integers, so float32 arithmetic is exact and numpy,
Keras and TFLite must agree bit for bit: every comparison here is equality.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from examples import imagenet_predict, xo_cnn
from examples.xo_cnn import IMAGES, O_IMAGE, STEPS, X_IMAGE, Weights, shift

REPO = Path(__file__).resolve().parents[1]

# Beyond the lesson's three: other one-pixel moves must not change the class either.
MORE_IMAGES = {
    "X shifted down": shift(X_IMAGE, down=1),
    "X shifted right and down": shift(X_IMAGE, right=1, down=1),
    "O shifted right": shift(O_IMAGE, right=1),
    "O shifted down": shift(O_IMAGE, down=1),
}
ALL_IMAGES = {**IMAGES, **MORE_IMAGES}


def random_integer_weights(seed: int) -> Weights:
    """Lopsided integer weights: a transposed kernel or a shuffled flatten would show."""
    rng = np.random.default_rng(seed)
    return Weights(
        conv_kernel=rng.integers(-3, 4, size=(3, 3)).astype(np.float32),
        conv_bias=float(rng.integers(-2, 3)),
        hidden_kernel=rng.permutation(np.array([1, 2, 3, 4], np.float32)),
        hidden_bias=1.0,
        output_kernel=rng.integers(-3, 4, size=2).astype(np.float32),
        output_bias=rng.integers(-3, 4, size=2).astype(np.float32),
    )


# -----------------------------------------------------------------------------
# X/O: the numpy network


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("X", "X"),
        ("O", "O"),
        ("X shifted right", "X"),
        ("X shifted down", "X"),
        ("X shifted right and down", "X"),
        ("O shifted right", "O"),
        ("O shifted down", "O"),
    ],
)
def test_xo_classifies(name: str, expected: str) -> None:
    assert xo_cnn.classify(ALL_IMAGES[name]) == expected


@pytest.mark.parametrize(
    ("name", "pooled", "hidden", "outputs"),
    [
        # The X's crossing scores 5 - 3 = 2 in the top-left pooling region...
        ("X", [[2, 0], [0, 0]], 2, [-1, 1]),
        # ...shifted right, in the top-right one: pooled moves, hidden and outputs do not.
        ("X shifted right", [[0, 2], [0, 0]], 2, [-1, 1]),
        # No window on an O matches better than the bias: nothing survives ReLU.
        ("O", [[0, 0], [0, 0]], 0, [1, -1]),
    ],
)
def test_xo_intermediates_by_hand(
    name: str, pooled: list[list[int]], hidden: int, outputs: list[int]
) -> None:
    steps = xo_cnn.forward(IMAGES[name])
    assert np.array_equal(steps["pooled"], np.array(pooled, np.float32))
    assert np.array_equal(steps["hidden"], np.array([hidden], np.float32))
    assert np.array_equal(steps["outputs"], np.array(outputs, np.float32))


def test_xo_feature_map_of_x_by_hand() -> None:
    # Window at (1, 1) covers the crossing: 5 ink cells on +1, none on -1; bias -3.
    # Window at (0, 0) covers one arm: 3 on +1; window at (0, 1): 0 on +1, 3 on -1.
    feature_map = xo_cnn.forward(X_IMAGE)["feature map"]
    assert feature_map[1, 1] == 5 - 3
    assert feature_map[0, 0] == 3 - 3
    assert feature_map[0, 1] == -3 - 3
    assert np.argwhere(xo_cnn.forward(X_IMAGE)["after ReLU"] > 0).tolist() == [[1, 1]]


@pytest.mark.parametrize(
    ("right", "down", "message"),
    [(-1, 0, "must be >= 0"), (2, 0, "push ink off"), (0, 2, "push ink off")],
)
def test_shift_refuses_to_lose_ink(right: int, down: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        shift(X_IMAGE, right=right, down=down)


def test_letter_rejects_a_wrong_size() -> None:
    with pytest.raises(
        ValueError, match=r"`drawing` must be 6 rows of 6 cells. Received: shape=\(2, 3\)"
    ):
        xo_cnn.letter("# . #\n. # .")


# -----------------------------------------------------------------------------
# X/O: Keras with the same weights


@pytest.fixture(scope="module")
def keras_model() -> Any:
    return xo_cnn.build_keras_model()


@pytest.mark.parametrize("name", list(ALL_IMAGES))
def test_keras_equals_numpy_at_every_step(keras_model: Any, name: str) -> None:
    ours = xo_cnn.forward(ALL_IMAGES[name])
    theirs = xo_cnn.keras_forward(keras_model, ALL_IMAGES[name])
    for step in STEPS:
        assert np.array_equal(ours[step], theirs[step]), (step, ours[step], theirs[step])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keras_equals_numpy_with_lopsided_weights(seed: int) -> None:
    weights = random_integer_weights(seed)
    model = xo_cnn.build_keras_model(weights)
    for name, image in ALL_IMAGES.items():
        ours = xo_cnn.forward(image, weights)
        theirs = xo_cnn.keras_forward(model, image)
        for step in STEPS:
            assert np.array_equal(ours[step], theirs[step]), (seed, name, step)


def test_keras_model_holds_the_hand_set_weights(keras_model: Any) -> None:
    for got, want in zip(keras_model.get_weights(), xo_cnn.keras_weights(), strict=True):
        assert np.array_equal(got, want)


def test_xo_main_prints_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert xo_cnn.main([]) == 0
    out = capsys.readouterr().out
    for heading in ("=== X ===", "=== O ===", "=== X shifted right ===", *STEPS[1:]):
        assert heading in out
    assert out.count("outputs (O, X): -1 1  -> X") == 2
    assert out.count("outputs (O, X): 1 -1  -> O") == 1
    assert "every intermediate equal to numpy's: True" in out


# -----------------------------------------------------------------------------
# X/O: through the toolchain (python -m convert, then inference)


def test_xo_through_convert_and_inference(tmp_path: Path) -> None:
    from inference import Classifier

    predictions = xo_cnn.run_toolchain(tmp_path)

    # convert's check ran on the labelled PNGs: the bundle predicts exactly as Keras does.
    report = json.loads((tmp_path / "bundles" / "report.json").read_text())
    assert report["passed"] and report["n_labeled"] == 3
    assert [v["variant"] for v in report["variants"]] == ["float32"]
    assert report["variants"][0]["max_abs_logit_diff"] == 0.0
    assert report["variants"][0]["accuracy_pct"] == 100.0

    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert metrics == {"labels": ["O", "X"], "image_size": 6}
    classifier = Classifier.load(tmp_path / "bundles" / "float32")
    assert classifier.manifest.labels == ("O", "X")
    assert classifier.manifest.image_size == 6
    assert set(predictions) == set(IMAGES)
    for name, image in IMAGES.items():
        png = xo_cnn.png_path(tmp_path / "images", name)
        # The PNG holds pure black and white, which preprocess to exactly -1 and +1.
        assert np.array_equal(np.unique(np.asarray(Image.open(png))), [0, 255])
        prediction = classifier.predict_file(png)
        assert prediction.label == xo_cnn.EXPECTED[name]
        assert predictions[name].label == xo_cnn.EXPECTED[name]
        want = xo_cnn.forward(image)["outputs"]
        assert np.array_equal(np.array(prediction.logits, np.float32), want), (
            name,
            prediction.logits,
        )


def test_toolchain_model_turns_preprocessed_rgb_into_ink() -> None:
    from inference import preprocess_image

    model = xo_cnn.build_toolchain_model()
    for name, image in IMAGES.items():
        grey = np.rint((1.0 - image) * 255).astype(np.uint8)
        rgb = Image.fromarray(np.stack([grey, grey, grey], axis=-1))
        x = preprocess_image(rgb, image_size=6)
        logits = np.asarray(model(x[np.newaxis]))[0]
        assert np.array_equal(logits, xo_cnn.forward(image)["outputs"]), name


# -----------------------------------------------------------------------------
# ImageNet prediction


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, size=(40, 30, 3), dtype=np.uint8)).save(path)
    return path


def test_imagenet_predict_runs_with_random_weights(
    photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert imagenet_predict.main([str(photo), "--weights", "none"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 5, captured.out
    probabilities = []
    for rank, line in enumerate(lines, start=1):
        fields = line.split()
        assert fields[0] == str(rank)
        assert fields[2] == "class" and 0 <= int(fields[3]) < 1000
        probabilities.append(float(fields[1]))
    assert probabilities == sorted(probabilities, reverse=True)
    assert "random weights" in captured.err


def test_top_predictions_names_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for imagenet_class_index.json, which Keras would download.
    fake_index = {str(i): [f"n{i:08d}", f"thing_{i}"] for i in range(1000)}
    monkeypatch.setattr("keras.src.applications.imagenet_utils.CLASS_INDEX", fake_index)
    probabilities = np.full(1000, 0.0001, np.float32)
    probabilities[[610, 841, 3]] = [0.6, 0.2, 0.1]
    top = imagenet_predict.top_predictions(probabilities, top=5, decode=True)
    assert [name for name, _ in top[:3]] == [
        "thing_610 (n00000610)",
        "thing_841 (n00000841)",
        "thing_3 (n00000003)",
    ]
    assert len(top) == 5


class _StubModel:
    """Stands in for Xception when the test is about what comes after it."""

    def predict(self, x: np.ndarray, verbose: int = 0) -> np.ndarray:
        assert x.shape == (1, 299, 299, 3)
        return np.full((1, 1000), 0.001, np.float32)


@pytest.mark.parametrize(
    ("failing", "message"),
    [
        ("weights", "Cannot download the ImageNet weights of Xception"),
        ("class names", "Cannot download the ImageNet class names"),
    ],
)
def test_imagenet_predict_offline_says_so(
    failing: str,
    message: str,
    photo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import keras.src.backend.config
    import keras.src.utils.file_utils

    def no_internet(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    # Below keras.utils.get_file, so that Keras wraps the error as it does offline;
    # an empty Keras home, so that no cached download hides the failure.
    monkeypatch.setattr(keras.src.utils.file_utils, "urlretrieve", no_internet)
    monkeypatch.setattr(keras.src.backend.config, "_KERAS_DIR", str(tmp_path / "keras"))
    monkeypatch.setattr("keras.src.applications.imagenet_utils.CLASS_INDEX", None)
    if failing == "class names":
        monkeypatch.setattr(imagenet_predict, "load_model", lambda weights: _StubModel())

    assert imagenet_predict.main([str(photo)]) == 1
    captured = capsys.readouterr()
    assert message in captured.err
    for hint in ("internet", "--weights none", "python -m train", "--base-weights"):
        assert hint in captured.err
    assert "Traceback" not in captured.err
    assert not any(line[:2].strip().isdigit() for line in captured.out.splitlines())


def test_imagenet_predict_offline_command_line(photo: Path, tmp_path: Path) -> None:
    # The real CLI with no way out: a proxy nobody listens on, an empty Keras cache.
    env = {**os.environ, "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    env.update({"no_proxy": "", "NO_PROXY": "", "KERAS_HOME": str(tmp_path / "keras")})
    done = subprocess.run(
        [sys.executable, "-m", "examples.imagenet_predict", str(photo)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Cannot download the ImageNet weights of Xception" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("weights", "expected"),
    [("imagenet", "imagenet"), ("none", None)],
)
def test_parse_weights_accepts(weights: str, expected: str | None) -> None:
    assert imagenet_predict.parse_weights(weights) == expected


@pytest.mark.parametrize("weights", ["ImageNet", "None", "", "no/such/file.weights.h5"])
def test_parse_weights_rejects(weights: str) -> None:
    with pytest.raises(
        ValueError, match=r"`weights` must be 'imagenet', 'none' or the path .* Received: weights="
    ):
        imagenet_predict.parse_weights(weights)


def test_imagenet_predict_missing_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert imagenet_predict.main([str(tmp_path / "missing.jpg"), "--weights", "none"]) == 1
    assert "error: Cannot read image" in capsys.readouterr().err
