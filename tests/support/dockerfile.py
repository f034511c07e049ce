"""Read the Dockerfile and rebuild its contents without Docker.

The container-contract test (tests/test_container_contract.py) and
`python -m bench.serve --install-size` use this to install exactly the
packages the Dockerfile installs into a fresh virtual environment, and to lay
out the files it copies in a folder shaped like the image's /var/task:

    spec = parse_dockerfile("Dockerfile")
    spec.pip_packages          # ("ai-edge-litert==2.3.0", ...)
    spec.copies                # (("inference/", "${LAMBDA_TASK_ROOT}/inference/"), ...)
    layout_task_root(spec, repo=".", dest=task, args={"BUNDLE": "runs/bundles/dynamic"})
    python = make_venv(spec, venv_dir)

It understands the instructions this project's Dockerfile uses (FROM, ARG,
ENV, RUN pip install / python -m compileall / python <build script> / rm,
chained with &&, COPY, CMD) and refuses anything else, so a new kind of step
makes the contract test fail instead of being silently skipped. A COPY into
/tmp/ is a build-time file (docker/prune_site_packages.py): `make_venv` runs
the scripts the Dockerfile runs after `pip install`, with the venv's python.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import venv
from dataclasses import dataclass, field
from pathlib import Path

TASK_ROOT_VAR = "LAMBDA_TASK_ROOT"  # set by the base image to /var/task
KNOWN = {"FROM", "ARG", "ENV", "RUN", "COPY", "CMD"}


@dataclass(frozen=True)
class DockerfileSpec:
    base_image: str
    args: dict[str, str]  # ARG name -> default
    env: dict[str, str]
    pip_packages: tuple[str, ...]  # requirement specifiers given to `pip install`
    pip_options: tuple[str, ...]
    copies: tuple[tuple[str, str], ...]  # (source, destination), ${VAR}s unexpanded
    runs: tuple[str, ...]  # every RUN command line
    cmd: tuple[str, ...] = field(default=())
    build_copies: tuple[tuple[str, str], ...] = ()  # COPY into /tmp/: build-time files
    build_scripts: tuple[str, ...] = ()  # `python /tmp/x.py` run after pip install (sources)


def _instructions(text: str) -> list[tuple[str, str]]:
    """-> [(INSTRUCTION, rest)], comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def parse_dockerfile(path: str | Path) -> DockerfileSpec:
    base = ""
    args: dict[str, str] = {}
    env: dict[str, str] = {}
    packages: list[str] = []
    options: list[str] = []
    copies: list[tuple[str, str]] = []
    runs: list[str] = []
    build_copies: list[tuple[str, str]] = []
    scripts: list[str] = []  # destinations, mapped to their COPY sources below
    cmd: tuple[str, ...] = ()
    for word, rest in _instructions(Path(path).read_text()):
        if word not in KNOWN:
            raise ValueError(f"Dockerfile instruction {word} is not understood by {__name__}.")
        if word == "FROM":
            base = rest.split()[0]
        elif word == "ARG":
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif word == "ENV":
            name, _, value = rest.partition("=")
            env[name.strip()] = value.strip().strip('"')
        elif word == "RUN":
            runs.append(rest)
            for tokens in _commands(rest):
                if tokens[:2] == ["pip", "install"] or tokens[:4] == [
                    "python",
                    "-m",
                    "pip",
                    "install",
                ]:
                    _pip_install(tokens, rest, packages, options)
                elif len(tokens) == 2 and tokens[0] == "python" and tokens[1].startswith("/tmp/"):
                    scripts.append(tokens[1])
                elif tokens[0] == "rm" and all(t.startswith("/tmp/") for t in tokens[1:]):
                    pass  # removes a build-time file: nothing to rebuild
                elif tokens[:3] != ["python", "-m", "compileall"]:
                    raise ValueError(f"RUN step not understood by {__name__}: {rest!r}")
        elif word == "COPY":
            tokens = shlex.split(rest)
            if any(t.startswith("--") for t in tokens):
                raise ValueError(f"COPY flags not understood: {rest!r}")
            *sources, dest = tokens
            target = build_copies if dest.startswith("/tmp/") else copies
            target.extend((source, dest) for source in sources)
        elif word == "CMD":
            import json

            cmd = tuple(json.loads(rest))
    return DockerfileSpec(
        build_copies=tuple(build_copies),
        build_scripts=tuple(_script_source(script, build_copies) for script in scripts),
        base_image=base,
        args=args,
        env=env,
        pip_packages=tuple(packages),
        pip_options=tuple(options),
        copies=tuple(copies),
        runs=tuple(runs),
        cmd=cmd,
    )


def _commands(run: str) -> list[list[str]]:
    """A RUN line's commands, split on `&&` (other shell operators are refused)."""
    commands: list[list[str]] = [[]]
    for token in shlex.split(run):
        if token == "&&":
            commands.append([])
        elif token in (";", "|", "||", "&"):
            raise ValueError(f"RUN with {token!r} not understood: {run!r}")
        else:
            commands[-1].append(token)
    if not all(commands):
        raise ValueError(f"Empty command in RUN: {run!r}")
    return commands


def _pip_install(tokens: list[str], run: str, packages: list[str], options: list[str]) -> None:
    for token in tokens[tokens.index("install") + 1 :]:
        if token.startswith("-"):
            if token in ("-r", "-c", "-e", "--requirement", "--constraint"):
                raise ValueError(f"pip option {token} not understood: {run!r}")
            options.append(token)
        else:
            packages.append(token)


def _script_source(script: str, build_copies: list[tuple[str, str]]) -> str:
    """The repo path COPY put at `script` (a file or into a /tmp/ folder)."""
    for source, dest in build_copies:
        if dest == script or (dest.endswith("/") and dest + Path(source).name == script):
            return source
    raise ValueError(f"RUN python {script}: no COPY puts a file there.")


def expand(text: str, values: dict[str, str]) -> str:
    """Substitute ${NAME} and $NAME as Docker does (unknown names are an error)."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"Dockerfile variable {name} has no value.")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, text)


def layout_task_root(
    spec: DockerfileSpec, *, repo: str | Path, dest: str | Path, args: dict[str, str] | None = None
) -> Path:
    """Copy what the Dockerfile COPYs into `dest` (standing in for /var/task).

    args: ARG values overriding the defaults (a relative source is relative to
    the repo, like the build context; an absolute one is used as is).
    """
    repo, dest = Path(repo), Path(dest)
    values = {**spec.args, **(args or {}), **spec.env, TASK_ROOT_VAR: str(dest)}
    for source, target in spec.copies:
        src = repo / expand(source, values)  # an absolute path replaces `repo`
        to = expand(target, values)
        if not Path(to).resolve().is_relative_to(dest.resolve()):
            raise ValueError(f"COPY destination {target!r} is outside ${{{TASK_ROOT_VAR}}}.")
        to_path = Path(to)
        if src.is_dir():
            shutil.copytree(src, to_path, dirs_exist_ok=True, ignore=_dockerignored)
        elif src.is_file():
            if target.endswith("/"):
                to_path.mkdir(parents=True, exist_ok=True)
                to_path = to_path / src.name
            shutil.copy2(src, to_path)
        else:
            raise FileNotFoundError(f"COPY source {source!r} ({src}) does not exist.")
    return dest


def _dockerignored(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n == "__pycache__" or n.endswith(".pyc")}


def make_venv(
    spec: DockerfileSpec,
    dest: str | Path,
    *,
    quiet: bool = True,
    repo: str | Path | None = None,
    build_scripts: bool = True,
) -> Path:
    """A fresh venv (no system site-packages) with exactly the Dockerfile's pip packages,
    then the Dockerfile's build scripts (the site-packages pruning) run with its python.

    -> its python executable. Uses the pip index configured on this machine.
    repo: where the scripts' COPY sources are (default: the Dockerfile's checkout, this repo).
    build_scripts: False gives the install as pip leaves it (the "before" of bench.size).
    """
    dest = Path(dest)
    venv.EnvBuilder(with_pip=True, clear=True, symlinks=os.name != "nt").create(dest)
    python = dest / ("Scripts" if os.name == "nt" else "bin") / "python"
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    command += [*(["-q"] if quiet else []), *spec.pip_options, *spec.pip_packages]
    done = subprocess.run(command, capture_output=quiet, text=True)
    if done.returncode != 0:
        tail = (done.stderr or "")[-3000:]
        raise RuntimeError(f"pip install of the Dockerfile's packages failed:\n{tail}")
    if build_scripts:
        run_build_scripts(spec, python, repo=repo)
    return python


def run_build_scripts(spec: DockerfileSpec, python: str | Path, *, repo: str | Path | None) -> None:
    """Run the Dockerfile's `python /tmp/<script>` steps with `python`, in order."""
    root = Path(repo) if repo is not None else Path(__file__).resolve().parents[2]
    for source in spec.build_scripts:
        done = subprocess.run([str(python), str(root / source)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"Dockerfile step `python {source}` failed:\n{done.stderr[-3000:]}")


_INSTALLER = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence")


def site_packages_sizes(python: str | Path) -> dict[str, int]:
    """Bytes on disk per top-level entry of the venv's site-packages, without pip
    and setuptools (the installer, not part of what is served)."""
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    sizes: dict[str, int] = {}
    for entry in Path(out.stdout.strip()).iterdir():
        if entry.name.startswith(_INSTALLER) or entry.name == "__pycache__":
            continue
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        sizes[entry.name] = sum(p.stat().st_size for p in files if not p.is_symlink())
    return sizes
