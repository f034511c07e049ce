"""Cold start: a new process, to its first prediction on a real image.

    result = measure_cold_start(bundle=..., keras_model=..., image=..., image_size=150,
                                serve_python=Path("venv/bin/python"), runs=3, warmup=True)

- serve: `import inference; Classifier.load(bundle).predict_file(image)`, run
  by the serve environment's python (no TensorFlow installed) when there is one;
- keras: `import tensorflow, keras; keras.models.load_model(model.keras)`,
  preprocess with the same `inference.preprocess_file`, `model.predict`.

The time is from `Popen` to the child's line on stdout, printed right after the
prediction (process teardown is not counted). The child also reports its own
import / load / predict split; the rest is interpreter start-up. The two
alternate, run by run; with `warmup`, one untimed run of each first, so both
read the model and libraries from the page cache, as a warm container would.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._config import REPO

_SERVE = """
import json, sys, time
t0 = time.perf_counter()
from inference import Classifier
t1 = time.perf_counter()
clf = Classifier.load(sys.argv[1])
t2 = time.perf_counter()
clf.predict_file(sys.argv[2])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "predict_s": t3 - t2}), flush=True)
"""

_KERAS = """
import json, sys, time
t0 = time.perf_counter()
import tensorflow as tf
import keras
from inference import preprocess_file
t1 = time.perf_counter()
model = keras.models.load_model(sys.argv[1])
t2 = time.perf_counter()
model.predict(preprocess_file(sys.argv[2], image_size=int(sys.argv[3]))[None], verbose=0)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "predict_s": t3 - t2}), flush=True)
"""


@dataclass(frozen=True)
class ColdStart:
    name: str  # "serve" | "keras"
    python: str  # the interpreter that ran it
    total_s: float  # median, Popen to first prediction
    runs_s: tuple[float, ...]
    split_s: dict[str, float]  # median import / load / predict / interpreter start-up


def measure_cold_start(
    *,
    bundle: Path,
    keras_model: Path,
    image: Path,
    image_size: int,
    serve_python: Path | None,
    runs: int,
    warmup: bool,
) -> dict[str, ColdStart]:
    commands = {
        "serve": [str(serve_python or sys.executable), "-c", _SERVE, str(bundle), str(image)],
        "keras": [sys.executable, "-c", _KERAS, str(keras_model), str(image), str(image_size)],
    }
    samples: dict[str, list[tuple[float, dict[str, float]]]] = {name: [] for name in commands}
    for i in range(runs + int(warmup)):
        for name, command in commands.items():
            timed = _run_once(command)
            if i >= int(warmup):
                samples[name].append(timed)
    results = {}
    for name, rows in samples.items():
        totals = [total for total, _ in rows]
        split = {key: statistics.median(s[key] for _, s in rows) for key in rows[0][1]}
        split["startup_s"] = statistics.median(total - sum(s.values()) for total, s in rows)
        results[name] = ColdStart(
            name=name,
            python=commands[name][0],
            total_s=statistics.median(totals),
            runs_s=tuple(totals),
            split_s=split,
        )
    return results


def _run_once(command: list[str]) -> tuple[float, dict[str, float]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryFile("w+") as stderr:  # a file: a full pipe would block the child
        start = time.perf_counter()
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - start
        proc.communicate(timeout=120)
        if not line.strip():
            stderr.seek(0)
            raise RuntimeError(
                f"Cold-start run failed (exit status {proc.returncode}): {command[0]} -c ...\n"
                f"{stderr.read()[-3000:]}"
            )
    split: dict[str, float] = json.loads(line)
    return elapsed, split


def cold_start_json(results: dict[str, ColdStart]) -> dict[str, Any]:
    return {
        name: {
            "python": r.python,
            "total_s": r.total_s,
            "runs_s": list(r.runs_s),
            "split_s": r.split_s,
        }
        for name, r in results.items()
    }
