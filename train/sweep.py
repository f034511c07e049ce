"""Hyper-parameter sweep: one model per value of one parameter, on the cache.

Choosing is done on validation accuracy only; the test split is reported for
the kept model, never used to choose.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from inference import staging_dir
from train.config import TrainConfig
from train.data import load_dataset
from train.model import build_base
from train.report import plot_sweep
from train.run import check_output_dir, prepare_features, train_model

SWEEPABLE = ("droprate", "learning_rate", "size_inner")


def sweep(config: TrainConfig, *, param: str, values: list[float]) -> dict[str, Any]:
    """Train one head per value of `param` on features extracted once.

    Args:
        config: the shared settings; `config.output_dir` receives one folder
            per value (`<param>=<value>`), sweep.json and a validation-accuracy plot.
        param: one of `SWEEPABLE` ("droprate", "learning_rate", "size_inner").
        values: >= 2 values (int for size_inner).

    Returns:
        {"param", "results": [{"value", "val_accuracy", "best_epoch",
        "test_accuracy", "val_curve", "dir"}, ...], "best": {"value", "dir"}},
        best by validation accuracy; also written to sweep.json.

    Raises:
        ValueError: an unknown `param`, fewer than 2 values, or a config that
            trains from images (fine-tune/augment).
        DataError, WeightsError, OutputExistsError: as `train_model`.
    """
    if param not in SWEEPABLE:
        raise ValueError(f"`param` must be one of {SWEEPABLE}. Received: param={param!r}")
    if len(values) < 2:
        raise ValueError(f"A sweep needs >= 2 values. Received: {param}={values}")
    if config.from_images:
        raise ValueError("A sweep trains heads on cached features: drop --fine-tune/--augment.")
    check_output_dir(config.output_dir, force=config.force)
    dataset = load_dataset(config.data_dir, max_per_class=config.max_per_class, seed=config.seed)
    base = build_base(image_size=config.image_size, base_weights=config.base_weights)
    features = prepare_features(dataset, base, config)  # once for all values
    with staging_dir(config.output_dir) as staging:
        results: list[dict[str, Any]] = []
        for value in values:
            typed = int(value) if param == "size_inner" else float(value)
            print(f"\n== {param}={typed}", file=sys.stderr)
            overrides: dict[str, Any] = {param: typed}
            # A sweep compares accuracy: each run's calibration is fitted on validation
            # alone, not on `calibration_folds` more head trainings per value.
            run = dataclasses.replace(
                config,
                **overrides,
                output_dir=staging / f"{param}={typed}",
                force=True,
                calibration_folds=0,
            )
            metrics = train_model(run, features=features)
            results.append(
                {
                    "value": typed,
                    "val_accuracy": metrics["val_accuracy"],
                    "best_epoch": metrics["best_epoch"],
                    "test_accuracy": metrics["test_accuracy"],
                    "val_curve": [e["val_accuracy"] for e in metrics["history"]],
                    "dir": f"{param}={typed}",
                }
            )
        best = max(results, key=lambda r: r["val_accuracy"])
        summary = {
            "param": param,
            "results": results,
            "best": {"value": best["value"], "dir": best["dir"]},
        }
        (staging / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
        plot_sweep(
            {str(r["value"]): r["val_curve"] for r in results},
            staging / "sweep_val_accuracy.png",
            param=param,
        )
    return summary


def format_table(summary: dict[str, Any]) -> str:
    """The sweep summary as a plain-text table.

    Args:
        summary: dict from `sweep` (param, results, best).

    Returns:
        str: one line per swept value (best val accuracy, its 1-based epoch,
        test accuracy or blank), the kept value marked.
    """
    param = summary["param"]
    lines = [f"{param:>14}  best val_acc  epoch  test_acc", "-" * 44]
    for r in summary["results"]:
        mark = "  <- kept" if r["value"] == summary["best"]["value"] else ""
        test = "" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}"
        value, val = f"{r['value']!s:>14}", f"{r['val_accuracy']:.4f}"
        lines.append(f"{value}  {val}       {r['best_epoch']:5d}  {test:>8}{mark}")
    return "\n".join(lines)
