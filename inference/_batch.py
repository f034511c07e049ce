"""Bulk classification on one machine: `run_batch`, behind `python -m inference batch`.

    if __name__ == "__main__":           # workers are spawned: they import the main module
        config = BatchConfig.from_env(source="photos/", output=Path("labels.jsonl"), workers=2)
        summary = run_batch(config)      # one row per input in labels.jsonl
        print(summary.images_per_s)

The parent process reads the inputs, fetches URLs, and is the only writer of
the output; N worker processes (spawned, each its own interpreter and its
own `Classifier` with a share of the cores as interpreter threads) read and
decode files and run the model. A row is appended as soon as its input is
done, so rows are in completion order, not input order (each row names its
input; sort afterwards if order matters). Rerunning the same command skips
inputs that already have a row (see `inference/_batch_io.py`).

URLs are fetched in the parent by `fetch_url` (the service's safe fetcher,
settings from the FETCH_* env vars) on `FETCH_THREADS` threads, at most
`per_host` at once and `rate` starts a second per host (`_batch_hosts.py`);
the bytes then go to a worker. Bad inputs become rows with the typed error's
code (`CORRUPT_IMAGE`, `FETCH_FAILED`, ...; `FILE_NOT_FOUND` for a file that
cannot be read; `WORKER_CRASHED` for an input that killed a worker twice;
`INTERNAL_ERROR` for a bug, with the exception's type), never a stopped run.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from inference._batch_hosts import HostLimiter, StoppedError
from inference._batch_io import Row, RowWriter, check_output, is_url, read_inputs
from inference._batch_parquet import parquet_log, parquet_models, write_parquet
from inference._batch_progress import Progress
from inference._batch_worker import classify, error_row, init_worker
from inference._classifier import Classifier, InferenceConfig
from inference._errors import InferenceError
from inference._fetch import FetchConfig, fetch_url
from inference.env import env_float, env_int

FETCH_THREADS = 16  # threads waiting on image hosts; the per-host limits bound the load
TASKS_PER_WORKER = 4  # inputs queued per worker: enough to hide the parent's latency
MAX_ATTEMPTS = 2  # a worker crash retries its inputs once; a second crash is the input's fault
MAX_WORKERS = 256  # more processes than this is a typo, not a machine
MAX_THREADS = 256  # interpreter threads per worker: likewise
# Progress lines at most an hour apart; the value is also a wait's timeout, which
# must fit the platform's time_t (`inf` overflowed it).
MAX_PROGRESS_EVERY_S = 3600.0


class WorkersDiedError(RuntimeError):
    """The worker pool broke twice without classifying anything: stop, keep the rows."""


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class BatchConfig:
    """Settings of one batch run; `from_env` reads BATCH_* and the runtime's env vars.

    source: a folder, a text/CSV file of paths or URLs, or "-" (stdin).
    output: the `.jsonl` or `.csv` file rows are appended to.
    workers: worker processes (None: one per CPU).
    threads_per_worker: interpreter threads of each worker (None: CPUs / workers, >= 1).
    per_host, rate: fetches in flight and request starts per second per host
        (rate 0: no spacing).
    progress_every_s: seconds between plain progress lines (no terminal).
    """

    source: str
    output: Path
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    column: str | None = None
    workers: int | None = None
    threads_per_worker: int | None = None
    per_host: int = 2
    rate: float = 5.0
    progress_every_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("workers", "threads_per_worker", "per_host"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be an int >= 1. Received: {name}={value!r}")
        if self.workers is not None and self.workers > MAX_WORKERS:
            raise ValueError(
                f"`--workers` must be at most {MAX_WORKERS} (one process each). "
                f"Received: --workers={self.workers!r}"
            )
        if not self.rate >= 0:
            raise ValueError(f"`rate` must be >= 0 requests/s. Received: rate={self.rate!r}")
        if not 0 < self.progress_every_s <= MAX_PROGRESS_EVERY_S:  # also refuses nan, inf
            raise ValueError(
                f"`progress_every_s` must be in (0, {MAX_PROGRESS_EVERY_S:g}] seconds. "
                f"Received: progress_every_s={self.progress_every_s!r}"
            )
        if self.threads_per_worker is not None and self.threads_per_worker > MAX_THREADS:
            raise ValueError(
                f"`--threads-per-worker` must be at most {MAX_THREADS}. "
                f"Received: --threads-per-worker={self.threads_per_worker!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> BatchConfig:
        """BATCH_WORKERS, BATCH_PER_HOST (integers >= 1), BATCH_RATE (a number >= 0);
        the model's settings from `InferenceConfig.from_env` (MODEL_DIR, ...), the
        fetcher's from `FetchConfig.from_env` (FETCH_*). Unset or empty means the
        default; `overrides` that are not None win.

        Raises:
            ValueError: an env var does not parse (the message names it and
                echoes its value), or a setting is out of range.
        """
        values: dict[str, Any] = {
            "inference": InferenceConfig.from_env(environ),
            "fetch": FetchConfig.from_env(environ),
            "workers": env_int(environ, "BATCH_WORKERS", minimum=1, maximum=MAX_WORKERS),
            "per_host": env_int(environ, "BATCH_PER_HOST", minimum=1),
            "rate": env_float(environ, "BATCH_RATE"),
        }
        if values["rate"] is not None and values["rate"] < 0:
            raw = environ["BATCH_RATE"]
            raise ValueError(
                f"Env var BATCH_RATE must be a number >= 0. Received: BATCH_RATE={raw!r}"
            )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: v for k, v in values.items() if v is not None})

    def plan(self, pending: int | None = None) -> tuple[int, int]:
        """(workers, threads per worker) after defaults: one worker per CPU (at most
        one per `pending` input, 0 when there is none), CPUs shared out."""
        workers = self.workers or cpu_count()
        if pending is not None:
            workers = min(workers, pending)
        return workers, self.threads_per_worker or max(1, cpu_count() // max(workers, 1))


@dataclass(frozen=True)
class BatchSummary:
    """What a run did. Rates count rows written by this run (bad inputs too).

    inputs: distinct inputs; skipped: those that had a row before this run,
    `skipped_errors` of them error rows (not retried); workers: processes
    started (at most one per input to classify); written: rows this run
    appended, `errors` of them for bad inputs;
    elapsed_s: from starting the workers to the last row; startup_s: to the
    first row (spawning, imports, model loads); images_per_s: written / elapsed_s;
    interrupted: stopped by Ctrl-C / SIGTERM before the end.
    """

    output: str
    model: str
    inputs: int
    skipped: int
    skipped_errors: int
    written: int
    errors: int
    workers: int
    threads_per_worker: int
    elapsed_s: float
    startup_s: float
    images_per_s: float
    interrupted: bool
    dropped_partial_row: bool

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


# ---------------------------------------------------------------------------
# The parent: inputs in, rows out.


def run_batch(
    config: BatchConfig, *, stdin: TextIO | None = None, stderr: TextIO | None = None
) -> BatchSummary:
    """Classify every input of `config.source` that has no row in `config.output` yet.

    Args:
        config: the run's settings.
        stdin: the stream source "-" reads (None: `sys.stdin`).
        stderr: progress and notes (None: `sys.stderr`); a terminal gets a
            tqdm bar when tqdm is installed, anything else plain lines.

    Returns:
        A `BatchSummary`; `interrupted` is True when Ctrl-C (KeyboardInterrupt)
        stopped the run, after the workers stopped and every finished row
        was written.

    Raises:
        BundleError, RuntimeUnavailableError: the model cannot be loaded.
        ValueError: a bad setting, INPUT, `--column` or `--output` (see
            `read_inputs`, `RowWriter.open`); nothing is written then.
    """
    err = sys.stderr if stderr is None else stderr
    if config.source != "-" and Path(config.source).resolve() == config.output.resolve():
        raise ValueError(f"`--output` must not be INPUT. Received: --output={str(config.output)!r}")
    # Everything that needs no model first: a bad --output or INPUT costs no model load.
    parquet = check_output(config.output) == "parquet"
    items = read_inputs(config.source, column=config.column, stdin=stdin)
    if not items:
        where = "stdin" if config.source == "-" else repr(config.source)
        kind = "images found" if Path(config.source).is_dir() else "inputs"
        raise ValueError(
            f"INPUT has nothing to classify: no {kind} in {where}; nothing was written. "
            f"Received: INPUT={config.source!r}"
        )
    probe = Classifier.from_config(replace(config.inference, num_threads=1))  # fail fast, here
    labels, model = probe.manifest.labels, probe.manifest.model_sha256[:12]
    del probe
    if parquet:
        models = parquet_models(config.output)
        if models is not None and not parquet_log(config.output).exists():
            raise ValueError(
                f"`--output` exists without its row log {parquet_log(config.output).name!r}, "
                "which a rerun would rewrite it from; give a new --output. "
                f"Received: --output={str(config.output)!r}"
            )
        others = (models or set()) - {model}
        if others:
            raise ValueError(
                f"`--output` holds rows of model {sorted(others)[0]!r}, but --model is "
                f"{model!r}; give a new --output to classify with this model. "
                f"Received: --output={str(config.output)!r}"
            )
    rows_path = parquet_log(config.output) if parquet else config.output
    with RowWriter.open(rows_path, labels=labels, model=model) as out:
        if out.dropped_bytes:
            print(
                f"batch: cut a partial last row ({out.dropped_bytes} bytes) from {out.path}",
                file=err,
            )
        todo = [item for item in items if item not in out.done]
        skipped_errors = len(out.done_errors.intersection(items))
        workers, threads = config.plan(len(todo))
        run = _Run(config, out, model=model, workers=workers, threads=threads, err=err)
        interrupted = run.classify(todo) if todo else False
    if parquet and not interrupted:
        write_parquet(rows_path, config.output, labels=labels)
    elapsed = run.elapsed_s()
    return BatchSummary(
        output=str(config.output),
        model=model,
        inputs=len(items),
        skipped=len(items) - len(todo),
        skipped_errors=skipped_errors,
        written=run.written,
        errors=run.errors,
        workers=workers,
        threads_per_worker=threads,
        elapsed_s=round(elapsed, 3),
        startup_s=round(run.startup_s, 3),
        images_per_s=round(run.written / elapsed, 2) if elapsed > 0 else 0.0,
        interrupted=interrupted,
        dropped_partial_row=out.dropped_bytes > 0,
    )


class _Run:
    """One pass over the inputs: the pools, the in-flight futures, the counters."""

    def __init__(
        self,
        config: BatchConfig,
        out: RowWriter,
        *,
        model: str,
        workers: int,
        threads: int,
        err: TextIO,
    ) -> None:
        self.config, self.out, self.model, self.err = config, out, model, err
        self.workers = workers
        self.inference = replace(config.inference, num_threads=threads)
        self.limiter = HostLimiter(per_host=config.per_host, rate=config.rate)
        self.written = self.errors = 0
        self.started = time.monotonic()
        self.first_row_at: float | None = None
        self.last_row_at = self.started
        self.attempts: dict[str, int] = {}
        self.rows_from_pool = self.barren_pools = 0
        self.fetching: dict[cf.Future[bytes], str] = {}
        self.classifying: dict[cf.Future[Row], tuple[str, bytes | None]] = {}

    @property
    def startup_s(self) -> float:
        return 0.0 if self.first_row_at is None else self.first_row_at - self.started

    def elapsed_s(self) -> float:
        return self.last_row_at - self.started

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        # spawn: a fresh interpreter per worker (fork would copy the parent's
        # threads and locks; the interpreter runtimes are not fork-safe).
        return cf.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(self.inference, self.model),
        )

    def classify(self, todo: list[str]) -> bool:
        """Write a row for every item of `todo`; True when interrupted."""
        progress = Progress(total=len(todo), every_s=self.config.progress_every_s, err=self.err)
        self.pool = self._new_pool()
        self.fetch_pool = cf.ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="fetch")
        self.started = self.last_row_at = time.monotonic()
        pending = iter(todo)
        interrupted = False
        try:
            self._loop(pending, progress)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self._stop(progress)
        return interrupted

    def _loop(self, pending: Iterator[str], progress: Progress) -> None:
        window = self.workers * TASKS_PER_WORKER
        last_sync = time.monotonic()
        exhausted = False
        while True:
            while (
                not exhausted
                and len(self.classifying) < window
                and len(self.fetching) < FETCH_THREADS
            ):
                item = next(pending, None)
                if item is None:
                    exhausted = True
                elif is_url(item):
                    self.fetching[self.fetch_pool.submit(self._fetch, item)] = item
                else:
                    self._submit(item, None)
            if not self.fetching and not self.classifying:
                return
            futures: list[cf.Future[Any]] = [*self.fetching, *self.classifying]
            done, _ = cf.wait(
                futures,
                timeout=self.config.progress_every_s,
                return_when=cf.FIRST_COMPLETED,
            )
            for future in done:
                self._collect(future)
            progress.update(self.written, self.errors)
            # Group commit: a kill loses no written row without fsync, a power cut could.
            if time.monotonic() - last_sync >= 1.0:
                self.out.sync()
                last_sync = time.monotonic()

    def _fetch(self, url: str) -> bytes:
        with self.limiter.slot(url):
            return fetch_url(url, config=self.config.fetch)

    def _submit(self, item: str, data: bytes | None) -> None:
        self.classifying[self.pool.submit(classify, item, data)] = (item, data)

    def _collect(self, future: cf.Future[Any]) -> None:
        if future in self.fetching:
            url = self.fetching.pop(future)
            try:
                data = future.result()
            except InferenceError as exc:
                self._write(error_row(url, exc.code, str(exc), model=self.model))
            except StoppedError:
                pass
            except Exception as exc:  # a bug in the fetcher: a row, like a worker's
                message = f"{type(exc).__name__}: {exc}"
                self._write(error_row(url, "INTERNAL_ERROR", message, model=self.model))
            else:
                self._submit(url, data)
            return
        if future not in self.classifying:  # resubmitted after a crash already
            return
        item, data = self.classifying.pop(future)
        try:
            row = future.result()
        except BrokenProcessPool:
            self.classifying[future] = (item, data)
            self._restart_pool()
        else:
            self.rows_from_pool += 1
            self._write(row)

    def _restart_pool(self) -> None:
        """A worker died (killed, out of memory, a crash in native code): retry its inputs once."""
        self.barren_pools = 0 if self.rows_from_pool else self.barren_pools + 1
        if self.barren_pools >= MAX_ATTEMPTS:  # e.g. out of memory loading the model
            raise WorkersDiedError(
                f"Worker processes died {MAX_ATTEMPTS} times in a row before classifying "
                "any input (out of memory? see the messages above); rows written so far are "
                "kept: run the same command again to continue."
            )
        self.rows_from_pool = 0
        lost = list(self.classifying.values())
        self.classifying.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._new_pool()
        print(
            f"batch: a worker died; restarting the pool, {len(lost)} input(s) retried",
            file=self.err,
        )
        for item, data in lost:
            self.attempts[item] = self.attempts.get(item, 1) + 1
            if self.attempts[item] > MAX_ATTEMPTS:
                message = (
                    f"The worker process died while classifying this input ({MAX_ATTEMPTS} tries)."
                )
                self._write(error_row(item, "WORKER_CRASHED", message, model=self.model))
            else:
                self._submit(item, data)

    def _write(self, row: Row) -> None:
        self.out.write(row)
        self.written += 1
        self.errors += row["error"] is not None
        self.last_row_at = time.monotonic()
        if self.first_row_at is None:
            self.first_row_at = self.last_row_at

    def _stop(self, progress: Progress) -> None:
        """Stop fetching, let running tasks finish, write what finished."""
        self.limiter.stop()
        self.fetch_pool.shutdown(wait=False, cancel_futures=True)
        self.pool.shutdown(wait=True, cancel_futures=True)
        for future in list(self.classifying):
            if future.done() and not future.cancelled() and future.exception() is None:
                self._collect(future)
        progress.update(self.written, self.errors)
        progress.close()
