"""One way to publish files: a reader sees the old version or the new one, never half.

    from inference import staging_dir, write_atomic, write_json_atomic

    write_json_atomic(out / "report.json", report)        # one file
    with staging_dir(out) as tmp:                         # a whole folder
        (tmp / "model.keras").write_bytes(...)
    # out/ now holds exactly what was written in tmp/; on an exception, out/ is untouched

Semantics (the same for every caller; issue 14 item 5):

- The temp file or folder is a hidden sibling of the target (`.NAME.<hex>.tmp`,
  `.NAME.partial-<hex>`), so it is on the same filesystem and `os.replace` /
  `os.rename` is atomic (POSIX rename(2)).
- Permissions honour the umask: files are created by `open(..., "xb")` (mode
  0o666 & ~umask) and folders by `mkdir` (0o777 & ~umask). `tempfile.mkstemp`
  (0600) and `mkdtemp` (0700) are not used: a bundle COPY'd into a container
  image must stay readable by the non-root Lambda user.
- Durable by default: the file is fsync'ed before the rename, so a crash cannot
  expose a renamed file whose bytes were never flushed (ext4's data=ordered
  does not promise it for a rename over an existing file). `durable=False`
  skips the fsync for caches whose entries carry their own checksum.
- A failure (any exception, KeyboardInterrupt included) removes the temp file
  or folder and leaves the previous target as it was.
- A folder that already exists is swapped out (renamed to `.NAME.old-<hex>`),
  the new one renamed in, then the old one removed: between the two renames
  the name is briefly absent (POSIX has no atomic exchange of folders), never
  half-written. `publish_dir` does not fsync the files inside the folder:
  callers write those that must survive a crash with `write_atomic` (convert's
  bundles do).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _sibling(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}-{uuid.uuid4().hex[:8]}")


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, durable: bool = True) -> None:
    """Replace the file at `path` with `data` in one step.

    Args:
        path: the target file; its folder must exist.
        data: bytes, or str (written as UTF-8).
        durable: fsync the bytes before the rename (default). False for caches
            whose entries are checked on read.

    Raises:
        OSError: the folder is missing or not writable, or the disk is full;
            the old file (if any) is then unchanged and no temp file is left.
    """
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = _sibling(target, "tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(payload)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> None:
    """`write_atomic` of `json.dumps(obj, indent=indent)` plus a final newline.

    Raises:
        TypeError: `obj` is not JSON-serialisable (nothing is written).
        OSError: as `write_atomic`.
    """
    write_atomic(path, json.dumps(obj, indent=indent) + "\n")


def publish_dir(staging: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Move the finished folder `staging` to `final`, replacing an old `final`.

    `staging` must be on the same filesystem as `final` (use `staging_dir`).

    Raises:
        OSError: a rename failed; `final` then still holds the old folder when
            the first rename failed.
    """
    staging, final = Path(staging), Path(final)
    if final.exists():
        old = _sibling(final, "old")
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)


@contextmanager
def staging_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty hidden sibling folder of `final`; publish it to `final` on success.

    On an exception in the block the staging folder is removed and `final`
    is left as it was. Parent folders of `final` are created.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(final, "partial")
    staging.mkdir()
    try:
        yield staging
        publish_dir(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
