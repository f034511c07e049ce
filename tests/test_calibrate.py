"""train/calibrate.py: temperature scaling, ECE, thresholds, AUROC on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_image
from tests.test_train import tiny_config
from train.__main__ import main as train_main
from train.calibrate import (
    SplitLogits,
    auroc,
    choose_threshold,
    confidence_score,
    evaluate_calibration,
    expected_calibration_error,
    fit_temperature,
    mahalanobis_score,
    negative_log_likelihood,
    reliability_bins,
    risk_coverage,
    scores_at_goal,
    selective,
    softmax,
    threshold_rule_check,
)
from train.run import train_model


def _sampled(true_t: float, *, n: int = 20000, k: int = 10, seed: int = 0, scale: float = 3.0):  # type: ignore[no-untyped-def]
    """Logits whose labels are drawn from softmax(logits / true_t): T = true_t is exact."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, scale, size=(n, k))
    p = softmax(logits, temperature=true_t)
    targets = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, targets


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.0, 3.5])
def test_fit_temperature_recovers_a_known_temperature(true_t: float) -> None:
    logits, targets = _sampled(true_t)
    t = fit_temperature(logits, targets)
    assert t == pytest.approx(true_t, rel=0.06)
    # and it is the minimum: nudging T either way costs likelihood
    nll = negative_log_likelihood(logits, targets, temperature=t)
    for other in (0.8 * t, 1.25 * t):
        assert negative_log_likelihood(logits, targets, temperature=other) > nll


@pytest.mark.parametrize(
    ("targets", "at_bound"),
    [
        (np.array([1, 1, 0, 0]), True),  # all wrong (e.g. shuffled targets): T runs to the top
        (np.array([0, 1, 1, 0]), False),  # half right: an optimum inside
    ],
)
def test_a_temperature_at_the_end_of_its_search_range_is_flagged(
    targets: np.ndarray, at_bound: bool
) -> None:
    from train.calibrate import at_search_bound, format_unsure

    logits = np.array([[5.0, 0.0], [4.0, 0.0], [0.0, 6.0], [0.0, 3.0]])
    t = fit_temperature(logits, targets)
    assert at_search_bound(t) == at_bound
    metrics = evaluate_calibration(validation=SplitLogits(logits, targets)).to_json()
    assert ("warning: T is at the end of its search range" in format_unsure(metrics)) == at_bound


def test_temperature_lowers_validation_nll_of_an_overconfident_model() -> None:
    logits, targets = _sampled(2.0)
    t = fit_temperature(logits, targets)
    assert negative_log_likelihood(logits, targets, temperature=t) < negative_log_likelihood(
        logits, targets
    )
    before = expected_calibration_error(softmax(logits), targets)
    after = expected_calibration_error(softmax(logits, temperature=t), targets)
    assert after < before / 3


# (probabilities of class 1 for a 2-class model, targets, ECE by hand with 15 bins)
# bins are ((m-1)/15, m/15]: 0.55 and 0.6 share bin 9 (0.533, 0.6]; 0.95 and 1.0 bin 15.
ECE_CASES = [
    # all in bin 15 (confidence 0.95, 1.0, mean 0.975), 1 of 2 right: |0.5 - 0.975| = 0.475
    ([0.95, 1.0], [1, 0], 0.475),
    # bin 9: confidences 0.55, 0.6 (mean 0.575), both right: gap 0.425, weight 2/4
    # bin 15: confidences 0.95, 1.0 (mean 0.975), both right: gap 0.025, weight 2/4
    ([0.55, 0.6, 0.95, 1.0], [1, 1, 1, 1], 0.5 * 0.425 + 0.5 * 0.025),
    # perfectly calibrated within each bin: conf 0.7 x 10 with 7 right
    ([0.7] * 10, [1] * 7 + [0] * 3, 0.0),
]


@pytest.mark.parametrize(("p1", "targets", "expected"), ECE_CASES)
def test_ece_matches_hand_computed(p1: list[float], targets: list[int], expected: float) -> None:
    p = np.array([[1 - x, x] for x in p1])
    assert expected_calibration_error(p, np.array(targets)) == pytest.approx(expected, abs=1e-12)


def test_reliability_bins_put_edges_in_the_lower_bin() -> None:
    p = np.array([[1 - x, x] for x in (0.6, 2 / 3, 1.0)])  # 0.6 = 9/15, 2/3 = 10/15
    bins = reliability_bins(p, np.array([1, 1, 1]))
    assert bins.counts[8] == 1 and bins.counts[9] == 1 and bins.counts[14] == 1
    assert bins.counts.sum() == 3


@pytest.mark.parametrize(
    ("logits", "targets", "match"),
    [
        (np.zeros((3, 2)), np.array([0, 1]), "shapes"),
        (np.zeros((2, 2)), np.array([0, 2]), "targets"),
        (np.zeros((0, 2)), np.zeros(0, int), "shapes"),
    ],
)
def test_bad_inputs_name_the_argument(logits: np.ndarray, targets: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        negative_log_likelihood(logits, targets)


# (in-class scores, out-of-class scores, AUROC)
AUROC_CASES = [
    ([3, 4, 5], [0, 1, 2], 1.0),
    ([0, 1, 2], [3, 4, 5], 0.0),
    ([1, 1], [1, 1], 0.5),  # all tied
    ([0.9, 0.8, 0.4], [0.7, 0.3], 5 / 6),  # pairs won: 0.9>0.7,0.3; 0.8>0.7,0.3; 0.4>0.3
    ([2, 1], [1, 0], (1 + 1 + 0.5 + 1) / 4),  # one tie counts 1/2
]


@pytest.mark.parametrize(("pos", "neg", "expected"), AUROC_CASES)
def test_auroc_known_cases(pos: list[float], neg: list[float], expected: float) -> None:
    assert auroc(np.array(pos), np.array(neg)) == pytest.approx(expected)


def test_auroc_needs_both_sides() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        auroc(np.array([1.0]), np.array([]))


def test_risk_coverage_answers_the_most_confident_first() -> None:
    conf = np.array([0.9, 0.5, 0.8, 0.5])
    correct = np.array([True, False, False, True])
    coverage, risk = risk_coverage(conf, correct)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 1.0, 1.0])  # the tied 0.5s together
    np.testing.assert_allclose(risk, [0.0, 0.5, 0.5, 0.5])


@pytest.mark.parametrize("goal", [0.8, 0.9, 0.95, 0.97])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_meets_its_goal_on_the_data_it_was_chosen_on(goal: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.1, 1.0, 2000)
    correct = rng.random(2000) < conf  # calibrated: P(right) = confidence
    threshold, met = choose_threshold(conf, correct, goal=goal)
    assert met
    answered = selective(conf, correct, threshold=threshold)
    assert answered.accuracy is not None and answered.accuracy >= goal
    # the first crossing: answering the next most confident image breaks the goal
    lower = conf[conf < threshold].max()
    below = selective(conf, correct, threshold=lower)
    assert below.accuracy is not None and below.accuracy < goal


def test_threshold_stops_at_the_first_crossing() -> None:
    # sorted by confidence: 40 right, 3 wrong (accuracy 40/43 = 0.93 < 0.97), then 60 right:
    # the later recovery (100/103 = 0.971) must not be taken.
    conf = np.linspace(1.0, 0.01, 103)
    correct = np.array([True] * 40 + [False] * 3 + [True] * 60)
    threshold, met = choose_threshold(conf, correct, goal=0.97)
    assert met
    assert threshold == pytest.approx(conf[40])  # 41 answered: 40/41 = 0.976
    assert selective(conf, correct, threshold=threshold).coverage == pytest.approx(41 / 103)


def test_threshold_reports_an_unmet_goal() -> None:
    conf = np.linspace(1.0, 0.0, 100)
    correct = np.arange(100) % 2 == 0  # 50% right at every coverage
    threshold, met = choose_threshold(conf, correct, goal=0.97)
    assert not met and threshold == 1.0


@pytest.mark.parametrize("goal", [0.0, 1.0, 1.5])
def test_threshold_goal_must_be_a_fraction(goal: float) -> None:
    with pytest.raises(ValueError, match="goal"):
        choose_threshold(np.array([0.5]), np.array([True]), goal=goal)


def test_energy_and_max_softmax_scores() -> None:
    logits = np.array([[10.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(
        confidence_score(logits, kind="max_softmax"), [1 / (1 + np.exp(-10)), 0.5]
    )
    np.testing.assert_allclose(
        confidence_score(logits, kind="energy"), [np.log(np.exp(10) + 1), np.log(2)]
    )
    with pytest.raises(ValueError, match="kind"):
        confidence_score(logits, kind="entropy")


def test_mahalanobis_ranks_far_points_lower() -> None:
    rng = np.random.default_rng(0)
    means = np.array([[0.0] * 8, [5.0] * 8])
    y = rng.integers(0, 2, 400)
    x = means[y] + rng.normal(0, 1, (400, 8))
    near = means[[0, 1]] + rng.normal(0, 1, (2, 8))
    far = np.full((2, 8), 20.0)
    scores = mahalanobis_score(x, y, np.vstack([near, far]))
    assert scores[:2].min() > scores[2:].max()


def test_mahalanobis_with_one_photo_per_class_scores_instead_of_failing() -> None:
    x, y = np.array([[0.0, 1.0], [3.0, 4.0]]), np.array([0, 1])  # no within-class spread
    scores = mahalanobis_score(x, y, np.array([[0.0, 1.0], [9.0, 9.0]]))
    # S = 0: its pseudo-inverse is 0, so every score is 0 (no ranking, but no crash);
    # the score is only reported beside the deployed one
    assert scores.shape == (2,) and np.array_equal(scores, [0.0, 0.0])


def test_evaluate_calibration_fits_on_validation_and_reports_test() -> None:
    val_logits, val_targets = _sampled(2.0, n=3000, seed=1, scale=10.0)
    test_logits, test_targets = _sampled(2.0, n=3000, seed=2, scale=10.0)
    rng = np.random.default_rng(3)
    not_sure = rng.normal(0, 0.5, size=(300, 10))  # flat logits: low confidence
    result = evaluate_calibration(
        validation=SplitLogits(val_logits, val_targets),
        test=SplitLogits(test_logits, test_targets),
        not_sure=not_sure,
        goal=0.9,
    )
    assert result.temperature == pytest.approx(2.0, rel=0.1)
    data = result.to_json()
    assert data["temperature"] == result.temperature
    assert data["unsure_threshold"] == result.threshold
    test = data["calibration"]["test"]
    assert test["ece_after"] < test["ece_before"] and test["nll_after"] < test["nll_before"]
    assert data["unsure"]["validation"]["answered_accuracy"] >= 0.9
    assert data["unsure"]["not_sure"]["unsure_rate"] > 2 * data["unsure"]["test"]["unsure_rate"]
    assert data["unsure"]["auroc"]["max_softmax"]["test"] > 0.9
    assert set(result.curves) == {"validation", "test"}


@pytest.mark.parametrize(
    ("kind", "shift", "caught"),
    [
        # softmax ignores a constant added to every logit; energy does not
        ("energy", -50.0, "all"),
        ("max_softmax", -50.0, "as_validation"),
        ("energy", 0.0, "as_validation"),
        ("max_softmax", 0.0, "as_validation"),
    ],
)
def test_scores_at_goal_reports_each_score_at_its_own_threshold(
    kind: str, shift: float, caught: str
) -> None:
    logits, targets = _sampled(1.0, n=2000, seed=4, scale=6.0)
    validation = SplitLogits(logits, targets)
    not_sure = logits[:600] + shift  # the same shapes, moved down (or not)
    row = scores_at_goal(validation, not_sure, temperature=1.0, goal=0.95)[kind]
    conf = confidence_score(logits, kind=kind)
    assert row["goal_met"] and row["answered_accuracy"] >= 0.95
    assert row["coverage"] == pytest.approx(np.mean(conf >= row["threshold"]))
    assert row["ratio"] == pytest.approx(row["not_sure_unsure_rate"] / row["unsure_rate"])
    if caught == "all":
        assert row["not_sure_unsure_rate"] == 1.0
    else:  # a sample of validation's own logits: about validation's unsure rate
        assert row["ratio"] == pytest.approx(1.0, abs=0.25)


def test_evaluate_calibration_stores_the_scores_at_goal() -> None:
    logits, targets = _sampled(1.0, n=1000, seed=5, scale=6.0)
    result = evaluate_calibration(
        validation=SplitLogits(logits, targets), not_sure=logits[:100] - 20.0, goal=0.9
    )
    table = result.to_json()["unsure"]["scores_at_goal_on_validation"]
    assert set(table) == {"max_softmax", "energy"}
    assert table["max_softmax"]["threshold"] == result.threshold  # the deployed one
    assert table["energy"]["not_sure_unsure_rate"] == 1.0


# -- inside `python -m train` (tiny model, generated images) --------------------------


@pytest.mark.parametrize("with_unsure_dir", [True, False])
def test_train_writes_calibration_fields_and_plots(
    tmp_path: Path, tiny_dataset: Path, with_unsure_dir: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLOTHING_UNSURE_DIR", raising=False)
    unsure_dir = tmp_path / "not-sure"
    for i in range(4):
        make_image(unsure_dir / f"{i}.jpg", color=(128, 128, 128), seed=50 + i)
    # Fitted on validation (the out-of-fold fit: test_crossfit.py), so the NLL claim holds.
    config = tiny_config(
        tmp_path,
        tiny_dataset,
        unsure_dir=unsure_dir if with_unsure_dir else None,
        calibration_folds=0,
    )
    metrics = train_model(config)
    saved = json.loads((config.output_dir / "metrics.json").read_text())
    assert saved["temperature"] == metrics["temperature"] > 0
    assert 0.0 <= saved["unsure_threshold"] <= 1.0 and saved["unsure_goal"] == 0.97
    val = saved["calibration"]["validation"]
    # T minimises validation NLL over a range holding T = 1, so it never does worse
    assert val["nll_after"] <= val["nll_before"] + 1e-9
    assert saved["unsure"]["test"]["n"] == metrics["n_images"]["test"]
    for name in ("reliability_diagram.png", "risk_coverage.png"):
        assert (config.output_dir / name).stat().st_size > 1000
    if with_unsure_dir:
        assert saved["unsure"]["not_sure"]["n"] == 4
        assert set(saved["unsure"]["auroc"]) >= {"max_softmax", "energy", "mahalanobis"}
        assert set(saved["unsure"]["scores_at_goal_on_validation"]) == {"max_softmax", "energy"}
    else:
        assert "not_sure" not in saved["unsure"] and "auroc" not in saved["unsure"]


def test_train_refuses_an_empty_unsure_dir_and_writes_nothing(
    tmp_path: Path, tiny_dataset: Path
) -> None:
    (tmp_path / "empty").mkdir()
    config = tiny_config(tmp_path, tiny_dataset, unsure_dir=tmp_path / "empty", epochs=1)
    with pytest.raises(ValueError, match="`unsure_dir` must hold images"):
        train_model(config)
    assert not config.output_dir.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--unsure-goal", "1.5"], "`unsure_goal` must be in (0, 1). Received: unsure_goal=1.5"),
        (
            ["--unsure-dir", "/nonexistent/x"],
            "`unsure_dir` must be a folder. Received: unsure_dir=",
        ),
    ],
)
def test_train_cli_unsure_errors_exit_2(
    tmp_path: Path,
    tiny_dataset: Path,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["--data-dir", str(tiny_dataset), "--base-weights", "none", "--image-size", "71"]
    base += ["--epochs", "1", "--cache-dir", str(tmp_path / "c"), "--output", str(tmp_path / "o")]
    assert train_main([*base, "--quiet", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["calibrate", "RUN"]])
@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_unsure_dir_flag_is_refused_not_the_current_folder(
    tmp_path: Path, command: list[str], value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tmp_path) if a == "RUN" else a for a in command] + ["--unsure-dir", value]
    with pytest.raises(SystemExit) as exc:
        train_main([*argv, "--output", str(tmp_path / "o")] if not command else argv)
    assert exc.value.code == 2
    assert "--unsure-dir: must name a folder of photos" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_calibrate_command_recomputes_the_same_calibration(
    tmp_path: Path, tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m train calibrate RUN` (images through model.keras) agrees with
    what training computed (cached features through the head)."""
    monkeypatch.delenv("CLOTHING_UNSURE_DIR", raising=False)
    unsure_dir = tmp_path / "not-sure"
    for i in range(3):
        make_image(unsure_dir / f"{i}.jpg", color=(128, 128, 128), seed=70 + i)
    # `train calibrate` fits on validation (no cached features): train the same way.
    config = tiny_config(
        tmp_path, tiny_dataset, unsure_dir=unsure_dir, epochs=2, calibration_folds=0
    )
    trained = train_model(config)
    metrics_path = config.output_dir / "metrics.json"
    stripped = {k: v for k, v in trained.items() if k not in ("temperature", "calibration")}
    metrics_path.write_text(json.dumps(stripped))  # as a run from before calibration
    (config.output_dir / "risk_coverage.png").unlink()
    argv = ["calibrate", str(config.output_dir), "--unsure-dir", str(unsure_dir), "--quiet"]
    assert train_main(argv) == 0
    again = json.loads(metrics_path.read_text())
    assert again["temperature"] == pytest.approx(trained["temperature"], rel=1e-3)
    assert again["unsure_threshold"] == pytest.approx(trained["unsure_threshold"], rel=1e-3)
    assert again["unsure"]["not_sure"]["n"] == 3
    assert again["val_accuracy"] == trained["val_accuracy"]  # the rest is kept
    assert (config.output_dir / "risk_coverage.png").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["calibrate", "/nonexistent"], "`model_dir` must be a `python -m train` output folder"),
        (["calibrate", ".", "--unsure-goal", "1"], "`unsure_goal` must be in (0, 1)"),
        (
            ["calibrate", ".", "--batch-size", "0"],
            "`batch_size` must be >= 1. Received: batch_size=0",
        ),
        (["calibrate", ".", "--batch-size", "-1"], "Received: batch_size=-1"),
        (
            ["calibrate", ".", "--unsure-dir", "pyproject.toml"],
            "`unsure_dir` must be a folder. Received: unsure_dir='pyproject.toml'",
        ),
    ],
)
def test_calibrate_command_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_main(argv) == 2
    assert message in capsys.readouterr().err


def test_lowest_meeting_goal_rule_takes_the_later_recovery() -> None:
    conf = np.linspace(1.0, 0.01, 103)
    correct = np.array([True] * 40 + [False] * 3 + [True] * 60)  # dips, then 100/103 = 0.971
    threshold, met = choose_threshold(conf, correct, goal=0.97, first_crossing=False)
    assert met and threshold == pytest.approx(conf[102])


def test_threshold_rule_check_compares_rules_on_held_out_halves() -> None:
    logits, targets = _sampled(1.0, n=600, seed=4, scale=6.0)
    check = threshold_rule_check(logits, targets, goal=0.95, repeats=30)
    first, lowest = check["first_crossing"], check["lowest_meeting_goal"]
    # the first crossing is never below the lowest threshold meeting the goal
    assert first["held_out_coverage"] <= lowest["held_out_coverage"]
    for rule in (first, lowest):
        assert 0.0 < rule["held_out_coverage"] < 1.0
        assert 0.85 < rule["held_out_answered_accuracy"] <= 1.0
        assert 0.0 <= rule["share_meeting_goal"] <= 1.0
