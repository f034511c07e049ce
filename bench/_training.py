"""Training cost, side by side: the seed recipe's epoch vs a head epoch on the cache.

    result, features = measure_training(data_dir=..., base_weights=..., image_size=150,
                                        per_class=None, head_epochs=5)

- seed epoch: frozen Xception + head, `model.fit` on a pipeline that reads,
  decodes and preprocesses every image each epoch (as the seed's
  ImageDataGenerator.flow_from_directory did), validation included.
- head epoch: the same head, `model.fit` on the pooled 2048-d vectors, the
  same batch size and validation: what `python -m train` does per epoch.
- extraction: the one-time cost of filling a cold cache (a fresh temporary
  folder) for every split, and of reading it back warm.

Both fits are traced first (one step each, untimed), so an epoch time is the
steady-state cost; the trace cost is reported on its own. With a subset
(`--quick`), per-image times are measured on the subset and extrapolated to the
full splits; the result says so (`extrapolated`).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from bench._machine import load_average
from train.config import TrainConfig
from train.data import Dataset, load_dataset
from train.features import load_preprocessed
from train.fit import one_hot
from train.model import (
    FEATURES,
    build_base,
    build_full_model,
    build_head,
    compile_model,
    feature_extractor,
)
from train.run import CachedFeatures, prepare_features

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class TrainingResult:
    image_size: int
    batch_size: int
    n_images: dict[str, int]  # full split sizes the epochs are stated for
    measured_images: dict[str, int]  # images actually run (a subset with --quick)
    extrapolated: bool  # per-image times scaled from a subset to the full splits
    seed_epoch_s: float  # train + validation, full train split
    seed_train_s: float
    seed_validation_s: float
    seed_trace_s: float  # one-time: tracing fit's train and test functions
    head_epoch_s: float  # median of `head_epochs` epochs, train + validation
    head_epochs_s: tuple[float, ...]
    head_trace_s: float  # one-time: the first (tracing) epoch on the cache
    extraction_s: float  # cold cache, every split, including `extraction_trace_s`
    extraction_trace_s: float
    cache_read_s: float  # warm cache, every split
    load_average: dict[str, list[float]]  # phase -> 1/5/15 min load when it ended

    @property
    def speedup(self) -> float:
        return self.seed_epoch_s / self.head_epoch_s

    @property
    def break_even_epochs(self) -> float:
        """Epochs after which extracting once beats the seed recipe."""
        saved = self.seed_epoch_s - self.head_epoch_s
        return self.extraction_s / saved if saved > 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        data = asdict(self)
        data["head_epochs_s"] = list(self.head_epochs_s)
        data["speedup"] = self.speedup
        data["break_even_epochs"] = self.break_even_epochs
        return data


def measure_training(
    *,
    data_dir: Path,
    base_weights: str,
    image_size: int,
    per_class: int | None,
    head_epochs: int,
    verbose: bool = True,
) -> tuple[TrainingResult, CachedFeatures]:
    """Time extraction, the head epoch and the seed epoch; return the features too.

    per_class: run the image-bound parts on this many images per class of each
    split and extrapolate per image (None: the full splits).
    """
    full = load_dataset(data_dir)
    dataset = full if per_class is None else load_dataset(data_dir, max_per_class=per_class)
    # The seed recipe (every accuracy lever off): the seed epoch is what it is compared with.
    config = TrainConfig.seed_recipe(
        data_dir=data_dir, image_size=image_size, base_weights=base_weights, verbose=False
    )
    keras.utils.set_random_seed(config.seed)
    base = build_base(image_size=image_size, base_weights=base_weights)
    base.trainable = False  # the seed froze the base (transfer learning)
    loads: dict[str, list[float]] = {}

    features, extraction_s, trace_s, read_s = _extract(dataset, base, config, verbose=verbose)
    loads["extraction"] = load_average()
    n_images = {name: len(split) for name, split in full.splits.items()}
    measured = {name: len(split) for name, split in dataset.splits.items()}
    extrapolated = per_class is not None
    if extrapolated:
        total, done = sum(n_images.values()), sum(measured.values())
        extraction_s = trace_s + (extraction_s - trace_s) * total / done
        read_s = read_s * total / done

    head_s, head_trace_s = _head_epochs(features, n_images, config, epochs=head_epochs)
    loads["head"] = load_average()
    seed = _seed_epoch(dataset, base, config)
    loads["seed"] = load_average()
    seed_train_s = seed["train_s"] * n_images["train"] / measured["train"]
    seed_val_s = seed["validation_s"] * n_images["validation"] / measured["validation"]
    result = TrainingResult(
        image_size=image_size,
        batch_size=config.batch_size,
        n_images=n_images,
        measured_images=measured,
        extrapolated=extrapolated,
        seed_epoch_s=seed_train_s + seed_val_s,
        seed_train_s=seed_train_s,
        seed_validation_s=seed_val_s,
        seed_trace_s=seed["trace_s"],
        head_epoch_s=statistics.median(head_s),
        head_epochs_s=tuple(head_s),
        head_trace_s=head_trace_s,
        extraction_s=extraction_s,
        extraction_trace_s=trace_s,
        cache_read_s=read_s,
        load_average=loads,
    )
    return result, features


def _extract(
    dataset: Dataset, base: keras.Model, config: TrainConfig, *, verbose: bool
) -> tuple[CachedFeatures, float, float, float]:
    """train.run.prepare_features into a fresh cache, timed cold then warm.

    -> (features, cold seconds, of which tracing seconds, warm seconds).
    """
    with tempfile.TemporaryDirectory(prefix="bench-feature-cache-") as tmp:
        run = dataclasses.replace(config, cache_dir=Path(tmp), verbose=verbose)
        start = time.perf_counter()
        extractor = feature_extractor(base)
        size = config.image_size
        trace_start = time.perf_counter()
        extractor.predict_on_batch(np.zeros((config.batch_size, size, size, 3), np.float32))
        trace_s = time.perf_counter() - trace_start
        features = prepare_features(dataset, base, run, extractor=extractor)
        cold_s = time.perf_counter() - start

        start = time.perf_counter()
        quiet = dataclasses.replace(run, verbose=False)
        prepare_features(dataset, base, quiet, extractor=extractor)
        warm_s = time.perf_counter() - start
    return features, cold_s, trace_s, warm_s


class _EpochTimer(keras.callbacks.Callback):  # type: ignore[misc]
    """Wall time of each epoch's training part and validation part."""

    def __init__(self) -> None:
        super().__init__()
        self.train_s: list[float] = []
        self.validation_s: list[float] = []
        self._start = self._validation_start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = self._validation_start = time.perf_counter()

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._validation_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        end = time.perf_counter()
        self.train_s.append(self._validation_start - self._start)
        self.validation_s.append(end - self._validation_start)


def _head_epochs(
    features: CachedFeatures, n_images: dict[str, int], config: TrainConfig, *, epochs: int
) -> tuple[list[float], float]:
    """Head epochs on the cached vectors -> (timed epochs, first tracing epoch).

    A subset run trains on random vectors of the full splits' sizes: a dense
    layer's cost does not depend on the values, only on the shapes.
    """
    n_classes = len(features.dataset.labels)
    x, y = features.vectors, features.targets
    if len(x["train"]) != n_images["train"] or len(x["validation"]) != n_images["validation"]:
        rng = np.random.default_rng(config.seed)
        x = {s: rng.random((n_images[s], FEATURES), dtype=np.float32) for s in SPLITS[:2]}
        y = {s: rng.integers(0, n_classes, n_images[s]) for s in SPLITS[:2]}
    head = build_head(n_classes=n_classes, size_inner=config.size_inner, droprate=config.droprate)
    compile_model(head, learning_rate=config.learning_rate)
    timer = _EpochTimer()
    head.fit(
        x["train"],
        one_hot(y["train"], n_classes),
        batch_size=config.batch_size,
        epochs=1 + epochs,
        validation_data=(x["validation"], one_hot(y["validation"], n_classes)),
        shuffle=True,
        callbacks=[timer],
        verbose=0,
    )
    totals = [t + v for t, v in zip(timer.train_s, timer.validation_s, strict=True)]
    return totals[1:], totals[0]


class ImageFiles(keras.utils.PyDataset):  # type: ignore[misc]
    """Batches read from files each epoch: decode + resize + preprocess, like the seed's
    flow_from_directory, through the one preprocessing path (train.features)."""

    def __init__(
        self,
        paths: tuple[Path, ...],
        targets: np.ndarray,
        *,
        n_classes: int,
        image_size: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
    ) -> None:
        super().__init__()
        self.paths, self.y = paths, one_hot(targets, n_classes)
        self.image_size, self.batch_size, self.shuffle = image_size, batch_size, shuffle
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(paths)) if shuffle else np.arange(len(paths))

    def __len__(self) -> int:
        return math.ceil(len(self.paths) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        x = np.stack([load_preprocessed(self.paths[i], image_size=self.image_size) for i in rows])
        return x, self.y[rows]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.paths))


def _seed_epoch(dataset: Dataset, base: keras.Model, config: TrainConfig) -> dict[str, float]:
    """One epoch of the seed recipe on `dataset`: frozen base + head, fit on image files."""
    n_classes = len(dataset.labels)
    head = build_head(n_classes=n_classes, size_inner=config.size_inner, droprate=config.droprate)
    model = build_full_model(base, head)
    compile_model(model, learning_rate=config.learning_rate)

    def files(split: str, *, shuffle: bool) -> ImageFiles:
        s = dataset.splits[split]
        return ImageFiles(
            s.paths,
            s.targets,
            n_classes=n_classes,
            image_size=config.image_size,
            batch_size=config.batch_size,
            shuffle=shuffle,
            seed=config.seed,
        )

    train, validation = files("train", shuffle=True), files("validation", shuffle=False)
    start = time.perf_counter()
    # One step of each, untimed: traces fit's train and test functions, which
    # Keras keeps for the next fit call (make_train_function caches them).
    model.fit(
        train,
        validation_data=validation,
        epochs=1,
        steps_per_epoch=1,
        validation_steps=1,
        verbose=0,
    )
    trace_s = time.perf_counter() - start
    timer = _EpochTimer()
    model.fit(train, validation_data=validation, epochs=1, callbacks=[timer], verbose=0)
    return {"train_s": timer.train_s[0], "validation_s": timer.validation_s[0], "trace_s": trace_s}
