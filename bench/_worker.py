"""A measuring subprocess that answers one JSON line per request line.

    worker = Worker([sys.executable, "-m", "bench._keras_worker", ...], name="Keras 1 thread")
    info = worker.wait_ready()          # its first line
    timed = worker.request("run 5")     # one line out, one JSON line back
    worker.close()                      # sends "quit"

Latency and GEMM peaks are measured in workers because thread pools (TensorFlow's,
OpenBLAS's) are sized once per process; keeping the workers alive lets the
parent interleave them with each other, round by round.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any


class Worker:
    def __init__(
        self, command: list[str], *, name: str, cwd: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        # A file, not a pipe: a full stderr pipe would block the worker. Closed in close().
        self._stderr: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self._proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )

    def wait_ready(self) -> dict[str, Any]:
        return self._receive()

    def request(self, line: str) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        return self._receive()

    def _receive(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait()
            self._stderr.seek(0)
            tail = self._stderr.read()[-3000:]
            raise RuntimeError(
                f"The {self.name} worker exited with status {self._proc.returncode}:\n{tail}"
            )
        message: dict[str, Any] = json.loads(line)
        return message

    def close(self) -> None:
        if self._proc.poll() is None and self._proc.stdin is not None:
            try:
                self._proc.stdin.write("quit\n")
                self._proc.stdin.close()
                self._proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._stderr.close()
