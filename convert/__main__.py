"""`python -m convert`: Keras model -> TFLite and ONNX bundles, then the proof they predict alike.

    # convert (float32 by default), then check every variant on the test split
    python -m convert runs/150 --out bundles --variants float32 float16 dynamic int8

    # check existing bundles again, on other images, with a looser float16 bar
    python -m convert check runs/150 --out bundles --images photos/ --min-agreement float16=99

    # choose which blocks int8/dynamic keep in float, on the validation split
    python -m convert select runs/150 --out runs/quant/select
    python -m convert runs/150 --out bundles --variants int8 --int8-float-blocks none  # all-int8
    python -m convert runs/150 --out bundles --variants dynamic --dynamic-float-blocks none \\
        --dynamic-float-ops none --dynamic-equalize none  # the converter's dynamic range
    python -m convert runs/150 --out bundles --variants int8 --int8-fuse-relus no  # ReLUs apart

TRAIN_OUTPUT_DIR is what `python -m train` wrote (model.keras + metrics.json).
int8 is calibrated, and dynamic's equalization (and, when asked, bias correction)
measured, on --calibration-dir, by default the train split of the data_dir that
metrics.json records; the check uses --images, by default its test split.
Results: OUT/report.json and OUT/report.md (also printed).

Exit status: 0 every variant passed; 1 a variant missed a threshold; 2 bad usage
or input (nothing is written then).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    # The CLI, before TensorFlow loads: its C++ log lines off unless --verbose or
    # env CLOTHING_VERBOSE=1 (inference/_quiet.py).
    from inference import quiet_tensorflow

    quiet_tensorflow(sys.argv, os.environ)

from convert._check import DEFAULT_THRESHOLDS, CheckConfig, check_bundles
from convert._convert import DEFAULT_CALIBRATION_SIZE, ConvertConfig, convert_model
from convert._errors import ConvertError
from convert._export import VARIANTS
from convert._logging import log_to_stderr
from convert._quantize import BLOCKS, DEFAULT_RECIPES, FLOAT_OPS, QuantRecipe
from convert._report import REPORT_MD, report_to_markdown, write_report
from convert._results import Threshold
from inference import RUNTIMES

EXIT_OK, EXIT_FAILED_THRESHOLD, EXIT_USAGE = 0, 1, 2


def _variant_value(text: str) -> tuple[str, float | None]:
    """argparse type for VARIANT=NUMBER (or VARIANT=none to switch a check off)."""
    name, sep, raw = text.partition("=")
    if not sep or name not in VARIANTS:
        raise argparse.ArgumentTypeError(
            f"expected VARIANT=NUMBER with VARIANT one of {list(VARIANTS)}. Received: {text!r}"
        )
    if raw.lower() == "none":
        return name, None
    try:
        return name, float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number (in {text!r})") from None


def _add_check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also TensorFlow's C++ log lines (env CLOTHING_VERBOSE=1 does the same)",
    )
    g = p.add_argument_group("check")
    g.add_argument(
        "--images", type=Path, help="held-out images, <label>/<file> (default: test split)"
    )
    g.add_argument("--max-images", type=int, help="check a seeded sample of this many images")
    g.add_argument(
        "--seed", type=int, default=1, help="sampling seed (calibration and --max-images)"
    )
    g.add_argument(
        "--min-agreement",
        type=_variant_value,
        nargs="+",
        default=[],
        metavar="VARIANT=PCT",
        help="top-1 agreement with Keras, in %% (default float32=100 float16=99.5 "
        "dynamic=99 int8=98.5)",
    )
    g.add_argument(
        "--max-logit-diff",
        type=_variant_value,
        nargs="+",
        default=[],
        metavar="VARIANT=X",
        help="max |logit difference| (default float32=1e-4)",
    )
    g.add_argument(
        "--max-accuracy-drop",
        type=_variant_value,
        nargs="+",
        default=[],
        metavar="VARIANT=PTS",
        help="accuracy drop in points (default dynamic=1.5 int8=0.5)",
    )
    g.add_argument(
        "--min-speedup",
        type=_variant_value,
        nargs="+",
        default=[],
        metavar="VARIANT=X",
        help="float32's 1-thread latency over the variant's, when float32 is checked too "
        "(default int8=2.5)",
    )
    g.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="latency thread counts")
    g.add_argument("--latency-runs", type=int, default=50, help="timed invokes per measurement")
    g.add_argument("--warmup-runs", type=int, default=5, help="untimed invokes first")
    g.add_argument(
        "--runtime", choices=sorted(RUNTIMES), help="serving runtime (default: inference's order)"
    )
    g.add_argument(
        "--reference-runtime",
        default="tensorflow",
        choices=[*sorted(RUNTIMES), "none"],
        help="also time float32 under this runtime (default tensorflow, i.e. tf.lite)",
    )


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    fmt = argparse.RawDescriptionHelpFormatter
    convert = argparse.ArgumentParser(
        prog="python -m convert",
        usage="%(prog)s TRAIN_OUTPUT_DIR --out OUT [--variants VARIANT ...] [options]\n"
        "       %(prog)s check TRAIN_OUTPUT_DIR --out OUT [options]   (--help for its own)\n"
        "       %(prog)s select TRAIN_OUTPUT_DIR --out OUT [options]  (--help for its own)",
        description=__doc__,
        formatter_class=fmt,
    )
    convert.add_argument("train_dir", type=Path, metavar="TRAIN_OUTPUT_DIR")
    convert.add_argument(
        "--out", type=Path, required=True, help="folder to create, one bundle per variant"
    )
    convert.add_argument(
        "--variants",
        nargs="+",
        default=["float32"],
        metavar="VARIANT",
        help=f"any of {' '.join(VARIANTS)} (default float32)",
    )
    convert.add_argument(
        "--calibration-dir",
        type=Path,
        help="int8 calibration and dynamic equalization images (default: train split)",
    )
    convert.add_argument(
        "--calibration-size",
        type=int,
        default=DEFAULT_CALIBRATION_SIZE,
        help=f"calibration images to sample (default {DEFAULT_CALIBRATION_SIZE})",
    )
    for variant in DEFAULT_RECIPES:
        default = " ".join(DEFAULT_RECIPES[variant].float_blocks) or "none"
        convert.add_argument(
            f"--{variant}-float-blocks",
            nargs="+",
            choices=[*BLOCKS, "none"],
            metavar="BLOCK",
            help=f"{variant}: Xception blocks (block1..block14, head) kept in float32, "
            f"or none (default {default}; chosen by `python -m convert select`); with "
            "no float block (and for dynamic --dynamic-float-ops none --dynamic-equalize none "
            "--dynamic-bias-correction no, for int8 --int8-fuse-relus no), the converter's "
            "all-quantized recipe",
        )
    convert.add_argument(
        "--dynamic-float-ops",
        nargs="+",
        choices=[*FLOAT_OPS, "none"],
        metavar="OP",
        help="dynamic: TFLite operator types kept in float32 everywhere, or none "
        f"(default {' '.join(DEFAULT_RECIPES['dynamic'].float_ops) or 'none'}: XNNPACK "
        "runs no int8-weight depthwise convolution in a dynamic-range model)",
    )
    convert.add_argument(
        "--dynamic-equalize",
        type=_alpha_or_none,
        metavar="ALPHA",
        help="dynamic: equalize the separable convolutions' activation ranges into their "
        "weights with this alpha in (0, 1] before quantizing, on the calibration images, or "
        f"none (default {DEFAULT_RECIPES['dynamic'].equalize_alpha or 'none'}; "
        "convert/_equalize.py)",
    )
    convert.add_argument(
        "--dynamic-bias-correction",
        choices=("yes", "no"),
        help="dynamic: subtract from each quantized operator's bias the mean output shift its "
        "int8 weights cause on the calibration images (convert/_bias.py), or not "
        f"(default {'yes' if DEFAULT_RECIPES['dynamic'].bias_correction else 'no'})",
    )
    convert.add_argument(
        "--int8-fuse-relus",
        choices=("yes", "no"),
        help="int8: rewire the residual sums so that each ReLU after one fuses into an ADD "
        "that XNNPACK runs (same function; convert/_fuse.py), or not "
        f"(default {'yes' if DEFAULT_RECIPES['int8'].fuse_relus else 'no'})",
    )
    convert.add_argument("--force", action="store_true", help="replace --out if it exists")
    convert.add_argument("--no-check", action="store_true", help="skip the check after converting")
    _add_check_options(convert)
    check = argparse.ArgumentParser(
        prog="python -m convert check",
        description="Check bundles that `python -m convert` wrote against the Keras model they "
        "came from; see `python -m convert --help`.",
    )
    check.add_argument("train_dir", type=Path, metavar="TRAIN_OUTPUT_DIR")
    check.add_argument(
        "--out", type=Path, required=True, help="the folder `python -m convert` wrote"
    )
    check.add_argument(
        "--variants", nargs="+", metavar="VARIANT", help="default: every bundle in --out"
    )
    _add_check_options(check)
    return convert, check


# Variants tried and dropped: why, for the usage error (README "ONNX Runtime").
NOT_OFFERED: Mapping[str, str] = {
    "onnx-int8": "onnxruntime's static int8 quantization missed int8's agreement bar on the "
    'validation split (README "ONNX Runtime")',
}


def _check_offered(variants: Sequence[str] | None) -> None:
    """Raise ValueError for a variant that was tried and dropped, naming why and the valid ones."""
    for variant in variants or ():
        if variant in NOT_OFFERED:
            raise ValueError(
                f"`{variant}` is not offered: {NOT_OFFERED[variant]}. "
                f"Valid variants: {' '.join(VARIANTS)}"
            )


def _alpha_or_none(text: str) -> str:
    """argparse type for --dynamic-equalize: 'none' or a number in (0, 1]."""
    if text == "none":
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or none. Received: {text!r}")
    return text


def _alpha_value(text: str) -> float | None:
    return None if text == "none" else float(text)


def _yes(text: str) -> bool:
    return text == "yes"


def _recipes(args: argparse.Namespace) -> dict[str, QuantRecipe]:
    """The quantization recipes, with --int8-float-blocks / --dynamic-float-blocks,
    --dynamic-float-ops, --dynamic-equalize, --dynamic-bias-correction and
    --int8-fuse-relus applied.

    Raises:
        ValueError: `none` beside other names, or a flag for a variant not in --variants.
    """
    recipes = dict(DEFAULT_RECIPES)
    flags = [(v, "float_blocks", "(all quantized) ", "block names") for v in DEFAULT_RECIPES]
    flags.append(("dynamic", "float_ops", "", "op names"))
    for variant, field, none_note, names in flags:
        values = getattr(args, f"{variant}_{field}")
        if values is None:
            continue
        flag = f"--{variant}-{field.replace('_', '-')}"
        if variant not in args.variants:
            raise ValueError(
                f"{flag} applies to the {variant} variant, which --variants does not include. "
                f"Received: --variants {' '.join(args.variants)}"
            )
        if "none" in values and len(values) > 1:
            raise ValueError(
                f"{flag}: `none` {none_note}must stand alone, not beside {names}. "
                f"Received: {flag} {' '.join(values)}"
            )
        chosen: tuple[str, ...] = () if values == ["none"] else tuple(values)
        changes: dict[str, Any] = {field: chosen}
        recipes[variant] = dataclasses.replace(recipes[variant], **changes)
    # Flags that set one field of one variant's recipe, and the field's value from the text.
    single: list[tuple[str, str, str, Callable[[str], Any]]] = [
        ("dynamic", "--dynamic-equalize", "equalize_alpha", _alpha_value),
        ("dynamic", "--dynamic-bias-correction", "bias_correction", _yes),
        ("int8", "--int8-fuse-relus", "fuse_relus", _yes),
    ]
    for variant, flag, field, value in single:
        given = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if given is None:
            continue
        if variant not in args.variants:
            raise ValueError(
                f"{flag} applies to the {variant} variant, which --variants does not include. "
                f"Received: --variants {' '.join(args.variants)}"
            )
        recipes[variant] = dataclasses.replace(recipes[variant], **{field: value(given)})
    return recipes


def _thresholds(args: argparse.Namespace) -> Mapping[str, Threshold]:
    thresholds = dict(DEFAULT_THRESHOLDS)
    for flag, fieldname in (
        ("min_agreement", "min_agreement_pct"),
        ("max_logit_diff", "max_abs_logit_diff"),
        ("max_accuracy_drop", "max_accuracy_drop_pts"),
        ("min_speedup", "min_speedup_1thread"),
    ):
        for variant, value in getattr(args, flag):
            if value is None and fieldname == "min_agreement_pct":
                value = 0.0  # "none" switches the agreement bar off
            try:
                thresholds[variant] = dataclasses.replace(thresholds[variant], **{fieldname: value})
            except ValueError as exc:  # now, not after converting and checking
                option = "--" + flag.replace("_", "-")
                raise ValueError(f"{option} {variant}={value:g}: {exc}") from None
    return thresholds


def _check_config(args: argparse.Namespace, variants: tuple[str, ...] | None) -> CheckConfig:
    return CheckConfig(
        train_dir=args.train_dir,
        out_dir=args.out,
        variants=variants,
        images_dir=args.images,
        max_images=args.max_images,
        seed=args.seed,
        thresholds=_thresholds(args),
        threads=tuple(args.threads),
        latency_runs=args.latency_runs,
        warmup_runs=args.warmup_runs,
        runtime=args.runtime,
        reference_runtime=None if args.reference_runtime == "none" else args.reference_runtime,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    log_to_stderr()
    convert_parser, check_parser = _parsers()
    if argv and argv[0] == "select":
        from convert._select import main as select_main

        return select_main(argv[1:])
    is_check = bool(argv) and argv[0] == "check"
    parser = check_parser if is_check else convert_parser
    args = parser.parse_args(argv[1:] if is_check else argv)  # exits 2 on bad usage
    try:
        _check_offered(args.variants)
        if is_check:
            check = _check_config(args, tuple(args.variants) if args.variants else None)
        else:
            convert = ConvertConfig(
                train_dir=args.train_dir,
                out_dir=args.out,
                variants=tuple(args.variants),
                calibration_dir=args.calibration_dir,
                calibration_size=args.calibration_size,
                seed=args.seed,
                force=args.force,
                recipes=_recipes(args),
            )
            check = _check_config(args, convert.variants)
    except ValueError as exc:  # the configs' own validation
        parser.error(str(exc))
    try:
        if not is_check:
            result = convert_model(convert)
            print(f"wrote {', '.join(str(p) for p in result.bundles.values())}", file=sys.stderr)
            if args.no_check:
                return EXIT_OK
        report = check_bundles(check)
        write_report(report, check.out_dir)
    except (ConvertError, OSError) as exc:  # OSError: the report cannot be written
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(report_to_markdown(report))
    print(f"report: {check.out_dir / REPORT_MD}", file=sys.stderr)
    return EXIT_OK if report.passed else EXIT_FAILED_THRESHOLD


if __name__ == "__main__":
    sys.exit(main())
