"""Progress lines of the conversion stage on stderr, for its CLI and for bench."""

from __future__ import annotations

import logging
import sys


def log_to_stderr() -> None:
    """Send the `convert` logger's INFO lines to stderr, once.

    Only this package's logger: TensorFlow's Python loggers stay quiet.
    """
    logger = logging.getLogger("convert")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[convert] %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
