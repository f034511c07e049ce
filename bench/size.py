"""The Lambda image's Python packages, per package, before and after the prune.

    python -m bench.size                         # about a minute: one venv, pip + prune
    python -m bench.size --json /tmp/size.json   # also the figures as JSON
    python -m bench.size --budget 150            # exit 1 when the pruned install is over

Installs the Dockerfile's pinned packages into a fresh venv exactly as
`docker build` does (tests/support/dockerfile.py `make_venv`, without its
build scripts), measures each distribution (its RECORD's files, .pyc
included; pip and setuptools left out), runs the Dockerfile's prune
(docker/prune_site_packages.py) and measures again. Prints a markdown table:
package, MiB after `pip install`, MiB after the prune, MiB removed, and
which rule removed it. The image runs Python 3.12; this venv runs this
python (a few hundred kB of .pyc differ).

Exit status: 0 under the budget; 1 over it; 2 the install or the prune failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._config import REPO
from bench._size import MIB, distribution_sizes, load_prune, site_packages_of

DEFAULT_BUDGET_MIB = 150.0  # issue 13: the Lambda image's Python packages


def measure(work_dir: Path, *, log: Any = print) -> dict[str, Any]:
    """Per-distribution bytes of the Dockerfile's install, before and after its prune.

    Returns {"before": {name: bytes}, "after": {name: bytes}, "rules": {rule: bytes},
    "packages": [pinned specifiers], "install_s": seconds}.
    Raises RuntimeError when pip or the prune fails.
    """
    from tests.support.dockerfile import make_venv, parse_dockerfile, run_build_scripts

    spec = parse_dockerfile(REPO / "Dockerfile")
    log(f"pip install of the Dockerfile's {len(spec.pip_packages)} packages into {work_dir}")
    start = time.perf_counter()
    python = make_venv(spec, work_dir / "venv", build_scripts=False)
    seconds = time.perf_counter() - start
    before = distribution_sizes(python)
    rules = _bytes_per_rule(site_packages_of(python))
    log("running the Dockerfile's prune: " + ", ".join(spec.build_scripts))
    run_build_scripts(spec, python, repo=REPO)
    after = distribution_sizes(python)
    return {
        "before": before,
        "after": after,
        "rules": rules,
        "packages": list(spec.pip_packages),
        "install_s": seconds,
        "python": sys.version.split()[0],
    }


def _bytes_per_rule(site: Path) -> dict[str, int]:
    prune = load_prune()
    rules: dict[str, int] = {}
    for pattern, _ in prune.PATHS:
        rules[pattern] = sum(prune.size_bytes(p) for p in site.glob(pattern))
    for name, _ in prune.DISTRIBUTIONS:
        files = prune._distribution_files(name, site)
        rules[f"{name} (whole)"] = sum(f.stat().st_size for f in files if f.is_file())
    return rules


def table(figures: dict[str, Any]) -> list[str]:
    """Markdown rows: one per distribution, biggest first, then the totals."""
    before, after = figures["before"], figures["after"]
    lines = [
        "| package | pip install (MiB) | after prune (MiB) | removed (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for name in sorted(before, key=lambda n: -before[n]):
        b, a = before[name], after.get(name, 0)
        removed = f"{(b - a) / MIB:.1f}" if b != a else ""
        kept = f"{a / MIB:.1f}" if name in after else "removed"
        lines.append(f"| {name} | {b / MIB:.1f} | {kept} | {removed} |")
    total_b, total_a = sum(before.values()), sum(after.values())
    lines.append(
        f"| **total** | **{total_b / MIB:.1f}** | **{total_a / MIB:.1f}** | "
        f"{(total_b - total_a) / MIB:.1f} |"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.size", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--budget", type=float, default=DEFAULT_BUDGET_MIB, help="MiB the pruned install must fit"
    )
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error(f"`--budget` must be > 0 MiB. Received: --budget={args.budget}")
    with tempfile.TemporaryDirectory(prefix="bench-size-") as tmp:
        try:
            figures = measure(Path(tmp))
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(f"\nLambda image packages (Dockerfile), Python {figures['python']}:\n")
    print("\n".join(table(figures)))
    print("\nremoved by rule (MiB): ")
    for rule, size in figures["rules"].items():
        print(f"- {rule}: {size / MIB:.1f}")
    total = sum(figures["after"].values()) / MIB
    verdict = "within" if total <= args.budget else "OVER"
    print(f"\npruned install: {total:.1f} MiB, {verdict} the {args.budget:.0f} MiB budget")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if total <= args.budget else 1


if __name__ == "__main__":
    raise SystemExit(main())
