"""`BenchConfig`: what `python -m bench` measures and how hard; CLI flags override it.

How many repeats each measurement gets is an `Effort`, one for the full run
and one for `--quick`; the numbers are chosen to fit the time budgets of
issue 6 (full run < 20 min, quick < 2 min on a 2-core machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from inference.env import (
    DEFAULT_WEIGHTS,
    base_weights_from_env,
    cache_dir_from_env,
    data_dir_from_env,
)
from inference.preprocess import check_image_size

REPO = Path(__file__).resolve().parents[1]
# The team's shared read-only data and weights sit beside the repo (tests/conftest.py).
SHARED = Path(os.environ.get("SHARED_DIR", REPO.parent / "shared"))
DEFAULT_OUT_DIR = REPO / "bench" / "results"
LARGE_IMAGE_SIZE = 299  # Xception's native input size (Chollet 2017, section 4.1)


SHARED_DATA_DIR = SHARED / "data" / "clothing-dataset-small"
SHARED_WEIGHTS = SHARED / "models" / "xception_imagenet_notop.weights.h5"


def default_data_dir() -> Path:
    """Env CLOTHING_DATA_DIR, else the shared dataset beside the repo (inference/env.py)."""
    return data_dir_from_env(os.environ, fallback=SHARED_DATA_DIR)


def default_base_weights() -> str:
    """Env XCEPTION_WEIGHTS, else the shared weights file when present, else "imagenet"."""
    fallback = str(SHARED_WEIGHTS) if SHARED_WEIGHTS.is_file() else DEFAULT_WEIGHTS
    return base_weights_from_env(os.environ, fallback=fallback)


def default_cache_dir() -> Path:
    """Env CLOTHING_CACHE_DIR, else ~/.cache/clothing-classifier (as `python -m train`)."""
    return cache_dir_from_env(os.environ)


def default_work_dir() -> Path:
    """Trained model, bundles and the serve venv, kept between runs."""
    return default_cache_dir() / "bench"


@dataclass(frozen=True)
class Effort:
    """Repeats per measurement. Medians need >= 3 samples to shrug off one outlier."""

    per_class: int | None  # training comparison on this many images per class (None: all)
    large_per_class: int  # the same at 299 px (--with-299), which costs ~4.3x per image
    head_epochs: int  # timed head epochs on the cache (median), after one warm-up epoch
    latency_rounds: int  # interleaved rounds over every latency configuration
    latency_runs: int  # timed predictions per configuration per round
    latency_warmup: int  # untimed predictions per configuration first
    cold_runs: int  # process starts per runtime (median)
    gemm_runs: int  # timed GEMM products per thread count per latency round
    lambda_repeat: int  # bench.serve warm invocations per event source
    lambda_cold_runs: int  # bench.serve emulator process starts
    calibration_size: int  # int8 calibration images, when the bundles must be built
    check_images: int | None  # conversion-check images (None: the whole test split)


FULL = Effort(
    per_class=None,
    large_per_class=10,  # 3 x 100 images at ~0.2 s each: ~1.5 min on 2 cores
    head_epochs=5,
    latency_rounds=10,
    latency_runs=5,
    latency_warmup=5,  # XNNPack packs weights on the first invoke (convert/_check.py)
    cold_runs=3,
    gemm_runs=2,
    lambda_repeat=30,
    lambda_cold_runs=3,
    calibration_size=200,  # convert's DEFAULT_CALIBRATION_SIZE
    check_images=None,
)
QUICK = Effort(
    per_class=5,
    large_per_class=3,
    head_epochs=3,
    latency_rounds=3,
    latency_runs=3,
    latency_warmup=2,
    cold_runs=1,
    gemm_runs=2,
    lambda_repeat=5,
    lambda_cold_runs=1,
    calibration_size=20,
    check_images=30,
)


@dataclass(frozen=True)
class BenchConfig:
    quick: bool = False
    image_size: int = 150
    with_299: bool = False  # also compare training at 299 px
    work_dir: Path = field(default_factory=default_work_dir)
    data_dir: Path = field(default_factory=default_data_dir)
    base_weights: str = field(default_factory=default_base_weights)
    out_dir: Path = DEFAULT_OUT_DIR
    cache_dir: Path = field(default_factory=default_cache_dir)  # the benchmarked model's features
    retrain: bool = False  # ignore a trained model and bundles in work_dir
    threads: tuple[int, ...] = (1, 2)

    def __post_init__(self) -> None:
        for name in ("work_dir", "data_dir", "out_dir", "cache_dir"):
            object.__setattr__(self, name, Path(getattr(self, name)).expanduser())
        check_image_size(self.image_size)
        if not self.threads or not all(isinstance(t, int) and t >= 1 for t in self.threads):
            raise ValueError(
                "`threads` must be a non-empty tuple of ints >= 1. "
                f"Received: threads={self.threads!r}"
            )
        if not self.base_weights:
            raise ValueError(
                "`base_weights` must be 'imagenet' or a weights file path. "
                f"Received: base_weights={self.base_weights!r}"
            )

    @property
    def effort(self) -> Effort:
        return QUICK if self.quick else FULL

    @property
    def training_sizes(self) -> tuple[int, ...]:
        if self.with_299 and self.image_size != LARGE_IMAGE_SIZE:
            return (self.image_size, LARGE_IMAGE_SIZE)
        return (self.image_size,)

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"
