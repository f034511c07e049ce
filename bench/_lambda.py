"""The Lambda function's figures, from the Lambda work's own tool (bench/serve.py).

    figures = lambda_figures(bundle=..., python=serve_python, repeat=30, cold_runs=3)

`python -m bench.serve --json` measures the handler in-process (median time per
stage, handler overhead) and `awslambdaric` started against a local Runtime
API (process start to first answer). It is run as a separate process, by the
serve environment's python, so its env changes stay out of this one. When
bench/serve.py is missing or has no `measure_warm`/`measure_cold`, or fails,
the result says why and the report skips the section.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench._config import REPO

_NEEDED = ("main", "measure_warm", "measure_cold")


def lambda_figures(*, bundle: Path, python: Path, repeat: int, cold_runs: int) -> dict[str, Any]:
    try:
        serve = importlib.import_module("bench.serve")
    except ImportError as exc:
        return {"skipped": f"bench/serve.py cannot be imported ({exc})"}
    missing = [name for name in _NEEDED if not callable(getattr(serve, name, None))]
    if missing:
        return {"skipped": f"bench/serve.py has no {', '.join(missing)}"}
    with tempfile.TemporaryDirectory(prefix="bench-lambda-") as tmp:
        out = Path(tmp) / "serve.json"
        command = [
            str(python),
            "-m",
            "bench.serve",
            f"--model={bundle}",
            f"--repeat={repeat}",
            f"--cold-runs={cold_runs}",
            f"--json={out}",
        ]
        try:
            done = subprocess.run(
                command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False
            )
        except subprocess.TimeoutExpired:
            return {"skipped": "python -m bench.serve took over 600 s"}
        if done.returncode != 0 or not out.is_file():
            tail = (done.stderr or done.stdout)[-1500:].strip()
            return {"skipped": f"python -m bench.serve failed (exit {done.returncode}): {tail}"}
        figures: dict[str, Any] = json.loads(out.read_text())
    return {
        "python": str(python),
        "command": " ".join(["python", *command[1:-1]]),
        "repeat": repeat,
        "cold_runs": cold_runs,
        "figures": figures,
    }
