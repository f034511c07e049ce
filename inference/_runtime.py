"""Pick a TFLite interpreter: ai-edge-litert, then tflite-runtime, then tf.lite.

TensorFlow is only tried last and only if installed; importing this module
imports none of them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from typing import Any

from inference._errors import RuntimeUnavailableError

# name -> (module, attribute path to the Interpreter class, distributions to report a version for)
RUNTIMES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ai-edge-litert": (
        "ai_edge_litert.interpreter",
        "Interpreter",
        ("ai-edge-litert", "ai-edge-litert-nightly"),
    ),
    "tflite-runtime": ("tflite_runtime.interpreter", "Interpreter", ("tflite-runtime",)),
    # tf.lite is a lazily loaded attribute of tensorflow, not an importable module.
    "tensorflow": ("tensorflow", "lite.Interpreter", ("tensorflow", "tensorflow-cpu")),
}
DEFAULT_ORDER = ("ai-edge-litert", "tflite-runtime", "tensorflow")


@dataclass(frozen=True)
class RuntimeInfo:
    """Which TFLite runtime serves: its `RUNTIMES` key and installed version ("unknown" if none)."""

    name: str
    version: str


def _version(distributions: tuple[str, ...]) -> str:
    for dist in distributions:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def interpreter_class(name: str) -> tuple[Any, RuntimeInfo]:
    """Import one runtime's Interpreter class.

    Args:
        name: a `RUNTIMES` key: "ai-edge-litert", "tflite-runtime" or "tensorflow".

    Returns:
        (the Interpreter class, its `RuntimeInfo`).

    Raises:
        ValueError: `name` is not a `RUNTIMES` key.
        RuntimeUnavailableError: the module cannot be imported (missing, or a
            numpy ABI error); the message gives the reason.
    """
    if name not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {sorted(RUNTIMES)}. Received: runtime={name!r}")
    module_name, attribute, dists = RUNTIMES[name]
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except Exception as exc:  # ImportError, or numpy ABI errors (tflite-runtime 2.14 + numpy 2)
        raise RuntimeUnavailableError(
            f"TFLite runtime {name!r} cannot be imported: {exc}"
        ) from None
    return found, RuntimeInfo(name=name, version=_version(dists))


def make_interpreter(
    model_content: bytes, *, num_threads: int | None = None, runtime: str | None = None
) -> tuple[Any, RuntimeInfo]:
    """Build and allocate an interpreter from the first runtime that loads the model.

    Args:
        model_content: a `.tflite` flatbuffer.
        num_threads: interpreter threads, >= 1 (None: the runtime's default).
        runtime: try only this `RUNTIMES` key; None tries `DEFAULT_ORDER`.

    Returns:
        (an allocated Interpreter, the `RuntimeInfo` of the runtime that loaded it).

    Raises:
        ValueError: `num_threads` < 1 or an unknown `runtime`.
        RuntimeUnavailableError: no runtime tried could be imported or load the
            model; the message lists one reason per runtime.
    """
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"`num_threads` must be >= 1. Received: num_threads={num_threads}")
    order = (runtime,) if runtime else DEFAULT_ORDER
    errors: list[str] = []
    for name in order:
        try:
            cls, info = interpreter_class(name)
        except RuntimeUnavailableError as exc:
            errors.append(str(exc))
            continue
        try:
            interpreter = cls(model_content=model_content, num_threads=num_threads)
            interpreter.allocate_tensors()
        except Exception as exc:  # each runtime raises its own types (ValueError, RuntimeError)
            errors.append(f"{name} {info.version} cannot load the model: {exc}")
            continue
        return interpreter, info
    raise RuntimeUnavailableError(
        "No TFLite runtime could load the model:\n  " + "\n  ".join(errors)
    )
