"""`python -m inference batch`: inputs x outputs, bad rows, resume after kills, workers, hosts.

Tiny float32 bundle (Xception weights=None at 71 px), generated JPEGs, URLs
served on 127.0.0.1 by a server in this file that counts concurrent requests.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from inference import FetchConfig, InferenceConfig
from inference.__main__ import main
from inference._batch import BatchConfig, run_batch
from inference._batch_hosts import HostLimiter
from inference._batch_io import RowWriter, csv_header, read_inputs
from inference._decode import load_image, max_file_bytes
from inference._errors import PayloadTooLargeError
from tests.conftest import LABELS, REPO, make_image
from tests.support.net import JPEG, net_guard

COLORS = [(220, 40, 40), (40, 200, 60), (50, 60, 220), (220, 220, 40)]


def make_images(folder: Path, n: int) -> list[str]:
    """n small JPEGs in two subfolders (the folder input is recursive)."""
    return [
        str(make_image(folder / f"sub{i % 2}" / f"{i:04d}.jpg", color=COLORS[i % 4], seed=i))
        for i in range(n)
    ]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The output's rows in JSONL shape (CSV rows are mapped back to it)."""
    if path.suffix == ".jsonl":
        text = path.read_text()
        assert text.endswith("\n")
        return [json.loads(line) for line in text.splitlines()]
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == csv_header(LABELS)
        rows = []
        for r in reader:
            error = (
                {"code": r["error_code"], "message": r["error_message"]}
                if r["error_code"]
                else None
            )
            scores = None if error else {lab: float(r[f"score_{lab}"]) for lab in LABELS}
            rows.append(
                {"input": r["input"], "label": r["label"] or None, "error": error, "scores": scores}
            )
        return rows


def assert_valid(rows: list[dict[str, Any]], expected_inputs: list[str]) -> None:
    """Every input exactly once; classified rows have a label and scores summing to 1."""
    inputs = [r["input"] for r in rows]
    assert sorted(inputs) == sorted(expected_inputs), "each input exactly once"
    for row in rows:
        if row["error"] is None:
            assert row["label"] in LABELS
            assert sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-6)
            assert row["label"] == max(row["scores"], key=row["scores"].get)


# ---------------------------------------------------------------------------
# Input kinds x output formats, through the CLI's main().


def write_source(kind: str, tmp_path: Path, items: list[str]) -> tuple[str, list[str]]:
    """INPUT and extra CLI flags for one input kind."""
    if kind == "folder":
        return str(tmp_path / "photos"), []
    if kind == "text":
        path = tmp_path / "list.txt"
        path.write_text("# photos to classify\n\n" + "\n".join(items) + "\n" + items[0] + "\n")
        return str(path), []
    if kind == "csv":
        path = tmp_path / "listings.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["listing_id", "photo"])
            writer.writerows([[i, item] for i, item in enumerate(items)])
        return str(path), ["--column", "photo"]
    return "-", []


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("kind", ["folder", "text", "csv", "stdin"])
def test_every_input_kind_to_every_format(
    kind: str,
    fmt: str,
    tiny_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    items = make_images(tmp_path / "photos", 6)
    source, flags = write_source(kind, tmp_path, items)
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(items) + "\n"))
    out = tmp_path / f"labels.{fmt}"
    argv = ["batch", source, "--model", str(tiny_bundle), "--output", str(out), "--workers", "1"]
    assert main([*argv, *flags]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["inputs"], summary["written"], summary["errors"]) == (6, 6, 0)
    assert summary["images_per_s"] > 0
    assert_valid(read_rows(out), items)


# ---------------------------------------------------------------------------
# Bad inputs are rows with their error code.

BAD_FILES = [
    # name, bytes, expected code
    ("corrupt.jpg", JPEG[: len(JPEG) // 3], "CORRUPT_IMAGE"),
    ("empty.jpg", b"", "CORRUPT_IMAGE"),
    ("doc.jpg", b"%PDF-1.4 not an image", "UNSUPPORTED_FORMAT"),
    ("missing.jpg", None, "FILE_NOT_FOUND"),
    ("nul\x00.jpg", None, "FILE_NOT_FOUND"),  # open() raises ValueError for it
]
BAD_URLS = [
    # path on the local server (or a whole URL), expected code
    ("/status/404", "FETCH_FAILED"),
    ("/truncated.jpg", "CORRUPT_IMAGE"),
    ("http://10.1.2.3/a.jpg", "URL_NOT_ALLOWED"),
    ("ftp://127.0.0.1/a.jpg", "URL_NOT_ALLOWED"),
]


class CountingServer:
    """Serves JPEG after `delay_s`; records, per Host header, peak concurrency and start times."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.starts: dict[str, list[float]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                host = self.headers.get("Host", "").rsplit(":", 1)[0]
                with server.lock:
                    server.starts.setdefault(host, []).append(time.monotonic())
                    server.active[host] = server.active.get(host, 0) + 1
                    server.peak[host] = max(server.peak.get(host, 0), server.active[host])
                time.sleep(server.delay_s)
                with server.lock:  # before answering: the client may ask again at once
                    server.active[host] -= 1
                body, status = (JPEG, 200) if self.path.startswith("/img") else (b"no", 404)
                if self.path == "/truncated.jpg":
                    body, status = JPEG[: len(JPEG) // 3], 200
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.http.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[CountingServer]:
    s = CountingServer()
    yield s
    s.http.shutdown()
    s.http.server_close()


def loopback_config(source: str, output: Path, model: Path, **kwargs: Any) -> BatchConfig:
    return BatchConfig(
        source=source,
        output=output,
        inference=InferenceConfig(model_dir=model),
        fetch=FetchConfig(allow_loopback=True, timeout_s=5.0),
        **kwargs,
    )


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_bad_inputs_are_rows_with_their_code(
    fmt: str, tiny_bundle: Path, tmp_path: Path, server: CountingServer
) -> None:
    good = make_images(tmp_path / "photos", 2)
    expected: dict[str, str | None] = dict.fromkeys(good)
    for name, data, code in BAD_FILES:
        if data is not None:
            (tmp_path / name).write_bytes(data)
        expected[str(tmp_path / name)] = code
    for path, code in BAD_URLS:
        expected[path if "://" in path else server.url(path)] = code
    expected[server.url("/img/ok.jpg")] = None
    (tmp_path / "list.txt").write_text("\n".join(expected) + "\n")
    out = tmp_path / f"out.{fmt}"
    config = loopback_config(str(tmp_path / "list.txt"), out, tiny_bundle, workers=1, rate=0)
    summary = run_batch(config, stderr=io.StringIO())
    rows = read_rows(out)
    assert_valid(rows, list(expected))
    got = {r["input"]: (r["error"] or {}).get("code") for r in rows}
    assert got == expected
    assert all(r["error"]["message"] for r in rows if r["error"])
    assert summary.errors == sum(code is not None for code in expected.values())


# ---------------------------------------------------------------------------
# Resume: killed halfway, the same command continues; each input exactly once.


N_KILL = 120  # images: the kill lands after 10 rows, long before the last one


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "inference", "batch", *args]


def count_rows(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize(
    ("sig", "fmt", "expected_rc"),
    [
        (signal.SIGKILL, "jsonl", -signal.SIGKILL),
        (signal.SIGKILL, "csv", -signal.SIGKILL),
        (signal.SIGINT, "jsonl", 130),  # Ctrl-C: sent to the whole group, as a terminal does
        (signal.SIGTERM, "csv", 130),
    ],
)
def test_killed_halfway_then_resumed_holds_each_input_once(
    sig: signal.Signals, fmt: str, expected_rc: int, tiny_bundle: Path, tmp_path: Path
) -> None:
    items = make_images(tmp_path / "photos", N_KILL)
    out = tmp_path / f"labels.{fmt}"
    argv = cli(str(tmp_path / "photos"), "--model", str(tiny_bundle), "--output", str(out))
    argv += ["--workers", "2", "--threads-per-worker", "1"]
    proc = subprocess.Popen(
        argv, cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while count_rows(out) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == expected_rc, stderr
    if sig != signal.SIGKILL:
        assert "run the same command again to continue" in stderr
        assert "Traceback" not in stderr
    first = count_rows(out)
    assert 0 < first < N_KILL + (fmt == "csv"), "killed halfway"
    with out.open("ab") as f:  # a power cut mid-row: the rerun must cut it off
        f.write(b'{"input": "half a row' if fmt == "jsonl" else b"/half/a,row")
    again = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["skipped"] + summary["written"] == N_KILL
    assert summary["skipped"] >= first - (fmt == "csv") and summary["dropped_partial_row"]
    assert_valid(read_rows(out), items)
    assert count_rows(out) == N_KILL + (fmt == "csv")
    assert not group_members(proc.pid), "the workers outlived the killed parent"


def test_a_killed_worker_is_replaced_and_its_inputs_retried(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    items = make_images(tmp_path / "photos", N_KILL)
    out = tmp_path / "labels.jsonl"
    argv = cli(str(tmp_path / "photos"), "--model", str(tiny_bundle), "--output", str(out))
    proc = subprocess.Popen([*argv, "--workers", "2"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while count_rows(out) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    ps = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(proc.pid)], capture_output=True, text=True
    )
    lines = ps.stdout.splitlines()  # the other child is multiprocessing's resource tracker
    workers = [int(line.split()[0]) for line in lines if "multiprocessing.spawn" in line]
    assert workers, ps.stdout
    os.kill(workers[0], signal.SIGKILL)  # as the OOM killer would
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "a worker died; restarting the pool" in stderr
    rows = read_rows(out)
    assert_valid(rows, items)
    assert all(r["error"] is None for r in rows), "one crash is retried, not blamed on its inputs"


def group_members(pgid: int) -> str:
    """Processes still in the killed run's process group (its workers), after a grace second."""
    for _ in range(10):
        ps = subprocess.run(["ps", "-o", "pid=", "-g", str(pgid)], capture_output=True, text=True)
        if not ps.stdout.strip():
            break
        time.sleep(0.1)
    return ps.stdout.strip()


# ---------------------------------------------------------------------------
# Workers: the same answers with 1 and 2 processes.


def test_one_and_two_workers_give_identical_rows(tiny_bundle: Path, tmp_path: Path) -> None:
    make_images(tmp_path / "photos", 24)
    answers = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.jsonl"
        config = loopback_config(
            str(tmp_path / "photos"), out, tiny_bundle, workers=workers, threads_per_worker=1
        )
        summary = run_batch(config, stderr=io.StringIO())
        assert (summary.workers, summary.written) == (workers, 24)
        answers.append({r["input"]: (r["label"], r["scores"]) for r in read_rows(out)})
    assert answers[0] == answers[1]


# ---------------------------------------------------------------------------
# URLs: per-host concurrency limit and rate.


@pytest.mark.parametrize("per_host", [1, 2])
def test_per_host_limit_is_honoured(
    per_host: int, tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = CountingServer(delay_s=0.15)
    hosts = ("127.0.0.1", "images.test")  # two names for one server: counted apart
    urls = [server.url(f"/img/{i}.jpg", host) for i in range(8) for host in hosts]
    (tmp_path / "urls.txt").write_text("\n".join(urls))
    config = loopback_config(
        str(tmp_path / "urls.txt"),
        tmp_path / "out.jsonl",
        tiny_bundle,
        workers=1,
        per_host=per_host,
        rate=0,
    )
    with net_guard(monkeypatch):
        run_batch(config, stderr=io.StringIO())
    server.http.shutdown()
    assert server.peak == dict.fromkeys(hosts, per_host)  # reached, never passed
    assert_valid(read_rows(tmp_path / "out.jsonl"), urls)


def test_rate_spaces_request_starts_per_host(tiny_bundle: Path, tmp_path: Path) -> None:
    server = CountingServer()
    urls = [server.url(f"/img/{i}.jpg") for i in range(6)]
    (tmp_path / "urls.txt").write_text("\n".join(urls))
    config = loopback_config(
        str(tmp_path / "urls.txt"),
        tmp_path / "out.jsonl",
        tiny_bundle,
        workers=1,
        per_host=4,
        rate=10,
    )
    run_batch(config, stderr=io.StringIO())
    server.http.shutdown()
    starts = server.starts["127.0.0.1"]
    assert len(starts) == 6
    # Starts are spaced 1 / rate = 0.1 s apart by the client; the server sees them
    # with connection jitter, so check the span (0.5 s; unlimited: a few ms).
    assert starts[-1] - starts[0] >= 0.4, [b - a for a, b in itertools.pairwise(starts)]


# ---------------------------------------------------------------------------
# Bad usage: a clear message and exit 2, nothing written.


def test_usage_errors_exit_2_with_a_message(
    tiny_bundle: Path, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("inference._batch_io.parquet_available", lambda: False)
    make_images(tmp_path / "photos", 1)
    two_columns = tmp_path / "two.csv"
    two_columns.write_text("id,photo\n1,a.jpg\n")
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text("my own notes\n")
    other_model = tmp_path / "other.jsonl"
    other_model.write_text(json.dumps({"input": "x.jpg", "model": "0123456789ab"}) + "\n")
    photos, model = str(tmp_path / "photos"), str(tiny_bundle)
    cases = [
        # argv, words the message must hold
        (
            [str(tmp_path / "nope"), "--model", model, "--output", str(tmp_path / "o.jsonl")],
            "INPUT",
        ),
        ([photos, "--model", model, "--output", str(tmp_path / "o.txt")], "--output"),
        ([photos, "--model", model, "--output", str(tmp_path / "o.parquet")], "needs pyarrow"),
        ([photos, "--model", str(tmp_path), "--output", str(tmp_path / "o.jsonl")], "manifest"),
        (
            [photos, "--model", model, "--output", str(tmp_path / "o.jsonl"), "--workers", "0"],
            "workers",
        ),
        ([str(two_columns), "--model", model, "--output", str(tmp_path / "o.jsonl")], "--column"),
        (
            [
                str(two_columns),
                "--model",
                model,
                "--output",
                str(tmp_path / "o.jsonl"),
                "--column",
                "x",
            ],
            "photo",
        ),
        ([photos, "--model", model, "--output", str(tmp_path / "no" / "o.jsonl")], "folder"),
        ([photos, "--model", model, "--output", "/proc/o.jsonl"], "`--output` cannot be written"),
        ([photos, "--model", model, "--output", str(foreign)], "line 1"),
        ([photos, "--model", model, "--output", str(other_model)], "0123456789ab"),
        (
            [
                str(tmp_path / "photos" / "sub0" / "0000.jpg"),
                "--model",
                model,
                "--output",
                str(tmp_path / "o.jsonl"),
            ],
            "predict",
        ),
    ]
    for argv, words in cases:
        assert main(["batch", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err, (argv, err)
        assert "Traceback" not in err
    assert not (tmp_path / "o.jsonl").exists()
    assert foreign.read_text() == "my own notes\n"  # someone else's file is left as it was


# ---------------------------------------------------------------------------
# Units: the output file's read-back, inputs, the limiter's arguments.


HEADER = ",".join(csv_header(("x",))) + "\n"
ROW_A = "a,x,false,0.9,,,m,0.9\n"


@pytest.mark.parametrize(
    ("fmt", "content", "after", "done"),
    [
        # a partial last row is cut; whole rows are read back as done
        (
            "jsonl",
            '{"input": "a", "model": "m"}\n{"input": "b", "mo',
            '{"input": "a", "model": "m"}\n',
            {"a"},
        ),
        ("jsonl", '{"input": "a", "model": "m"}\n', '{"input": "a", "model": "m"}\n', {"a"}),
        ("jsonl", "", "", set()),
        ("csv", HEADER + ROW_A + "b,x,fal", HEADER + ROW_A, {"a"}),
        ("csv", HEADER[:9], HEADER, set()),  # a cut header is written again
        (
            "csv",
            HEADER + '"a\nb",x,false,0.9,,,m,0.9\n"c\n',
            HEADER + '"a\nb",x,false,0.9,,,m,0.9\n',
            {"a\nb"},
        ),
    ],
)
def test_resume_reads_rows_back_and_cuts_a_partial_one(
    fmt: str, content: str, after: str, done: set[str], tmp_path: Path
) -> None:
    path = tmp_path / f"out.{fmt}"
    path.write_text(content)
    with RowWriter.open(path, labels=("x",), model="m") as out:
        assert out.done == done
        assert (out.dropped_bytes > 0) == (content != after)
    assert path.read_text() == after


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('photo\n"/tmp/a.jpg\n/tmp/b.jpg\n', "line 3: unexpected end of data"),  # unclosed quote
        ("photo\n" + "x" * 200_000 + "\n/tmp/a.jpg\n", "line 2: field larger than field limit"),
    ],
)
def test_read_inputs_refuses_a_malformed_csv_naming_the_line(
    tmp_path: Path, text: str, words: str
) -> None:
    (tmp_path / "l.csv").write_text(text)
    with pytest.raises(ValueError) as info:
        read_inputs(str(tmp_path / "l.csv"))
    assert "INPUT is not valid CSV" in str(info.value) and words in str(info.value)


@pytest.mark.parametrize("kind", ["fifo", "link to a device"])
def test_an_output_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, capsys: Any, kind: str
) -> None:
    make_images(tmp_path / "photos", 1)
    out = tmp_path / "o.jsonl"
    if kind == "fifo":
        os.mkfifo(out)  # opening it would wait for a reader for ever
    else:
        out.symlink_to("/dev/zero")  # resuming would read it for ever
    argv = ["batch", str(tmp_path / "photos"), "--model", str(tmp_path), "--output", str(out)]
    assert main(argv) == 2
    assert "`--output` must be a regular file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"progress_every_s": math.inf}, "`progress_every_s` must be in (0, 3600]"),
        ({"progress_every_s": 0.0}, "Received: progress_every_s=0.0"),
        ({"threads_per_worker": 100_000}, "`--threads-per-worker` must be at most 256"),
    ],
)
def test_absurd_batch_settings_are_refused(kwargs: dict[str, Any], words: str) -> None:
    from inference._batch import BatchConfig

    with pytest.raises(ValueError) as info:
        BatchConfig(source="x", output=Path("o.jsonl"), **kwargs)
    assert words in str(info.value)


def test_read_inputs_skips_blank_comment_and_duplicate_lines(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("\ufeffa.jpg\n\n# note\n https://x.test/b.jpg \na.jpg\n")
    assert read_inputs(str(tmp_path / "l.txt")) == ["a.jpg", "https://x.test/b.jpg"]
    assert read_inputs("-", column="u", stdin=io.StringIO("u,v\nc.jpg,1\n,2\n")) == ["c.jpg"]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"per_host": 0, "rate": 1.0}, "per_host"), ({"per_host": 1, "rate": -1.0}, "rate")],
)
def test_host_limiter_rejects_bad_settings(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=f"Received: {words}="):
        HostLimiter(**kwargs)


def test_batch_modules_never_import_tensorflow() -> None:
    code = (
        "import sys, inference._batch, inference._batch_worker; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# ---------------------------------------------------------------------------
# The benchmark command: its table from real runs on a tiny dataset.


def test_bench_batch_prints_the_scaling_table(
    tiny_bundle: Path, tmp_path: Path, capsys: Any
) -> None:
    from bench import batch as bench_batch

    make_images(tmp_path / "data" / "test" / "hat", 4)
    make_images(tmp_path / "data" / "validation" / "hat", 4)
    argv = ["--model", str(tiny_bundle), "--images", "6", "--data-dir", str(tmp_path / "data")]
    argv += ["--plan", "1x1", "2x1", "--out", str(tmp_path / "out")]
    assert bench_batch.main(argv) == 0
    table = capsys.readouterr().out
    assert "| 1 x 1 |" in table and "| 2 x 1 |" in table and "1.00x" in table
    doc = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert [(r["workers"], r["images"], r["errors"]) for r in doc["rows"]] == [(1, 6, 0), (2, 6, 0)]
    assert all(r["steady_images_per_s"] > 0 for r in doc["rows"])
    assert (tmp_path / "out" / "batch.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--plan", "2"], "WORKERSxTHREADS"),
        (["--plan", "0x1"], "WORKERSxTHREADS"),
        (["--repeat", "0"], "--repeat"),
        (["--images", "1000"], "--images"),
    ],
)
def test_bench_batch_usage_errors(argv: list[str], words: str, tmp_path: Path, capsys: Any) -> None:
    from bench import batch as bench_batch

    make_images(tmp_path / "data" / "test" / "hat", 2)
    base = ["--model", str(tmp_path), "--data-dir", str(tmp_path / "data"), "--images", "2"]
    assert bench_batch.main([*base, *argv]) == 2
    assert words in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Progress: a tqdm bar on a terminal, plain lines otherwise.


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (FakeTerminal(), "img/s"),  # tqdm's bar, with its rate and ETA
        (io.StringIO(), "batch: 3/10 (30.0%), 1 error(s)"),  # plain lines, every every_s
    ],
)
def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise(
    stream: io.StringIO, expected: str
) -> None:
    from inference._batch_progress import Progress

    progress = Progress(total=10, every_s=0.01, err=stream)
    time.sleep(0.02)
    progress.update(3, 1)
    progress.close()
    assert expected in stream.getvalue()
    assert ("batch: " in stream.getvalue()) is not isinstance(stream, FakeTerminal)


def test_parquet_output_where_pyarrow_is_installed(tiny_bundle: Path, tmp_path: Path) -> None:
    # pyarrow is not a dependency: this runs where it happens to be installed.
    pq = pytest.importorskip("pyarrow.parquet")
    items = make_images(tmp_path / "photos", 3)
    (tmp_path / "bad.jpg").write_bytes(b"")
    out = tmp_path / "labels.parquet"
    for _ in range(2):  # the second run resumes from the log and rewrites the same file
        config = loopback_config(str(tmp_path / "photos"), out, tiny_bundle, workers=1)
        run_batch(config, stderr=io.StringIO())
    (tmp_path / "more.txt").write_text("\n".join([*items, str(tmp_path / "bad.jpg")]))
    config = loopback_config(str(tmp_path / "more.txt"), out, tiny_bundle, workers=1)
    assert run_batch(config, stderr=io.StringIO()).written == 1
    table = pq.read_table(out).to_pylist()
    assert sorted(r["input"] for r in table) == sorted([*items, str(tmp_path / "bad.jpg")])
    bad = next(r for r in table if r["error_code"])
    assert (
        bad["error_code"] == "CORRUPT_IMAGE" and bad["label"] is None and bad["score_hat"] is None
    )
    good = [r for r in table if not r["error_code"]]
    assert all(sum(r[f"score_{lab}"] for lab in LABELS) == pytest.approx(1.0) for r in good)


@pytest.mark.parametrize(
    ("environ", "expected", "error"),
    [
        ({}, (None, 2, 5.0), None),
        ({"BATCH_WORKERS": "3", "BATCH_PER_HOST": "4", "BATCH_RATE": "0.5"}, (3, 4, 0.5), None),
        ({"BATCH_WORKERS": " "}, (None, 2, 5.0), None),  # empty: the default
        ({"BATCH_WORKERS": "0"}, None, "BATCH_WORKERS='0'"),
        ({"BATCH_PER_HOST": "two"}, None, "BATCH_PER_HOST='two'"),
        ({"BATCH_RATE": "-1"}, None, "BATCH_RATE='-1'"),
    ],
)
def test_batch_config_from_env(
    environ: dict[str, str], expected: tuple[Any, ...] | None, error: str | None
) -> None:
    if error is not None:
        with pytest.raises(ValueError, match=re.escape(error)):
            BatchConfig.from_env(environ, source="-", output=Path("o.jsonl"))
        return
    config = BatchConfig.from_env(environ, source="-", output=Path("o.jsonl"))
    assert (config.workers, config.per_host, config.rate) == expected
    assert BatchConfig.from_env(environ, source="-", output=Path("o.jsonl"), workers=7).workers == 7


# ---------------------------------------------------------------------------
# Review fixes: refusals before the model loads, bounded file reads, workers,
# empty INPUT, error rows on a rerun.


def _parquet_of(path: Path, model: str | None, columns: str = "ours") -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    if columns == "ours":
        names = ["input", "label", "unsure", "confidence", "error_code", "error_message", "model"]
        record = {n: None for n in names} | {"input": "x.jpg", "model": model}
        pq.write_table(pa.Table.from_pylist([record]), path)
    else:
        pq.write_table(pa.table({"a": [1, 2]}), path)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("foreign.parquet", b"data\n", "not a Parquet file of this command"),
        ("other.parquet", "columns", "not a Parquet file of this command"),
        ("o.txt", None, "--output"),
        ("missing/o.jsonl", None, "`--output`'s folder does not exist"),
        ("notes.jsonl", b"my own notes\n", "line 1"),
        ("notes.csv", b"id,photo\n1,a.jpg\n", "line 1"),
    ],
)
def test_a_bad_output_is_refused_before_the_model_loads_and_left_as_it_is(
    name: str, content: bytes | str | None, words: str, tmp_path: Path, capsys: Any
) -> None:
    make_images(tmp_path / "photos", 1)
    out = tmp_path / name
    if content == "columns":
        _parquet_of(out, None, columns="other")
    elif isinstance(content, bytes):
        out.write_bytes(content)
    before = out.read_bytes() if out.exists() else None
    no_model = str(tmp_path / "no-bundle")  # loading it would say "manifest"
    argv = ["batch", str(tmp_path / "photos"), "--model", no_model, "--output", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "--output" in err, err
    assert (out.read_bytes() if out.exists() else None) == before
    assert not Path(str(out) + ".rows.jsonl").exists()


@pytest.mark.parametrize("case", ["other_model", "no_log"])
def test_a_parquet_output_of_another_model_or_without_its_log_is_kept(
    case: str, tiny_bundle: Path, tmp_path: Path, capsys: Any
) -> None:
    make_images(tmp_path / "photos", 1)
    out = tmp_path / "labels.parquet"
    if case == "other_model":
        _parquet_of(out, "0123456789ab")
        (tmp_path / "labels.parquet.rows.jsonl").write_text("")
        words = "0123456789ab"
    else:
        config = loopback_config(str(tmp_path / "photos"), out, tiny_bundle, workers=1)
        pytest.importorskip("pyarrow")
        run_batch(config, stderr=io.StringIO())
        (tmp_path / "labels.parquet.rows.jsonl").unlink()
        words = "without its row log"
    before = out.read_bytes()
    argv = ["batch", str(tmp_path / "photos"), "--model", str(tiny_bundle), "--output", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err, err
    assert out.read_bytes() == before


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("folder", "no images found in"),
        ("text", "no inputs in"),
        ("csv", "no inputs in"),
        ("stdin", "no inputs in stdin"),
    ],
)
def test_empty_input_exits_2_naming_input_and_writes_nothing(
    kind: str, words: str, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "notes.txt").write_text("not an image\n")
    source, flags = write_source(kind, tmp_path, ["x"] if kind == "text" else [])
    if kind == "text":
        Path(source).write_text("# nothing yet\n\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    out = tmp_path / "o.jsonl"
    no_model = str(tmp_path / "no-bundle")
    assert main(["batch", source, *flags, "--model", no_model, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "INPUT" in err and words in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "environ", "words"),
    [
        (["--workers", "999999"], {}, "--workers=999999"),
        (["--workers", "257"], {}, "--workers=257"),
        ([], {"BATCH_WORKERS": "999999"}, "BATCH_WORKERS='999999'"),
    ],
)
def test_absurd_workers_are_refused(
    argv: list[str],
    environ: dict[str, str],
    words: str,
    tmp_path: Path,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_images(tmp_path / "photos", 1)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "o.jsonl"
    base = ["batch", str(tmp_path / "photos"), "--model", str(tmp_path), "--output", str(out)]
    assert main([*base, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err, err
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_workers_are_capped_by_inputs_and_a_rerun_counts_its_error_rows(
    fmt: str, tiny_bundle: Path, tmp_path: Path, capsys: Any
) -> None:
    items = make_images(tmp_path / "photos", 2)
    (tmp_path / "bad.jpg").write_bytes(b"")
    (tmp_path / "list.txt").write_text("\n".join([*items, str(tmp_path / "bad.jpg")]) + "\n")
    out = tmp_path / f"out.{fmt}"
    config = loopback_config(str(tmp_path / "list.txt"), out, tiny_bundle, workers=200)
    summary = run_batch(config, stderr=io.StringIO())
    assert (summary.workers, summary.written, summary.errors) == (3, 3, 1)
    argv = ["batch", str(tmp_path / "list.txt"), "--model", str(tiny_bundle), "--output", str(out)]
    assert main([*argv, "--workers", "200"]) == 0
    captured = capsys.readouterr()
    again = json.loads(captured.out)
    assert (again["workers"], again["written"], again["skipped"]) == (0, 0, 3)
    assert again["skipped_errors"] == 1
    assert "3 already there (1 of them errors" in captured.err, captured.err


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "ff.jpg"
    os.mkfifo(path)
    return path


def _too_big(tmp_path: Path) -> Path:
    path = tmp_path / "big.png"  # max_pixels=1: the cap is 8 + 1 MiB bytes
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2**20 + 8))
    return path


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (_fifo, FileNotFoundError, "not a regular file"),
        (lambda tmp_path: Path("/dev/zero"), FileNotFoundError, "not a regular file"),
        (lambda tmp_path: tmp_path, FileNotFoundError, "not a regular file"),
        (lambda tmp_path: tmp_path / "missing.jpg", FileNotFoundError, "missing.jpg"),
        (_too_big, PayloadTooLargeError, "over 1048584 bytes"),
    ],
)
def test_load_image_reads_regular_files_only_and_at_most_the_cap(
    make: Any, error: type[Exception], words: str, tmp_path: Path
) -> None:
    path = make(tmp_path)
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_image(path, max_pixels=1)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=load, daemon=True)  # a FIFO would block forever
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "load_image blocked"
    assert len(outcome) == 1 and type(outcome[0]) is error and words in str(outcome[0]), outcome
    assert max_file_bytes(50_000_000) == 8 * 50_000_000 + 2**20


def test_a_fifo_or_device_in_the_list_is_a_row(tiny_bundle: Path, tmp_path: Path) -> None:
    items = make_images(tmp_path / "photos", 1)
    odd = [str(_fifo(tmp_path)), "/dev/zero"]
    (tmp_path / "list.txt").write_text("\n".join([*items, *odd]) + "\n")
    out = tmp_path / "out.jsonl"
    config = loopback_config(str(tmp_path / "list.txt"), out, tiny_bundle, workers=1)
    summary = run_batch(config, stderr=io.StringIO())
    codes = {r["input"]: (r["error"] or {}).get("code") for r in read_rows(out)}
    assert codes == {items[0]: None, odd[0]: "FILE_NOT_FOUND", odd[1]: "FILE_NOT_FOUND"}
    assert summary.elapsed_s < 30
