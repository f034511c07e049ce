"""Read what `python -m train` wrote: `model.keras` + `metrics.json`, validated.

Both commands (`convert` and `check`) start here, so a bad training output is
refused the same way, with a message naming the file and the field.
"""

from __future__ import annotations

import json
import logging
import math
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convert._errors import ConvertError
from inference import IMAGE_SUFFIXES, sha256_file

log = logging.getLogger("convert")

KERAS_FILENAME = "model.keras"
METRICS_FILENAME = "metrics.json"


@dataclass(frozen=True)
class TrainOutput:
    """A validated training output folder."""

    directory: Path
    labels: tuple[str, ...]
    image_size: int
    data_dir: Path | None  # the dataset it was trained on, if metrics.json says
    # Calibration (train/calibrate.py), copied into every bundle's manifest;
    # None: a training output from before calibration (the runtime then uses T = 1).
    temperature: float | None = None
    unsure_threshold: float | None = None
    unsure_goal: float | None = None

    @property
    def model_path(self) -> Path:
        return self.directory / KERAS_FILENAME

    def split(self, name: str) -> Path | None:
        """`data_dir/<name>` when metrics.json recorded a data_dir that has it."""
        if self.data_dir is None or not (self.data_dir / name).is_dir():
            return None
        return self.data_dir / name


def read_train_output(train_dir: str | Path) -> TrainOutput:
    """Check that `train_dir` holds a Keras model file and a usable metrics.json."""
    directory = Path(train_dir)
    if not directory.is_dir():
        raise ConvertError(f"Training output folder not found: {str(directory)!r}")
    model_path = directory / KERAS_FILENAME
    if not model_path.is_file():
        raise ConvertError(
            f"No {KERAS_FILENAME} in {str(directory)!r}; expected the folder `python -m train` "
            "wrote."
        )
    # A .keras file is a zip archive holding config.json (keras.saving, Keras 3 format).
    if not zipfile.is_zipfile(model_path):
        raise ConvertError(
            f"{model_path} is not a Keras model file (a .keras file is a zip archive)."
        )
    metrics_path = directory / METRICS_FILENAME
    if not metrics_path.is_file():
        raise ConvertError(f"No {METRICS_FILENAME} in {str(directory)!r}.")
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConvertError(f"{metrics_path}: not valid JSON ({exc}).") from None
    if not isinstance(metrics, dict):
        raise ConvertError(f"{metrics_path}: must be a JSON object.")
    labels = metrics.get("labels")
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(x, str) and x for x in labels)
        or len(set(labels)) != len(labels)
    ):
        raise ConvertError(
            f"{metrics_path}: `labels` must be a list of >= 2 unique non-empty strings. "
            f"Received: labels={labels!r}"
        )
    image_size = metrics.get("image_size")
    if (
        not isinstance(image_size, int)
        or isinstance(image_size, bool)
        or image_size < 1  # any size: Xception's >= 71 is checked where it is built
    ):
        raise ConvertError(
            f"{metrics_path}: `image_size` must be an int >= 1. Received: image_size={image_size!r}"
        )
    data_dir = metrics.get("data_dir")
    temperature = _optional_number(metrics, "temperature", metrics_path, low=0.0, open_low=True)
    if temperature is None:
        log.warning(
            "%s has no `temperature` (trained before calibration): the bundles get none, and "
            "the runtime will use uncalibrated scores (T = 1) with no unsure threshold.",
            metrics_path,
        )
    return TrainOutput(
        directory=directory,
        labels=tuple(labels),
        image_size=image_size,
        data_dir=Path(data_dir).expanduser() if isinstance(data_dir, str) and data_dir else None,
        temperature=temperature,
        unsure_threshold=_optional_number(metrics, "unsure_threshold", metrics_path, high=1.0),
        unsure_goal=_optional_number(metrics, "unsure_goal", metrics_path, high=1.0),
    )


def _optional_number(
    metrics: dict[str, Any],
    key: str,
    path: Path,
    *,
    low: float = 0.0,
    high: float = math.inf,
    open_low: bool = False,
) -> float | None:
    """metrics[key] as a finite float in [low, high] ((low, high] when open_low); None if absent."""
    value = metrics.get(key)
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or value > high or (open_low and value == low):
        rule = f"{'(' if open_low else '['}{low:g}, {high:g}]"
        raise ConvertError(
            f"{path}: `{key}` must be a number in {rule} or null. Received: {key}={value!r}"
        )
    return float(value)


def source_sha256(train: TrainOutput) -> str:
    return sha256_file(train.model_path)


def load_keras_model(train: TrainOutput) -> Any:
    """Load model.keras and check it maps (H, W, 3) images to one logit per label."""
    import keras  # deferred: TensorFlow takes seconds to import

    try:
        model = keras.models.load_model(train.model_path, compile=False)
    except Exception as exc:  # Keras raises ValueError, KeyError, OSError... for bad archives
        raise ConvertError(f"{train.model_path} is not a loadable Keras model: {exc}") from None
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        raise ConvertError(
            f"{train.model_path}: the model must have exactly one input. Received: {len(inputs)}"
        )
    in_shape = tuple(inputs[0].shape)
    size = train.image_size
    if len(in_shape) != 4 or in_shape[3] != 3 or in_shape[1] is None or in_shape[2] is None:
        raise ConvertError(
            f"{train.model_path}: the model input must be (H, W, 3) images. "
            f"Received: input shape {in_shape}"
        )
    if in_shape[1:3] != (size, size):
        raise ConvertError(
            f"{train.model_path}: the model input {in_shape} does not match metrics.json "
            f"image_size={size} (expected (None, {size}, {size}, 3))."
        )
    outputs = getattr(model, "outputs", None) or []
    out_shape = tuple(outputs[0].shape) if len(outputs) == 1 else ()
    if len(out_shape) != 2 or out_shape[1] != len(train.labels):
        raise ConvertError(
            f"{train.model_path}: the model must output one logit per label "
            f"({len(train.labels)} labels in metrics.json). Received: output shape(s) "
            f"{[tuple(o.shape) for o in outputs]}"
        )
    return model


def list_images(directory: str | Path) -> list[Path]:
    """Image files under `directory`, recursively, in a stable (sorted) order."""
    root = Path(directory)
    if not root.is_dir():
        raise ConvertError(f"Image folder not found: {str(root)!r}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def sample_images(paths: list[Path], *, size: int, seed: int) -> list[Path]:
    """`size` paths drawn without replacement by a seeded RNG (all of them if fewer)."""
    if len(paths) <= size:
        return list(paths)
    return sorted(random.Random(seed).sample(paths, size))
