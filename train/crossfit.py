"""Out-of-fold logits of train + validation, to fit calibration on ten times the photos.

    from train.crossfit import out_of_fold_logits
    fitted = out_of_fold_logits(features, config, epochs=trained.history.best_epoch, folds=5)
    fitted.logits, fitted.targets       # (n_train + n_val, k) float32, (n,) int

The temperature and the unsure threshold fitted on the 341 validation photos
alone missed their goal out of sample: on the out-of-fold logits of train +
validation (3409 photos), the production profile's validation threshold
answered 96.2% right and the fast profile's 95.4%, against a 97% goal
(`unsure.validation_only` in each run's metrics.json; README "Calibrated
scores"). So `python -m train` fits them on out-of-fold logits
(k-fold cross-validation; Hastie, Tibshirani, Friedman, "The Elements of
Statistical Learning", 2nd ed., section 7.10): the photos of train + validation
are split into `folds` class-stratified folds, and for each fold a head of the
run's recipe (size, dropout, ensemble, learning rate, cached views of its train
photos) is trained on the other folds for the run's kept epoch count, then
predicts its fold. Every photo's logits come from a head that never saw it.

Those heads serve calibration only: the shipped head is the one trained on
train and kept on validation. They see 80% of train + validation (5 folds)
where it sees all of train, so they are about as strong (at 150 px the
validation photos in a fold bring no JPEG view: those exist for train photos).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import keras
import numpy as np

from train.calibrate import SplitLogits
from train.fit import compile_for, fit_targets
from train.model import build_head, head_logits

if TYPE_CHECKING:
    from train.config import TrainConfig
    from train.run import CachedFeatures


def fold_of(targets: np.ndarray, *, folds: int, seed: int) -> np.ndarray:
    """Class-stratified fold indices: each class's photos, shuffled, dealt round-robin.

    Args:
        targets: int array of shape (n,), class indices.
        folds: int >= 2, at most n.
        seed: the shuffle's seed.

    Returns:
        int array of shape (n,) with values in [0, folds); fold sizes differ by at most 1.

    Raises:
        ValueError: folds < 2 or folds > n.
    """
    n = len(targets)
    if not 2 <= folds <= n:
        raise ValueError(
            f"`folds` must be in [2, {n}] (the number of photos). Received: folds={folds!r}"
        )
    rng = np.random.default_rng(seed)
    classes = np.unique(targets)
    order = np.concatenate([rng.permutation(np.flatnonzero(targets == c)) for c in classes])
    fold = np.empty(n, dtype=np.int64)
    fold[order] = np.arange(n) % folds
    return fold


def check_folds(folds: int, *, n_photos: int) -> None:
    """Refuse more calibration folds than train + validation photos.

    Raises:
        ValueError: folds > n_photos; the message names `calibration_folds`.
    """
    if folds > n_photos:
        raise ValueError(
            f"`calibration_folds` must be at most the number of train + validation photos "
            f"({n_photos}). Received: calibration_folds={folds!r}"
        )


def out_of_fold_logits(
    features: CachedFeatures, config: TrainConfig, *, epochs: int, folds: int
) -> SplitLogits:
    """Logits of every train and validation photo from a head that did not train on it.

    Args:
        features: the run's cached features (`train.run.prepare_features`), with the
            views in `config.train_views` for the train split.
        config: the run's TrainConfig (head recipe, seed, batch size, verbosity).
        epochs: epochs per fold's head: the shipped head's kept epoch.
        folds: number of folds, >= 2.

    Returns:
        SplitLogits: (n_train + n_val, k) float32 logits (the mean over an
        ensemble's heads) and (n,) int targets, train photos first.

    Raises:
        ValueError: epochs < 1, or `folds` not in [2, number of photos] (the
            message names `calibration_folds`, the setting it comes from).
    """
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1. Received: epochs={epochs!r}")
    x = np.concatenate([features.vectors["train"], features.vectors["validation"]])
    y = np.concatenate([features.targets["train"], features.targets["validation"]])
    check_folds(folds, n_photos=len(y))
    for view in config.train_views:  # view rows must be the train rows, in order
        if not np.array_equal(features.view_targets[view]["train"], features.targets["train"]):
            raise ValueError(
                f"The cached {view!r} view must hold one row per train photo, in order. "
                f"Received: {len(features.view_targets[view]['train'])} rows for "
                f"{len(features.targets['train'])} photos"
            )
    fold = fold_of(y, folds=folds, seed=config.seed)
    k = len(features.dataset.labels)
    logits = np.zeros((len(y), k), dtype=np.float32)
    with _no_retracing_warnings():
        for f in range(folds):
            start, held = time.perf_counter(), fold == f
            keras.utils.set_random_seed(config.seed + 1 + f)
            logits[held] = _fold_logits(features, config, x, y, held, epochs=epochs)
            if config.verbose:
                right = float(np.mean(logits[held].argmax(axis=1) == y[held]))
                print(
                    f"calibration fold {f + 1}/{folds}: {int(held.sum())} photos, "
                    f"accuracy {right:.3f}, {time.perf_counter() - start:.1f}s",
                    file=sys.stderr,
                )
    return SplitLogits(logits, y)


@contextlib.contextmanager
def _no_retracing_warnings() -> Iterator[None]:
    """Each fold's new head retraces Keras' train and predict functions, and
    TensorFlow warns about retracing after the fifth: expected here, so hidden."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _fold_logits(
    features: CachedFeatures,
    config: TrainConfig,
    x: np.ndarray,
    y: np.ndarray,
    held: np.ndarray,
    *,
    epochs: int,
) -> np.ndarray:
    """Train a head on the photos outside `held` (bool mask, (n,)) and their train
    photos' views; return its (held.sum(), k) logits of the `held` photos."""
    n_train = len(features.targets["train"])
    fit_on = np.flatnonzero(~held)
    # The cached views exist for train photos only; a fold's train photos bring theirs.
    viewed = fit_on[fit_on < n_train]
    fit_x = [x[fit_on], *(features.views[v]["train"][viewed] for v in config.train_views)]
    fit_y = [y[fit_on], *(y[viewed] for _ in config.train_views)]
    k = len(features.dataset.labels)
    head = build_head(
        n_classes=k,
        size_inner=config.size_inner,
        droprate=config.droprate,
        ensemble=config.ensemble,
    )
    compile_for(head, config)
    head.fit(
        np.concatenate(fit_x),
        fit_targets(head, np.concatenate(fit_y), k),
        batch_size=config.batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=0,
    )
    return head_logits(head, x[held])
