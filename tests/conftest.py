"""Shared fixtures: generated datasets, tiny Keras models and TFLite bundles.

Fast tests never touch ../shared; integration tests (marker `integration`)
use the real data and weights and are not skipped in CI.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Before TensorFlow loads anywhere in the session: keep its C++ INFO lines quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

from bench._config import SHARED_DATA_DIR, SHARED_WEIGHTS
from inference.env import base_weights_from_env, data_dir_from_env

REPO = Path(__file__).resolve().parents[1]

# The real data and weights: env CLOTHING_DATA_DIR / XCEPTION_WEIGHTS, else ../shared's.
DATA_DIR = data_dir_from_env(os.environ, fallback=SHARED_DATA_DIR)
WEIGHTS = Path(base_weights_from_env(os.environ, fallback=str(SHARED_WEIGHTS)))
LABELS = (
    "dress",
    "hat",
    "longsleeve",
    "outwear",
    "pants",
    "shirt",
    "shoes",
    "shorts",
    "skirt",
    "t-shirt",
)
TINY_SIZE = 71  # Xception's smallest input


def _require_shared() -> None:
    # In CI a missing ../shared is a failure, not a skip (DEVELOPERS.md).
    if not DATA_DIR.is_dir() or not WEIGHTS.is_file():
        pytest.fail(f"integration data missing: {DATA_DIR} / {WEIGHTS}")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    _require_shared()
    return DATA_DIR


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    _require_shared()
    return WEIGHTS


def make_image(
    path: Path, *, color: tuple[int, int, int], size: tuple[int, int] = (96, 80), seed: int = 0
) -> Path:
    """A JPEG of one dominant colour plus noise, so tiny models can learn it."""
    rng = np.random.default_rng(seed)
    base = np.array(color, dtype=np.float64)
    noise = rng.normal(0, 20, size=(size[1], size[0], 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, format="JPEG", quality=90)
    return path


def make_dataset(
    root: Path,
    *,
    classes: tuple[str, ...] = ("hat", "pants", "shoes"),
    per_class: int = 6,
    splits: tuple[str, ...] = ("train", "validation", "test"),
) -> Path:
    colors = [(220, 40, 40), (40, 200, 60), (50, 60, 220), (220, 220, 40), (200, 40, 200)]
    for s, split in enumerate(splits):
        for c, name in enumerate(classes):
            for i in range(per_class):
                make_image(
                    root / split / name / f"{i}.jpg",
                    color=colors[c % len(colors)],
                    seed=1000 * s + 100 * c + i,
                )
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


def build_tiny_keras_model(n_classes: int = len(LABELS), image_size: int = TINY_SIZE):  # type: ignore[no-untyped-def]
    """Xception(weights=None) + the product's head, seeded, as train builds it."""
    import keras

    keras.utils.set_random_seed(0)
    base = keras.applications.Xception(
        weights=None, include_top=False, input_shape=(image_size, image_size, 3)
    )
    base.trainable = False
    inputs = keras.Input(shape=(image_size, image_size, 3))
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(n_classes)(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="session")
def tiny_train_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder shaped like `python -m train` output: model.keras + metrics.json."""
    from train.output import write_train_output

    out = tmp_path_factory.mktemp("tiny_train")
    write_train_output(
        out, build_tiny_keras_model(), {"labels": list(LABELS), "image_size": TINY_SIZE}
    )
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_train_output: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A float32 TFLite bundle of the tiny model (model.tflite + manifest.json)."""
    from convert import ConvertConfig, convert_model

    out = tmp_path_factory.mktemp("tiny_bundle")
    convert_model(
        ConvertConfig(train_dir=tiny_train_output, out_dir=out / "bundles", variants=("float32",))
    )
    return out / "bundles" / "float32"


def unit_logit_spread(model: Any, images: np.ndarray) -> Any:
    """Rescale `model`'s last layer so its logits on `images` have standard deviation 1.

    The cheap form of signal for comparisons (full model vs cached head, TFLite
    vs Keras): class scores stay near chance, but the logits differ between
    images by O(1), so a tolerance of 1e-4 can fail. Returns `model`.
    """
    spread = float(np.std(model.predict(images, verbose=0)))
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel / spread, bias / spread])
    return model


# The real-data run shared by integration tests: 150 px, real ImageNet weights,
# a seeded subset so CI stays fast (about a minute on 2 cores).
REAL_IMAGE_SIZE = 150
REAL_MAX_PER_CLASS = 20
REAL_EPOCHS = 10


@pytest.fixture(scope="session")
def real_train_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m train` output trained on a subset of ../shared (model.keras + metrics.json)."""
    _require_shared()
    from train import TrainConfig, train_model

    root = tmp_path_factory.mktemp("real_train")
    config = TrainConfig(
        data_dir=DATA_DIR,
        output_dir=root / "model",
        image_size=REAL_IMAGE_SIZE,
        epochs=REAL_EPOCHS,
        base_weights=str(WEIGHTS),
        cache_dir=root / "cache",
        max_per_class=REAL_MAX_PER_CLASS,
        verbose=False,
    )
    train_model(config)
    return config.output_dir
