"""inference/_publish.py: one way to publish a file or a folder (issue 14 item 5)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from inference import _publish, publish_dir, staging_dir, write_atomic, write_json_atomic


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    ("old", "data", "expected"),
    [
        (None, b"new", b"new"),  # new file
        (b"old bytes", b"new", b"new"),  # overwrite
        (b"old", "t\u00e9xt", "t\u00e9xt".encode()),  # str is written as UTF-8
        (b"old", b"", b""),  # empty is a valid content
    ],
)
@pytest.mark.parametrize("durable", [True, False])
def test_write_atomic_writes_the_new_content(
    tmp_path: Path, old: bytes | None, data: bytes | str, expected: bytes, durable: bool
) -> None:
    target = tmp_path / "out.bin"
    if old is not None:
        target.write_bytes(old)
    write_atomic(target, data, durable=durable)
    assert target.read_bytes() == expected
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_a_crash_mid_write_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def boom(*args: object) -> None:
        raise KeyboardInterrupt  # the harshest case: not an Exception

    monkeypatch.setattr(_publish.os, fail_at, boom)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_a_missing_folder_is_an_oserror_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "x.json", "{}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"),
    [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)],
)
def test_permissions_honour_the_umask(
    tmp_path: Path, umask: int, file_mode: int, dir_mode: int
) -> None:
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "f", b"x")
        with staging_dir(tmp_path / "bundle") as staging:
            write_atomic(staging / "model.tflite", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "bundle").stat().st_mode) == dir_mode
    assert stat.S_IMODE((tmp_path / "bundle" / "model.tflite").stat().st_mode) == file_mode


@pytest.mark.parametrize(
    ("obj", "text"),
    [({"a": 1}, '{\n  "a": 1\n}\n'), ([1, "x"], '[\n  1,\n  "x"\n]\n')],
)
def test_write_json_atomic_is_indented_with_a_final_newline(
    tmp_path: Path, obj: object, text: str
) -> None:
    write_json_atomic(tmp_path / "x.json", obj)
    assert (tmp_path / "x.json").read_text() == text
    assert json.loads(text) == obj


def test_write_json_atomic_refuses_what_json_cannot_write_and_keeps_the_old(
    tmp_path: Path,
) -> None:
    (tmp_path / "x.json").write_text("old")
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "x.json", {"a": object()})
    assert (tmp_path / "x.json").read_text() == "old"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("existing", [None, {"stale.txt": "old", "model.keras": "old"}])
def test_staging_dir_publishes_exactly_what_was_written(
    tmp_path: Path, existing: dict[str, str] | None
) -> None:
    final = tmp_path / "runs" / "model"
    if existing is not None:
        final.mkdir(parents=True)
        for name, text in existing.items():
            (final / name).write_text(text)
    with staging_dir(final) as staging:
        assert staging.parent == final.parent and staging.name.startswith(".model.partial-")
        assert not (final / "model.keras").exists() or existing is not None
        (staging / "model.keras").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["model.keras"]
    assert (final / "model.keras").read_text() == "new"
    assert leftovers(final.parent) == []


@pytest.mark.parametrize("error", [RuntimeError("disk"), KeyboardInterrupt()])
@pytest.mark.parametrize("existing", [False, True])
def test_staging_dir_failure_leaves_the_old_folder(
    tmp_path: Path, error: BaseException, existing: bool
) -> None:
    final = tmp_path / "bundles"
    if existing:
        final.mkdir()
        (final / "old.txt").write_text("old")
    with pytest.raises(type(error)), staging_dir(final) as staging:
        (staging / "half.txt").write_text("half")
        raise error
    assert leftovers(tmp_path) == []
    if existing:
        assert sorted(p.name for p in final.iterdir()) == ["old.txt"]
    else:
        assert not final.exists()


def test_publish_dir_swaps_in_one_rename_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final, staging = tmp_path / "out", tmp_path / ".out.partial-x"
    final.mkdir()
    (final / "a").write_text("old")
    staging.mkdir()
    (staging / "a").write_text("new")
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        # At every rename, whatever is at `final` is a complete folder: old or new.
        if final.exists():
            seen.append(("final", (final / "a").read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(_publish.os, "replace", spy)
    publish_dir(staging, final)
    assert (final / "a").read_text() == "new"
    assert seen == [("final", "old")]  # first rename moves the old one out
    assert leftovers(tmp_path) == []
