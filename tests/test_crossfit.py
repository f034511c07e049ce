"""train/crossfit.py: stratified folds, out-of-fold logits that never come from a head
that saw the photo (or a view of it), and calibration fitted on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import make_image
from tests.test_calibrate import _sampled
from tests.test_train import tiny_config
from train.__main__ import main as train_main
from train.calibrate import SplitLogits, evaluate_calibration, fit_temperature
from train.crossfit import fold_of, out_of_fold_logits
from train.run import train_model


@pytest.mark.parametrize(
    ("counts", "folds"),
    [
        ([10, 10, 10], 5),
        ([7, 3, 1], 2),
        ([4, 4], 8),
        ([100, 37, 12, 5], 5),
    ],
)
def test_folds_are_stratified_and_even(counts: list[int], folds: int) -> None:
    targets = np.repeat(np.arange(len(counts)), counts)
    fold = fold_of(targets, folds=folds, seed=1)
    sizes = np.bincount(fold, minlength=folds)
    assert sizes.max() - sizes.min() <= 1
    for c in range(len(counts)):
        per_fold = np.bincount(fold[targets == c], minlength=folds)
        assert per_fold.max() - per_fold.min() <= 1  # each class spread over the folds
    np.testing.assert_array_equal(fold, fold_of(targets, folds=folds, seed=1))
    assert not np.array_equal(fold, fold_of(targets, folds=folds, seed=2)) or folds >= len(fold)


@pytest.mark.parametrize(("n", "folds"), [(10, 1), (10, 11), (3, 0)])
def test_bad_fold_counts_name_the_argument(n: int, folds: int) -> None:
    with pytest.raises(
        ValueError, match=rf"`folds` must be in \[2, {n}\].*Received: folds={folds}"
    ):
        fold_of(np.zeros(n, dtype=int), folds=folds, seed=1)


class _Features:
    """The fields of train.run.CachedFeatures that out_of_fold_logits reads."""

    def __init__(self, n_train: int, n_val: int, views: tuple[str, ...]) -> None:
        rng = np.random.default_rng(0)
        self.vectors = {
            "train": rng.normal(size=(n_train, 2048)).astype(np.float32),
            "validation": rng.normal(size=(n_val, 2048)).astype(np.float32),
        }
        self.targets = {"train": np.arange(n_train) % 3, "validation": np.arange(n_val) % 3}
        self.views = {
            v: {"train": rng.normal(size=(n_train, 2048)).astype(np.float32)} for v in views
        }
        self.view_targets = {v: {"train": self.targets["train"]} for v in views}

        class _Data:
            labels = ("hat", "pants", "shoes")

        self.dataset = _Data()


def test_no_photo_is_predicted_by_a_head_that_saw_it_or_its_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    import train.crossfit

    features = _Features(n_train=24, n_val=9, views=("jpeg",))
    seen: list[set[bytes]] = []
    predicted: list[set[bytes]] = []
    real_fit, real_logits = keras.Model.fit, train.crossfit.head_logits

    def fit_spy(self: Any, x: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        seen.append({row.tobytes() for row in x})
        return real_fit(self, x, *args, **kwargs)

    def logits_spy(head: Any, x: np.ndarray) -> np.ndarray:
        predicted.append({row.tobytes() for row in x})
        return real_logits(head, x)

    monkeypatch.setattr(keras.Model, "fit", fit_spy)
    monkeypatch.setattr(train.crossfit, "head_logits", logits_spy)
    config = tiny_config(tmp_path, tmp_path, views=("jpeg",), ensemble=2, epochs=1)
    out = out_of_fold_logits(features, config, epochs=1, folds=3)  # type: ignore[arg-type]
    assert out.logits.shape == (33, 3) and np.isfinite(out.logits).all()
    np.testing.assert_array_equal(out.targets, np.r_[np.arange(24) % 3, np.arange(9) % 3])
    views = features.views["jpeg"]["train"]
    plain = np.concatenate([features.vectors["train"], features.vectors["validation"]])
    assert len(seen) == len(predicted) == 3
    for trained_on, held in zip(seen, predicted, strict=True):
        assert not trained_on & held  # no held-out photo in its head's training set
        held_train = [i for i in range(24) if plain[i].tobytes() in held]
        assert not {views[i].tobytes() for i in held_train} & trained_on  # nor its view
        assert len(trained_on) == (33 - len(held)) + (24 - len(held_train))
    assert set().union(*predicted) == {row.tobytes() for row in plain}  # every photo once


def test_calibration_fits_on_the_out_of_fold_logits_and_reports_the_old_rule() -> None:
    val_logits, val_targets = _sampled(1.0, n=2000, seed=1, scale=6.0)
    oof_logits, oof_targets = _sampled(2.0, n=4000, seed=2, scale=6.0)
    result = evaluate_calibration(
        validation=SplitLogits(val_logits, val_targets),
        fit=SplitLogits(oof_logits, oof_targets),
        goal=0.9,
    )
    assert result.temperature == pytest.approx(fit_temperature(oof_logits, oof_targets))
    assert result.temperature == pytest.approx(2.0, rel=0.1)
    data = result.to_json()
    accuracy = float(np.mean(oof_logits.argmax(axis=1) == oof_targets))
    assert data["calibration"]["fitted_on"] == {
        "logits": "out_of_fold",
        "n": 4000,
        "accuracy": pytest.approx(accuracy),
    }
    assert "out-of-fold train + validation" in data["calibration"]["method"]
    assert data["unsure"]["out_of_fold"]["answered_accuracy"] >= 0.9  # met where fitted
    old = data["unsure"]["validation_only"]
    assert old["temperature"] == pytest.approx(1.0, rel=0.1)
    # validation says T = 1, so its threshold is too low for these over-confident logits
    assert (
        old["out_of_fold"]["answered_accuracy"]
        < 0.9
        < data["unsure"]["out_of_fold"]["answered_accuracy"]
    )
    plain = evaluate_calibration(validation=SplitLogits(val_logits, val_targets), goal=0.9)
    assert plain.to_json()["calibration"]["fitted_on"] == {"logits": "validation", "n": 2000}
    assert "validation_only" not in plain.to_json()["unsure"]


@pytest.mark.parametrize(("folds", "fitted"), [(3, "out_of_fold"), (0, "validation")])
def test_train_fits_calibration_on_out_of_fold_logits_or_validation(
    tmp_path: Path, tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch, folds: int, fitted: str
) -> None:
    import train.crossfit

    monkeypatch.delenv("CLOTHING_UNSURE_DIR", raising=False)
    unsure_dir = tmp_path / "not-sure"
    for i in range(3):
        make_image(unsure_dir / f"{i}.jpg", color=(128, 128, 128), seed=90 + i)
    epochs_used: list[int] = []
    real = train.crossfit.out_of_fold_logits

    def spy(features: Any, config: Any, *, epochs: int, folds: int) -> Any:
        epochs_used.append(epochs)
        return real(features, config, epochs=epochs, folds=folds)

    monkeypatch.setattr(train.crossfit, "out_of_fold_logits", spy)
    config = tiny_config(
        tmp_path, tiny_dataset, calibration_folds=folds, epochs=3, unsure_dir=unsure_dir
    )
    metrics = train_model(config)
    out = config.output_dir
    saved = json.loads((out / "metrics.json").read_text())
    n = metrics["n_images"]["train"] + metrics["n_images"]["validation"]
    fitted_on = saved["calibration"]["fitted_on"]
    n_fitted = n if folds else metrics["n_images"]["validation"]
    assert (fitted_on["logits"], fitted_on["n"]) == (fitted, n_fitted)
    assert saved["unsure"]["fitted_on"]["logits"] == fitted
    assert ("out_of_fold" in saved["unsure"]) == bool(folds)
    assert saved["unsure"]["not_sure"]["n"] == 3  # the unsure photos measured either way
    assert (out / "risk_coverage.png").stat().st_size > 1000
    assert (out / "out_of_fold_logits.npz").is_file() == bool(folds)
    # the fold heads train for the shipped head's kept epoch, not config.epochs
    assert epochs_used == ([metrics["best_epoch"]] if folds else [])
    if folds:
        assert fitted_on["folds"] == 3 and 0 <= fitted_on["accuracy"] <= 1
        _calibrate_command_fits_on_the_kept_logits(out, metrics, unsure_dir)


def _calibrate_command_fits_on_the_kept_logits(
    out: Path, trained: dict[str, Any], unsure_dir: Path
) -> None:
    """`python -m train calibrate` on a run fitted out-of-fold (the same training as
    above, not another one: each costs seconds in CI)."""
    argv = ["calibrate", str(out), "--unsure-dir", str(unsure_dir), "--quiet"]
    assert train_main(argv) == 0  # the same logits, the same goal: the same fit
    again = json.loads((out / "metrics.json").read_text())
    assert again["temperature"] == pytest.approx(trained["temperature"], rel=1e-6)
    assert again["unsure_threshold"] == pytest.approx(trained["unsure_threshold"], rel=1e-6)
    assert again["calibration"]["fitted_on"]["folds"] == 3
    old = trained["unsure"]["validation_only"]
    assert train_main([*argv, "--validation-only"]) == 0
    valid = json.loads((out / "metrics.json").read_text())
    assert valid["calibration"]["fitted_on"]["logits"] == "validation"
    assert valid["temperature"] == pytest.approx(old["temperature"], rel=1e-3)
    assert valid["unsure_threshold"] == pytest.approx(old["threshold"], rel=1e-3)
    assert train_main(argv) == 0  # and back: the kept logits still match their record
    back = json.loads((out / "metrics.json").read_text())
    assert back["temperature"] == pytest.approx(trained["temperature"], rel=1e-6)
    # other logits in the file (here: the targets reversed) are refused, metrics kept
    path = out / "out_of_fold_logits.npz"
    with np.load(path) as data:
        logits, targets = data["logits"], data["targets"]
    np.savez(path, logits=logits, targets=targets[::-1])
    before = (out / "metrics.json").read_bytes()
    assert train_main(argv) == 2
    assert (out / "metrics.json").read_bytes() == before
    path.unlink()
    (out / "metrics.json").write_text(json.dumps(trained))  # fitted out-of-fold, file gone
    assert train_main(argv) == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "1",
            "`calibration_folds` must be 0 (validation alone) or an int >= 2. "
            "Received: calibration_folds=1",
        ),
        ("-2", "Received: calibration_folds=-2"),
    ],
)
def test_bad_calibration_folds_exit_2(
    tmp_path: Path, tiny_dataset: Path, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--data-dir", str(tiny_dataset), "--base-weights", "none", "--image-size", "71"]
    argv += ["--cache-dir", str(tmp_path / "c"), "--output", str(tmp_path / "o")]
    assert train_main([*argv, "--quiet", "--calibration-folds", value]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_more_folds_than_photos_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import make_dataset

    monkeypatch.delenv("CLOTHING_UNSURE_DIR", raising=False)
    data = make_dataset(tmp_path / "data", per_class=1, splits=("train", "validation"))
    config = tiny_config(tmp_path, data, calibration_folds=7, epochs=1)
    with pytest.raises(ValueError, match=r"number of train \+ validation photos \(6\)"):
        train_model(config)
    assert not config.output_dir.exists()


def _legacy_metrics(fitted: dict[str, Any]) -> dict[str, Any]:
    return {"calibration": {"fitted_on": fitted}}


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"out_of_fold_logits": {"sha256": "0" * 64}}, "their sha256 differs"),
        # runs from before the digest: count and accuracy
        (_legacy_metrics({"logits": "out_of_fold", "n": 5, "accuracy": 0.75}), "they are 4 photos"),
        (_legacy_metrics({"logits": "out_of_fold", "n": 4, "accuracy": 1.0}), "at accuracy 0.7500"),
        (_legacy_metrics({"logits": "validation", "n": 4}), "records no out-of-fold logits"),
    ],
)
def test_calibrate_refuses_out_of_fold_logits_that_are_not_the_runs(
    tmp_path: Path, metrics: dict[str, Any], message: str
) -> None:
    from train.calibrate import SplitLogits, _check_stored_fit

    fit = SplitLogits(
        np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]), np.array([0, 1, 1, 0])
    )
    with pytest.raises(ValueError) as info:
        _check_stored_fit(fit, metrics, model_dir=tmp_path)
    assert message in str(info.value) and "pass --validation-only" in str(info.value)


def test_calibrate_takes_the_runs_own_out_of_fold_logits(tmp_path: Path) -> None:
    from train.calibrate import SplitLogits, _check_stored_fit
    from train.output import out_of_fold_record

    logits, targets = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 0])
    fit = SplitLogits(logits, targets)
    record = out_of_fold_record(logits, targets, folds=2)
    _check_stored_fit(fit, {"out_of_fold_logits": record}, model_dir=tmp_path)
    legacy = _legacy_metrics({"logits": "out_of_fold", "n": 2, "accuracy": 0.5})
    _check_stored_fit(fit, legacy, model_dir=tmp_path)


def test_a_run_from_before_the_record_can_go_to_validation_and_back(tmp_path: Path) -> None:
    from train.calibrate import _stored_fit
    from train.output import write_out_of_fold

    logits, targets = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 0])
    write_out_of_fold(tmp_path, logits, targets)
    metrics = _legacy_metrics({"logits": "out_of_fold", "n": 2, "accuracy": 0.5, "folds": 3})
    # --validation-only: nothing to fit on, but the file's record is kept...
    assert _stored_fit(tmp_path, metrics, n_classes=2, validation_only=True) is None
    assert metrics["out_of_fold_logits"]["folds"] == 3
    metrics["calibration"]["fitted_on"] = {"logits": "validation", "n": 9}  # as it refits
    # ...so a later plain calibrate fits on the file again
    fit = _stored_fit(tmp_path, metrics, n_classes=2, validation_only=False)
    assert fit is not None and np.array_equal(fit.targets, targets)
