"""The conversion stage: Keras model -> TFLite bundles, each proven against Keras.

    from convert import CheckConfig, ConvertConfig, check_bundles, convert_model
    convert_model(ConvertConfig(train_dir="runs/150", out_dir="bundles",
                                variants=("float32", "int8")))
    report = check_bundles(CheckConfig(train_dir="runs/150", out_dir="bundles"))
    write_report(report, "bundles")  # bundles/report.json + report.md (the table)
    assert report.passed

The command line is `python -m convert` (see convert/__main__.py).
"""

from convert._check import DEFAULT_THRESHOLDS, CheckConfig, check_bundles
from convert._convert import (
    DEFAULT_CALIBRATION_SIZE,
    ConvertConfig,
    ConvertResult,
    convert_model,
)
from convert._errors import ConvertError
from convert._export import TFLITE_VARIANTS, VARIANTS, builtin_operators
from convert._logging import log_to_stderr
from convert._quantize import BLOCKS, DEFAULT_RECIPES, QuantRecipe
from convert._report import REPORT_JSON, REPORT_MD, report_to_markdown, write_report
from convert._results import (
    CheckReport,
    Latency,
    RuntimeLoad,
    Threshold,
    VariantResult,
    report_from_json,
    report_to_json,
)
from convert._select import SelectConfig, select_recipes

__all__ = [
    "BLOCKS",
    "DEFAULT_CALIBRATION_SIZE",
    "DEFAULT_RECIPES",
    "DEFAULT_THRESHOLDS",
    "REPORT_JSON",
    "REPORT_MD",
    "TFLITE_VARIANTS",
    "VARIANTS",
    "CheckConfig",
    "CheckReport",
    "ConvertConfig",
    "ConvertError",
    "ConvertResult",
    "Latency",
    "QuantRecipe",
    "RuntimeLoad",
    "SelectConfig",
    "Threshold",
    "VariantResult",
    "builtin_operators",
    "check_bundles",
    "convert_model",
    "log_to_stderr",
    "report_from_json",
    "report_to_json",
    "report_to_markdown",
    "select_recipes",
    "write_report",
]
