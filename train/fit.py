"""Training loops: the head on cached features (fast path) or the full model
on images (fine-tuning / augmentation).

Both keep one epoch's weights, chosen on the validation split by `monitor`:
"val_loss" (lowest cross-entropy of the averaged logits, without label
smoothing) or "val_accuracy" (highest, first best: the seed's
ModelCheckpoint(save_best_only)). On 341 validation images one image is 0.3
accuracy points, so accuracy ties and jumps; the loss moves smoothly.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from train.config import MONITORS, TrainConfig
from train.model import augmenter, compile_model


@dataclass
class History:
    """Per-epoch scores of one fit and which epoch was kept.

    Attributes:
        epochs: list of dicts, one per epoch: Keras' training logs (loss,
            accuracy) plus val_loss (NLL in nats), val_accuracy and seconds.
        best_epoch: int, 1-based index of the kept epoch (0 before any epoch).
        monitor: str, the score that chose it, one of MONITORS.
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0  # 1-based
    monitor: str = "val_accuracy"

    @property
    def best(self) -> dict[str, float]:
        """The kept epoch's scores (dict of float), `epochs[best_epoch - 1]`.

        Raises:
            IndexError: no epoch has been recorded.
        """
        return self.epochs[self.best_epoch - 1]


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log-likelihood of int targets (n,) under (n, C) logits, in nats."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(targets)), targets].mean())


def validation_scores(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """-> {"val_loss": NLL in nats, "val_accuracy": share of top-1 hits}."""
    return {
        "val_loss": cross_entropy(logits, targets),
        "val_accuracy": float((logits.argmax(axis=1) == targets).mean()),
    }


class KeepBest(keras.callbacks.Callback):  # type: ignore[misc]
    """Score the validation split after each epoch, keep the best epoch's weights,
    and print a line per epoch.

    `predict_validation` maps the model to (n_val, C) logits (the mean over an
    ensemble's heads); `monitor` is one of MONITORS.
    """

    def __init__(
        self,
        history: History,
        *,
        predict_validation: Callable[[keras.Model], np.ndarray],
        targets: np.ndarray,
        monitor: str,
        verbose: bool,
    ) -> None:
        super().__init__()
        if monitor not in MONITORS:
            raise ValueError(f"`monitor` must be one of {MONITORS}. Received: monitor={monitor!r}")
        self.history_ = history
        self.history_.monitor = monitor
        self.predict_validation = predict_validation
        self.targets = targets
        self.monitor = monitor
        self.verbose = verbose
        self.best_weights: list[np.ndarray] | None = None
        self.best_value = -math.inf  # of the sign-adjusted monitor: higher is better
        self.epoch_started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Start the epoch's timer (Keras callback hook).

        Args:
            epoch: int, 0-based epoch index.
            logs: dict or None, unused.
        """
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Score the validation split, record the epoch, keep the weights if best.

        Args:
            epoch: int, 0-based epoch index.
            logs: dict of Keras' training logs (loss, accuracy) or None.
        """
        logs = {k: float(v) for k, v in (logs or {}).items()}
        logs.update(validation_scores(self.predict_validation(self.model), self.targets))
        logs["seconds"] = time.perf_counter() - self.epoch_started
        self.history_.epochs.append(logs)
        value = -logs["val_loss"] if self.monitor == "val_loss" else logs["val_accuracy"]
        improved = value > self.best_value
        if improved:
            self.best_value = value
            self.best_weights = self.model.get_weights()
            self.history_.best_epoch = epoch + 1
        if self.verbose:
            print(
                f"epoch {epoch + 1:3d}  loss {logs['loss']:.4f}  acc {logs['accuracy']:.4f}  "
                f"val_loss {logs['val_loss']:.4f}  val_acc {logs['val_accuracy']:.4f}  "
                f"{logs['seconds']:.1f}s" + ("  *" if improved else ""),
                file=sys.stderr,
            )

    def restore(self) -> None:
        """Set the model's weights to the kept epoch's (no-op before any epoch)."""
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def one_hot(targets: np.ndarray, n_classes: int) -> np.ndarray:
    """One-hot encode int class targets.

    Args:
        targets: int array of shape (n,), class indices in [0, n_classes).
        n_classes: int, number of classes C.

    Returns:
        float32 array of shape (n, C).

    Raises:
        IndexError: a target is outside [-C, C).
    """
    return np.asarray(np.eye(n_classes, dtype=np.float32)[targets])


def compile_for(model: keras.Model, config: TrainConfig) -> None:
    """Compile `model` with the run's optimizer and loss settings (learning rate,
    label smoothing, weight decay), as `fit` and the calibration folds both do."""
    compile_model(
        model,
        learning_rate=config.learning_rate,
        label_smoothing=config.label_smoothing,
        weight_decay=config.weight_decay,
    )


def fit_targets(model: keras.Model, y: np.ndarray, n_classes: int) -> np.ndarray:
    """One-hot targets for `model`: float32 (n, C) from int targets y (n,), or
    (n, N, C), the same target once per head, for a stacked ensemble output (batch, N, C)."""
    target = one_hot(y, n_classes)
    if len(model.output_shape) == 3:
        target = np.repeat(target[:, None, :], model.output_shape[1], axis=1)
    return target


def fit(
    model: keras.Model,
    x: Any,
    y: np.ndarray | None,
    validation: tuple[Callable[[keras.Model], np.ndarray], np.ndarray],
    *,
    config: TrainConfig,
    n_classes: int,
) -> History:
    """Compile, fit for config.epochs, restore the kept epoch's weights.

    x: (n, 2048) features with int targets y (n,), or a PyDataset (y None).
    validation: (model -> (n_val, C) logits, int targets (n_val,)).
    A stacked ensemble output (batch, N, C) gets its one-hot target repeated N times.
    """
    compile_for(model, config)
    history = History()
    predict_validation, val_y = validation
    keep = KeepBest(
        history,
        predict_validation=predict_validation,
        targets=val_y,
        monitor=config.monitor,
        verbose=config.verbose,
    )
    model.fit(
        x,
        None if y is None else fit_targets(model, y, n_classes),
        batch_size=None if y is None else config.batch_size,
        epochs=config.epochs,
        shuffle=True,
        callbacks=[keep],
        verbose=0,
    )
    keep.restore()
    return history


class AugmentedImages(keras.utils.PyDataset):  # type: ignore[misc]
    """Batches of preprocessed images with random flip/zoom/shear, reshuffled each epoch."""

    def __init__(
        self, x: np.ndarray, y: np.ndarray, *, n_classes: int, config: TrainConfig
    ) -> None:
        super().__init__()
        self.x, self.y = x, one_hot(y, n_classes)
        self.batch_size = config.batch_size
        self.augment = augmenter(seed=config.seed) if config.augment else None
        self.rng = np.random.default_rng(config.seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        batch = self.x[rows]
        if self.augment is not None:
            batch = keras.ops.convert_to_numpy(self.augment(batch, training=True))
        return batch, self.y[rows]

    def on_epoch_end(self) -> None:
        """Reshuffle the image order for the next epoch (Keras hook)."""
        self.order = self.rng.permutation(len(self.x))
