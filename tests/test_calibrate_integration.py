"""Integration: calibration and "unsure" on the real data and not-sure photos (../shared).

`real_train_output` (conftest) is a short `python -m train` run at 150 px on a
subset of the real data; its calibration step finds
`clothing-dataset-extra/not-sure` beside the dataset on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

NOT_SURE_PHOTOS = 228  # ../shared/data/clothing-dataset-extra/not-sure


def test_real_run_is_calibrated_and_measured_on_the_not_sure_photos(
    real_train_output: Path,
) -> None:
    metrics = json.loads((real_train_output / "metrics.json").read_text())
    assert metrics["temperature"] > 0 and 0.0 <= metrics["unsure_threshold"] <= 1.0
    validation = metrics["calibration"]["validation"]
    assert validation["nll_after"] <= validation["nll_before"] + 1e-9  # T minimises it
    unsure = metrics["unsure"]
    not_sure = unsure["not_sure"]
    assert not_sure["n"] == NOT_SURE_PHOTOS and not_sure["n_skipped"] == 0
    assert not_sure["dir"].endswith("clothing-dataset-extra/not-sure")
    # Photos the labellers could not place are less confident than test photos:
    # better than chance (0.5) with every logits-based score, and unsure more often.
    for kind in ("max_softmax", "max_softmax_uncalibrated", "energy"):
        assert unsure["auroc"][kind]["test"] > 0.55, (kind, unsure["auroc"])
    assert not_sure["unsure_rate"] > unsure["test"]["unsure_rate"]
    for name in ("reliability_diagram.png", "risk_coverage.png"):
        assert (real_train_output / name).stat().st_size > 10_000
