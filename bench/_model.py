"""The benchmarked model: trained with `train_model`, converted with `convert_model`,
checked with `check_bundles`, and kept in the work dir so reruns skip all three.

    WORK_DIR/models/<size>px-<full|subsetN>-<key digest>/
        key.json        what the model was built from (a changed input rebuilds it)
        train/          `python -m train` output (model.keras, metrics.json, plots)
        bundles/        one bundle per variant + report.json/report.md (the check)

A quick run uses a full model of the same key when one is there: its accuracy
is the real one; a quick-built model (trained on a few images) only proves the
pipeline runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._config import BenchConfig
from convert import (
    DEFAULT_RECIPES,
    REPORT_JSON,
    VARIANTS,
    CheckConfig,
    ConvertConfig,
    check_bundles,
    convert_model,
    log_to_stderr,
    report_to_json,
    write_report,
)
from train import TrainConfig, train_model
from train.output import read_train_output
from train.run import CachedFeatures

KEY_FILENAME = "key.json"


@dataclass(frozen=True)
class BenchModel:
    directory: Path
    train_dir: Path
    bundles_dir: Path
    image_size: int
    subset: int | None  # images per class it was trained on; None: the full splits
    reused: bool  # found in the work dir, not built by this run
    check_report: dict[str, Any]  # the check's report as JSON (bundles/report.json)
    metrics: dict[str, Any]  # train/metrics.json
    seconds: dict[str, float]  # train / convert / check, when built by this run

    def bundle(self, variant: str) -> Path:
        return self.bundles_dir / variant


def model_key(config: BenchConfig, *, subset: int | None) -> dict[str, Any]:
    """Everything the trained model and its bundles depend on."""
    weights: dict[str, Any] = {"base_weights": config.base_weights}
    path = Path(config.base_weights).expanduser()
    if path.is_file():
        stat = path.stat()
        weights = {"base_weights": str(path.resolve()), "size": stat.st_size}
    train = TrainConfig(
        data_dir=config.data_dir, base_weights=config.base_weights, image_size=config.image_size
    )
    return {
        "data_dir": str(config.data_dir.resolve()),
        **weights,
        "image_size": config.image_size,
        "subset_per_class": subset,
        "recipe": {
            k: getattr(train, k)
            for k in ("learning_rate", "size_inner", "droprate", "epochs", "batch_size", "seed")
        },
        "views": list(train.train_views),
        "quant_recipes": {v: dataclasses.asdict(r) for v, r in DEFAULT_RECIPES.items()},
        "variants": list(VARIANTS),
    }


def model_dir(config: BenchConfig, *, subset: int | None) -> Path:
    key = model_key(config, subset=subset)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{config.image_size}px-{'full' if subset is None else f'subset{subset}'}-{digest}"
    return config.work_dir / "models" / name


def find_model(config: BenchConfig, *, subset: int | None) -> BenchModel | None:
    """A finished model + checked bundles of this key in the work dir, or None."""
    directory = model_dir(config, subset=subset)
    try:
        key = json.loads((directory / KEY_FILENAME).read_text())
        report = json.loads((directory / "bundles" / REPORT_JSON).read_text())
        metrics = read_train_output(directory / "train").metrics  # TrainOutputError: ValueError
    except (OSError, ValueError):
        return None
    if key != model_key(config, subset=subset):
        return None
    if {v["variant"] for v in report.get("variants", [])} != set(VARIANTS):
        return None
    return BenchModel(
        directory=directory,
        train_dir=directory / "train",
        bundles_dir=directory / "bundles",
        image_size=config.image_size,
        subset=subset,
        reused=True,
        check_report=report,
        metrics=metrics,
        seconds={},
    )


def prepare_model(
    config: BenchConfig,
    *,
    features: Callable[[], CachedFeatures],
    log: Callable[[str], None],
) -> BenchModel:
    """Reuse the work dir's model (a full one first), else train, convert and check one.

    `features` gives the training split's cached features (measured by the
    training comparison), so a fresh model costs no second extraction.
    """
    subset = config.effort.per_class
    if not config.retrain:
        for candidate in (None, subset) if subset is not None else (None,):
            found = find_model(config, subset=candidate)
            if found is not None:
                log(f"reusing the model and bundles in {found.directory}")
                return found
    directory = model_dir(config, subset=subset)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / KEY_FILENAME).unlink(missing_ok=True)  # written last: marks it complete
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    log(f"training the {config.image_size}px model into {directory / 'train'}")
    train_config = TrainConfig(
        data_dir=config.data_dir,
        output_dir=directory / "train",
        image_size=config.image_size,
        base_weights=config.base_weights,
        cache_dir=config.cache_dir,
        max_per_class=subset,
        force=True,
        verbose=False,
        calibration_folds=0,  # the bench times the model; calibrated on validation is enough
    )
    metrics = train_model(train_config, features=features())
    seconds["train"] = time.perf_counter() - start

    log_to_stderr()
    start = time.perf_counter()
    log(f"converting to {', '.join(VARIANTS)}")
    convert_model(
        ConvertConfig(
            train_dir=directory / "train",
            out_dir=directory / "bundles",
            variants=VARIANTS,
            calibration_size=config.effort.calibration_size,
            force=True,
        )
    )
    seconds["convert"] = time.perf_counter() - start
    start = time.perf_counter()
    log("checking the bundles against Keras (accuracy, agreement)")
    checked = check_bundles(
        CheckConfig(
            train_dir=directory / "train",
            out_dir=directory / "bundles",
            max_images=config.effort.check_images,
            threads=config.threads,
        )
    )
    seconds["check"] = time.perf_counter() - start
    write_report(checked, directory / "bundles")  # a rerun reuses it (find_model)
    report = report_to_json(checked)
    (directory / KEY_FILENAME).write_text(
        json.dumps(model_key(config, subset=subset), indent=2) + "\n"
    )
    return BenchModel(
        directory=directory,
        train_dir=directory / "train",
        bundles_dir=directory / "bundles",
        image_size=config.image_size,
        subset=subset,
        reused=False,
        check_report=report,
        metrics=metrics,
        seconds=seconds,
    )
