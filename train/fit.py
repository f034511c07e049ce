"""Training loops: the head on cached features (fast path) or the full model
on images (fine-tuning / augmentation). Both keep the epoch with the best
validation accuracy, as the seed's ModelCheckpoint(save_best_only) did.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from train.config import TrainConfig
from train.model import augmenter, compile_model


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0  # 1-based

    @property
    def best(self) -> dict[str, float]:
        return self.epochs[self.best_epoch - 1]


class KeepBest(keras.callbacks.Callback):  # type: ignore[misc]
    """Remember the weights of the best-val_accuracy epoch and print a line per epoch."""

    def __init__(self, history: History, *, verbose: bool) -> None:
        super().__init__()
        self.history_ = history
        self.verbose = verbose
        self.best_weights: list[np.ndarray] | None = None
        self.best_accuracy = -math.inf
        self.epoch_started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = {k: float(v) for k, v in (logs or {}).items()}
        logs["seconds"] = time.perf_counter() - self.epoch_started
        self.history_.epochs.append(logs)
        improved = logs["val_accuracy"] > self.best_accuracy
        if improved:
            self.best_accuracy = logs["val_accuracy"]
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
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def one_hot(targets: np.ndarray, n_classes: int) -> np.ndarray:
    return np.asarray(np.eye(n_classes, dtype=np.float32)[targets])


def fit(
    model: keras.Model,
    x: Any,
    y: np.ndarray | None,
    validation: tuple[np.ndarray, np.ndarray],
    *,
    config: TrainConfig,
    n_classes: int,
) -> History:
    """Compile, fit for config.epochs, restore the best epoch's weights."""
    compile_model(model, learning_rate=config.learning_rate)
    history = History()
    keep = KeepBest(history, verbose=config.verbose)
    val_x, val_y = validation
    model.fit(
        x,
        None if y is None else one_hot(y, n_classes),
        batch_size=None if y is None else config.batch_size,
        epochs=config.epochs,
        validation_data=(val_x, one_hot(val_y, n_classes)),
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
        self.order = self.rng.permutation(len(self.x))
