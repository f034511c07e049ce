"""Train the clothing classifier: frozen Xception base + small head.

Usage:
    # the two profiles, every accuracy lever on (README "Accuracy levers")
    python -m train --image-size 299 --output runs/xception_299   # production
    python -m train --image-size 150 --output runs/xception_150   # fast

    # the seed recipe (every lever off), or one lever off
    python -m train --recipe seed --output runs/seed_150
    python -m train --views --ensemble 1 --output runs/no_views_one_head  # no JPEG view, one head

    # a droprate study, one model per value, compared on validation accuracy
    python -m train sweep --droprate 0.0 0.2 0.5 0.8 --epochs 30 --output runs/sweep

    # the lever table and the input-size table, on validation only
    python -m train levers --image-size 150 --seeds 1 2 3 --output runs/levers_150
    python -m train sizes --sizes 150 224 299 --seeds 1 2 --output runs/sizes

    # test accuracy when the test photos are re-encoded (JPEG q60) or downscaled
    python -m train robustness runs/xception_299 --output runs/robustness_299

    # calibrate an existing run (made before calibration, or for another goal):
    # temperature + unsure threshold into its metrics.json, and the two plots
    python -m train calibrate runs/xception_299 --unsure-goal 0.97

Env vars CLOTHING_DATA_DIR, XCEPTION_WEIGHTS and CLOTHING_CACHE_DIR give the
defaults of --data-dir, --base-weights and --cache-dir. TensorFlow's C++ log
lines are off unless --verbose or env CLOTHING_VERBOSE=1 (inference/_quiet.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

if __name__ == "__main__":
    # This parser's imports load Keras, even for --help: TensorFlow loads now, its
    # C++ log lines off (inference/_quiet.py; train/__init__.py skipped it for --help,
    # since `python -m convert --help` imports the train package too).
    from inference import quiet_tensorflow

    quiet_tensorflow(sys.argv, os.environ, help_without_tensorflow=False)

from inference.env import base_weights_from_env, cache_dir_from_env, data_dir_from_env
from train.calibrate import (
    add_calibrate_arguments,
    format_unsure,
    run_calibrate,
    unsure_dir_arg,
)
from train.config import MONITORS, SEED_RECIPE, TRAIN_VIEWS, TrainConfig
from train.data import DataError
from train.levers import format_levers, format_sizes, measure_levers, measure_sizes, write_result
from train.model import WeightsError
from train.robustness import add_robustness_arguments, run_robustness
from train.run import OutputExistsError, train_model
from train.sweep import SWEEPABLE, format_table, sweep


def _common(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig.__dataclass_fields__
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="dataset root with train/, validation/, optional test/ "
        f"(env CLOTHING_DATA_DIR; now {data_dir_from_env()})",
    )
    parser.add_argument(
        "--output", type=Path, default=d["output_dir"].default, help="output folder"
    )
    parser.add_argument(
        "--base-weights",
        default=None,
        help="'imagenet' or a .weights.h5 path "
        f"(env XCEPTION_WEIGHTS; now {base_weights_from_env()})",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"feature cache (env CLOTHING_CACHE_DIR; now {cache_dir_from_env()})",
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
    parser.add_argument(
        "--unsure-goal",
        type=float,
        default=None,
        help="accuracy the answered share must reach (on out-of-fold logits, or on "
        "validation with --calibration-folds 0); sets the unsure threshold (default 0.97)",
    )
    parser.add_argument(
        "--calibration-folds",
        type=int,
        default=None,
        metavar="K",
        help="fit the temperature and the unsure threshold on out-of-fold logits of "
        "train + validation from K folds (K more head trainings), or 0: on validation "
        f"alone (default {TrainConfig.calibration_folds})",
    )
    parser.add_argument(
        "--unsure-dir",
        type=unsure_dir_arg,
        default=None,
        help="out-of-class photos, only measured: their unsure rate and AUROC (env "
        "CLOTHING_UNSURE_DIR; default clothing-dataset-extra/not-sure beside the data, if there)",
    )


def _levers(parser: argparse.ArgumentParser) -> None:
    """Accuracy-lever flags: unset, they take the --recipe's value."""
    d = TrainConfig.__dataclass_fields__
    parser.add_argument(
        "--recipe",
        choices=("default", "seed"),
        default="default",
        help="default: every lever that helps on; seed: every lever off (the course's recipe)",
    )
    parser.add_argument(
        "--views",
        nargs="*",
        choices=TRAIN_VIEWS,
        default=None,
        help="augmented views of the train images, cached like the plain features "
        "(default: jpeg below 299 px, none from 299 px up; `--views` alone: none)",
    )
    parser.add_argument(
        "--label-smoothing",
        type=float,
        default=None,
        help=f"default {d['label_smoothing'].default}",
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=None,
        help=f"AdamW decoupled weight decay, 0: Adam (default {d['weight_decay'].default})",
    )
    parser.add_argument(
        "--ensemble",
        type=int,
        default=None,
        metavar="N",
        help=f"heads on the shared base, logits averaged (default {d['ensemble'].default})",
    )
    parser.add_argument(
        "--monitor",
        choices=MONITORS,
        default=None,
        help=f"validation score that picks the kept epoch (default {d['monitor'].default})",
    )
    parser.add_argument("--learning-rate", type=float, default=d["learning_rate"].default)
    parser.add_argument("--size-inner", type=int, default=d["size_inner"].default)
    parser.add_argument("--droprate", type=float, default=d["droprate"].default)


def lever_values(args: argparse.Namespace) -> dict[str, object]:
    """TrainConfig fields from the lever flags: the recipe's values, then explicit flags."""
    values: dict[str, object] = dict(SEED_RECIPE) if args.recipe == "seed" else {}
    for name in SEED_RECIPE:
        given = getattr(args, name)
        if given is not None:
            values[name] = tuple(given) if name == "views" else given
    values.update(
        learning_rate=args.learning_rate, size_inner=args.size_inner, droprate=args.droprate
    )
    return values


def build_parser(mode: str) -> argparse.ArgumentParser:
    """The argument parser of one `python -m train` mode.

    Args:
        mode: str, one of "train" or MODES ("sweep", "levers", "sizes",
            "robustness", "calibrate"); picks the arguments and the `prog` name.

    Returns:
        argparse.ArgumentParser for that mode (always accepts --verbose).
    """
    parser = argparse.ArgumentParser(
        prog="python -m train" + ("" if mode == "train" else f" {mode}"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Read from sys.argv before TensorFlow loads (inference/_quiet.py); declared here
    # so that argparse accepts it and --help lists it.
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also TensorFlow's C++ log lines (env CLOTHING_VERBOSE=1 does the same)",
    )
    if mode == "robustness":
        add_robustness_arguments(parser)
        return parser
    if mode == "calibrate":
        add_calibrate_arguments(parser)
        return parser
    _common(parser)
    if mode == "sweep":
        for name in SWEEPABLE:
            parser.add_argument(f"--{name.replace('_', '-')}", type=float, nargs="+", default=None)
        return parser
    _levers(parser)
    if mode in ("levers", "sizes"):
        parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
        if mode == "levers":
            parser.add_argument(
                "--extract-views",
                nargs="*",
                choices=TRAIN_VIEWS,
                default=list(TRAIN_VIEWS),
                help="views to extract for the table (one base pass per train image each)",
            )
            parser.add_argument(
                "--only", nargs="+", default=[], metavar="ROW", help="measure only these rows"
            )
        else:
            parser.add_argument("--sizes", type=int, nargs="+", default=[150, 224, 299])
    else:
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
    """A TrainConfig from parsed CLI arguments, over the CLOTHING_* environment.

    Args:
        args: argparse.Namespace from `build_parser` (a training mode, not
            robustness or calibrate).
        **extra: further TrainConfig fields (e.g. lever values, fine_tune,
            augment); they override the environment like the arguments do.

    Returns:
        TrainConfig from `TrainConfig.from_env(os.environ, ...)`.

    Raises:
        ValueError: an argument or environment variable has a bad value.
    """
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
        "unsure_goal": args.unsure_goal,
        "unsure_dir": args.unsure_dir,
        "calibration_folds": args.calibration_folds,
        **extra,
    }
    return TrainConfig.from_env(os.environ, **given)


MODES = ("sweep", "levers", "sizes", "robustness", "calibrate")


def main(argv: Sequence[str] | None = None) -> int:
    """Run `python -m train [MODE] ...`.

    Args:
        argv: list of str, the arguments without the program name; None reads
            sys.argv[1:]. A first argument in MODES picks that mode, else "train".

    Returns:
        int exit status: 0 on success, 1 when `robustness` finds a drop above
        --max-drop, 2 on a data, weights, output-folder, value or OS error
        (printed as "error: ..." on stderr).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    mode = argv[0] if argv and argv[0] in MODES else "train"
    args = build_parser(mode).parse_args(argv if mode == "train" else argv[1:])
    try:
        if mode == "sweep":
            _sweep(args)
        elif mode == "levers":
            result = measure_levers(
                config_from_args(args, **lever_values(args)),
                seeds=args.seeds,
                views=args.extract_views,
                only=args.only,
            )
            write_result(result, args.output, stem="levers")
            print(format_levers(result))
            print(f"\nwrote {args.output}/levers.json, levers.md, levers.png")
        elif mode == "sizes":
            config = config_from_args(args, **lever_values(args))
            result = measure_sizes(config, sizes=args.sizes, seeds=args.seeds)
            write_result(result, args.output, stem="sizes")
            print(format_sizes(result))
            print(f"\nwrote {args.output}/sizes.json, sizes.md, sizes.png")
        elif mode == "robustness":
            return run_robustness(args)
        elif mode == "calibrate":
            return run_calibrate(args)
        else:
            _train(args)
    except (DataError, WeightsError, OutputExistsError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _sweep(args: argparse.Namespace) -> None:
    chosen = [n for n in SWEEPABLE if getattr(args, n) is not None]
    if len(chosen) != 1:
        raise ValueError(
            f"Sweep exactly one of {['--' + n.replace('_', '-') for n in SWEEPABLE]}. "
            f"Received: {['--' + n.replace('_', '-') for n in chosen] or 'none'}"
        )
    # The sweep studies the seed recipe's head, as the course did.
    config = config_from_args(args, **SEED_RECIPE)
    summary = sweep(config, param=chosen[0], values=getattr(args, chosen[0]))
    print(format_table(summary))
    print(f"\nwrote {args.output}/sweep.json, sweep_val_accuracy.png, one folder per value")


def _train(args: argparse.Namespace) -> None:
    config = config_from_args(
        args, **lever_values(args), fine_tune=args.fine_tune, augment=args.augment
    )
    metrics = train_model(config)
    test = metrics["test_accuracy"]
    print(
        f"val_accuracy {metrics['val_accuracy']:.4f} (epoch {metrics['best_epoch']}, "
        f"kept on {metrics['monitor']})"
        + ("" if test is None else f"  test_accuracy {test:.4f}")
        + f"  in {metrics['timings']['total_seconds']:.1f} s"
    )
    print(format_unsure(metrics))
    print(
        f"wrote {config.output_dir}/: model.keras, metrics.json, "
        "learning_curves.png, confusion_matrix.png, reliability_diagram.png, risk_coverage.png"
    )


if __name__ == "__main__":
    sys.exit(main())
