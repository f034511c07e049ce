"""`Classifier`: a loaded bundle plus interpreter; image in, class scores out."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inference._bundle import Manifest, read_bundle
from inference._decode import DEFAULT_MAX_PIXELS, decode_image, load_image
from inference._errors import BundleError
from inference._runtime import RuntimeInfo, make_interpreter
from inference.preprocess import preprocess_image


@dataclass(frozen=True)
class InferenceConfig:
    """Runtime settings; `from_env` reads the env vars named in README."""

    model_dir: Path = Path("model")
    num_threads: int | None = None
    runtime: str | None = None  # None: ai-edge-litert, then tflite-runtime, then tf.lite
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def from_env(cls, **overrides: Any) -> InferenceConfig:
        env = os.environ
        values: dict[str, Any] = {
            "model_dir": Path(env.get("MODEL_DIR", "model")),
            "num_threads": _int_env("INFERENCE_THREADS"),
            "runtime": env.get("INFERENCE_RUNTIME") or None,
            "max_pixels": _int_env("MAX_IMAGE_PIXELS") or DEFAULT_MAX_PIXELS,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _int_env(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"Env var {name} must be an integer. Received: {name}={raw!r}") from None


@dataclass(frozen=True)
class Prediction:
    labels: tuple[str, ...]
    logits: tuple[float, ...]
    probabilities: tuple[float, ...]
    top_k: int = 3
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.labels[int(np.argmax(self.logits))]

    def top(self, k: int | None = None) -> list[dict[str, Any]]:
        k = self.top_k if k is None else k
        order = sorted(range(len(self.labels)), key=lambda i: -self.probabilities[i])[:k]
        return [
            {"label": self.labels[i], "probability": self.probabilities[i], "logit": self.logits[i]}
            for i in order
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "scores": dict(zip(self.labels, self.probabilities, strict=True)),
            "logits": dict(zip(self.labels, self.logits, strict=True)),
            "top": self.top(),
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - np.max(logits)
    exp = np.exp(shifted)
    return exp / exp.sum()  # type: ignore[no-any-return]


class Classifier:
    """Load once, predict many times. Not thread-safe (one interpreter)."""

    def __init__(
        self, manifest: Manifest, interpreter: Any, runtime: RuntimeInfo, *, max_pixels: int
    ) -> None:
        self.manifest = manifest
        self.runtime = runtime
        self.max_pixels = max_pixels
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
    ) -> Classifier:
        bundle = read_bundle(model_dir, verify=verify)
        interpreter, info = make_interpreter(
            bundle.model_bytes, num_threads=num_threads, runtime=runtime
        )
        return cls(bundle.manifest, interpreter, info, max_pixels=max_pixels)

    @classmethod
    def from_config(cls, config: InferenceConfig) -> Classifier:
        return cls.load(
            config.model_dir,
            num_threads=config.num_threads,
            runtime=config.runtime,
            max_pixels=config.max_pixels,
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
        """Preprocessed array (H, W, 3) or (1, H, W, 3) -> logits (n_classes,)."""
        batch = x[np.newaxis] if x.ndim == 3 else x
        self._interpreter.set_tensor(self._input["index"], _quantize(batch, self._input))
        self._interpreter.invoke()
        out = np.asarray(self._interpreter.get_tensor(self._output["index"]))
        logits: np.ndarray = _dequantize(out, self._output)[0]
        return logits

    def predict_array(self, x: np.ndarray, *, top_k: int = 3) -> Prediction:
        logits = self.logits(x)
        return Prediction(
            labels=self.manifest.labels,
            logits=tuple(float(v) for v in logits),
            probabilities=tuple(float(v) for v in softmax(logits)),
            top_k=top_k,
        )

    def preprocess(self, img: Image.Image) -> np.ndarray:
        return preprocess_image(img, image_size=self.manifest.image_size)

    def predict_image(self, img: Image.Image, *, top_k: int = 3) -> Prediction:
        return self.predict_array(self.preprocess(img), top_k=top_k)

    def predict_bytes(self, data: bytes, *, top_k: int = 3) -> Prediction:
        return self.predict_image(decode_image(data, max_pixels=self.max_pixels), top_k=top_k)

    def predict_file(self, path: str | Path, *, top_k: int = 3) -> Prediction:
        return self.predict_image(load_image(path, max_pixels=self.max_pixels), top_k=top_k)


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
