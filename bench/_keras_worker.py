"""A Keras model in its own process, with its own thread count, timed on request.

    python -m bench._keras_worker --model train/model.keras --image x.jpg --threads 1

TensorFlow reads its thread-pool sizes once, when it initialises, so each
thread count needs a fresh process (TF guide, `tf.config.threading`). The
parent (bench/_latency.py) talks over stdin/stdout, one JSON line each way:

    <- {"ready": true, "intra_op": 1, "inter_op": 1, "tensorflow": "2.21.0"}
    -> run 5
    <- {"call": [ms, ...], "predict": [ms, ...], "graph": [ms, ...]}

call: `model(x, training=False)`, which Keras 3 runs eagerly, op by op;
predict: `model.predict(x, verbose=0)`, a compiled step behind a per-call data
pipeline; graph: `tf.function(model)`, the compiled graph called directly
(what a TensorFlow server that exports a graph runs: the fairest baseline).
    -> quit
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._keras_worker")
    parser.add_argument("--model", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)

    threads = str(args.threads)
    # Env vars first (read by TF's runtime and oneDNN at start-up), then the API.
    os.environ.update(
        {
            "TF_NUM_INTRAOP_THREADS": threads,
            "TF_NUM_INTEROP_THREADS": "1",
            "OMP_NUM_THREADS": threads,
        }
    )
    from inference import quiet_tensorflow

    quiet_tensorflow(sys.argv, os.environ)  # C++ log lines off unless CLOTHING_VERBOSE=1
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    import numpy as np

    from inference import preprocess_file

    model = keras.models.load_model(args.model, compile=False)
    x = preprocess_file(args.image, image_size=args.image_size)[np.newaxis]

    def call() -> None:
        np.asarray(model(x, training=False))

    def predict() -> None:
        np.asarray(model.predict(x, verbose=0))

    graph_fn = tf.function(lambda batch: model(batch, training=False))

    def graph() -> None:
        np.asarray(graph_fn(x))

    methods = {"call": call, "predict": predict, "graph": graph}
    for _ in range(args.warmup):  # the first graph() call traces
        for fn in methods.values():
            fn()
    _send(
        {
            "ready": True,
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        }
    )
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        runs = int(command[1])
        # Alternate the methods, so that a load spike hits them alike.
        timed: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(runs):
            for name, fn in methods.items():
                timed[name].append(_time_ms(fn))
        _send(timed)
    return 0


def _time_ms(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - start)


def _send(message: Mapping[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
