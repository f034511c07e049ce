"""Train the clothing classifier: frozen Xception base + small head.

Usage:
    # the seed recipe at 150 px, 20 epochs, on the shared data and weights
    python -m train --data-dir ../shared/data/clothing-dataset-small \\
        --base-weights ../shared/models/xception_imagenet_notop.weights.h5 \\
        --output runs/xception_150

    # a droprate study, one model per value, compared on validation accuracy
    python -m train sweep --droprate 0.0 0.2 0.5 0.8 --epochs 30 --output runs/sweep

Env vars CLOTHING_DATA_DIR, XCEPTION_WEIGHTS and CLOTHING_CACHE_DIR give the
defaults of --data-dir, --base-weights and --cache-dir.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from train.config import TrainConfig, default_base_weights, default_cache_dir, default_data_dir
from train.data import DataError
from train.model import WeightsError
from train.run import OutputExistsError, train_model
from train.sweep import SWEEPABLE, format_table, sweep


def _common(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig.__dataclass_fields__
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="dataset root with train/, validation/, optional test/ "
        f"(env CLOTHING_DATA_DIR; now {default_data_dir()})",
    )
    parser.add_argument(
        "--output", type=Path, default=d["output_dir"].default, help="output folder"
    )
    parser.add_argument(
        "--base-weights",
        default=None,
        help="'imagenet' or a .weights.h5 path "
        f"(env XCEPTION_WEIGHTS; now {default_base_weights()})",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"feature cache (env CLOTHING_CACHE_DIR; now {default_cache_dir()})",
    )
    parser.add_argument("--image-size", type=int, default=d["image_size"].default)
    parser.add_argument("--epochs", type=int, default=d["epochs"].default)
    parser.add_argument("--batch-size", type=int, default=d["batch_size"].default)
    parser.add_argument("--seed", type=int, default=d["seed"].default)
    parser.add_argument(
        "--max-per-class", type=int, default=None, help="use at most N images per class and split"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def build_parser(sweep_mode: bool) -> argparse.ArgumentParser:
    d = TrainConfig.__dataclass_fields__
    parser = argparse.ArgumentParser(
        prog="python -m train" + (" sweep" if sweep_mode else ""),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser)
    if sweep_mode:
        for name in SWEEPABLE:
            parser.add_argument(f"--{name.replace('_', '-')}", type=float, nargs="+", default=None)
    else:
        parser.add_argument("--learning-rate", type=float, default=d["learning_rate"].default)
        parser.add_argument("--size-inner", type=int, default=d["size_inner"].default)
        parser.add_argument("--droprate", type=float, default=d["droprate"].default)
        parser.add_argument(
            "--fine-tune",
            type=int,
            default=0,
            metavar="N",
            help="unfreeze the last N Xception blocks; trains from images (GPU advised)",
        )
        parser.add_argument(
            "--augment", action="store_true", help="flip/zoom/shear; trains from images"
        )
    return parser


def config_from_args(args: argparse.Namespace, **extra: object) -> TrainConfig:
    given = {
        "data_dir": args.data_dir,
        "output_dir": args.output,
        "base_weights": args.base_weights,
        "cache_dir": args.cache_dir,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "max_per_class": args.max_per_class,
        "force": args.force,
        "verbose": not args.quiet,
        **extra,
    }
    return TrainConfig(**{k: v for k, v in given.items() if v is not None})


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    sweep_mode = bool(argv) and argv[0] == "sweep"
    args = build_parser(sweep_mode).parse_args(argv[1:] if sweep_mode else argv)
    try:
        if sweep_mode:
            chosen = [n for n in SWEEPABLE if getattr(args, n) is not None]
            if len(chosen) != 1:
                raise ValueError(
                    f"Sweep exactly one of {['--' + n.replace('_', '-') for n in SWEEPABLE]}. "
                    f"Received: {['--' + n.replace('_', '-') for n in chosen] or 'none'}"
                )
            summary = sweep(
                config_from_args(args), param=chosen[0], values=getattr(args, chosen[0])
            )
            print(format_table(summary))
            print(f"\nwrote {args.output}/sweep.json, sweep_val_accuracy.png, one folder per value")
        else:
            config = config_from_args(
                args,
                learning_rate=args.learning_rate,
                size_inner=args.size_inner,
                droprate=args.droprate,
                fine_tune=args.fine_tune,
                augment=args.augment,
            )
            metrics = train_model(config)
            test = metrics["test_accuracy"]
            print(
                f"val_accuracy {metrics['val_accuracy']:.4f} (epoch {metrics['best_epoch']})"
                + ("" if test is None else f"  test_accuracy {test:.4f}")
                + f"  in {metrics['timings']['total_seconds']:.1f} s"
            )
            print(
                f"wrote {config.output_dir}/: model.keras, metrics.json, "
                "learning_curves.png, confusion_matrix.png"
            )
    except (DataError, WeightsError, OutputExistsError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
