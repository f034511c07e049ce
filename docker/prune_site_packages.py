"""Delete from site-packages what the Lambda handler never loads (issue 13, install size).

    python docker/prune_site_packages.py                      # the running python's site-packages
    python docker/prune_site_packages.py --site-packages DIR --dry-run

The Dockerfile runs it in the same RUN as `pip install`, so the removed files
are in no image layer. Standard library only: it runs in the bare Lambda base
image. What goes, and why the handler does not need it:

- ai-edge-litert's GPU, NPU and ahead-of-time parts: the handler runs
  `ai_edge_litert.interpreter.Interpreter` on the CPU (XNNPACK), which loads
  `_pywrap_litert_interpreter_wrapper.so`, `libpywrap_litert_common.so` and
  `libLiteRt.so` only (read from /proc/self/maps after a real classify);
- numpy's test suite, C headers, type stubs and f2py (a Fortran wrapper
  generator, imported only as `numpy.f2py`);
- whole distributions ai-edge-litert requires for its CompiledModel API, its
  NPU tools and its converter, which `interpreter.py` never imports
  (`sys.modules` after classifying through every event kind: none of them).

Every rule must match something: a rule that matches nothing means a pinned
version moved, and the list needs a fresh look (exit code 1, nothing deleted).
tests/test_container_contract.py proves the answers are unchanged without
these files; `python -m bench.size` reports the size per package before/after.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import sys
import sysconfig
from pathlib import Path

# (glob under site-packages, why the handler does not need it)
PATHS: tuple[tuple[str, str], ...] = (
    ("ai_edge_litert/libLiteRtWebGpuAccelerator.so", "WebGPU accelerator (CompiledModel on GPU)"),
    ("ai_edge_litert/vendors", "NPU compiler plugins (Qualcomm, MediaTek, Samsung, ...)"),
    ("ai_edge_litert/aot", "ahead-of-time compilation for NPUs"),
    ("ai_edge_litert/tools", "model tools (apply_plugin_main, benchmark scripts)"),
    ("numpy/**/tests", "numpy's own test suite"),
    ("numpy/_core/include", "C headers, for building extensions"),
    ("numpy/f2py", "Fortran wrapper generator"),
    ("numpy/**/*.pyi", "type stubs, read by type checkers only"),
)

# Distributions removed whole (their RECORD's files, dist-info included).
DISTRIBUTIONS: tuple[tuple[str, str], ...] = (
    ("protobuf", "ai-edge-litert's *_pb2 option messages (CompiledModel, NPU tools)"),
    ("ml_dtypes", "bfloat16/int4 tensors of the CompiledModel API"),
    ("flatbuffers", "model-file editing tools (flatbuffer_utils)"),
    ("tqdm", "progress bars of the AOT compiler"),
    ("backports.strenum", "enum helper of the AOT compiler"),
)


class PruneError(Exception):
    """A rule matched nothing, or the folder is not a site-packages."""


def prune_plan(site_packages: Path) -> list[Path]:
    """Every file and folder the rules remove, outermost first.

    Args:
        site_packages: the `purelib` folder of the environment to prune.

    Returns:
        Paths under `site_packages`; none is inside another.

    Raises:
        PruneError: `site_packages` is not a folder, or a rule matched nothing.
    """
    if not site_packages.is_dir():
        raise PruneError(
            f"`site_packages` must be a folder. Received: site_packages={site_packages}"
        )
    found: list[Path] = []
    for pattern, _ in PATHS:
        matches = sorted(site_packages.glob(pattern))
        if not matches:
            raise PruneError(f"Rule {pattern!r} matched nothing in {site_packages}.")
        found.extend(matches)
    for name, _ in DISTRIBUTIONS:
        found.extend(_distribution_files(name, site_packages))
    return _outermost(found)


def _distribution_files(name: str, site_packages: Path) -> list[Path]:
    dists = importlib.metadata.distributions(name=name, path=[str(site_packages)])
    dist = next(iter(dists), None)
    if dist is None:
        raise PruneError(f"Distribution {name!r} is not installed in {site_packages}.")
    # RECORD lists the dist-info's own files too; files outside (scripts in bin/) stay.
    files = [Path(str(dist.locate_file(f))) for f in dist.files or ()]
    return [f for f in files if f.resolve().is_relative_to(site_packages.resolve())]


def _outermost(paths: list[Path]) -> list[Path]:
    kept: list[Path] = []
    for path in sorted(set(paths), key=lambda p: len(p.parts)):
        if path.exists() and not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return kept


def size_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (links not followed)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def prune(site_packages: Path, *, dry_run: bool = False) -> int:
    """Remove `prune_plan(site_packages)`; -> bytes freed (or that would be)."""
    plan = prune_plan(site_packages)
    freed = sum(size_bytes(p) for p in plan)
    if not dry_run:
        for path in plan:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        for path in plan:
            _drop_empty_parents(path, site_packages)
    return freed


def _drop_empty_parents(path: Path, site_packages: Path) -> None:
    """Folders a removal left empty (google/ after protobuf, a dist-info after its RECORD)."""
    for folder in path.parents:
        if folder == site_packages or not folder.is_relative_to(site_packages):
            return
        if not folder.is_dir() or any(folder.iterdir()):
            return
        folder.rmdir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--site-packages",
        type=Path,
        default=Path(sysconfig.get_paths()["purelib"]),
        help="folder to prune (default: this python's site-packages)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    args = parser.parse_args(argv)
    try:
        freed = prune(args.site_packages, dry_run=args.dry_run)
    except PruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    verb = "would free" if args.dry_run else "freed"
    print(f"prune_site_packages: {verb} {freed / 2**20:.1f} MiB in {args.site_packages}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
