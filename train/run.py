"""One training run, top to bottom: data -> base -> features -> head -> report.

Everything is written to a temporary folder beside `output_dir` and moved
into place at the end, so a failed run leaves no partial model.keras.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from inference import InferenceError, staging_dir
from train.calibrate import CalibrationResult, calibrate_trained
from train.config import TrainConfig
from train.crossfit import check_folds
from train.data import DataError, Dataset, Split, load_dataset
from train.features import CacheKey, FeatureCache, Skipped, extract_features, load_preprocessed
from train.fit import AugmentedImages, History, fit
from train.model import (
    build_base,
    build_full_model,
    build_head,
    feature_extractor,
    head_logits,
    unfreeze_last_blocks,
    weights_fingerprint,
)
from train.output import out_of_fold_record, write_out_of_fold, write_train_output
from train.report import (
    classification_metrics,
    plot_calibration,
    plot_confusion_matrix,
    plot_learning_curves,
)


class OutputExistsError(ValueError):
    """The output folder is a file, or is not empty and `force` was not given."""


@dataclass(frozen=True)
class Trained:
    """What a run produced, before it is written out."""

    model: keras.Model
    history: History
    labels: tuple[str, ...]
    logits: dict[str, np.ndarray]  # per evaluated split, from the kept epoch
    targets: dict[str, np.ndarray]
    skipped: tuple[Skipped, ...]
    timings: dict[str, float | int]
    head: keras.Model | None = None  # features -> logits (stacked for an ensemble)


def train_model(config: TrainConfig, *, features: CachedFeatures | None = None) -> dict[str, Any]:
    """Train, evaluate and write model.keras + metrics.json + plots; return the metrics.

    A frozen Xception base (ImageNet weights, or `config.base_weights`) with a
    small head is trained on `config.data_dir`'s train/ split (base features
    cached in `config.cache_dir` unless `config.from_images`), keeping the
    epoch with the best `config.monitor` on validation; then calibrated (temperature and unsure
    threshold, fitted on validation). Outputs are written to a temporary folder
    and renamed to `config.output_dir`, so a failed run leaves none half-written.

    Args:
        config: the run's settings (data, image size in pixels, epochs, learning
            rate, seed, output folder, `force`).
        features: cached base features from `prepare_features`, so that a sweep
            extracts once and trains many heads; None extracts them here.

    Returns:
        The metrics also written to `metrics.json`: "labels", "image_size",
        "val_accuracy" and "test_accuracy" (fractions in [0, 1]; test None
        without a test split), per-split reports, "best_epoch", "history",
        "n_images", "skipped" files, "config", "timings" (seconds), versions
        and the calibration ("temperature", "unsure_threshold", ...).

    Raises:
        DataError: `config.data_dir` is not a folder, lacks train/ or
            validation/, its splits name different classes, it has fewer than
            2 classes or empty class folders, or a split has no readable images.
        WeightsError: `config.base_weights` is missing or does not fit Xception.
        OutputExistsError: `config.output_dir` is a file, or a non-empty folder
            without `config.force`.
    """
    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    if features is not None:
        check_output_dir(config.output_dir, force=config.force)
        features = add_views(features, config, views=config.train_views, splits=("train",))
        _check_folds(features, config)
        dataset, trained = features.dataset, train_head(features, config)
    else:
        dataset = load_dataset(
            config.data_dir, max_per_class=config.max_per_class, seed=config.seed
        )
        check_output_dir(config.output_dir, force=config.force)
        base = build_base(image_size=config.image_size, base_weights=config.base_weights)
        if config.from_images:
            trained = _from_images(dataset, base, config)
        else:
            features = prepare_features(dataset, base, config)
            _check_folds(features, config)
            trained = train_head(features, config)
    calibration = calibrate_trained(trained, config, features)  # T, unsure threshold
    metrics = build_metrics(trained, dataset, config, seconds=time.perf_counter() - started)
    metrics.update(calibration.to_json())
    if calibration.fit is not None:  # write_outputs writes them; calibrate checks them
        metrics["out_of_fold_logits"] = out_of_fold_record(
            calibration.fit.logits, calibration.fit.targets, folds=config.calibration_folds
        )
    write_outputs(trained, metrics, config, calibration=calibration)
    return metrics


def _check_folds(features: CachedFeatures, config: TrainConfig) -> None:
    """Refuse more calibration folds than photos before training, not after."""
    n = len(features.targets["train"]) + len(features.targets["validation"])
    check_folds(config.calibration_folds, n_photos=n)


@dataclass(frozen=True)
class CachedFeatures:
    """Base-model features of every split, ready for training heads.

    Attributes:
        dataset: Dataset the features come from.
        base: keras.Model, the Xception base that extracted them.
        vectors: split name -> float32 array of shape (n, 2048), unreadable
            images dropped.
        targets: split name -> int array of shape (n,), class indices.
        skipped: tuple of Skipped, the images that did not decode.
        timings: dict of timings (seconds) and counts.
        views: view name -> split name -> (n, 2048) float32, augmented views
            (train.features.VIEWS) from the same cache.
        view_targets: view name -> split name -> (n,) int targets of `views`.
    """

    dataset: Dataset
    base: keras.Model
    vectors: dict[str, np.ndarray]  # split -> (n, 2048), unreadable images dropped
    targets: dict[str, np.ndarray]
    skipped: tuple[Skipped, ...]
    timings: dict[str, float | int]
    # view -> split -> (n, 2048): augmented views (train.features.VIEWS), same cache
    views: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    view_targets: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def prepare_features(
    dataset: Dataset,
    base: keras.Model,
    config: TrainConfig,
    *,
    extractor: keras.Model | None = None,
) -> CachedFeatures:
    """Pooled base features of every split, from the cache or computed into it.

    `extractor` (from `feature_extractor(base)`) lets a caller reuse one already traced.
    """
    t0 = time.perf_counter()
    cache = FeatureCache(config.cache_dir, CacheKey(weights_fingerprint(base), config.image_size))
    extractor = feature_extractor(base) if extractor is None else extractor
    vectors: dict[str, np.ndarray] = {}
    targets: dict[str, np.ndarray] = {}
    skipped: list[Skipped] = []
    computed = 0
    for name, split in dataset.splits.items():
        f = extract_features(
            split.paths,
            extractor=extractor,
            cache=cache,
            batch_size=config.batch_size,
            desc=f"{name} features",
            progress=config.verbose,
        )
        _require_images(f.keep, split)
        vectors[name], targets[name] = f.vectors, split.targets[f.keep]
        skipped.extend(f.skipped)
        computed += f.computed
    _warn_skipped(skipped)
    timings = {
        "features_seconds": time.perf_counter() - t0,
        "images_extracted": computed,
        "cache_entries_rebuilt": cache.rebuilt,
    }
    plain = CachedFeatures(dataset, base, vectors, targets, tuple(skipped), timings)
    return add_views(
        plain, config, views=config.train_views, splits=("train",), extractor=extractor
    )


def add_views(
    features: CachedFeatures,
    config: TrainConfig,
    *,
    views: tuple[str, ...],
    splits: tuple[str, ...],
    extractor: keras.Model | None = None,
) -> CachedFeatures:
    """`features` plus each view's (n, 2048) features of `splits`, from the cache or
    computed into it (one base pass per image and view, ever). Unreadable images
    were already reported by the plain pass and are dropped silently here.
    """
    todo = [(v, s) for v in views for s in splits if s not in features.views.get(v, {})]
    if not todo:
        return features
    t0 = time.perf_counter()
    base = features.base
    extractor = feature_extractor(base) if extractor is None else extractor
    fingerprint = weights_fingerprint(base)
    out = {v: dict(d) for v, d in features.views.items()}
    out_targets = {v: dict(d) for v, d in features.view_targets.items()}
    computed = 0
    for view, name in todo:
        split = features.dataset.splits[name]
        cache = FeatureCache(config.cache_dir, CacheKey(fingerprint, config.image_size, view=view))
        f = extract_features(
            split.paths,
            extractor=extractor,
            cache=cache,
            batch_size=config.batch_size,
            desc=f"{name} {view} features",
            progress=config.verbose,
        )
        out.setdefault(view, {})[name] = f.vectors
        out_targets.setdefault(view, {})[name] = split.targets[f.keep]
        computed += f.computed
    timings = dict(features.timings)
    timings["view_features_seconds"] = (
        float(timings.get("view_features_seconds", 0.0)) + time.perf_counter() - t0
    )
    timings["view_images_extracted"] = int(timings.get("view_images_extracted", 0)) + computed
    return dataclasses.replace(features, views=out, view_targets=out_targets, timings=timings)


def train_head(features: CachedFeatures, config: TrainConfig) -> Trained:
    """Train the dense head on cached features (plain + config.train_views).

    Seeds Keras with config.seed first, so the head's initial weights do not
    depend on whether the base was built in the same call.

    Args:
        features: CachedFeatures, with the views named in config.train_views.
        config: TrainConfig (head size, dropout, ensemble, epochs, ...).

    Returns:
        Trained: the full model (base + head), history, per-split logits of the
        kept epoch and targets (all splits but train), and timings in seconds.

    Raises:
        KeyError: a view in config.train_views is missing from `features.views`.
    """
    t0 = time.perf_counter()
    labels = features.dataset.labels
    x, y = features.vectors, features.targets
    # Plain + each augmented view of the train split: the head sees every view
    # each epoch, no base pass needed (the views are cached features).
    views = config.train_views
    train_x = np.concatenate([x["train"]] + [features.views[v]["train"] for v in views])
    train_y = np.concatenate([y["train"]] + [features.view_targets[v]["train"] for v in views])
    # Seed here, not only at the start: whether the base was built in this call
    # (CLI) or before it (sweep, bench) must not change the head's initial weights.
    keras.utils.set_random_seed(config.seed)
    head = build_head(
        n_classes=len(labels),
        size_inner=config.size_inner,
        droprate=config.droprate,
        ensemble=config.ensemble,
    )
    history = fit(
        head,
        train_x,
        train_y,
        (lambda m: head_logits(m, x["validation"]), y["validation"]),
        config=config,
        n_classes=len(labels),
    )
    logits = {name: head_logits(head, v) for name, v in x.items() if name != "train"}
    timings = {**features.timings, "train_seconds": time.perf_counter() - t0}
    evaluated = {k: v for k, v in y.items() if k != "train"}
    return Trained(
        build_full_model(features.base, head),
        history,
        labels,
        logits,
        evaluated,
        features.skipped,
        timings,
        head=head,
    )


def _from_images(dataset: Dataset, base: keras.Model, config: TrainConfig) -> Trained:
    t0 = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    targets: dict[str, np.ndarray] = {}
    skipped: list[Skipped] = []
    for name, split in dataset.splits.items():
        arrays[name], targets[name], bad = _load_split(split, image_size=config.image_size)
        skipped.extend(bad)
    _warn_skipped(skipped)
    t1 = time.perf_counter()
    trainable = unfreeze_last_blocks(base, config.fine_tune)
    if config.verbose:
        print(
            f"training from images: {trainable} base layers trainable, augment={config.augment}",
            file=sys.stderr,
        )
    head = build_head(
        n_classes=len(dataset.labels), size_inner=config.size_inner, droprate=config.droprate
    )
    model = build_full_model(base, head)
    batches = AugmentedImages(
        arrays["train"], targets["train"], n_classes=len(dataset.labels), config=config
    )
    val_x = arrays["validation"]
    history = fit(
        model,
        batches,
        None,
        (
            lambda m: np.asarray(m.predict(val_x, batch_size=config.batch_size, verbose=0)),
            targets["validation"],
        ),
        config=config,
        n_classes=len(dataset.labels),
    )
    logits = {
        name: np.asarray(model.predict(x, batch_size=config.batch_size, verbose=0))
        for name, x in arrays.items()
        if name != "train"
    }
    base.trainable = False  # the saved model is for inference
    timings = {"load_seconds": t1 - t0, "train_seconds": time.perf_counter() - t1}
    return Trained(
        model,
        history,
        dataset.labels,
        logits,
        {k: v for k, v in targets.items() if k != "train"},
        tuple(skipped),
        timings,
    )


def _load_split(split: Split, *, image_size: int) -> tuple[np.ndarray, np.ndarray, list[Skipped]]:
    images, keep, skipped = [], [], []
    for path in split.paths:
        try:
            images.append(load_preprocessed(path, image_size=image_size))
            keep.append(True)
        except (InferenceError, OSError) as exc:
            skipped.append(Skipped(path, str(exc)))
            keep.append(False)
    mask = np.array(keep)
    _require_images(mask, split)
    return np.stack(images), split.targets[mask], skipped


def _require_images(keep: np.ndarray, split: Split) -> None:
    if not keep.any():
        raise DataError(
            f"Split {split.name}/ has no readable images ({len(split)} files, all skipped)."
        )


def _warn_skipped(skipped: list[Skipped]) -> None:
    if not skipped:
        return
    print(f"warning: skipped {len(skipped)} unreadable image file(s):", file=sys.stderr)
    for item in skipped[:10]:
        print(f"  {item.path}: {item.reason}", file=sys.stderr)
    if len(skipped) > 10:
        print(f"  ... and {len(skipped) - 10} more", file=sys.stderr)


def build_metrics(
    trained: Trained, dataset: Dataset, config: TrainConfig, *, seconds: float
) -> dict[str, Any]:
    """The metrics.json content of a run (before calibration fields are added).

    Args:
        trained: Trained, the run's result.
        dataset: Dataset it was trained on.
        config: TrainConfig of the run.
        seconds: float, the run's total wall time in seconds.

    Returns:
        dict, JSON-ready: labels, image_size, val/test accuracy, kept epoch,
        per-split `classification_metrics`, history, data_dir, n_images,
        skipped, config, timings (seconds) and versions. test_accuracy and
        test are None without a test split.
    """
    evaluated = {
        name: classification_metrics(trained.logits[name], trained.targets[name], trained.labels)
        for name in trained.logits
    }
    metrics: dict[str, Any] = {
        "labels": list(trained.labels),
        "image_size": config.image_size,
        "val_accuracy": evaluated["validation"]["accuracy"],
        "best_epoch": trained.history.best_epoch,
        "monitor": trained.history.monitor,
        "test_accuracy": evaluated["test"]["accuracy"] if "test" in evaluated else None,
        "validation": evaluated["validation"],
        "test": evaluated.get("test"),
        "history": trained.history.epochs,
        "data_dir": str(dataset.root.resolve()),
        "n_images": {name: len(split) for name, split in dataset.splits.items()},
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in trained.skipped],
        "config": config.to_json(),
        "timings": {**trained.timings, "total_seconds": seconds},
        "versions": {"keras": keras.__version__, "numpy": np.__version__},
    }
    return metrics


def check_output_dir(output_dir: Path, *, force: bool) -> None:
    """Refuse to train into a file, or into a non-empty folder unless `force`.

    Raises:
        OutputExistsError: `output_dir` is a file, or a non-empty folder and not `force`.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputExistsError(
            f"`output_dir` must be a folder. Received: output_dir={str(output_dir)!r} (a file)"
        )
    if output_dir.is_dir() and any(output_dir.iterdir()) and not force:
        raise OutputExistsError(
            f"`output_dir` already exists and is not empty: {str(output_dir)!r}. "
            "Pass --force to replace it."
        )


def write_outputs(
    trained: Trained,
    metrics: dict[str, Any],
    config: TrainConfig,
    *,
    calibration: CalibrationResult | None = None,
) -> None:
    """Write the run folder: model.keras, metrics.json and the plots.

    Staged in a temporary folder, then moved to config.output_dir.

    Args:
        trained: Trained, the run's result.
        metrics: dict, the metrics.json content (`build_metrics` + calibration).
        config: TrainConfig; output_dir and image_size are used.
        calibration: CalibrationResult or None; when given, the reliability
            diagram and risk-coverage plots are written too.

    Raises:
        OSError: the folder cannot be written.
    """
    with staging_dir(config.output_dir) as tmp:
        write_train_output(tmp, trained.model, metrics)
        plot_learning_curves(
            trained.history,
            tmp / "learning_curves.png",
            title=f"Xception head, {config.image_size} px",
        )
        shown = "test" if "test" in trained.logits else "validation"
        plot_confusion_matrix(
            metrics[shown]["confusion_matrix"],
            trained.labels,
            tmp / "confusion_matrix.png",
            title=f"Confusion matrix ({shown}, accuracy {metrics[shown]['accuracy']:.3f})",
        )
        if calibration is not None:
            plot_calibration(calibration, tmp, title=f"{config.image_size} px")
            if calibration.fit is not None:  # `python -m train calibrate` fits on them again
                write_out_of_fold(tmp, calibration.fit.logits, calibration.fit.targets)
