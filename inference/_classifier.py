"""`Classifier`: a loaded bundle plus interpreter; image in, class scores out.

Scores are calibrated probabilities: softmax(logits / T) with the bundle's
temperature T (fitted by `python -m train` on out-of-fold logits of train +
validation, or on validation; Guo et al. 2017). When the top score is below
the unsure threshold, the answer is
"unsure": `label` None, `scores` and `top` kept as suggestions. The threshold
comes from, last one winning: the manifest, env UNSURE_THRESHOLD, the
`unsure_threshold=` of `Classifier.load` (the CLI flag), and the
`unsure_threshold=` of a predict call (the Lambda request field).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inference._bundle import Manifest, read_bundle
from inference._decode import DEFAULT_MAX_PIXELS, decode_image, load_image
from inference._errors import BundleError
from inference._runtime import RUNTIMES, RuntimeInfo, make_interpreter
from inference._timing import Laps
from inference.env import env_choice, env_fraction, env_int, env_str
from inference.preprocess import preprocess_image


@dataclass(frozen=True)
class InferenceConfig:
    """Runtime settings; `from_env` reads the env vars named in README."""

    model_dir: Path = Path("model")
    num_threads: int | None = None
    runtime: str | None = None  # None: from the bundle's format (inference/_runtime.py)
    max_pixels: int = DEFAULT_MAX_PIXELS
    unsure_threshold: float | None = None  # None: the manifest's

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        if self.num_threads is not None and not _is_int(self.num_threads, minimum=1):
            raise ValueError(
                "`num_threads` must be >= 1 (an int; None: the runtime's default). "
                f"Received: num_threads={self.num_threads!r}"
            )
        if not _is_int(self.max_pixels, minimum=1):
            raise ValueError(
                f"`max_pixels` must be an int >= 1. Received: max_pixels={self.max_pixels!r}"
            )
        if self.unsure_threshold is not None:
            check_unsure_threshold(self.unsure_threshold)
        if self.runtime is not None and self.runtime not in RUNTIMES:
            raise ValueError(
                f"`runtime` must be one of {sorted(RUNTIMES)} or None (from the bundle's "
                f"format). Received: runtime={self.runtime!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> InferenceConfig:
        """Settings from env MODEL_DIR, INFERENCE_THREADS, INFERENCE_RUNTIME,
        MAX_IMAGE_PIXELS and UNSURE_THRESHOLD; `overrides` that are not None win.

        Args:
            environ: where to read the variables (tests pass a dict).
            **overrides: field name -> value (e.g. CLI flags); None keeps the env's.

        Returns:
            A validated `InferenceConfig`. Unset or empty env vars keep the field
            defaults.

        Raises:
            ValueError: INFERENCE_THREADS or MAX_IMAGE_PIXELS is not an integer
                >= 1 (MAX_IMAGE_PIXELS=0 is an error, not the default), or
                UNSURE_THRESHOLD (or an `unsure_threshold` override) is not a
                number from 0 to 1; the message names the variable and echoes it.
            TypeError: an override names no field.
        """
        readers: dict[str, Callable[[], Any]] = {
            "model_dir": lambda: Path(env_str(environ, "MODEL_DIR") or "model"),
            "num_threads": lambda: env_int(environ, "INFERENCE_THREADS", minimum=1),
            "runtime": lambda: env_choice(environ, "INFERENCE_RUNTIME", choices=sorted(RUNTIMES)),
            "max_pixels": lambda: env_int(environ, "MAX_IMAGE_PIXELS", minimum=1),
            "unsure_threshold": lambda: env_fraction(environ, "UNSURE_THRESHOLD"),
        }
        # An overridden field's variable is not read: a flag wins over a bad env value too.
        values = {k: read() for k, read in readers.items() if overrides.get(k) is None}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: v for k, v in values.items() if v is not None})


def _is_int(value: object, *, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_unsure_threshold(value: Any, *, name: str = "unsure_threshold") -> float:
    """A number in [0, 1] (0: always answer, 1: unsure unless certain); else ValueError."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be a number from 0 to 1. Received: {name}={value!r}")
    return float(value) + 0.0  # -0.0 (JSON allows it) is 0.0, and echoed as 0.0


@dataclass(frozen=True)
class Prediction:
    """One image's answer. `probabilities` are calibrated: softmax(logits / temperature)."""

    labels: tuple[str, ...]
    logits: tuple[float, ...]
    probabilities: tuple[float, ...]
    top_k: int = 3
    extra: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    unsure_threshold: float | None = None  # None: always answer

    @property
    def best_label(self) -> str:
        """The most likely class, answered or not."""
        return self.labels[int(np.argmax(self.logits))]

    @property
    def confidence(self) -> float:
        """The top calibrated probability: what the threshold is compared with."""
        return max(self.probabilities)

    @property
    def unsure(self) -> bool:
        """True when a threshold applies and `confidence` is below it."""
        return self.unsure_threshold is not None and self.confidence < self.unsure_threshold

    @property
    def label(self) -> str | None:
        """The answer: the best class, or None when unsure."""
        return None if self.unsure else self.best_label

    def top(self, k: int | None = None) -> list[dict[str, Any]]:
        """The `k` most likely classes, best first.

        Args:
            k: how many (None: `top_k`); more than the number of classes gives all.

        Returns:
            `[{"label": str, "score": float, "logit": float}, ...]`, score being
            the calibrated probability in [0, 1].
        """
        k = self.top_k if k is None else k
        # Ordered by logit, as `best_label`: the same order as the scores for any
        # T > 0, and still the model's order where scores round to a tie (a huge T).
        order = sorted(range(len(self.labels)), key=lambda i: -self.logits[i])[:k]
        return [
            {"label": self.labels[i], "score": self.probabilities[i], "logit": self.logits[i]}
            for i in order
        ]

    def to_dict(self) -> dict[str, Any]:
        """{"label": str | None, "unsure", "confidence", "unsure_threshold", "scores",
        "logits", "top": [{"label", "score", "logit"}, ...]}; scores are calibrated."""
        return {
            "label": self.label,
            "unsure": self.unsure,
            "confidence": self.confidence,
            "unsure_threshold": self.unsure_threshold,
            "scores": dict(zip(self.labels, self.probabilities, strict=True)),
            "logits": dict(zip(self.labels, self.logits, strict=True)),
            "top": self.top(),
        }


def softmax(logits: np.ndarray, *, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature) of a (k,) vector, float64 (Guo et al. 2017, eq. 9)."""
    scaled = logits.astype(np.float64) / temperature
    exp = np.exp(scaled - np.max(scaled))
    return exp / exp.sum()  # type: ignore[no-any-return]


log = logging.getLogger("inference")
_warned_uncalibrated: set[str] = set()  # model sha256s already reported


def _warn_if_uncalibrated(manifest: Manifest) -> None:
    """Bundles made before calibration load with T = 1 and no threshold; say so once."""
    if manifest.calibrated or manifest.model_sha256 in _warned_uncalibrated:
        return
    _warned_uncalibrated.add(manifest.model_sha256)
    log.warning(
        "bundle %s (%s) has no temperature: it was made before calibration, so scores are "
        "uncalibrated softmax (T = 1) and no unsure threshold applies unless one is set "
        "(UNSURE_THRESHOLD, --unsure-threshold, unsure_threshold). Re-run `python -m train` "
        "and `python -m convert` to calibrate.",
        manifest.variant,
        manifest.model_sha256[:12],
    )


class Classifier:
    """Load once, predict many times. Not thread-safe (one interpreter)."""

    def __init__(
        self,
        manifest: Manifest,
        interpreter: Any,
        runtime: RuntimeInfo,
        *,
        max_pixels: int,
        unsure_threshold: float | None = None,
    ) -> None:
        self.manifest = manifest
        self.runtime = runtime
        self.max_pixels = max_pixels
        _warn_if_uncalibrated(manifest)
        self.temperature = 1.0 if manifest.temperature is None else manifest.temperature
        # An override (env, CLI flag) beats the manifest; None keeps the manifest's.
        self.unsure_threshold = (
            manifest.unsure_threshold
            if unsure_threshold is None
            else check_unsure_threshold(unsure_threshold)
        )
        self._interpreter = interpreter
        self._input = interpreter.get_input_details()[0]
        self._output = interpreter.get_output_details()[0]
        self._check_shapes()

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        *,
        num_threads: int | None = None,
        runtime: str | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        verify: bool = True,
        unsure_threshold: float | None = None,
    ) -> Classifier:
        """Read a bundle folder and build its interpreter.

        Args:
            model_dir: the bundle folder (`manifest.json` + `model.tflite`, or
                `model.onnx` for an ONNX bundle, as written by `python -m convert`).
            num_threads: interpreter threads, >= 1 (None: the runtime's default);
                for ONNX Runtime, its intra-op threads.
            runtime: a `RUNTIMES` key that runs the bundle's format: for a
                TFLite bundle "ai-edge-litert", "tflite-runtime" or "tensorflow",
                for an ONNX bundle "onnxruntime"; None picks from the manifest's
                `format` (TFLite: tried in `RUNTIME_ORDER`).
            max_pixels: width x height cap for `predict_bytes` / `predict_file`,
                checked from the image header before decoding.
            verify: check the model's sha256 against the manifest (the model is
                read in full either way).
            unsure_threshold: in [0, 1]; overrides the manifest's for every
                prediction (None: keep the manifest's).

        Returns:
            A `Classifier` whose input is (1, image_size, image_size, 3) and
            whose output has one logit per manifest label.

        Raises:
            BundleError: the folder or one of its files is missing, the manifest
                is invalid, the sha256 does not match, or the model's input or
                output shape disagrees with the manifest.
            RuntimeUnavailableError: `runtime` does not run the bundle's format,
                or no runtime (or not the one asked for) can be imported or load
                the model; the message lists each reason.
            ValueError: `num_threads` < 1, an unknown `runtime`, or
                `unsure_threshold` outside [0, 1].
        """
        bundle = read_bundle(model_dir, verify=verify)
        interpreter, info = make_interpreter(
            bundle.model_bytes,
            num_threads=num_threads,
            runtime=runtime,
            model_format=bundle.manifest.format,
        )
        return cls(
            bundle.manifest,
            interpreter,
            info,
            max_pixels=max_pixels,
            unsure_threshold=unsure_threshold,
        )

    @classmethod
    def from_config(cls, config: InferenceConfig) -> Classifier:
        """`Classifier.load` with the settings of `config` (same errors)."""
        return cls.load(
            config.model_dir,
            num_threads=config.num_threads,
            runtime=config.runtime,
            max_pixels=config.max_pixels,
            unsure_threshold=config.unsure_threshold,
        )

    def _check_shapes(self) -> None:
        size = self.manifest.image_size
        in_shape = tuple(int(d) for d in self._input["shape"])
        out_shape = tuple(int(d) for d in self._output["shape"])
        if in_shape[1:] != (size, size, 3):
            raise BundleError(
                f"Model input shape {in_shape} does not match the manifest's "
                f"image_size={size} (expected (1, {size}, {size}, 3))."
            )
        if out_shape[-1] != len(self.manifest.labels):
            raise BundleError(
                f"Model has {out_shape[-1]} outputs but the manifest lists "
                f"{len(self.manifest.labels)} labels."
            )

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw model output for one preprocessed image.

        Args:
            x: float array (image_size, image_size, 3) or (1, image_size,
                image_size, 3) in [-1, 1], as `preprocess` returns; quantized
                to the model's input dtype here (int8 bundles).

        Returns:
            float32 logits, shape (n_classes,), in manifest label order
            (dequantized for int8 outputs); uncalibrated.

        Raises:
            ValueError (or the runtime's own error): `x` does not have the
                model's input shape.
        """
        batch = x[np.newaxis] if x.ndim == 3 else x
        self._interpreter.set_tensor(self._input["index"], _quantize(batch, self._input))
        self._interpreter.invoke()
        out = np.asarray(self._interpreter.get_tensor(self._output["index"]))
        logits: np.ndarray = _dequantize(out, self._output)[0]
        return logits

    def predict_array(
        self, x: np.ndarray, *, top_k: int = 3, unsure_threshold: float | None = None
    ) -> Prediction:
        """Classify one preprocessed image.

        Args:
            x: float32 array (image_size, image_size, 3) in [-1, 1] (see
                `preprocess`); (1, H, W, 3) works too.
            top_k: how many classes `Prediction.top()` lists.
            unsure_threshold: this call's threshold in [0, 1] (e.g. a request
                field), over the classifier's; None keeps the classifier's.

        Returns:
            A `Prediction`: logits, and probabilities = softmax(logits / T)
            with the bundle's temperature T (Guo et al. 2017).

        Raises:
            ValueError: `unsure_threshold` is not a number in [0, 1].
        """
        threshold = (
            self.unsure_threshold
            if unsure_threshold is None
            else check_unsure_threshold(unsure_threshold)
        )
        logits = self.logits(x)
        return Prediction(
            labels=self.manifest.labels,
            logits=tuple(float(v) for v in logits),
            probabilities=tuple(float(v) for v in softmax(logits, temperature=self.temperature)),
            top_k=top_k,
            temperature=self.temperature,
            unsure_threshold=threshold,
        )

    def preprocess(self, img: Image.Image) -> np.ndarray:
        """RGB image -> float32 (image_size, image_size, 3) in [-1, 1] (Xception's).

        Raises:
            ValueError: `img` is not mode "RGB" (decode with `decode_image`).
        """
        return preprocess_image(img, image_size=self.manifest.image_size)

    def predict_image(
        self, img: Image.Image, *, top_k: int = 3, unsure_threshold: float | None = None
    ) -> Prediction:
        """Classify a decoded image: `preprocess`, then `predict_array`.

        Args:
            img: a `PIL.Image` in mode "RGB", any size (resized with NEAREST to
                the manifest's image_size).
            top_k: how many classes `Prediction.top()` lists.
            unsure_threshold: this call's threshold in [0, 1]; None keeps the
                classifier's.

        Returns:
            A `Prediction` (see `predict_array`).

        Raises:
            ValueError: `img` is not RGB, or `unsure_threshold` is out of [0, 1].
        """
        return self.predict_array(
            self.preprocess(img), top_k=top_k, unsure_threshold=unsure_threshold
        )

    def predict_bytes(
        self,
        data: bytes,
        *,
        top_k: int = 3,
        unsure_threshold: float | None = None,
        timings_ms: dict[str, float] | None = None,
    ) -> Prediction:
        """Classify an encoded image (JPEG, PNG, GIF, WebP, BMP; AVIF/HEIC if installed).

        Args:
            data: the file's bytes; the format is sniffed from them.
            top_k: how many classes `Prediction.top()` lists.
            unsure_threshold: this call's threshold in [0, 1]; None keeps the
                classifier's.
            timings_ms: if given, receives the wall milliseconds of each step
                as it ends ("decode", "preprocess", "inference"), so a caller
                that logs them (the Lambda handler) needs no copy of these
                steps; a step that raised is absent.

        Returns:
            A `Prediction` (see `predict_array`).

        Raises:
            UnsupportedFormatError, ImageTooLargeError (over `max_pixels`),
                CorruptImageError: from `decode_image`, for bytes that are not
                an image this runtime decodes.
            ValueError: `unsure_threshold` is out of [0, 1].
        """
        lap = Laps(timings_ms).lap
        img = decode_image(data, max_pixels=self.max_pixels)
        lap("decode")
        x = self.preprocess(img)
        lap("preprocess")
        prediction = self.predict_array(x, top_k=top_k, unsure_threshold=unsure_threshold)
        lap("inference")
        return prediction

    def predict_file(
        self, path: str | Path, *, top_k: int = 3, unsure_threshold: float | None = None
    ) -> Prediction:
        """Classify an image file (format from its bytes, not its name).

        Args:
            path: the image file.
            top_k: how many classes `Prediction.top()` lists.
            unsure_threshold: this call's threshold in [0, 1]; None keeps the
                classifier's.

        Returns:
            A `Prediction` (see `predict_array`).

        Raises:
            FileNotFoundError: the file cannot be read (message names it).
            UnsupportedFormatError, ImageTooLargeError, CorruptImageError: as
                `predict_bytes`.
            ValueError: `unsure_threshold` is out of [0, 1].
        """
        img = load_image(path, max_pixels=self.max_pixels)
        return self.predict_image(img, top_k=top_k, unsure_threshold=unsure_threshold)


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x.astype(np.float32, copy=False)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.rint(x / scale + zero_point)
    return np.asarray(np.clip(q, info.min, info.max), dtype=dtype)


def _dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y
    scale, zero_point = detail["quantization"]
    return (y.astype(np.float32) - zero_point) * scale  # type: ignore[no-any-return]
