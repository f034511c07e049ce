"""ONNX Runtime behind the TFLite interpreter's calls, so one `Classifier` serves both.

`OnnxInterpreter(model_content=..., num_threads=...)` answers the subset of
`ai_edge_litert.interpreter.Interpreter` that the runtime, the conversion check
and the bench call: `allocate_tensors`, `get_input_details`,
`get_output_details`, `set_tensor`, `invoke`, `get_tensor`. Input and output
are float32 in every ONNX bundle (convert/_onnx.py), so the details carry
dtype float32 and no quantization, and `Classifier` feeds and reads them as it
does a float32 .tflite.

Importing this module does not import onnxruntime; building an
`OnnxInterpreter` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class OnnxInterpreter:
    """One `onnxruntime.InferenceSession` on the CPU, with TFLite's method names.

    Not thread-safe, like the TFLite interpreter it stands in for.
    """

    def __init__(self, *, model_content: bytes, num_threads: int | None = None) -> None:
        """Build the session from a serialized ONNX model.

        Args:
            model_content: the bytes of `model.onnx`.
            num_threads: ONNX Runtime's intra-op threads, >= 1 (None: its
                default, one per physical core). Inter-op stays sequential:
                the model is one chain of ops at batch 1.

        Raises:
            ValueError: `num_threads` < 1.
            onnxruntime's own errors (InvalidProtobuf, Fail, ...): the bytes are
                not a model it can load; `make_interpreter` turns them into
                `RuntimeUnavailableError`.
        """
        import onnxruntime as ort  # deferred: only ONNX bundles pay for it

        if num_threads is not None and num_threads < 1:
            raise ValueError(f"`num_threads` must be >= 1. Received: num_threads={num_threads}")
        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        # ONNX Runtime's pool threads spin between ops waiting for work (onnxruntime
        # docs, "Thread management"). When another process holds a core, the spinning
        # thread competes with it: on this 2-core machine, with about one core busy
        # elsewhere, 2 threads took 55 ms per image spinning and 35 ms not
        # (`python -m bench.onnx`, README "ONNX Runtime").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings are not the product's
        self._session = ort.InferenceSession(
            model_content, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.num_threads = num_threads
        self._inputs = self._session.get_inputs()
        self._outputs = self._session.get_outputs()
        self._feed: dict[str, np.ndarray] = {}
        self._results: list[np.ndarray] = []

    def allocate_tensors(self) -> None:
        """Nothing to do: the session sizes its buffers on each run."""

    def get_input_details(self) -> list[dict[str, Any]]:
        """[{"name", "index", "shape", "dtype", "quantization"}] per input, as TFLite gives."""
        return [_details(i, arg) for i, arg in enumerate(self._inputs)]

    def get_output_details(self) -> list[dict[str, Any]]:
        """[{"name", "index", "shape", "dtype", "quantization"}] per output, as TFLite gives."""
        return [_details(i, arg) for i, arg in enumerate(self._outputs)]

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        """Stage input `index` (from `get_input_details`) for the next `invoke`."""
        self._feed[self._inputs[index].name] = value

    def invoke(self) -> None:
        """Run the model on the staged inputs."""
        self._results = self._session.run(None, self._feed)

    def get_tensor(self, index: int) -> np.ndarray:
        """Output `index` (from `get_output_details`) of the last `invoke`."""
        return np.asarray(self._results[index])


_DTYPES = {"tensor(float)": np.float32}


def _details(index: int, arg: Any) -> dict[str, Any]:
    # A symbolic (batch) dimension reads 1: the classifier feeds one image.
    shape = np.array([d if isinstance(d, int) else 1 for d in arg.shape], dtype=np.int32)
    return {
        "name": arg.name,
        "index": index,
        "shape": shape,
        "dtype": _DTYPES.get(arg.type, arg.type),
        "quantization": (0.0, 0),
    }
