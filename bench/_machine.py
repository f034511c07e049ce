"""The machine the figures came from: CPU, cores, memory, load, library versions.

Timings mean little without this; the load average matters most on shared
machines, where colleagues' jobs steal cores during a run.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from convert._machine import package_versions as installed_versions

# Distributions whose versions change the figures.
PACKAGES = (
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "ai-edge-litert",
    "tflite-runtime",
    "numpy",
    "pillow",
    "keras-image-helper",
    "awslambdaric",
)
# CPU features that decide which kernels TensorFlow, XNNPack and OpenBLAS run.
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (runnable processes; compare with the core count)."""
    return [round(x, 2) for x in os.getloadavg()]


def describe_machine() -> dict[str, Any]:
    cpuinfo = _cpuinfo()
    return {
        "cpu_model": cpuinfo.get("model name", platform.processor() or "unknown"),
        "cpu_mhz": _float_or_none(cpuinfo.get("cpu mhz")),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "physical_cores": _physical_cores(),
        "simd": [f for f in SIMD_FLAGS if f in cpuinfo.get("flags", "").split()],
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
    }


def package_versions() -> dict[str, str]:
    """Installed versions of the benchmark's `PACKAGES` (absent ones left out)."""
    return installed_versions(PACKAGES)


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo, keys lower-cased (Linux only)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            break  # end of the first processor's block
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    return fields


def _physical_cores() -> int | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    cores = set()
    physical = core = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            core = value.strip()
            cores.add((physical, core))
    return len(cores) or None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)  # kB -> GiB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None
