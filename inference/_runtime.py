"""Pick an interpreter for a bundle's format.

TFLite bundles: ai-edge-litert, then tflite-runtime, then tf.lite (TensorFlow is
only tried last and only if installed). ONNX bundles: onnxruntime (the `onnx`
extra), wrapped in inference/_ort.py so that it answers the TFLite
interpreter's calls. Importing this module imports none of them.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
from dataclasses import dataclass
from typing import Any

from inference._errors import RuntimeUnavailableError
from inference._quiet import VERBOSE_ENV, native_stderr_silenced

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
    # The module is imported to prove onnxruntime loads; the class built is the
    # adapter `_ort.OnnxInterpreter` (see ADAPTERS).
    "onnxruntime": ("onnxruntime", "InferenceSession", ("onnxruntime",)),
}
DEFAULT_ORDER = ("ai-edge-litert", "tflite-runtime", "tensorflow")
# Bundle format (the manifest's `format`) -> the runtimes that run it, in the order tried.
FORMAT_RUNTIMES: dict[str, tuple[str, ...]] = {
    "tflite": DEFAULT_ORDER,
    "onnx": ("onnxruntime",),
}
# Runtimes whose interpreter is our adapter rather than the module's class.
ADAPTERS = {"onnxruntime": ("inference._ort", "OnnxInterpreter")}


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
        name: a `RUNTIMES` key: "ai-edge-litert", "tflite-runtime", "tensorflow"
            or "onnxruntime".

    Returns:
        (the Interpreter class, its `RuntimeInfo`). Every class is called as
        `cls(model_content=bytes, num_threads=int | None)`; for "onnxruntime"
        it is `inference._ort.OnnxInterpreter`, which takes ONNX bytes.

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
        hint = " (pip install '.[serve,onnx]')" if name == "onnxruntime" else ""
        raise RuntimeUnavailableError(f"Runtime {name!r} cannot be imported: {exc}{hint}") from None
    if name in ADAPTERS:
        adapter_module, adapter_class = ADAPTERS[name]
        found = getattr(importlib.import_module(adapter_module), adapter_class)
    return found, RuntimeInfo(name=name, version=_version(dists))


def _quiet_native() -> contextlib.AbstractContextManager[None]:
    """Silence fd 2 while a runtime loads a model, unless env CLOTHING_VERBOSE=1."""
    if os.environ.get(VERBOSE_ENV, "") == "1":
        return contextlib.nullcontext()
    return native_stderr_silenced()


def _article(word: str) -> str:
    """ "an" before a vowel ("an 'onnx' bundle"), else "a" ("a 'tflite' bundle")."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def runtime_order(model_format: str, runtime: str | None = None) -> tuple[str, ...]:
    """The runtimes to try for a bundle format, or only `runtime` when it can run it.

    Args:
        model_format: the manifest's `format`: "tflite" or "onnx".
        runtime: a `RUNTIMES` key asked for (INFERENCE_RUNTIME, --runtime); None
            gives the format's whole order (`FORMAT_RUNTIMES`).

    Returns:
        A non-empty tuple of `RUNTIMES` keys.

    Raises:
        ValueError: an unknown `runtime` or `model_format`.
        RuntimeUnavailableError: `runtime` does not run this format (e.g.
            onnxruntime asked for a .tflite bundle); the message names both
            and the runtimes that would.
    """
    if model_format not in FORMAT_RUNTIMES:
        raise ValueError(
            f"`model_format` must be one of {sorted(FORMAT_RUNTIMES)}. "
            f"Received: model_format={model_format!r}"
        )
    if runtime is None:
        return FORMAT_RUNTIMES[model_format]
    if runtime not in RUNTIMES:
        raise ValueError(
            f"`runtime` must be one of {sorted(RUNTIMES)}. Received: runtime={runtime!r}"
        )
    if runtime not in FORMAT_RUNTIMES[model_format]:
        raise RuntimeUnavailableError(
            f"Runtime {runtime!r} cannot run {_article(model_format)} {model_format!r} bundle; "
            "for this bundle "
            f"use one of {list(FORMAT_RUNTIMES[model_format])} (INFERENCE_RUNTIME, "
            f"--runtime), or leave it unset to choose from the bundle's format."
        )
    return (runtime,)


def make_interpreter(
    model_content: bytes,
    *,
    num_threads: int | None = None,
    runtime: str | None = None,
    model_format: str = "tflite",
) -> tuple[Any, RuntimeInfo]:
    """Build and allocate an interpreter from the first runtime that loads the model.

    Args:
        model_content: a `.tflite` flatbuffer, or an ONNX model's bytes.
        num_threads: interpreter threads, >= 1 (None: the runtime's default);
            ONNX Runtime's intra-op threads.
        runtime: try only this `RUNTIMES` key; None tries the format's order
            (`FORMAT_RUNTIMES`: `DEFAULT_ORDER` for "tflite").
        model_format: "tflite" or "onnx" (the manifest's `format`).

    Returns:
        (an allocated Interpreter, the `RuntimeInfo` of the runtime that loaded it).

    Raises:
        ValueError: `num_threads` < 1, an unknown `runtime` or `model_format`.
        RuntimeUnavailableError: `runtime` does not run `model_format`, or no
            runtime tried could be imported or load the model; the message
            lists one reason per runtime.
    """
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"`num_threads` must be >= 1. Received: num_threads={num_threads}")
    order = runtime_order(model_format, runtime or None)
    errors: list[str] = []
    for name in order:
        try:
            cls, info = interpreter_class(name)
        except RuntimeUnavailableError as exc:
            errors.append(str(exc))
            continue
        try:
            # TFLite prints "INFO: Created TensorFlow Lite XNNPACK delegate for
            # CPU." from C++ on every load: not the product's line (issue 14,
            # item 9). Failures still raise, with their message, below.
            with _quiet_native():
                interpreter = cls(model_content=model_content, num_threads=num_threads)
                interpreter.allocate_tensors()
        except Exception as exc:  # each runtime raises its own types (ValueError, RuntimeError)
            errors.append(f"{name} {info.version} cannot load the model: {exc}")
            continue
        return interpreter, info
    kind = "ONNX" if model_format == "onnx" else "TFLite"
    raise RuntimeUnavailableError(
        f"No {kind} runtime could load the model:\n  " + "\n  ".join(errors)
    )
