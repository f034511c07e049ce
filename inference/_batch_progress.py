"""Progress of `python -m inference batch`: a tqdm bar on a terminal, plain lines otherwise.

tqdm comes with the `batch` extra (and `train`); without it a terminal gets the
plain lines too, so the serve install stays as small as it is.
"""

from __future__ import annotations

import time
from typing import Any, TextIO


class Progress:
    """A tqdm bar on a terminal (when tqdm is installed), plain lines every `every_s` otherwise."""

    def __init__(self, *, total: int, every_s: float, err: TextIO) -> None:
        self.total, self.every_s, self.err = total, every_s, err
        self.started = self.last_line = time.monotonic()
        self.done = 0
        self.bar: Any = None
        if err.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # the `batch` extra is not installed: plain lines
                pass
            else:
                self.bar = tqdm(
                    total=total, unit="img", file=err, dynamic_ncols=True, smoothing=0.1
                )

    def update(self, done: int, errors: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.done)
            self.bar.set_postfix(errors=errors, refresh=False)
        elif time.monotonic() - self.last_line >= self.every_s and done < self.total:
            self.last_line = time.monotonic()
            print(self._line(done, errors), file=self.err, flush=True)
        self.done = done

    def _line(self, done: int, errors: int) -> str:
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f"{(self.total - done) / rate:.0f} s" if rate > 0 else "?"
        pct = 100.0 * done / self.total if self.total else 100.0
        return (
            f"batch: {done}/{self.total} ({pct:.1f}%), {errors} error(s), "
            f"{rate:.1f} images/s, ETA {eta}"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
