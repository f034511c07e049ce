"""Install size: the serve environment vs the training environment, on disk.

    python = serve_venv(work_dir, log=print)     # WORK_DIR/serve-venv, `pip install REPO[serve]`
    sizes = install_sizes(serve_python=python)

- serve: a fresh venv with `pip install <repo>[serve]` (what `pip install
  clothing-classifier[serve]` gives a user), kept in the work dir and rebuilt
  when pyproject.toml changes;
- training: this process's own environment (sys.prefix), which also holds the
  dev tools (pytest, hypothesis, ruff, mypy, ...): their own files are counted
  separately so they can be taken off; their dependencies are not attributed.

Sizes are bytes of site-packages (tests/support/dockerfile.py `site_packages_sizes`:
pip and setuptools left out, as they are the installer, not what runs), in MiB.
`lambda_mib` is the serve venv less what the Lambda image prunes
(docker/prune_site_packages.py, counted without deleting); `python -m bench.size`
gives the image's own install per package, before and after the prune.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import sysconfig
import tomllib
import venv
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._config import REPO
from tests.support.dockerfile import site_packages_sizes

MIB = 2**20
PRUNE_SCRIPT = REPO / "docker" / "prune_site_packages.py"
SERVE_VENV = "serve-venv"
_MARKER = ".bench-pyproject.sha256"


def serve_venv(work_dir: Path, *, log: Callable[[str], None]) -> Path:
    """The serve venv's python, built (about 20 s) if missing or pyproject.toml changed."""
    directory = work_dir / SERVE_VENV
    python = directory / "bin" / "python"
    marker = directory / _MARKER
    wanted = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    if python.is_file() and marker.is_file() and marker.read_text().strip() == wanted:
        return python
    log(f"building the serve venv in {directory} (pip install {REPO}[serve])")
    directory.parent.mkdir(parents=True, exist_ok=True)
    venv.EnvBuilder(with_pip=True, clear=True, symlinks=True).create(directory)
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-cache-dir",
            f"{REPO}[serve]",
        ],
        cwd=directory.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"`pip install {REPO}[serve]` into {directory} failed:\n{done.stderr[-3000:]}"
        )
    marker.write_text(wanted + "\n")
    return python


def load_prune() -> Any:
    """docker/prune_site_packages.py as a module (a script in the image, not a package)."""
    name = "prune_site_packages"
    spec = importlib.util.spec_from_file_location(name, PRUNE_SCRIPT)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"Cannot load {PRUNE_SCRIPT}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def site_packages_of(python: Path) -> Path:
    """The site-packages folder of the environment `python` runs in."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


# Run by the measured environment's python: bytes per distribution, from each
# RECORD (pip records the .pyc files it compiles), each file counted once.
_PER_DISTRIBUTION = """
import importlib.metadata, json, sys, sysconfig
from pathlib import Path
site = Path(sysconfig.get_paths()["purelib"]).resolve()
sizes, seen = {}, set()
for dist in importlib.metadata.distributions(path=[str(site)]):
    total = 0
    for file in dist.files or ():
        path = Path(str(dist.locate_file(file))).resolve()
        if path in seen or not path.is_relative_to(site) or not path.is_file():
            continue
        seen.add(path)
        total += path.stat().st_size
    sizes[dist.metadata["Name"]] = total
rest = sum(p.stat().st_size for p in site.rglob("*")
           if p.is_file() and not p.is_symlink() and p.resolve() not in seen)
sizes["(files in no RECORD)"] = rest
print(json.dumps(sizes))
"""

INSTALLER = ("pip", "setuptools")  # the installer, not what runs: left out as everywhere


def distribution_sizes(python: Path) -> dict[str, int]:
    """Bytes per installed distribution in `python`'s site-packages (pip, setuptools left out).

    Files no RECORD lists (e.g. `__pycache__` a later import wrote) are one entry,
    "(files in no RECORD)".
    """
    out = subprocess.run(
        [str(python), "-c", _PER_DISTRIBUTION], check=True, capture_output=True, text=True
    )
    sizes: dict[str, int] = json.loads(out.stdout)
    return {name: size for name, size in sizes.items() if name.lower() not in INSTALLER}


def install_sizes(*, serve_python: Path) -> dict[str, Any]:
    serve = site_packages_sizes(serve_python)
    prune = load_prune()
    try:  # the serve extra is not pinned: a newer ai-edge-litert may not match the rules
        pruned: int | None = prune.prune(site_packages_of(serve_python), dry_run=True)
    except prune.PruneError:
        pruned = None
    training = site_packages_sizes(sys.executable)
    purelib = Path(sysconfig.get_paths()["purelib"])
    tensorflow = _dist_bytes(("tensorflow", "tensorflow-cpu"), purelib)
    dev_names = _dev_tools()
    dev = _dist_bytes(dev_names, purelib)
    total_training = sum(training.values())
    return {
        "serve_mib": sum(serve.values()) / MIB,
        "lambda_mib": None if pruned is None else (sum(serve.values()) - pruned) / MIB,
        "serve_biggest_mib": _biggest(serve),
        "training_mib": total_training / MIB,
        "training_biggest_mib": _biggest(training),
        "tensorflow_mib": tensorflow / MIB,
        "dev_tools": list(dev_names),
        "dev_tools_mib": dev / MIB,
        "training_without_dev_mib": (total_training - dev) / MIB,
        "serve_python": str(serve_python),
        "training_prefix": sys.prefix,
    }


def _biggest(sizes: dict[str, int], n: int = 5) -> dict[str, float]:
    ranked = sorted(sizes.items(), key=lambda kv: -kv[1])[:n]
    return {name: size / MIB for name, size in ranked}


def _dev_tools() -> tuple[str, ...]:
    """The `dev` extra's distribution names, from pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project.get("optional-dependencies", {}).get("dev", [])
    names = []
    for spec in specs:
        name = spec
        for stop in "<>=!~[; ":
            name = name.split(stop, 1)[0]
        names.append(name.strip())
    return tuple(names)


def _dist_bytes(names: tuple[str, ...], purelib: Path) -> int:
    """Bytes of the installed distributions' own files inside site-packages."""
    total = 0
    root = purelib.resolve()
    for name in names:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in dist.files or ():
            path = Path(str(dist.locate_file(file))).resolve()
            if path.is_relative_to(root) and path.is_file():
                total += path.stat().st_size
    return total
