"""The conversion check's near-tie figures: `top2_gaps`, their JSON round trip, report.md."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convert._check import top2_gaps
from convert._report import report_to_markdown
from convert._results import (
    CheckReport,
    Threshold,
    VariantResult,
    report_from_json,
    report_to_json,
)


@pytest.mark.parametrize(
    ("logits", "gaps"),
    [
        ([[3.0, 1.0]], [2.0]),  # 3 - 1
        ([[1.0, 3.0]], [2.0]),  # order of the classes does not matter
        ([[0.5, 2.0, 1.5], [4.0, -1.0, 4.0]], [0.5, 0.0]),  # 2 - 1.5; an exact tie
        ([[-2.0, -5.0, -2.25, -9.0]], [0.25]),  # negative logits: -2 - (-2.25)
        ([[1, 7, 4]], [3.0]),  # int logits: 7 - 4, as float64
        (np.zeros((0, 3)), []),  # no images: no gaps
    ],
)
def test_top2_gaps(logits: Any, gaps: list[float]) -> None:
    got = top2_gaps(logits=np.asarray(logits))
    assert got.dtype == np.float64 and got.shape == (len(gaps),)
    np.testing.assert_allclose(got, gaps)


@pytest.mark.parametrize(
    ("logits", "shape"),
    [
        (np.zeros(3), "(3,)"),  # one image's logits, not a batch
        (np.zeros((4, 1)), "(4, 1)"),  # one class: no second-best
        (np.zeros((2, 3, 5)), "(2, 3, 5)"),
    ],
)
def test_top2_gaps_refuses_bad_shapes(logits: np.ndarray, shape: str) -> None:
    message = f"`logits` must be 2-D (n, k) with k >= 2. Received: shape {shape}"
    with pytest.raises(ValueError, match=re.escape(message)):
        top2_gaps(logits=logits)


def result(variant: str, gaps: tuple[float, ...]) -> VariantResult:
    return VariantResult(
        variant=variant,
        bundle=Path(variant),
        runtime="ai-edge-litert 2.3.0",
        size_bytes=1,
        n_images=372,
        agreement_pct=100.0 * (1 - len(gaps) / 372),
        max_abs_logit_diff=0.5,
        accuracy_pct=None,
        accuracy_delta_pts=None,
        load_ms=1.0,
        latency=(),
        reference_latency=(),
        loads_with=(),
        failures=(),
        changed_answer_gaps=gaps,
    )


def report(*results: VariantResult, median_gap: float | None = 6.647) -> CheckReport:
    return CheckReport(
        train_dir=Path("/t"),
        out_dir=Path("/b"),
        source_model_sha256="ab" * 32,
        images_dir=Path("/i"),
        n_images=372,
        n_labeled=0,
        keras_accuracy_pct=None,
        thresholds={"dynamic": Threshold(min_agreement_pct=99.0)},
        results=results,
        keras_median_top2_gap=median_gap,
    )


@pytest.mark.parametrize(
    ("gaps", "median_gap"),
    [
        ((0.003, 0.018), 6.647),
        ((), 6.647),
        ((0.5,), None),
    ],
)
def test_gaps_round_trip_through_json(gaps: tuple[float, ...], median_gap: float | None) -> None:
    original = report(result("float16", gaps), median_gap=median_gap)
    data = json.loads(json.dumps(report_to_json(original)))
    assert data["keras_median_top2_gap"] == median_gap
    assert data["variants"][0]["changed_answer_gaps"] == list(gaps)
    assert report_from_json(data) == original


def test_report_json_without_gaps_still_loads() -> None:
    """A report.json written before these fields loads with their defaults."""
    data = json.loads(json.dumps(report_to_json(report(result("dynamic", (0.1,))))))
    del data["keras_median_top2_gap"]
    del data["variants"][0]["changed_answer_gaps"]
    back = report_from_json(data)
    assert back.keras_median_top2_gap is None
    assert back.results[0].changed_answer_gaps == ()


@pytest.mark.parametrize(
    ("gaps", "median_gap", "line"),
    [
        (
            (0.072, 0.181, 0.212, 0.328),
            6.647,
            "- dynamic: 4 answers differ from Keras; Keras top-2 logit gaps of those images: "
            "0.072, 0.181, 0.212, 0.328 (median gap over all 372 images: 6.647)",
        ),
        (
            (0.0031,),
            6.6474,
            "- dynamic: 1 answer differs from Keras; Keras top-2 logit gaps of those images: "
            "0.003 (median gap over all 372 images: 6.647)",
        ),
        (
            tuple(0.1 * i for i in range(1, 13)),
            6.647,
            "- dynamic: 12 answers differ from Keras; Keras top-2 logit gaps of those images: "
            "0.100, 0.200, 0.300, 0.400, 0.500, 0.600, 0.700, 0.800, 0.900, 1.000, "
            "... and 2 more (median gap over all 372 images: 6.647)",
        ),
        (  # a report.json from before the median was recorded
            (0.5,),
            None,
            "- dynamic: 1 answer differs from Keras; Keras top-2 logit gaps of those images: 0.500",
        ),
    ],
)
def test_markdown_bullet_for_changed_answers(
    gaps: tuple[float, ...], median_gap: float | None, line: str
) -> None:
    text = report_to_markdown(report(result("dynamic", gaps), median_gap=median_gap))
    lines = text.splitlines()
    assert line in lines
    last_table_row = max(i for i, x in enumerate(lines) if x.startswith("| "))
    assert lines.index(line) == last_table_row + 2  # right after the table and a blank line


def test_markdown_has_no_bullet_for_unchanged_answers() -> None:
    text = report_to_markdown(report(result("float32", ()), result("dynamic", (0.2,))))
    assert "- float32:" not in text
    assert "- dynamic: 1 answer differs from Keras" in text
