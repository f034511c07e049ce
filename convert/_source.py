"""Read what `python -m train` wrote (the format is train/output.py's) and the images.

Both commands (`convert` and `check`) start here, so a bad training output is
refused the same way, with a message naming the file and the field.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convert._errors import ConvertError
from inference import IMAGE_SUFFIXES, preprocess_file, sha256_file
from train.output import TrainOutput as TrainOutput  # re-exported for convert/_check.py
from train.output import TrainOutputError
from train.output import read_train_output as _read_train_output

log = logging.getLogger("convert")


def read_train_output(train_dir: str | Path) -> TrainOutput:
    """`train.output.read_train_output`, its errors as ConvertError (exit code 2).

    Warns when metrics.json has no `temperature` (trained before calibration):
    the bundles then get none.
    """
    try:
        train = _read_train_output(train_dir)
    except TrainOutputError as exc:
        raise ConvertError(str(exc)) from None
    if train.temperature is None:
        log.warning(
            "%s has no `temperature` (trained before calibration): the bundles get none, and "
            "the runtime will use uncalibrated scores (T = 1) with no unsure threshold.",
            train.metrics_path,
        )
    return train


def required_splits(train: TrainOutput, *names: str) -> tuple[Path, ...]:
    """`data_dir/<name>` for each of `names`, in order (the benches that read a run's
    own photos).

    Raises:
        ConvertError: metrics.json records no data_dir, or it lacks one of the
            splits; the message names the file and every missing split.
    """
    folders = [train.split(name) for name in names]
    missing = [name for name, folder in zip(names, folders, strict=True) if folder is None]
    if missing:
        raise ConvertError(
            f"{train.metrics_path}: its data_dir has no {'/'.join(missing)} split "
            "(metrics.json records no data_dir, or the folder is gone)."
        )
    return tuple(folder for folder in folders if folder is not None)


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


def require_images(directory: str | Path) -> list[Path]:
    """`list_images(directory)`, refusing a folder with none.

    Raises:
        ConvertError: the folder is missing, or holds no image.
    """
    images = list_images(directory)
    if not images:
        raise ConvertError(f"No images found in {str(directory)!r}.")
    return images


def labeled_arrays(
    paths: Sequence[Path], *, image_size: int, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed photos and their classes; each photo's folder names its class.

    Returns:
        (n, image_size, image_size, 3) float32 images in [-1, 1] and (n,) int64
        indices into `labels`.

    Raises:
        InferenceError, OSError: a photo cannot be read or decoded.
        ValueError: a photo's folder is not one of `labels`.
    """
    x = np.stack([preprocess_file(path, image_size=image_size) for path in paths])
    classes = []
    for path in paths:
        if path.parent.name not in labels:
            raise ValueError(
                f"{str(path)!r}: its folder {path.parent.name!r} is not a class of the model "
                f"{list(labels)}"
            )
        classes.append(labels.index(path.parent.name))
    return x, np.array(classes, dtype=np.int64)


def keras_logits(model: Any, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """A loaded Keras model's logits, `batch_size` images at a time.

    Args:
        model: the model of `load_keras_model`.
        images: (n, H, W, 3) float32, preprocessed (`inference.preprocess_file`).

    Returns:
        (n, k) float32 logits.
    """
    return np.concatenate(
        [
            np.asarray(model.predict_on_batch(images[i : i + batch_size]), dtype=np.float32)
            for i in range(0, len(images), batch_size)
        ]
    )


def sample_images(paths: list[Path], *, size: int, seed: int) -> list[Path]:
    """`size` paths drawn without replacement by a seeded RNG (all of them if fewer)."""
    if len(paths) <= size:
        return list(paths)
    return sorted(random.Random(seed).sample(paths, size))
