"""`convert_model`: a training output -> one bundle folder per variant (TFLite or ONNX).

Layout written (the bundle format is inference/_bundle.py's):

    OUT_DIR/float32/model.tflite   OUT_DIR/float32/manifest.json
    OUT_DIR/int8/model.tflite      OUT_DIR/int8/manifest.json   ...
    OUT_DIR/onnx/model.onnx        OUT_DIR/onnx/manifest.json   (format "onnx")

Atomicity (inference/_publish.py): everything is built in a hidden sibling folder
(`.OUT_DIR.partial-*`, same filesystem, so the rename is atomic on POSIX) and
renamed to OUT_DIR only once every variant converted. A failure or Ctrl-C
deletes the sibling; a kill -9 leaves it behind, hidden and never at the path a runtime loads.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from convert._errors import ConvertError
from convert._export import (
    builtin_operators,
    check_variants,
    converter_versions,
    needs_calibration,
    tflite_bytes,
)
from convert._onnx import ONNX_VARIANTS, onnx_bytes, onnx_converter_versions, onnx_operators
from convert._quantize import DEFAULT_RECIPES, QuantRecipe
from convert._source import (
    TrainOutput,
    list_images,
    load_keras_model,
    read_train_output,
    sample_images,
    source_sha256,
)
from inference import (
    MANIFEST_FILENAME,
    InferenceError,
    Manifest,
    preprocess_file,
    staging_dir,
    write_atomic,
    write_json_atomic,
)

log = logging.getLogger("convert")

# TensorFlow's post-training quantization guide asks for "a small subset (around
# ~100-500 samples) of the training or validation data"
# (https://ai.google.dev/edge/litert/models/post_training_quantization). 200 at
# 150 px calibrates in about 50 s on 2 cores; on the 150 px model, 25 to 200
# images gave the same int8 agreement (94.6-96.5%): more buys nothing here.
DEFAULT_CALIBRATION_SIZE = 200


@dataclass(frozen=True)
class ConvertConfig:
    """What to convert and where; `python -m convert` flags override these."""

    train_dir: Path
    out_dir: Path
    variants: tuple[str, ...] = ("float32",)
    calibration_dir: Path | None = None  # None: the train split of metrics.json's data_dir
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    seed: int = 1  # picks the calibration sample
    force: bool = False  # replace an existing out_dir
    # int8/dynamic: which blocks stay float32 (convert/_quantize.py, chosen on validation)
    recipes: Mapping[str, QuantRecipe] = field(default_factory=lambda: DEFAULT_RECIPES)

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_dir", Path(self.train_dir))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.calibration_dir is not None:
            object.__setattr__(self, "calibration_dir", Path(self.calibration_dir))
        check_variants(self.variants)
        if not isinstance(self.calibration_size, int) or self.calibration_size < 1:
            raise ValueError(
                "`calibration_size` must be an int >= 1. "
                f"Received: calibration_size={self.calibration_size!r}"
            )


@dataclass(frozen=True)
class ConvertResult:
    out_dir: Path
    bundles: dict[str, Path] = field(default_factory=dict)  # variant -> bundle folder
    seconds: dict[str, float] = field(default_factory=dict)  # variant -> conversion time
    calibration_images: int = 0


def convert_model(config: ConvertConfig) -> ConvertResult:
    """Convert `config.train_dir`'s model to every variant; publish all or nothing."""
    train = read_train_output(config.train_dir)
    out_dir = config.out_dir
    _check_out_dir(out_dir, train=train, force=config.force)
    calibration: list[Path] = []
    calibrated = [v for v in config.variants if needs_calibration(v, config.recipes.get(v))]
    if calibrated:
        calibration = _calibration_paths(config, train, variants=calibrated)

    model = load_keras_model(train)
    source_hash = source_sha256(train)
    calibration_arrays = _preprocess_all(calibration, image_size=train.image_size)

    def representative_dataset() -> Iterator[list[np.ndarray]]:
        for x in calibration_arrays:
            yield [x[np.newaxis]]

    seconds: dict[str, float] = {}
    with staging_dir(out_dir) as staging:  # hidden sibling, umask-honouring (inference/_publish.py)
        for variant in config.variants:
            start = time.perf_counter()
            if variant in ONNX_VARIANTS:  # convert/_onnx.py: tf2onnx
                content = onnx_bytes(model, variant=variant, image_size=train.image_size)
            else:
                content = tflite_bytes(
                    model,
                    variant=variant,
                    representative_dataset=(
                        representative_dataset
                        if needs_calibration(variant, config.recipes.get(variant))
                        else None
                    ),
                    recipe=config.recipes.get(variant),
                )
            _write_bundle(
                staging / variant,
                content,
                train=train,
                variant=variant,
                source_hash=source_hash,
                recipe=config.recipes.get(variant),
            )
            seconds[variant] = time.perf_counter() - start
            log.info(
                "converted %s: %.1f MB in %.1f s", variant, len(content) / 1e6, seconds[variant]
            )
    return ConvertResult(
        out_dir=out_dir,
        bundles={v: out_dir / v for v in config.variants},
        seconds=seconds,
        calibration_images=len(calibration_arrays),
    )


def _check_out_dir(out_dir: Path, *, train: TrainOutput, force: bool) -> None:
    if not (out_dir.exists() or out_dir.is_symlink()):
        return
    if not force:
        raise ConvertError(
            f"Output folder {str(out_dir)!r} already exists; "
            "pass --force (force=True) to replace it."
        )
    if not out_dir.is_dir() or out_dir.is_symlink():
        raise ConvertError(
            f"Output path {str(out_dir)!r} exists and is not a folder; not replacing it."
        )
    source = train.directory.resolve()
    if source == out_dir.resolve() or out_dir.resolve() in source.parents:
        raise ConvertError(
            f"Output folder {str(out_dir)!r} contains the training output "
            f"{str(train.directory)!r}; replacing it would delete the source model."
        )


def _calibration_paths(
    config: ConvertConfig, train: TrainOutput, *, variants: list[str]
) -> list[Path]:
    """The calibration sample of `variants` (int8's ranges, dynamic's equalization and
    bias correction)."""
    named = " and ".join(repr(v) for v in variants)
    need = f"Variant {named} needs" if len(variants) == 1 else f"Variants {named} need"
    # dynamic needs them only for its recipe's equalization and bias correction,
    # which can be turned off
    remedy = ""
    if "dynamic" in variants:
        remedy = " (or pass --dynamic-equalize none --dynamic-bias-correction no)"
    directory = config.calibration_dir or train.split("train")
    if directory is None:
        raise ConvertError(
            f"{need} calibration images: pass --calibration-dir "
            "(calibration_dir=) a folder of training images; metrics.json records no data_dir "
            f"with a train split{remedy}."
        )
    paths = list_images(directory)
    if not paths:
        raise ConvertError(f"{need} calibration images; none found in {str(directory)!r}{remedy}.")
    chosen = sample_images(paths, size=config.calibration_size, seed=config.seed)
    log.info(
        "calibration sample of %s (int8 ranges; dynamic equalization, bias correction): "
        "%d of %d images from %s",
        " and ".join(variants),
        len(chosen),
        len(paths),
        directory,
    )
    return chosen


def _preprocess_all(paths: list[Path], *, image_size: int) -> list[np.ndarray]:
    """Preprocess as at serving time (inference.preprocess_file), failing on a bad file."""
    arrays = []
    for path in paths:
        try:
            arrays.append(preprocess_file(path, image_size=image_size))
        except (InferenceError, OSError) as exc:
            raise ConvertError(f"Cannot read calibration image {str(path)!r}: {exc}") from None
    return arrays


def _with_recipe(converter: dict[str, str], recipe: QuantRecipe | None) -> dict[str, str]:
    """The manifest's `converter` record, plus the quantization recipe of int8/dynamic."""
    if recipe is None:
        return converter
    record = {**converter, "float32_blocks": ",".join(recipe.float_blocks) or "none"}
    if recipe.float_ops:
        record["float32_ops"] = ",".join(recipe.float_ops)
    if recipe.equalize_alpha is not None:
        record["equalize_alpha"] = repr(float(recipe.equalize_alpha))
    if recipe.fuse_relus:
        record["fuse_relus"] = "true"
    if recipe.bias_correction:
        record["bias_correction"] = "true"
    return record


def _write_bundle(
    directory: Path,
    content: bytes,
    *,
    train: TrainOutput,
    variant: str,
    source_hash: str,
    recipe: QuantRecipe | None = None,
) -> None:
    is_onnx = variant in ONNX_VARIANTS
    manifest = Manifest(
        labels=train.labels,
        image_size=train.image_size,
        variant=variant,
        model_sha256=hashlib.sha256(content).hexdigest(),
        source_model_sha256=source_hash,
        converter=(
            onnx_converter_versions() if is_onnx else _with_recipe(converter_versions(), recipe)
        ),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        operators=onnx_operators(content) if is_onnx else builtin_operators(content),
        format="onnx" if is_onnx else "tflite",
        temperature=train.temperature,
        unsure_threshold=train.unsure_threshold,
        unsure_goal=train.unsure_goal,
    )
    directory.mkdir()
    # Durable writes (fsync before rename), so a crash cannot expose a published
    # folder whose files were never flushed.
    write_atomic(directory / manifest.model_filename, content)
    write_json_atomic(directory / MANIFEST_FILENAME, manifest.to_json())
