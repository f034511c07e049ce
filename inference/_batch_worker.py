"""Worker side of `python -m inference batch`: a `Classifier` per process, input in, row out.

Each worker is a spawned interpreter (its own runtime, its own threads); the
parent sends it a path (read here) or fetched bytes and gets a row back.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

from inference._batch_io import Row
from inference._classifier import Classifier, InferenceConfig, Prediction
from inference._errors import InferenceError

PARENT_CHECK_S = 0.5  # how soon an orphaned worker notices and exits
_classifier: Classifier | None = None
_model_id = ""


def init_worker(config: InferenceConfig, model_id: str) -> None:
    """Pool initializer: load this process's `Classifier` (settings in `config`)."""
    global _classifier, _model_id
    # Ctrl-C reaches the whole process group; the parent stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A parent killed by SIGKILL cannot stop us, and its pipes need not close
    # (siblings hold their ends): leave when it is gone (our parent changes).
    parent = os.getppid()
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    _classifier = _quietly(Classifier.from_config, config)
    _model_id = model_id


def _quietly(load: Callable[[InferenceConfig], Classifier], config: InferenceConfig) -> Classifier:
    """`load(config)` with fd 2 on /dev/null: the runtime's C++ "INFO: Created TensorFlow Lite
    XNNPACK delegate" line, once per worker, would break the progress bar. The parent
    loaded the same bundle first with stderr open, so a real problem was shown there."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        return load(config)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


def classify(item: str, data: bytes | None) -> Row:
    """Classify the file `item` (or its fetched bytes `data`) -> its row; never raises."""
    assert _classifier is not None, "worker used before init_worker"
    try:
        if data is None:
            if "\x00" in item:  # no file system has such a name; open() says ValueError
                return error_row(
                    item, "FILE_NOT_FOUND", "A path cannot hold a NUL byte.", model=_model_id
                )
            prediction = _classifier.predict_file(item)
        else:
            prediction = _classifier.predict_bytes(data)
    except InferenceError as exc:
        return error_row(item, exc.code, str(exc), model=_model_id)
    except FileNotFoundError as exc:
        return error_row(item, "FILE_NOT_FOUND", str(exc), model=_model_id)
    except Exception as exc:  # a bug on one image must not stop a million-image run
        return error_row(item, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}", model=_model_id)
    return prediction_row(item, prediction, model=_model_id)


def prediction_row(item: str, prediction: Prediction, *, model: str) -> Row:
    """A classified input's row: label (None when unsure), unsure, confidence, scores."""
    return {
        "input": item,
        "label": prediction.label,
        "unsure": prediction.unsure,
        "confidence": prediction.confidence,
        "scores": dict(zip(prediction.labels, prediction.probabilities, strict=True)),
        "error": None,
        "model": model,
    }


def error_row(item: str, code: str, message: str, *, model: str) -> Row:
    """A bad input's row: `error` {code, message}, no label or scores."""
    return {
        "input": item,
        "label": None,
        "unsure": None,
        "confidence": None,
        "scores": None,
        "error": {"code": code, "message": message},
        "model": model,
    }
