"""`python -m bench.page accuracy`'s bookkeeping, without a browser: the direct
path is scored on its top suggestion (as the page shows it), unsure or not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.page import _markdown, _summarize, direct_answer
from inference import Prediction

LABELS = ("hat", "pants", "shoes")


@pytest.mark.parametrize(
    ("probabilities", "threshold", "expected"),
    [
        ((0.5, 0.3, 0.2), 0.9, {"direct": "hat", "direct_unsure": True}),
        ((0.1, 0.85, 0.05), 0.8, {"direct": "pants", "direct_unsure": False}),
        ((0.1, 0.2, 0.7), None, {"direct": "shoes", "direct_unsure": False}),
    ],
)
def test_direct_answer_is_the_top_suggestion_even_when_unsure(
    probabilities: tuple[float, ...], threshold: float | None, expected: dict[str, Any]
) -> None:
    prediction = Prediction(
        labels=LABELS,
        logits=probabilities,  # ordered like the probabilities: only the argmax counts
        probabilities=probabilities,
        unsure_threshold=threshold,
    )
    assert direct_answer(prediction) == expected


def _row(
    truth: str, direct: str, direct_unsure: bool, page: str, page_state: str
) -> dict[str, Any]:
    return {
        "upscale": 1,
        "truth": truth,
        "direct": direct,
        "direct_unsure": direct_unsure,
        "page": page,
        "page_state": page_state,
        "file_bytes": 1000,
        "uploaded_bytes": 800,
        "uploaded_size": [400, 533],
    }


def test_summary_scores_unsure_answers_on_their_suggestion_and_counts_decision_changes() -> None:
    rows = [
        _row("hat", "hat", True, "hat", "unsure"),  # unsure on both, right on both
        _row("hat", "hat", False, "hat", "unsure"),  # a decision change one way
        _row("pants", "shoes", False, "pants", "result"),  # the page right, direct wrong
        _row("shoes", "shoes", True, "shoes", "result"),  # a decision change the other way
        _row("shoes", "shoes", True, "", "error"),  # an error: not a decision change
    ]
    (summary,) = _summarize(rows, console_errors=[])
    assert summary["direct_accuracy_pct"] == 80.0 and summary["page_accuracy_pct"] == 80.0
    assert summary["agreement_pct"] == 60.0 and summary["decision_changes"] == 2
    assert summary["errors"] == 1
    assert summary["passed"] is True
    assert "| 60.00% | 2 |" in _markdown([summary], model=Path("b"))


def _bundle(folder: Path, **fields: Any) -> Path:
    """A bundle folder the screenshots command reads the manifest of (no browser)."""
    import json

    folder.mkdir(parents=True)
    manifest = {
        "labels": ["hat", "pants"],
        "image_size": 71,
        "variant": "float32",
        "model_sha256": "0" * 64,
        "preprocessing": "xception",
        "resize": "nearest",
        "output": "logits",
        "schema_version": 1,
        **fields,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "model.tflite").write_bytes(b"not read")
    return folder


@pytest.mark.parametrize(
    ("fields", "photo", "message"),
    [
        ({}, True, "has no unsure_threshold, so the page cannot show its unsure state"),
        ({"unsure_threshold": 0.9}, False, "--unsure-image must be a photo file"),
    ],
)
def test_screenshots_refuse_before_the_browser_and_write_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fields: dict[str, Any],
    photo: bool,
    message: str,
) -> None:
    from bench.page import main

    bundle = _bundle(tmp_path / "bundle", **fields)
    image = tmp_path / "a.jpg"
    image.write_bytes(b"\xff\xd8 a photo")
    unsure = image if photo else tmp_path / "missing.jpg"
    argv = ["screenshots", "--model", str(bundle), "--out", str(tmp_path / "docs")]
    assert main([*argv, "--image", str(image), "--unsure-image", str(unsure)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "docs").exists()
