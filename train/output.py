"""The training output format, one owner: `model.keras` + `metrics.json` in a folder.

    from train.output import read_train_output, write_train_output

    write_train_output(folder, model, metrics)   # what `python -m train` writes
    out = read_train_output(folder)              # what `python -m convert` and bench read
    out.labels, out.image_size, out.temperature, out.model_path

`python -m train` (train/run.py, train/calibrate.py), the X/O example, the test
fixtures, `convert/` and `bench/` all go through this module, so the file names,
the required fields and their checks are written once:

    model.keras    Keras 3 model file (a zip archive): (None, S, S, 3) preprocessed
                   images -> (None, len(labels)) logits
    metrics.json   a JSON object; required: `labels` (class names in logit order,
                   the rule of inference's `check_labels`) and `image_size` (S, an
                   int >= 1); optional: `data_dir`, the calibration fields
                   `temperature` (> 0), `unsure_threshold` and `unsure_goal`
                   (in [0, 1]), and whatever else training reports (history,
                   per-class metrics, timings, config).
    out_of_fold_logits.npz   optional: `logits` (n, len(labels)) float32 and
                   `targets` (n,) int64 of train + validation from heads that
                   did not see each photo (train/crossfit.py), what T and the
                   unsure threshold were fitted on; `python -m train calibrate`
                   fits on them again (a new goal) without retraining, once
                   their digest matches metrics.json's `out_of_fold_logits`
                   (`out_of_fold_record`).

Keras is imported inside the functions that need it: reading and validating a
folder stays TensorFlow-free (and `import train.output` cheap).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference import check_calibration, check_labels, write_json_atomic

KERAS_FILENAME = "model.keras"
METRICS_FILENAME = "metrics.json"
OUT_OF_FOLD_FILENAME = "out_of_fold_logits.npz"


class TrainOutputError(ValueError):
    """A training output folder that is missing, incomplete or malformed."""


@dataclass(frozen=True)
class TrainOutput:
    """A validated training output folder.

    `labels` are in logit order; `image_size` is the square input side in pixels;
    the calibration fields are None for a folder written before calibration
    (the runtime then uses T = 1 and no unsure threshold).
    """

    directory: Path
    labels: tuple[str, ...]
    image_size: int
    data_dir: Path | None = None  # the dataset it was trained on, if metrics.json says
    temperature: float | None = None
    unsure_threshold: float | None = None
    unsure_goal: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def model_path(self) -> Path:
        """Path of the folder's model.keras."""
        return self.directory / KERAS_FILENAME

    @property
    def metrics_path(self) -> Path:
        """Path of the folder's metrics.json."""
        return self.directory / METRICS_FILENAME

    def load_model(self) -> Any:
        """model.keras as a Keras model, uncompiled (inference only; imports Keras).

        Raises:
            ValueError, OSError: Keras cannot read the archive.
        """
        import keras  # deferred: TensorFlow takes seconds to import

        return keras.models.load_model(self.model_path, compile=False)

    def split(self, name: str) -> Path | None:
        """`data_dir/<name>` when metrics.json recorded a data_dir that has it."""
        if self.data_dir is None or not (self.data_dir / name).is_dir():
            return None
        return self.data_dir / name


def check_metrics(metrics: object, *, source: str) -> dict[str, Any]:
    """`metrics` if it holds what every reader needs (see the module docstring).

    Raises:
        TrainOutputError: not a JSON object, bad `labels` or `image_size`, or a
            calibration field out of its range; the message starts with `source`.
    """
    if not isinstance(metrics, dict):
        raise TrainOutputError(f"{source}: must be a JSON object.")
    try:
        check_labels(metrics.get("labels"), source=source)
    except ValueError as exc:
        raise TrainOutputError(str(exc)) from None
    image_size = metrics.get("image_size")
    # Any size >= 1: Xception's >= 71 is checked where the model is built.
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise TrainOutputError(
            f"{source}: `image_size` must be an int >= 1. Received: image_size={image_size!r}"
        )
    try:
        check_calibration(metrics, source=source)
    except ValueError as exc:
        raise TrainOutputError(str(exc)) from None
    return metrics


def write_metrics(directory: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Check `metrics` and write `directory/metrics.json` atomically; returns its path.

    Raises:
        TrainOutputError: as `check_metrics` (nothing is written).
        OSError: the folder is missing or not writable.
    """
    path = Path(directory) / METRICS_FILENAME
    write_json_atomic(path, check_metrics(dict(metrics), source=str(path)))
    return path


def write_train_output(directory: str | Path, model: Any, metrics: Mapping[str, Any]) -> None:
    """Write `model` (a Keras model) as model.keras and `metrics` as metrics.json.

    The folder is created if needed. `metrics` is checked first, so a bad one
    writes nothing; publish the whole folder with `inference.staging_dir`.

    Raises:
        TrainOutputError: as `check_metrics`.
        OSError: the folder cannot be written.
    """
    directory = Path(directory)
    check_metrics(dict(metrics), source=str(directory / METRICS_FILENAME))
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory / KERAS_FILENAME)
    write_metrics(directory, metrics)


def write_out_of_fold(directory: str | Path, logits: Any, targets: Any) -> Path:
    """Write the out-of-fold logits ((n, k) float) and targets ((n,) int) of a run.

    Raises:
        TrainOutputError: their shapes do not match (nothing is written).
        OSError: the folder cannot be written.
    """
    import numpy as np

    z, y = np.asarray(logits, dtype=np.float32), np.asarray(targets, dtype=np.int64)
    if z.ndim != 2 or y.shape != (len(z),):
        raise TrainOutputError(
            f"out-of-fold logits must be (n, k) with (n,) targets. "
            f"Received: logits {z.shape}, targets {y.shape}"
        )
    path = Path(directory) / OUT_OF_FOLD_FILENAME
    np.savez(path, logits=z, targets=y)
    return path


def out_of_fold_digest(logits: Any, targets: Any) -> str:
    """Hex SHA-256 of out-of-fold logits ((n, k), as float32) and targets ((n,), as
    int64), C order: metrics.json's `out_of_fold_logits.sha256`, so that
    `python -m train calibrate` refits on the very logits training fitted on."""
    import hashlib

    import numpy as np

    z = np.ascontiguousarray(logits, dtype=np.float32)
    y = np.ascontiguousarray(targets, dtype=np.int64)
    return hashlib.sha256(z.tobytes() + y.tobytes()).hexdigest()


def out_of_fold_record(logits: Any, targets: Any, *, folds: int | None) -> dict[str, Any]:
    """metrics.json's `out_of_fold_logits`: what `write_out_of_fold` wrote, for
    `python -m train calibrate` to check the file against (it keeps this entry
    when it refits, on validation or not).

    Returns:
        {"file", "n", "folds", "sha256"} (`out_of_fold_digest`).
    """
    return {
        "file": OUT_OF_FOLD_FILENAME,
        "n": len(targets),
        "folds": folds,
        "sha256": out_of_fold_digest(logits, targets),
    }


def read_out_of_fold(directory: str | Path, *, n_classes: int) -> tuple[Any, Any] | None:
    """(logits (n, n_classes) float32, targets (n,) int64) of a run, or None without the file.

    Raises:
        TrainOutputError: the file is unreadable (truncated, not an npz, arrays
            missing), empty, holds non-finite logits, or its arrays do not fit the
            run's classes.
    """
    import zipfile

    import numpy as np

    path = Path(directory) / OUT_OF_FOLD_FILENAME
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            z, y = data["logits"], data["targets"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise TrainOutputError(f"{path}: not a readable out-of-fold file ({exc})") from None
    except (TypeError, AttributeError):  # np.load gave one array: an .npy file, not an .npz
        raise TrainOutputError(
            f"{path}: not a readable out-of-fold file (one array, not an .npz archive)"
        ) from None
    if z.ndim != 2 or z.shape[1] != n_classes or y.shape != (len(z),) or len(z) == 0:
        raise TrainOutputError(
            f"{path}: logits must be (n, {n_classes}) with (n,) class targets, n >= 1. "
            f"Received: logits {z.shape}, targets {y.shape}"
        )
    if not np.issubdtype(z.dtype, np.floating):
        raise TrainOutputError(f"{path}: logits must be floats. Received: dtype {z.dtype}")
    if not np.isfinite(z).all():
        raise TrainOutputError(
            f"{path}: logits must be finite. Received: {int(np.size(z) - np.isfinite(z).sum())} "
            "NaN or infinite values"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise TrainOutputError(
            f"{path}: targets must be class indices in [0, {n_classes}). "
            f"Received: dtype {y.dtype}, range [{y.min()}, {y.max()}]"
        )
    return z.astype(np.float32), y.astype(np.int64)


def read_metrics(directory: str | Path) -> dict[str, Any]:
    """metrics.json of a training output folder, checked (`check_metrics`).

    Raises:
        TrainOutputError: the folder or the file is missing, not JSON, or fails
            `check_metrics`.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise TrainOutputError(f"Training output folder not found: {str(directory)!r}")
    path = directory / METRICS_FILENAME
    if not path.is_file():
        raise TrainOutputError(f"No {METRICS_FILENAME} in {str(directory)!r}.")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TrainOutputError(f"{path}: not valid JSON ({exc}).") from None
    return check_metrics(metrics, source=str(path))


def read_train_output(directory: str | Path) -> TrainOutput:
    """Check that `directory` holds a Keras model file and a usable metrics.json.

    Returns:
        The validated `TrainOutput`; the model itself is not loaded.

    Raises:
        TrainOutputError: the folder, model.keras or metrics.json is missing,
            model.keras is not a Keras archive, or metrics.json fails `read_metrics`.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise TrainOutputError(f"Training output folder not found: {str(directory)!r}")
    model_path = directory / KERAS_FILENAME
    if not model_path.is_file():
        raise TrainOutputError(
            f"No {KERAS_FILENAME} in {str(directory)!r}; expected the folder `python -m train` "
            "wrote."
        )
    # A .keras file is a zip archive holding config.json (keras.saving, Keras 3 format).
    if not zipfile.is_zipfile(model_path):
        raise TrainOutputError(
            f"{model_path} is not a Keras model file (a .keras file is a zip archive)."
        )
    metrics = read_metrics(directory)
    data_dir = metrics.get("data_dir")
    return TrainOutput(
        directory=directory,
        labels=tuple(metrics["labels"]),
        image_size=metrics["image_size"],
        data_dir=Path(data_dir).expanduser() if isinstance(data_dir, str) and data_dir else None,
        metrics=metrics,
        **check_calibration(metrics, source=METRICS_FILENAME),  # checked by read_metrics
    )
