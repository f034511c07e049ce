"""Which installed runtimes load a bundle, and loading one quietly.

`loads_with` builds and allocates an interpreter under one named runtime and
keeps that runtime's own refusal text: the check's "loads with" column.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

from convert._results import RuntimeLoad
from inference import (
    FORMAT_RUNTIMES,
    RUNTIMES,
    Classifier,
    RuntimeUnavailableError,
    interpreter_class,
)

# tf.lite.Interpreter warns of its deprecation on every construction; the
# report's runtime column already says which interpreter this is.
TF_LITE_DEPRECATION = r".*tf\.lite\.Interpreter is deprecated"


def load_classifier(directory: Path, *, threads: int, runtime: str | None) -> Classifier:
    """`Classifier.load` without tf.lite's deprecation warning (raises InferenceError)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TF_LITE_DEPRECATION)
        return Classifier.load(directory, num_threads=threads, runtime=runtime)


def loads_with(name: str, model_content: bytes) -> RuntimeLoad:
    """Try one runtime: build and allocate an interpreter; keep its own error text."""
    top_module = RUNTIMES[name][0].split(".")[0]
    if importlib.util.find_spec(top_module) is None:
        return RuntimeLoad(runtime=name, status="not installed")
    try:
        cls, info = interpreter_class(name)
    except RuntimeUnavailableError as exc:  # installed but broken, e.g. a numpy ABI clash
        return RuntimeLoad(runtime=name, status="error", error=str(exc))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=TF_LITE_DEPRECATION)
            interpreter = cls(model_content=model_content, num_threads=1)
        interpreter.allocate_tensors()
    except Exception as exc:  # each runtime raises its own types (ValueError, RuntimeError)
        return RuntimeLoad(
            runtime=name, status="error", version=info.version, error=str(exc).strip()
        )
    return RuntimeLoad(runtime=name, status="ok", version=info.version)


def serving_runtime(runtime: str | None, model_format: str) -> str | None:
    """`runtime` for bundles of a format it runs; None (the format's own) for the others.

    `--runtime tflite-runtime` then still checks an ONNX bundle (with onnxruntime)
    instead of stopping at the mismatch that `Classifier.load` reports.
    """
    return runtime if runtime in FORMAT_RUNTIMES[model_format] else None
