"""Where the check's latencies were measured: the machine, the libraries, other load.

Latencies mean little without it. The convert stage keeps its own small probe
(bench/_machine.py is the benchmark's fuller one and uses `package_versions`;
convert must not import bench).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Distributions whose versions change the check's figures.
PACKAGES = (
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "ai-edge-litert",
    "tflite-runtime",
    "onnxruntime",
    "tf2onnx",
    "numpy",
)


def package_versions(packages: Sequence[str]) -> dict[str, str]:
    """Installed version of each distribution in `packages`; absent ones are left out."""
    versions = {}
    for dist in packages:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def environment() -> dict[str, Any]:
    """Platform, CPU model, usable cores, Python and `PACKAGES` versions (absent: left out)."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpus_usable": (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ),
        "python": platform.python_version(),
        "packages": package_versions(PACKAGES),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


class OtherLoad:
    """CPU cores that *other* processes kept busy while the block ran (Linux; else None).

    Latencies on a shared machine mean little without it: busy time from
    /proc/stat minus this process's own CPU time, over the wall time.
    """

    cores: float | None = None

    def __enter__(self) -> OtherLoad:
        self._start = (_busy_seconds(), _own_cpu_seconds(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        busy, own, wall = _busy_seconds(), _own_cpu_seconds(), time.perf_counter()
        busy0, own0, wall0 = self._start
        if busy is not None and busy0 is not None and wall > wall0:
            self.cores = max(0.0, round(((busy - busy0) - (own - own0)) / (wall - wall0), 2))


def _busy_seconds() -> float | None:
    """Non-idle CPU time of the whole machine, from /proc/stat's "cpu" line (proc(5))."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields]
    idle = ticks[3] + ticks[4]  # idle + iowait
    # guest time (fields 9-10) is already counted in user and nice
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
