"""Keep TensorFlow's native log lines out of the CLIs' output (issue 14).

Importing TensorFlow 2.21 on a machine without a GPU writes lines like these to
stderr, which a new user reads as failures:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...

TF_CPP_MIN_LOG_LEVEL=3 silences the later ones (cuInit), but the first three are
written by absl before its logging is initialised and ignore that variable (and
ABSL_MIN_LOG_LEVEL), so the import itself runs with file descriptor 2 pointed
at /dev/null. Python exceptions are unaffected: they are raised after the
descriptor is restored and print as usual.

`python -m train`, `python -m convert` and `python -m bench` call this before
TensorFlow loads; `--verbose` or env CLOTHING_VERBOSE=1 keeps every line. It
lives here, in the TensorFlow-free package every stage imports, because
importing any module under train/ runs train/__init__.py, which loads Keras:

    from inference import quiet_tensorflow
    quiet_tensorflow(sys.argv, os.environ)
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager, suppress

VERBOSE_ENV = "CLOTHING_VERBOSE"
VERBOSE_FLAG = "--verbose"


def wants_verbose(argv: Sequence[str], environ: MutableMapping[str, str]) -> bool:
    """True when `--verbose` is among `argv` or env CLOTHING_VERBOSE is "1"."""
    return VERBOSE_FLAG in argv or environ.get(VERBOSE_ENV, "") == "1"


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block (C/C++ writes included)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def quiet_tensorflow(
    argv: Sequence[str],
    environ: MutableMapping[str, str],
    *,
    preload: bool = True,
    help_without_tensorflow: bool = True,
) -> bool:
    """Silence TensorFlow's C++ log lines unless verbose; return whether it did.

    Verbose (see `wants_verbose`): sets env CLOTHING_VERBOSE=1 so that worker
    processes started later keep their lines too, and changes nothing else.
    Otherwise: env TF_CPP_MIN_LOG_LEVEL defaults to "3" (errors included; a value
    the user set wins) and, with `preload`, TensorFlow is imported now with
    stderr's descriptor silenced. `-h`/`--help` skip the preload when
    `help_without_tensorflow` (a CLI whose parser needs no TensorFlow: its help
    then prints in 0.3 s, not 3 s). A missing TensorFlow is left for the
    caller's own import to report.
    """
    if wants_verbose(argv, environ):
        environ[VERBOSE_ENV] = "1"
        return False
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    asks_help = help_without_tensorflow and any(arg in ("-h", "--help") for arg in argv)
    if preload and not asks_help and "tensorflow" not in sys.modules:
        with native_stderr_silenced(), suppress(ImportError):
            importlib.import_module("tensorflow")
    return True
