"""`python -m convert select`: choose, on the validation split, which blocks each quantized
variant (int8, dynamic) keeps in float.

    python -m convert select runs/acc/fast_150 --out runs/quant/select
    python -m convert select runs/acc/fast_150 --out runs/quant/select --variants int8 \\
        --target int8=99 --max-blocks 4
    python -m convert select runs/acc/fast_150 --out runs/quant/select_unfused \\
        --variants int8 --int8-fuse-relus no    # blocks for int8 with its ReLUs apart

For each variant (`int8`, `dynamic`): per-block sensitivity (only that block
quantized, RMS logit difference against Keras on a subsample of the validation
images), then the most sensitive blocks kept in float one at a time until the
agreement on all validation images reaches the target (convert/_quantize.py).
Calibration images (int8's ranges, dynamic's equalization) come from the train
split, as in `python -m convert`. The
test split is refused: it measures (`python -m convert check`), never chooses.

Each variant's blocks are chosen under the rest of its default recipe
(`DEFAULT_RECIPES`); `--int8-fuse-relus` chooses int8's with ReLU fusion on or off,
as `python -m convert` takes it.

Writes OUT/selection.json, OUT/selection.md and OUT/sensitivity.png; pass the
chosen blocks (selection.json's `convert_flags`) to `python -m convert
--int8-float-blocks ... --dynamic-float-blocks ...`.

Exit status: 0 every variant reached its target; 1 one did not (its best recipe
tried is still written); 2 bad usage or input.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from convert._errors import ConvertError
from convert._quantize import (
    DEFAULT_RECIPES,
    QUANTIZED_VARIANTS,
    QuantRecipe,
    Selection,
    agreement_pct,
    block_sensitivity,
    calibrate,
    choose_float_blocks,
    dynamic_range,
    model_blocks,
    quantize_calibrated,
    tflite_logits,
)
from convert._source import (
    TrainOutput,
    keras_logits,
    list_images,
    load_keras_model,
    read_train_output,
    require_images,
    sample_images,
)
from inference import InferenceError, preprocess_file, write_json_atomic

log = logging.getLogger("convert")

# Validation targets: the check's test bars (convert/_check.py) plus 0.5 points,
# so that a recipe chosen at the bar on 341 validation images (one image = 0.29
# points) does not land under it on the 372 test images by chance.
DEFAULT_TARGETS: Mapping[str, float] = MappingProxyType({"int8": 99.0, "dynamic": 99.5})


@dataclass(frozen=True)
class SelectConfig:
    """What to select for; `python -m convert select` flags override these."""

    train_dir: Path
    out_dir: Path
    variants: tuple[str, ...] = QUANTIZED_VARIANTS
    images_dir: Path | None = None  # None: the validation split of metrics.json's data_dir
    calibration_dir: Path | None = None  # None: the train split
    calibration_size: int = 200
    seed: int = 1
    targets: Mapping[str, float] = field(default_factory=lambda: DEFAULT_TARGETS)
    max_blocks: int = 5  # more float blocks cost the speed quantization is for
    sensitivity_stride: int = 3  # sensitivity on every 3rd validation image (speed)
    int8_fuse_relus: bool = DEFAULT_RECIPES["int8"].fuse_relus  # --int8-fuse-relus

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_dir", Path(self.train_dir))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.out_dir.exists() and not self.out_dir.is_dir():  # now, not after measuring
            raise ValueError(
                "`out_dir` must be a folder (created if missing). "
                f"Received: out_dir={str(self.out_dir)!r} (a file)"
            )
        if not self.variants or not set(self.variants) <= set(QUANTIZED_VARIANTS):
            raise ValueError(
                f"`variants` must be a non-empty tuple from {list(QUANTIZED_VARIANTS)}. "
                f"Received: variants={self.variants!r}"
            )
        for name in ("calibration_size", "max_blocks", "sensitivity_stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1. Received: {name}={value!r}")
        if not isinstance(self.int8_fuse_relus, bool):
            raise ValueError(
                "`int8_fuse_relus` must be a bool. "
                f"Received: int8_fuse_relus={self.int8_fuse_relus!r}"
            )
        for variant in self.variants:
            target = self.targets.get(variant)
            if not isinstance(target, int | float) or not 0 < target <= 100:
                raise ValueError(
                    f"`targets` must give each variant an agreement in (0, 100]. "
                    f"Received: targets[{variant!r}]={target!r}"
                )

    def recipe(self, variant: str) -> QuantRecipe:
        """The recipe `variant`'s blocks are chosen under: its default, with
        `int8_fuse_relus` for int8 (the chosen blocks are added to it)."""
        recipe = DEFAULT_RECIPES[variant]
        if variant == "int8":
            return dataclasses.replace(recipe, float_blocks=(), fuse_relus=self.int8_fuse_relus)
        return dataclasses.replace(recipe, float_blocks=())


@dataclass(frozen=True)
class VariantSelection:
    variant: str
    target_pct: float
    sensitivity: dict[str, float]  # block -> RMS logit difference, only that block quantized
    selection: Selection
    seconds: float
    recipe: QuantRecipe  # what the blocks were chosen under (`SelectConfig.recipe`)

    @property
    def convert_flags(self) -> str:
        """The `python -m convert` flags that give this choice's recipe."""
        blocks = " ".join(self.selection.float_blocks) or "none"
        flags = f"--{self.variant}-float-blocks {blocks}"
        if self.variant == "int8" and self.recipe.fuse_relus != DEFAULT_RECIPES["int8"].fuse_relus:
            flags += f" --int8-fuse-relus {'yes' if self.recipe.fuse_relus else 'no'}"
        return flags


def select_recipes(config: SelectConfig) -> list[VariantSelection]:
    """Measure per-block sensitivity and choose float blocks per variant, on validation.

    Returns:
        One `VariantSelection` per variant, also written to `out_dir`.

    Raises:
        ConvertError: bad training output, no validation or calibration images,
            the test split given as selection images, or a conversion failed.
    """
    train = read_train_output(config.train_dir)
    images_dir = _selection_dir(config, train)
    paths = require_images(images_dir)
    images = _preprocess(paths, train.image_size)
    model = load_keras_model(train)
    reference = keras_logits(model, images)
    log.info("selecting on %d images from %s", len(paths), images_dir)
    results = []
    for variant in config.variants:
        start = time.perf_counter()
        quantize = _quantizer(variant, model, train, config)
        results.append(_select_one(variant, quantize, images, reference, config, start=start))
    _write(config, train, images_dir, len(paths), results)
    return results


def _selection_dir(config: SelectConfig, train: TrainOutput) -> Path:
    directory = config.images_dir or train.split("validation")
    if directory is None:
        raise ConvertError(
            "No selection images: pass --images (images_dir=) a validation folder; "
            "metrics.json records no data_dir with a validation split."
        )
    test = train.split("test")
    if test is not None and Path(directory).resolve() == test.resolve():
        raise ConvertError(
            f"{str(directory)!r} is the test split: it measures the chosen recipe "
            "(python -m convert check) and must not choose it; pass validation images."
        )
    return Path(directory)


def _preprocess(paths: list[Path], image_size: int) -> np.ndarray:
    try:
        return np.stack([preprocess_file(p, image_size=image_size) for p in paths])
    except (InferenceError, OSError) as exc:
        raise ConvertError(f"Cannot read a selection image: {exc}") from None


def _quantizer(
    variant: str, model: Any, train: TrainOutput, config: SelectConfig
) -> Callable[[tuple[str, ...]], bytes]:
    from convert._bias import corrected_dynamic_range, input_means
    from convert._equalize import equalized_on
    from convert._export import tflite_bytes
    from convert._fuse import fused_relus

    recipe = config.recipe(variant)
    if variant == "dynamic":  # as `python -m convert` will (its recipe)
        source = model
        if recipe.equalize_alpha is not None or recipe.bias_correction:
            arrays = _calibration_arrays(variant, train, config)
        if recipe.equalize_alpha is not None:
            source = equalized_on(
                model, lambda: ([x[np.newaxis]] for x in arrays), alpha=recipe.equalize_alpha
            )
        float_model = tflite_bytes(source, variant="float32")
        ops = recipe.float_ops  # chosen on validation (README "Quantization")
        if not recipe.bias_correction:
            return lambda blocks: dynamic_range(float_model, float_blocks=blocks, float_ops=ops)
        means = input_means(float_model, (x[np.newaxis] for x in arrays))
        return lambda blocks: corrected_dynamic_range(
            float_model, means, float_blocks=blocks, float_ops=ops
        )
    arrays = _calibration_arrays(variant, train, config)
    source = fused_relus(model) if recipe.fuse_relus else model  # as `python -m convert` will
    calibrated = calibrate(source, lambda: ([x[np.newaxis]] for x in arrays))
    return lambda blocks: quantize_calibrated(calibrated, float_blocks=blocks)


def _calibration_arrays(variant: str, train: TrainOutput, config: SelectConfig) -> np.ndarray:
    directory = config.calibration_dir or train.split("train")
    if directory is None:
        raise ConvertError(f"{variant} needs calibration images: pass --calibration-dir.")
    chosen = sample_images(list_images(directory), size=config.calibration_size, seed=config.seed)
    if not chosen:
        raise ConvertError(f"{variant} needs calibration images; none found in {str(directory)!r}.")
    return _preprocess(chosen, train.image_size)


def _select_one(
    variant: str,
    quantize: Callable[[tuple[str, ...]], bytes],
    images: np.ndarray,
    reference: np.ndarray,
    config: SelectConfig,
    *,
    start: float,
) -> VariantSelection:
    blocks = model_blocks(quantize(()))
    stride = config.sensitivity_stride
    sensitivity = block_sensitivity(blocks, quantize, images[::stride], reference[::stride])
    for block, rmse in sorted(sensitivity.items(), key=lambda kv: -kv[1]):
        log.info("%s sensitivity: %s %.4f", variant, block, rmse)

    def agreement_of(float_blocks: tuple[str, ...]) -> float:
        agreement = agreement_pct(tflite_logits(quantize(float_blocks), images), reference)
        log.info("%s with float %s: agreement %.2f%%", variant, list(float_blocks), agreement)
        return agreement

    target = float(config.targets[variant])
    selection = choose_float_blocks(
        sensitivity, agreement_of, target_pct=target, max_blocks=config.max_blocks
    )
    return VariantSelection(
        variant=variant,
        target_pct=target,
        sensitivity=sensitivity,
        selection=selection,
        seconds=time.perf_counter() - start,
        recipe=config.recipe(variant),
    )


def selection_to_json(results: list[VariantSelection]) -> dict[str, Any]:
    """The `variants` part of selection.json."""
    return {
        r.variant: {
            "target_agreement_pct": r.target_pct,
            "float_blocks": list(r.selection.float_blocks),
            # the rest of the recipe the blocks were chosen under (`SelectConfig.recipe`)
            "float_ops": list(r.recipe.float_ops),
            "equalize_alpha": r.recipe.equalize_alpha,
            "fuse_relus": r.recipe.fuse_relus,
            "bias_correction": r.recipe.bias_correction,
            "reached_target": r.selection.reached_target,
            "sensitivity_rms_logit_diff": r.sensitivity,
            "curve": [{"float_blocks": list(b), "agreement_pct": a} for b, a in r.selection.curve],
            "seconds": round(r.seconds, 1),
        }
        for r in results
    }


def selection_to_markdown(results: list[VariantSelection], *, n_images: int) -> str:
    """selection.md: the sensitivity ranking and the agreement curve per variant."""
    lines = [f"# Quantization recipe selection ({n_images} validation images)", ""]
    for r in results:
        verdict = "reached" if r.selection.reached_target else "**not reached**"
        lines += [
            f"## {r.variant}: float blocks {list(r.selection.float_blocks)} "
            f"(target {r.target_pct:g}% {verdict})",
            "",
            "| float32 blocks | validation agreement |",
            "|---|---|",
        ]
        lines += [f"| {', '.join(b) or '(none)'} | {a:.2f}% |" for b, a in r.selection.curve]
        lines += ["", "| block | RMS logit diff, only this block quantized |", "|---|---|"]
        ranked = sorted(r.sensitivity.items(), key=lambda kv: -kv[1])
        lines += [f"| {b} | {v:.4f} |" for b, v in ranked]
        lines.append("")
    return "\n".join(lines)


def _write(
    config: SelectConfig,
    train: TrainOutput,
    images_dir: Path,
    n_images: int,
    results: list[VariantSelection],
) -> None:
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "train_dir": str(train.directory),
        "images_dir": str(images_dir),
        "n_images": n_images,
        "calibration_size": config.calibration_size,
        "variants": selection_to_json(results),
        "convert_flags": " ".join(r.convert_flags for r in results),
    }
    write_json_atomic(out / "selection.json", data)
    (out / "selection.md").write_text(selection_to_markdown(results, n_images=n_images))
    _plot(results, out / "sensitivity.png")


def _plot(results: list[VariantSelection], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        blocks = list(r.sensitivity)
        colors = ["tab:orange" if b in r.selection.float_blocks else "tab:blue" for b in blocks]
        ax.bar(blocks, [r.sensitivity[b] for b in blocks], color=colors)
        ax.set_title(f"{r.variant}: only this block quantized (orange: kept float32)")
        ax.set_ylabel("RMS logit difference vs Keras")
        ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _target(text: str) -> tuple[str, float]:
    """argparse type for VARIANT=PCT."""
    import argparse

    name, sep, raw = text.partition("=")
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not sep or name not in QUANTIZED_VARIANTS or not 0 < value <= 100:
        raise argparse.ArgumentTypeError(
            f"expected VARIANT=PCT with VARIANT one of {list(QUANTIZED_VARIANTS)} and PCT "
            f"in (0, 100]. Received: {text!r}"
        )
    return name, value


def main(argv: list[str]) -> int:
    """`python -m convert select`; exit 0 when every variant reached its target, else 1."""
    import argparse
    import sys

    from convert._logging import log_to_stderr

    log_to_stderr()
    p = argparse.ArgumentParser(
        prog="python -m convert select",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("train_dir", type=Path, metavar="TRAIN_OUTPUT_DIR")
    p.add_argument("--out", type=Path, required=True, help="folder for selection.json/.md/.png")
    p.add_argument(
        "--variants", nargs="+", choices=QUANTIZED_VARIANTS, default=list(QUANTIZED_VARIANTS)
    )
    p.add_argument("--images", type=Path, help="selection images (default: validation split)")
    p.add_argument(
        "--calibration-dir",
        type=Path,
        help="int8 calibration and dynamic's equalization (default: train split)",
    )
    p.add_argument("--calibration-size", type=int, default=200)
    p.add_argument("--seed", type=int, default=1, help="calibration sample seed")
    p.add_argument(
        "--target",
        type=_target,
        nargs="+",
        default=[],
        metavar="VARIANT=PCT",
        help="validation agreement to reach (default int8=99 dynamic=99.5)",
    )
    p.add_argument("--max-blocks", type=int, default=5, help="most blocks kept in float")
    p.add_argument(
        "--int8-fuse-relus",
        choices=("yes", "no"),
        help="choose int8's blocks with the ReLUs fused into the residual ADDs, or not "
        f"(default {'yes' if DEFAULT_RECIPES['int8'].fuse_relus else 'no'}, "
        "as python -m convert)",
    )
    p.add_argument("--verbose", action="store_true", help="also TensorFlow's C++ log lines")
    args = p.parse_args(argv)
    if args.int8_fuse_relus is not None and "int8" not in args.variants:
        p.error(
            "--int8-fuse-relus applies to the int8 variant, which --variants does not "
            f"include. Received: --variants {' '.join(args.variants)}"
        )
    try:
        config = SelectConfig(
            train_dir=args.train_dir,
            out_dir=args.out,
            variants=tuple(args.variants),
            images_dir=args.images,
            calibration_dir=args.calibration_dir,
            calibration_size=args.calibration_size,
            seed=args.seed,
            targets={**DEFAULT_TARGETS, **dict(args.target)},
            max_blocks=args.max_blocks,
            int8_fuse_relus=(
                DEFAULT_RECIPES["int8"].fuse_relus
                if args.int8_fuse_relus is None
                else args.int8_fuse_relus == "yes"
            ),
        )
    except ValueError as exc:
        p.error(str(exc))
    try:
        results = select_recipes(config)
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = len(list_images(_selection_dir(config, read_train_output(config.train_dir))))
    print(selection_to_markdown(results, n_images=n))
    flags = " ".join(r.convert_flags for r in results)
    print(f"convert with: {flags}", file=sys.stderr)
    return 0 if all(r.selection.reached_target for r in results) else 1
