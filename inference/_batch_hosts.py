"""Politeness towards image hosts during a batch: at most N fetches at once and R starts a second.

    limiter = HostLimiter(per_host=2, rate=5.0)
    with limiter.slot("https://cdn.example.com/a.jpg"):   # waits for a free slot and its turn
        data = fetch_url(url)

Both limits are per host name (the URL's, lower-case; a redirect to another
host is counted against the first one). The rate spaces request starts
1/rate seconds apart per host, like a crawler's crawl-delay (robots.txt
`Crawl-delay`); rate None or 0 means no spacing. `stop()` wakes every waiter
so Ctrl-C does not wait out a queue.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager


class StoppedError(Exception):
    """The limiter was stopped while a caller waited (the batch is ending)."""


def host_of(url: str) -> str:
    """The URL's host name, lower-case ("" when there is none or it does not parse)."""
    try:
        return (urllib.parse.urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


class HostLimiter:
    """Per-host concurrency and start rate, shared by the fetch threads."""

    def __init__(self, *, per_host: int, rate: float | None) -> None:
        """Args:
        per_host: fetches in flight per host, >= 1.
        rate: request starts per second per host, > 0; None or 0: unlimited.

        Raises:
            ValueError: `per_host` < 1 or `rate` < 0 (the message names it).
        """
        if not isinstance(per_host, int) or per_host < 1:
            raise ValueError(f"`per_host` must be an int >= 1. Received: per_host={per_host!r}")
        if rate is not None and not rate >= 0:
            raise ValueError(f"`rate` must be >= 0 requests/s. Received: rate={rate!r}")
        self.per_host = per_host
        self.interval = 1.0 / rate if rate else 0.0
        self._lock = threading.Lock()
        self._slots: dict[str, threading.Semaphore] = {}
        self._next_start: dict[str, float] = {}
        self._stopped = threading.Event()

    def stop(self) -> None:
        """Wake every waiting caller with `StoppedError`; later calls fail at once."""
        self._stopped.set()

    @contextmanager
    def slot(self, url: str) -> Iterator[None]:
        """Hold one of the host's `per_host` slots, entered no sooner than its turn.

        Raises:
            StoppedError: `stop()` was called before the slot was entered.
        """
        host = host_of(url)
        with self._lock:
            slots = self._slots.setdefault(host, threading.Semaphore(self.per_host))
        while not slots.acquire(timeout=0.1):
            if self._stopped.is_set():
                raise StoppedError
        try:
            self._wait_turn(host)
            yield
        finally:
            slots.release()

    def _wait_turn(self, host: str) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start.get(host, now))
            self._next_start[host] = start + self.interval
        if self._stopped.wait(start - now):  # True: stopped (also when no wait is due)
            raise StoppedError
