"""What `check_bundles` found: frozen dataclasses, and the report as JSON and back.

No measuring and no files here: convert/_check.py (and its helpers) fill these
in, convert/_report.py writes them, bench reads them. Importing this module
loads neither Keras nor a runtime.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Threshold:
    """What a variant must achieve against the Keras model; None: not checked."""

    min_agreement_pct: float
    max_abs_logit_diff: float | None = None
    max_accuracy_drop_pts: float | None = None
    # float32's median 1-thread latency over this variant's, when float32 is
    # checked in the same run (the interleaved timing phase); None: not checked.
    min_speedup_1thread: float | None = None

    def __post_init__(self) -> None:
        bars = (
            ("min_agreement_pct", 0.0, 100.0),
            ("max_abs_logit_diff", 0.0, math.inf),
            ("max_accuracy_drop_pts", 0.0, 100.0),
            ("min_speedup_1thread", 0.0, math.inf),
        )
        for name, low, high in bars:
            value = getattr(self, name)
            if value is None and name != "min_agreement_pct":
                continue
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or not low <= value <= high:
                rule = f"in [{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
                raise ValueError(f"`{name}` must be a number {rule}. Received: {name}={value!r}")


@dataclass(frozen=True)
class Latency:
    runtime: str  # "name version"
    threads: int
    median_ms: float
    p95_ms: float


@dataclass(frozen=True)
class RuntimeLoad:
    runtime: str
    status: str  # "ok" | "error" | "not installed"
    version: str = ""
    error: str = ""


@dataclass(frozen=True)
class VariantResult:
    variant: str
    bundle: Path
    runtime: str  # the serving runtime the fidelity numbers came from, "name version"
    size_bytes: int
    n_images: int
    agreement_pct: float
    max_abs_logit_diff: float
    accuracy_pct: float | None  # None: no image had a label folder
    accuracy_delta_pts: float | None  # variant minus Keras
    load_ms: float
    latency: tuple[Latency, ...]
    reference_latency: tuple[Latency, ...]  # float32 under reference_runtime
    loads_with: tuple[RuntimeLoad, ...]
    failures: tuple[str, ...]
    # Calibrated answers (manifest temperature and unsure threshold), against Keras:
    max_abs_score_diff: float = 0.0  # calibrated probabilities
    unsure_pct: float | None = None  # None: the bundle has no unsure threshold
    answered_accuracy_pct: float | None = None
    decision_changes: int = 0  # answered by one of variant/Keras, unsure by the other
    decision_change_pct: float = 0.0
    model_format: str = "tflite"  # the manifest's format: "tflite" | "onnx"
    # For each image whose top-1 differs from Keras's: Keras's top-1 minus top-2
    # logit (>= 0, logit units), ascending. Small gaps are near-ties Keras itself
    # barely decides, so users can tell them from real disagreements.
    changed_answer_gaps: tuple[float, ...] = ()

    @property
    def passed(self) -> bool:
        """True when this variant met every threshold."""
        return not self.failures


@dataclass(frozen=True)
class CheckReport:
    train_dir: Path
    out_dir: Path
    source_model_sha256: str
    images_dir: Path
    n_images: int
    n_labeled: int
    keras_accuracy_pct: float | None
    thresholds: Mapping[str, Threshold]
    results: tuple[VariantResult, ...]
    environment: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    # The Keras model's calibrated answers, with the training output's temperature/threshold
    temperature: float | None = None  # None: trained before calibration (T = 1)
    unsure_threshold: float | None = None
    keras_unsure_pct: float | None = None
    keras_answered_accuracy_pct: float | None = None
    # Median over the check images of Keras's top-1 minus top-2 logit: the scale
    # against which `VariantResult.changed_answer_gaps` read as near-ties or not.
    # None: a report.json written before this field.
    keras_median_top2_gap: float | None = None

    @property
    def passed(self) -> bool:
        """True when every variant passed."""
        return all(r.passed for r in self.results)


def _median_1thread(result: VariantResult) -> float | None:
    return next((x.median_ms for x in result.latency if x.threads == 1), None)


def speedup_1thread(result: VariantResult, results: Sequence[VariantResult]) -> float | None:
    """float32's median 1-thread latency over `result`'s; None without both timings."""
    float32 = next((r for r in results if r.variant == "float32"), None)
    base = None if float32 is None else _median_1thread(float32)
    own = _median_1thread(result)
    return None if base is None or not own else base / own


# Report fields that are not plain JSON values, by how they are stored.
_REPORT_PATHS = ("train_dir", "out_dir", "images_dir")


def report_to_json(report: CheckReport) -> dict[str, Any]:
    """`report` as JSON values: paths as strings, each variant with its `passed`."""
    data: dict[str, Any] = {
        "passed": report.passed,
        "created_at": report.created_at,
        "train_dir": str(report.train_dir),
        "out_dir": str(report.out_dir),
        "source_model_sha256": report.source_model_sha256,
        "images_dir": str(report.images_dir),
        "n_images": report.n_images,
        "n_labeled": report.n_labeled,
        "keras_accuracy_pct": report.keras_accuracy_pct,
        "temperature": report.temperature,
        "unsure_threshold": report.unsure_threshold,
        "keras_unsure_pct": report.keras_unsure_pct,
        "keras_answered_accuracy_pct": report.keras_answered_accuracy_pct,
        "keras_median_top2_gap": report.keras_median_top2_gap,
        "thresholds": {k: dataclasses.asdict(v) for k, v in report.thresholds.items()},
        "environment": report.environment,
        "variants": [],
    }
    for r in report.results:
        item = dataclasses.asdict(r)
        item["bundle"] = str(r.bundle)
        item["passed"] = r.passed
        data["variants"].append(item)
    return data


def report_from_json(data: Mapping[str, Any]) -> CheckReport:
    """The `CheckReport` that `report_to_json` wrote (`passed` is recomputed, not read).

    Raises:
        ValueError: `data` lacks a field or holds one of the wrong shape
            (e.g. a report.json written by another program).
    """
    try:
        results = tuple(_variant_from_json(v) for v in data["variants"])
        fields = {f.name for f in dataclasses.fields(CheckReport)}
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k in fields}
        kwargs.update({k: Path(data[k]) for k in _REPORT_PATHS})
        kwargs["thresholds"] = {k: Threshold(**v) for k, v in data["thresholds"].items()}
        kwargs["results"] = results
        return CheckReport(**kwargs)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"Not a check report: {type(exc).__name__}: {exc}") from None


def _variant_from_json(item: Mapping[str, Any]) -> VariantResult:
    fields = {f.name for f in dataclasses.fields(VariantResult)}
    plain = {k: v for k, v in item.items() if k in fields}
    return VariantResult(
        **{
            **plain,
            "bundle": Path(item["bundle"]),
            "latency": tuple(Latency(**x) for x in item["latency"]),
            "reference_latency": tuple(Latency(**x) for x in item["reference_latency"]),
            "loads_with": tuple(RuntimeLoad(**x) for x in item["loads_with"]),
            "failures": tuple(item["failures"]),
            # Absent from report.json files written before this field: no gaps.
            "changed_answer_gaps": tuple(item.get("changed_answer_gaps", ())),
        }
    )
