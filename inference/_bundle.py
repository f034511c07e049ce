"""A model bundle: `model.tflite` (or `model.onnx`) + `manifest.json`, from `python -m convert`.

The manifest is everything the runtime needs besides the model. Its fields
(schema 1):

    schema_version        1
    format                "tflite" (model.tflite) | "onnx" (model.onnx); absent in
                          bundles made before ONNX, which load as "tflite"
    labels                class names in output order
    image_size            square input side in pixels
    preprocessing         "xception"
    resize                "nearest"
    output                "logits"
    variant               "float32" | "float16" | "dynamic" | "int8" | "onnx" | ...
    model_sha256          sha256 of the model file
    source_model_sha256   sha256 of the Keras model it was converted from
    converter             {"tensorflow": "2.21.0", ...}
    created_at            ISO 8601 UTC time
    operators             [{"name": "CONV_2D", "version": 3}, ...] (ONNX: op types and
                          the opset version of their domain)
    temperature           T > 0: scores are softmax(logits / T), fitted by training
                          on out-of-fold logits of train + validation, or on
                          validation (Guo et al. 2017); absent in bundles
                          made before calibration, which then load with T = 1
    unsure_threshold      in [0, 1] or null: answer "unsure" when the top
                          calibrated score is below it; null: always answer
    unsure_goal           the accuracy of answered images the threshold was
                          chosen for (e.g. 0.97), or null
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inference._errors import BundleError
from inference.preprocess import PREPROCESSING, RESIZE

MODEL_FILENAME = "model.tflite"
MANIFEST_FILENAME = "manifest.json"
SCHEMA_VERSION = 1
# Bundle format -> its model file. "tflite" is the default: manifests written
# before the field existed are TFLite bundles.
MODEL_FILENAMES = {"tflite": MODEL_FILENAME, "onnx": "model.onnx"}
DEFAULT_FORMAT = "tflite"


@dataclass(frozen=True)
class Manifest:
    """A bundle's `manifest.json`: what the model expects and answers (schema 1).

    `labels` are in logit order; `image_size` is the square input side in
    pixels; `preprocessing`/`resize`/`output` name the only supported contract
    ("xception", "nearest", "logits"); `model_sha256` is the hex digest of
    `model.tflite`; `temperature` (> 0) and `unsure_threshold` (in [0, 1]) come
    from calibration and are None for bundles made before it. `from_json`
    validates; `to_json` gives the JSON object written by `python -m convert`.
    """

    labels: tuple[str, ...]
    image_size: int
    variant: str
    model_sha256: str
    source_model_sha256: str = ""
    preprocessing: str = PREPROCESSING
    resize: str = RESIZE
    output: str = "logits"
    converter: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    operators: tuple[dict[str, Any], ...] = ()
    temperature: float | None = None  # None: a bundle made before calibration (T = 1)
    unsure_threshold: float | None = None
    unsure_goal: float | None = None
    format: str = DEFAULT_FORMAT  # "tflite" | "onnx": which model file and runtimes
    schema_version: int = SCHEMA_VERSION

    @property
    def model_filename(self) -> str:
        """The model file this manifest's format names: "model.tflite" or "model.onnx"."""
        return MODEL_FILENAMES[self.format]

    @property
    def calibrated(self) -> bool:
        """False for bundles made before temperature scaling: scores use T = 1."""
        return self.temperature is not None

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict (tuples as lists); `from_json` reads it back."""
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["operators"] = [dict(op) for op in self.operators]
        return data

    @classmethod
    def from_json(cls, data: Any, *, source: str = "manifest") -> Manifest:
        """Validate a parsed manifest; raise `BundleError` naming the bad field."""
        if not isinstance(data, dict):
            raise BundleError(f"{source}: must be a JSON object. Received: {type(data).__name__}")
        _expect(data, "schema_version", int, source)
        if data["schema_version"] != SCHEMA_VERSION:
            raise BundleError(
                f"{source}: `schema_version` must be {SCHEMA_VERSION}. "
                f"Received: schema_version={data['schema_version']!r}"
            )
        try:
            labels = check_labels(data.get("labels"), source=source)
            calibration = check_calibration(data, source=source)
        except ValueError as exc:
            raise BundleError(str(exc)) from None
        image_size = _expect(data, "image_size", int, source)
        if image_size < 1:
            raise BundleError(f"{source}: `image_size` must be >= 1. Received: {image_size}")
        for key, allowed in (
            ("preprocessing", PREPROCESSING),
            ("resize", RESIZE),
            ("output", "logits"),
        ):
            if data.get(key) != allowed:
                raise BundleError(
                    f"{source}: `{key}` must be {allowed!r}. Received: {key}={data.get(key)!r}"
                )
        model_format = data.get("format", DEFAULT_FORMAT)
        if model_format not in MODEL_FILENAMES:
            raise BundleError(
                f"{source}: `format` must be one of {sorted(MODEL_FILENAMES)} (or absent: "
                f"{DEFAULT_FORMAT!r}). Received: format={model_format!r}"
            )
        return cls(
            labels=tuple(labels),
            image_size=image_size,
            variant=_expect(data, "variant", str, source),
            model_sha256=_expect(data, "model_sha256", str, source),
            source_model_sha256=str(data.get("source_model_sha256", "")),
            converter=dict(data.get("converter", {})),
            created_at=str(data.get("created_at", "")),
            operators=tuple(data.get("operators", ())),
            format=model_format,
            temperature=calibration["temperature"],
            unsure_threshold=calibration["unsure_threshold"],
            unsure_goal=calibration["unsure_goal"],
        )


# The calibration fields of a manifest and of metrics.json: name -> (low, high, low open).
CALIBRATION_RANGES = {
    # T > 0 (Guo et al. 2017); training fits T in [0.05, 20] (train/calibrate.py), and
    # far above that every score is the same 1/k: a hand-edited manifest, refused.
    "temperature": (0.0, 100.0, True),
    "unsure_threshold": (0.0, 1.0, False),
    "unsure_goal": (0.0, 1.0, False),
}


def check_calibration(data: Mapping[str, Any], *, source: str) -> dict[str, float | None]:
    """The calibration fields of `data` (`CALIBRATION_RANGES`), each a finite number
    in its range or None when absent/null. Used for the bundle manifest and the
    training output's metrics.json (train/output.py).

    Raises:
        ValueError: a field is not a number, not finite, or out of its range; the
            message starts with `source` and echoes the value.
    """
    found: dict[str, float | None] = {}
    for key, (low, high, open_low) in CALIBRATION_RANGES.items():
        value = data.get(key)
        if value is None:
            found[key] = None
            continue
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if (
            not ok
            or not math.isfinite(value)
            or not low <= value <= high
            or (open_low and value == low)
        ):
            rule = f"{'(' if open_low else '['}{low:g}, {high:g}]"
            raise ValueError(
                f"{source}: `{key}` must be a number in {rule} or null. Received: {key}={value!r}"
            )
        found[key] = float(value)
    return found


def check_labels(labels: object, *, source: str) -> tuple[str, ...]:
    """`labels` as a tuple, if it is a list of >= 2 unique non-empty strings (class
    names in logit order). The one label rule for the bundle manifest and the
    training output's metrics.json (train/output.py).

    Raises:
        ValueError: anything else; the message starts with `source` and echoes
            the value.
    """
    ok = (
        isinstance(labels, list)
        and len(labels) >= 2
        and all(isinstance(x, str) and x for x in labels)
        and len(set(labels)) == len(labels)
    )
    if not ok:
        raise ValueError(
            f"{source}: `labels` must be a list of >= 2 unique non-empty strings. "
            f"Received: labels={labels!r}"
        )
    return tuple(labels)  # type: ignore[arg-type]


def _expect(data: dict[str, Any], key: str, kind: type, source: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        what = {int: "an int", str: "a string", dict: "a JSON object", list: "a list"}.get(
            kind, f"a {kind.__name__}"
        )
        raise BundleError(f"{source}: `{key}` must be {what}. Received: {key}={value!r}")
    return value


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks.

    Raises:
        OSError (e.g. FileNotFoundError): the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A read bundle: its folder, validated manifest and the model's bytes."""

    directory: Path
    manifest: Manifest
    model_bytes: bytes

    @property
    def model_path(self) -> Path:
        """The bundle's model file: `model.tflite`, or `model.onnx` for an ONNX bundle."""
        return self.directory / self.manifest.model_filename


def read_bundle(directory: str | Path, *, verify: bool = True) -> Bundle:
    """Read a bundle folder and check the model's sha256 against the manifest.

    Args:
        directory: a folder holding `manifest.json` and the model file its
            `format` names (`model.tflite`, or `model.onnx`).
        verify: compare the model's sha256 with the manifest's `model_sha256`
            (the model is read in full either way).

    Returns:
        A `Bundle` with the validated `Manifest` and the model's bytes.

    Raises:
        BundleError: the folder or one of the two files is missing, the
            manifest is not valid JSON or fails validation (the message names
            the field and echoes its value), or the sha256 does not match.
        OSError: a file exists but cannot be read (e.g. permissions).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"Model bundle folder not found: {str(directory)!r}")
    manifest_path = directory / MANIFEST_FILENAME
    if not manifest_path.is_file():
        raise BundleError(f"Model bundle {str(directory)!r} has no {manifest_path.name}.")
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc}).") from None
    manifest = Manifest.from_json(data, source=str(manifest_path))
    model_path = directory / manifest.model_filename
    if not model_path.is_file():
        raise BundleError(f"Model bundle {str(directory)!r} has no {model_path.name}.")
    model_bytes = model_path.read_bytes()
    if verify:
        actual = hashlib.sha256(model_bytes).hexdigest()
        if actual != manifest.model_sha256:
            raise BundleError(
                f"{model_path}: sha256 {actual} does not match the manifest's "
                f"model_sha256 {manifest.model_sha256}; the bundle is corrupt or was edited."
            )
    return Bundle(directory=directory, manifest=manifest, model_bytes=model_bytes)
