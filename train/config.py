"""`TrainConfig`: every knob of a training run, validated once.

Defaults are the best recipe measured on the validation split (README,
"Accuracy levers"): the seed's head (lr 1e-3, 100 inner units, dropout 0.2,
batch 32, kept at its best validation-accuracy epoch), five of them on the
shared base with their logits averaged; below 299 px they also train on the
features of each train photo re-encoded as JPEG q60 (the `jpeg` view). The
other levers (flipped, cropped and rescaled views, label smoothing, AdamW
weight decay, keeping the min-validation-loss epoch) did not help on
validation and are off; each has a field and a flag.
`TrainConfig.seed_recipe()` (CLI: `--recipe seed`) turns every lever off and
gives the seed recipe back (the sweep and the X/O lesson compare against it).
Env vars give defaults for where things live (read by inference/env.py, the one
parser of env values; `TrainConfig.from_env` and the field defaults both use
it), so that a user with internet and this team's machines run the same command:

    CLOTHING_DATA_DIR   dataset root (train/, validation/, optional test/)
    XCEPTION_WEIGHTS    "imagenet" (Keras download) or a .weights.h5 path
                        ("none": random weights, for fast tests only)
    CLOTHING_CACHE_DIR  feature cache (default ~/.cache/clothing-classifier)
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inference.env import base_weights_from_env, cache_dir_from_env, data_dir_from_env
from inference.preprocess import check_image_size

# Xception has 14 blocks (Chollet 2017, fig. 5): entry 1-4, middle 5-12, exit 13-14.
XCEPTION_BLOCKS = 14
TRAIN_VIEWS = ("flip", "crop", "flip_crop", "small", "jpeg")  # see train.features.VIEWS
MONITORS = ("val_loss", "val_accuracy")
# The cached JPEG q60 view helped on validation at 150 px (+1.1 points, mean of
# seeds 1-3, every seed up) and not at 299 px (-0.3, within the seeds' spread;
# README "Accuracy levers"): on by default below 299 px, off from 299 px up.
JPEG_VIEW_BELOW = 299


def default_views(image_size: int) -> tuple[str, ...]:
    """The views a run trains on when `TrainConfig.views` is None, for its input size.

    Returns:
        ("jpeg",) below `JPEG_VIEW_BELOW` (299) pixels, () from there up.
    """
    return ("jpeg",) if image_size < JPEG_VIEW_BELOW else ()


# Every accuracy lever off: the course's recipe, kept reachable for comparisons.
SEED_RECIPE: dict[str, Any] = {
    "views": (),
    "label_smoothing": 0.0,
    "weight_decay": 0.0,
    "ensemble": 1,
    "monitor": "val_accuracy",
}


@dataclass(frozen=True)
class TrainConfig:
    """One training run's settings; `__post_init__` validates them (ValueError naming
    the field and echoing its value). `image_size` is the square input side in pixels
    (>= 71), `learning_rate` the optimizer's (Adam; AdamW with `weight_decay`),
    `size_inner` the head's hidden units, `droprate` its dropout rate; `seed_recipe`
    gives the course's recipe (every accuracy lever off)."""

    data_dir: Path = field(default_factory=data_dir_from_env)
    output_dir: Path = Path("runs/model")
    image_size: int = 150
    learning_rate: float = 1e-3
    size_inner: int = 100
    droprate: float = 0.2
    epochs: int = 20
    batch_size: int = 32
    seed: int = 1
    base_weights: str = field(default_factory=base_weights_from_env)
    cache_dir: Path = field(default_factory=cache_dir_from_env)
    max_per_class: int | None = None  # a per-split subset, for quick runs and tests
    fine_tune: int = 0  # unfreeze the last N Xception blocks; trains from images
    augment: bool = False  # flip/zoom/shear; trains from images
    # Accuracy levers (README "Accuracy levers"; SEED_RECIPE turns them off).
    # The ensemble (150 and 299 px) and the cached JPEG view (150 px) helped on
    # validation; the others are off.
    views: tuple[str, ...] | None = None  # cached views of the train images; None: default_views
    label_smoothing: float = 0.0  # e.g. 0.1 (Szegedy et al. 2016)
    weight_decay: float = 0.0  # AdamW's decoupled decay, e.g. 0.004 (Keras' default); 0: Adam
    ensemble: int = 5  # heads on the shared base, logits averaged
    monitor: str = "val_accuracy"  # which validation score picks the kept epoch
    # Calibration and "unsure" (train/calibrate.py): the goal the threshold is chosen
    # for, and out-of-class photos it is measured on (None: env CLOTHING_UNSURE_DIR,
    # else clothing-dataset-extra/not-sure beside the dataset, if there).
    unsure_goal: float = 0.97
    unsure_dir: Path | None = None
    # T and the threshold are fitted on out-of-fold logits of train + validation
    # from this many folds (train/crossfit.py; README "Calibrated scores"); 0: on
    # validation alone. Runs trained from images fit on validation.
    calibration_folds: int = 5
    force: bool = False  # replace an existing output dir
    verbose: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> TrainConfig:
        """Where data, weights and the cache live from env CLOTHING_DATA_DIR,
        XCEPTION_WEIGHTS and CLOTHING_CACHE_DIR (inference/env.py); `overrides`
        that are not None win (the CLI's flags).

        Raises:
            ValueError: a field fails `__post_init__`'s checks (named and echoed).
            TypeError: an override names no field.
        """
        values: dict[str, Any] = {
            "data_dir": data_dir_from_env(environ),
            "base_weights": base_weights_from_env(environ),
            "cache_dir": cache_dir_from_env(environ),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def seed_recipe(cls, **overrides: Any) -> TrainConfig:
        """The seed recipe (every lever off), with `overrides` on top."""
        return cls(**{**SEED_RECIPE, **overrides})

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        check_image_size(self.image_size)
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "> 0")
        _check(self.size_inner >= 1, "size_inner", self.size_inner, ">= 1")
        _check(0.0 <= self.droprate < 1.0, "droprate", self.droprate, "in [0, 1)")
        _check(self.epochs >= 1, "epochs", self.epochs, ">= 1")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        _check(
            self.max_per_class is None or self.max_per_class >= 1,
            "max_per_class",
            self.max_per_class,
            ">= 1 (or None for all images)",
        )
        _check(
            0 <= self.fine_tune <= XCEPTION_BLOCKS,
            "fine_tune",
            self.fine_tune,
            f"in [0, {XCEPTION_BLOCKS}] (Xception blocks)",
        )
        _check(bool(self.base_weights), "base_weights", self.base_weights, "'imagenet' or a path")
        if self.views is not None:
            object.__setattr__(self, "views", tuple(self.views))
            for view in self.views:
                _check(view in TRAIN_VIEWS, "views", self.views, f"a subset of {TRAIN_VIEWS}")
            _check(len(set(self.views)) == len(self.views), "views", self.views, "without repeats")
        _check(
            0.0 <= self.label_smoothing < 1.0, "label_smoothing", self.label_smoothing, "in [0, 1)"
        )
        _check(self.weight_decay >= 0.0, "weight_decay", self.weight_decay, ">= 0")
        _check(self.ensemble >= 1, "ensemble", self.ensemble, ">= 1")
        _check(self.monitor in MONITORS, "monitor", self.monitor, f"one of {MONITORS}")
        _check(0.0 < self.unsure_goal < 1.0, "unsure_goal", self.unsure_goal, "in (0, 1)")
        folds = self.calibration_folds
        _check(
            isinstance(folds, numbers.Integral)
            and not isinstance(folds, bool)
            and (folds == 0 or folds >= 2),
            "calibration_folds",
            folds,
            "0 (validation alone) or an int >= 2",
        )
        if self.unsure_dir is not None:  # checked now, not after a long training run
            object.__setattr__(self, "unsure_dir", Path(self.unsure_dir))
            _check(self.unsure_dir.is_dir(), "unsure_dir", str(self.unsure_dir), "a folder")

    @property
    def train_views(self) -> tuple[str, ...]:
        """The cached views this run trains on: `views`, or `default_views(image_size)`
        when None; none when it trains from images (`from_images`: no feature cache)."""
        if self.from_images:
            return ()
        return default_views(self.image_size) if self.views is None else self.views

    @property
    def from_images(self) -> bool:
        """Fine-tuning and augmentation change the base's input or weights: no cache."""
        return self.fine_tune > 0 or self.augment

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (paths as strings), as stored in metrics.json."""
        data = asdict(self)
        for key in ("data_dir", "output_dir", "cache_dir"):
            data[key] = str(data[key])
        data["unsure_dir"] = None if self.unsure_dir is None else str(self.unsure_dir)
        data["views"] = list(self.train_views)
        return data


def _check(ok: bool, name: str, value: object, rule: str) -> None:
    if not ok:
        raise ValueError(f"`{name}` must be {rule}. Received: {name}={value!r}")
