"""Calibrated scores and "unsure" answers in the runtime, the CLI and the Lambda handler.

Most tests drive `Classifier` with a fake interpreter that returns chosen
logits, so every score and decision is known in advance; the rest use the
tiny TFLite bundle end to end.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import inference._classifier
from inference import (
    BundleError,
    Classifier,
    FetchConfig,
    InferenceConfig,
    Manifest,
    RuntimeInfo,
    handle_event,
)
from inference.__main__ import main
from tests.conftest import LABELS, TINY_SIZE, make_image

# Logits with a known calibrated top score: softmax([2, 0, ...] / T)[0].
LOGITS = np.array([2.0] + [0.0] * (len(LABELS) - 1), dtype=np.float32)


def top_score(temperature: float) -> float:
    e = np.exp(LOGITS.astype(np.float64) / temperature)
    return float(e[0] / e.sum())


class FakeInterpreter:
    """The three calls Classifier makes, returning fixed logits."""

    def __init__(self, logits: np.ndarray) -> None:
        self.out = logits[np.newaxis]

    def get_input_details(self) -> list[dict[str, Any]]:
        return [{"index": 0, "shape": (1, TINY_SIZE, TINY_SIZE, 3), "dtype": np.float32}]

    def get_output_details(self) -> list[dict[str, Any]]:
        return [{"index": 1, "shape": (1, len(LABELS)), "dtype": np.float32}]

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        pass

    def invoke(self) -> None:
        pass

    def get_tensor(self, index: int) -> np.ndarray:
        return self.out


def fake_classifier(
    *, temperature: float | None = 2.0, threshold: float | None = None, **kwargs: Any
) -> Classifier:
    manifest = Manifest(
        labels=LABELS,
        image_size=TINY_SIZE,
        variant="float32",
        model_sha256=f"fake-{temperature}-{threshold}",
        temperature=temperature,
        unsure_threshold=threshold,
    )
    return Classifier(
        manifest,
        FakeInterpreter(LOGITS),
        RuntimeInfo("fake", "0"),
        max_pixels=1_000_000,
        **kwargs,
    )


X = np.zeros((TINY_SIZE, TINY_SIZE, 3), np.float32)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0])
def test_scores_are_softmax_of_logits_over_temperature(temperature: float) -> None:
    answer = fake_classifier(temperature=temperature).predict_array(X).to_dict()
    assert answer["scores"]["dress"] == pytest.approx(top_score(temperature), rel=1e-9)
    assert sum(answer["scores"].values()) == pytest.approx(1.0)
    assert answer["logits"]["dress"] == 2.0  # raw logits unchanged
    assert answer["unsure"] is False and answer["label"] == "dress"  # no threshold: answer


# (manifest threshold, unsure?): the top score at T = 2 is e / (e + 9) = 0.2320
THRESHOLDS = [(None, False), (0.0, False), (0.23, False), (0.233, True), (1.0, True)]


@pytest.mark.parametrize(("threshold", "unsure"), THRESHOLDS)
def test_unsure_below_the_threshold_keeps_scores_and_top(
    threshold: float | None, unsure: bool
) -> None:
    assert top_score(2.0) == pytest.approx(math.e / (math.e + 9))
    answer = fake_classifier(threshold=threshold).predict_array(X, top_k=4).to_dict()
    assert answer["unsure"] is unsure
    assert answer["label"] == (None if unsure else "dress")
    assert answer["confidence"] == pytest.approx(top_score(2.0))
    assert answer["unsure_threshold"] == threshold
    assert answer["top"][0]["label"] == "dress" and len(answer["top"]) == 4
    assert answer["top"][0]["score"] == answer["scores"]["dress"]
    json.dumps(answer, allow_nan=False)


# (env UNSURE_THRESHOLD, load/CLI flag, request field) -> the threshold used; manifest 0.3
OVERRIDES = [
    (None, None, None, 0.3),
    ("0.9", None, None, 0.9),
    ("0.9", 0.1, None, 0.1),
    ("0.9", 0.1, 0.7, 0.7),
    (None, None, 0.0, 0.0),
    ("", 0.6, None, 0.6),  # an empty env var is unset
]


@pytest.mark.parametrize(("env", "flag", "field", "used"), OVERRIDES)
def test_threshold_override_order_env_flag_request(
    env: str | None,
    flag: float | None,
    field: float | None,
    used: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if env is None:
        monkeypatch.delenv("UNSURE_THRESHOLD", raising=False)
    else:
        monkeypatch.setenv("UNSURE_THRESHOLD", env)
    config = InferenceConfig.from_env(unsure_threshold=flag)  # what the CLI does
    clf = fake_classifier(threshold=0.3, unsure_threshold=config.unsure_threshold)
    prediction = clf.predict_array(X, unsure_threshold=field)
    assert prediction.unsure_threshold == used
    assert prediction.unsure is (prediction.confidence < used)


@pytest.mark.parametrize("raw", ["1.5", "-0.1", "nan", "high"])
def test_bad_env_threshold_names_the_variable(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNSURE_THRESHOLD", raw)
    with pytest.raises(
        ValueError,
        match=f"UNSURE_THRESHOLD must be a number from 0 to 1. Received: UNSURE_THRESHOLD='{raw}'",
    ):
        InferenceConfig.from_env()


@pytest.mark.parametrize("value", [1.5, -0.01, math.inf, True, "0.5"])
def test_bad_call_threshold_is_a_value_error(value: Any) -> None:
    with pytest.raises(ValueError, match="`unsure_threshold` must be a number from 0 to 1"):
        fake_classifier().predict_array(X, unsure_threshold=value)


def test_manifest_round_trips_the_calibration_fields() -> None:
    manifest = Manifest(
        labels=LABELS,
        image_size=TINY_SIZE,
        variant="dynamic",
        model_sha256="x",
        temperature=1.7,
        unsure_threshold=0.8,
        unsure_goal=0.97,
    )
    data = json.loads(json.dumps(manifest.to_json()))
    assert (data["temperature"], data["unsure_threshold"], data["unsure_goal"]) == (1.7, 0.8, 0.97)
    assert Manifest.from_json(data) == manifest and manifest.calibrated


def test_old_bundle_loads_with_temperature_1_and_warns_once(
    tiny_bundle: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "old"))
    data = json.loads((bundle / "manifest.json").read_text())
    for key in ("temperature", "unsure_threshold", "unsure_goal"):
        data.pop(key, None)  # as written before calibration
    (bundle / "manifest.json").write_text(json.dumps(data))
    monkeypatch.setattr(inference._classifier, "_warned_uncalibrated", set())
    with caplog.at_level(logging.WARNING, logger="inference"):
        first = Classifier.load(bundle)
        second = Classifier.load(bundle)
    warnings = [r for r in caplog.records if "made before calibration" in r.getMessage()]
    assert len(warnings) == 1
    assert not first.manifest.calibrated and first.temperature == second.temperature == 1.0
    answer = first.predict_file(make_image(tmp_path / "a.jpg", color=(200, 10, 10))).to_dict()
    assert answer["unsure"] is False and answer["label"] is not None
    logits = np.array(list(answer["logits"].values()))
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(list(answer["scores"].values()), expected, rtol=1e-6)


def calibrated_copy(tiny_bundle: Path, tmp_path: Path, **fields: Any) -> Path:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "calibrated"))
    data = json.loads((bundle / "manifest.json").read_text())
    data.update(fields)
    (bundle / "manifest.json").write_text(json.dumps(data))
    return bundle


def test_calibrated_bundle_applies_its_temperature(tiny_bundle: Path, tmp_path: Path) -> None:
    image = make_image(tmp_path / "a.jpg", color=(10, 200, 10))
    plain = Classifier.load(tiny_bundle).predict_file(image)
    bundle = calibrated_copy(tiny_bundle, tmp_path, temperature=0.01, unsure_threshold=None)
    sharp = Classifier.load(bundle).predict_file(image)
    assert sharp.logits == plain.logits
    z = np.array(plain.logits) / 0.01
    expected = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(sharp.probabilities, expected, rtol=1e-6, atol=1e-12)
    assert sharp.confidence > plain.confidence  # T < 1 sharpens


# (CLI flags, unsure?) on the tiny bundle: its top score is well under 1 and over 0
CLI_CASES = [([], False), (["--unsure-threshold", "1"], True), (["--unsure-threshold", "0"], False)]


@pytest.mark.parametrize(("flags", "unsure"), CLI_CASES)
def test_predict_cli_prints_unsure_with_suggestions(
    tiny_bundle: Path,
    tmp_path: Path,
    flags: list[str],
    unsure: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = make_image(tmp_path / "a.jpg", color=(10, 10, 200))
    base = ["predict", str(image), "--model", str(tiny_bundle), *flags]
    assert main([*base, "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert result["unsure"] is unsure
    assert (result["label"] is None) is unsure
    assert len(result["top"]) == 3
    assert main(base) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert ("unsure" in first and "suggestions" in first) is unsure
    assert first.endswith("%)") is not unsure


def test_predict_cli_refuses_a_bad_threshold(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make_image(tmp_path / "a.jpg", color=(10, 10, 200))
    assert (
        main(["predict", str(image), "--model", str(tiny_bundle), "--unsure-threshold", "2"]) == 2
    )
    assert "`unsure_threshold` must be a number from 0 to 1. Received: unsure_threshold=2.0" in (
        capsys.readouterr().err
    )


# -- Lambda: the request field ------------------------------------------------------


def _direct(image_b64: str, **fields: Any) -> dict[str, Any]:
    return {"image": image_b64, **fields}


@pytest.fixture(scope="module")
def jpeg_b64(tmp_path_factory: pytest.TempPathFactory) -> str:
    import base64

    path = make_image(tmp_path_factory.mktemp("img") / "a.jpg", color=(200, 200, 10))
    return base64.b64encode(path.read_bytes()).decode()


# (request field value, status, unsure or error)
FIELD_CASES = [
    (1.0, 200, True),
    (0, 200, False),
    ("1", 200, True),  # query strings and form fields send text
    (".0", 200, False),
    (1.5, 400, None),
    (-0.2, 400, None),
    ("high", 400, None),
    (True, 400, None),
    ([0.5], 400, None),
]


@pytest.mark.parametrize(("value", "status", "unsure"), FIELD_CASES)
def test_lambda_request_field(
    tiny_bundle: Path, jpeg_b64: str, value: Any, status: int, unsure: bool | None
) -> None:
    clf = Classifier.load(tiny_bundle)
    outcome = handle_event(
        _direct(jpeg_b64, unsure_threshold=value), classifier=clf, fetch_config=FetchConfig()
    )
    assert outcome.status == status
    if status == 400:
        assert outcome.payload["error"]["code"] == "INVALID_REQUEST"
        assert (
            "`unsure_threshold` must be a number from 0 to 1" in outcome.payload["error"]["message"]
        )
        return
    body = outcome.payload
    assert body["unsure"] is unsure and (body["label"] is None) is unsure
    assert body["top"] and body["scores"]
    assert outcome.log_record()["unsure"] is unsure


def test_lambda_binary_body_takes_the_threshold_from_the_query(
    tiny_bundle: Path, jpeg_b64: str
) -> None:
    event = {
        "version": "2.0",
        "routeKey": "POST /",
        "rawPath": "/",
        "headers": {"content-type": "image/jpeg"},
        "queryStringParameters": {"unsure_threshold": "1"},
        "requestContext": {"http": {"method": "POST", "path": "/"}},
        "body": jpeg_b64,
        "isBase64Encoded": True,
    }
    outcome = handle_event(
        event, classifier=Classifier.load(tiny_bundle), fetch_config=FetchConfig()
    )
    body = json.loads(outcome.response()["body"])
    assert outcome.status == 200 and body["unsure"] is True and body["label"] is None


def test_lambda_request_field_beats_the_bundle(
    tiny_bundle: Path, tmp_path: Path, jpeg_b64: str
) -> None:
    clf = Classifier.load(
        calibrated_copy(tiny_bundle, tmp_path, temperature=1.0, unsure_threshold=1.0)
    )
    by_bundle = handle_event(_direct(jpeg_b64), classifier=clf, fetch_config=FetchConfig())
    assert by_bundle.payload["unsure"] is True and by_bundle.payload["unsure_threshold"] == 1.0
    by_field = handle_event(
        _direct(jpeg_b64, unsure_threshold=0.0), classifier=clf, fetch_config=FetchConfig()
    )
    assert by_field.payload["unsure"] is False and by_field.payload["label"] is not None
    assert by_field.payload["model"]["temperature"] == 1.0


def test_bad_manifest_threshold_is_a_bundle_error(tiny_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="`unsure_threshold` must be a number in"):
        Classifier.load(calibrated_copy(tiny_bundle, tmp_path, unsure_threshold=2))
