"""`TrainConfig`: every knob of a training run, validated once.

Defaults reproduce the seed recipe (lr 1e-3, 100 inner units, dropout 0.2,
batch 32, 150 px). Env vars give defaults for where things live, so that a
user with internet and this team's machines run the same command:

    CLOTHING_DATA_DIR   dataset root (train/, validation/, optional test/)
    XCEPTION_WEIGHTS    "imagenet" (Keras download) or a .weights.h5 path
                        ("none": random weights, for fast tests only)
    CLOTHING_CACHE_DIR  feature cache (default ~/.cache/clothing-classifier)
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inference.preprocess import check_image_size

# Xception has 14 blocks (Chollet 2017, fig. 5): entry 1-4, middle 5-12, exit 13-14.
XCEPTION_BLOCKS = 14


def default_data_dir() -> Path:
    return Path(os.environ.get("CLOTHING_DATA_DIR", "clothing-dataset-small"))


def default_base_weights() -> str:
    return os.environ.get("XCEPTION_WEIGHTS", "imagenet")


def default_cache_dir() -> Path:
    env = os.environ.get("CLOTHING_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "clothing-classifier"


@dataclass(frozen=True)
class TrainConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    output_dir: Path = Path("runs/model")
    image_size: int = 150
    learning_rate: float = 1e-3
    size_inner: int = 100
    droprate: float = 0.2
    epochs: int = 20
    batch_size: int = 32
    seed: int = 1
    base_weights: str = field(default_factory=default_base_weights)
    cache_dir: Path = field(default_factory=default_cache_dir)
    max_per_class: int | None = None  # a per-split subset, for quick runs and tests
    fine_tune: int = 0  # unfreeze the last N Xception blocks; trains from images
    augment: bool = False  # flip/zoom/shear; trains from images
    force: bool = False  # replace an existing output dir
    verbose: bool = True

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

    @property
    def from_images(self) -> bool:
        """Fine-tuning and augmentation change the base's input or weights: no cache."""
        return self.fine_tune > 0 or self.augment

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("data_dir", "output_dir", "cache_dir"):
            data[key] = str(data[key])
        return data


def _check(ok: bool, name: str, value: object, rule: str) -> None:
    if not ok:
        raise ValueError(f"`{name}` must be {rule}. Received: {name}={value!r}")
