"""Typed values from the environment, one pattern for every config (issue 14 item 6).

    from inference.env import env_int, env_fraction

    threads = env_int(os.environ, "INFERENCE_THREADS", minimum=1)   # None when unset or empty
    threshold = env_fraction(os.environ, "UNSURE_THRESHOLD")

Every config dataclass (`InferenceConfig`, `FetchConfig`, `RouteConfig`,
`TrainConfig`, ...) validates its fields in `__post_init__` and reads env vars
only in `from_env(environ=os.environ, **overrides)`, through these helpers:
unset or empty (after stripping) means "the default"; anything else must parse,
or a ValueError names the variable and echoes what it held:

    Env var MAX_IMAGE_PIXELS must be an integer >= 1. Received: MAX_IMAGE_PIXELS='0'

The defaults for where data, weights and the feature cache live are written
here once (train, bench and the tests call them). This module is TensorFlow-free
on purpose: importing anything under train/ loads Keras.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

DATA_DIR_ENV = "CLOTHING_DATA_DIR"
WEIGHTS_ENV = "XCEPTION_WEIGHTS"
CACHE_DIR_ENV = "CLOTHING_CACHE_DIR"
DEFAULT_DATA_DIR = Path("clothing-dataset-small")  # `git clone` of the dataset, in the cwd
DEFAULT_WEIGHTS = "imagenet"  # Keras downloads them

_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")


def _error(name: str, rule: str, raw: str) -> ValueError:
    return ValueError(f"Env var {name} must be {rule}. Received: {name}={raw!r}")


def env_str(environ: Mapping[str, str], name: str) -> str | None:
    """The stripped value of `name`, or None when unset or empty."""
    raw = environ.get(name, "").strip()
    return raw or None


def env_int(
    environ: Mapping[str, str],
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    """An integer (>= `minimum`, <= `maximum` when given), or None when unset or empty.

    Raises:
        ValueError: not an integer, or outside the bounds (e.g. MAX_IMAGE_PIXELS=0).
    """
    raw = env_str(environ, name)
    if raw is None:
        return None
    if minimum is not None and maximum is not None:
        rule = f"an integer from {minimum} to {maximum}"
    elif minimum is not None:
        rule = f"an integer >= {minimum}"
    elif maximum is not None:
        rule = f"an integer <= {maximum}"
    else:
        rule = "an integer"
    try:
        value = int(raw)
    except ValueError:
        raise _error(name, rule, raw) from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _error(name, rule, raw)
    return value


def env_float(environ: Mapping[str, str], name: str, *, positive: bool = False) -> float | None:
    """A finite number (> 0 when `positive`), or None when unset or empty.

    Raises:
        ValueError: not a finite number (nan, inf and words refused), or <= 0
            when `positive`.
    """
    raw = env_str(environ, name)
    if raw is None:
        return None
    rule = "a finite number > 0" if positive else "a finite number"
    try:
        value = float(raw)
    except ValueError:
        raise _error(name, rule, raw) from None
    if not math.isfinite(value) or (positive and value <= 0):
        raise _error(name, rule, raw)
    return value


def env_fraction(environ: Mapping[str, str], name: str) -> float | None:
    """A number from 0 to 1 inclusive, or None when unset or empty.

    Raises:
        ValueError: not a number, nan, or outside [0, 1].
    """
    raw = env_str(environ, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise _error(name, "a number from 0 to 1", raw)
    return value + 0.0  # "-0" is 0.0


def env_flag(environ: Mapping[str, str], name: str) -> bool | None:
    """1/true/yes -> True, 0/false/no -> False (any case), None when unset or empty.

    Raises:
        ValueError: any other word.
    """
    raw = env_str(environ, name)
    if raw is None:
        return None
    if raw.lower() not in _TRUE + _FALSE:
        raise _error(name, "one of 1/true/yes/0/false/no", raw.lower())
    return raw.lower() in _TRUE


def env_choice(environ: Mapping[str, str], name: str, *, choices: Sequence[str]) -> str | None:
    """One of `choices`, or None when unset or empty.

    Raises:
        ValueError: any other value (the message names the variable and the choices).
    """
    raw = env_str(environ, name)
    if raw is not None and raw not in choices:
        raise _error(name, f"one of {list(choices)}", raw)
    return raw


def env_list(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated entries, each stripped, empty ones dropped; () when unset or empty.

    Raises:
        ValueError: the value is set but names no entry (",,"): for an allowlist
            such as FETCH_ALLOWED_HOSTS, () would mean "no list", not "nothing".
    """
    raw = environ.get(name, "")
    parts = tuple(part.strip() for part in raw.split(",") if part.strip())
    if raw.strip() and not parts:
        raise _error(name, "comma-separated entries, or unset", raw.strip())
    return parts


# --- where data, weights and the feature cache live ---------------------------


def data_dir_from_env(
    environ: Mapping[str, str] = os.environ, *, fallback: Path = DEFAULT_DATA_DIR
) -> Path:
    """Env CLOTHING_DATA_DIR (dataset root: train/, validation/, optional test/),
    else `fallback` (./clothing-dataset-small; bench and the tests pass ../shared's)."""
    raw = env_str(environ, DATA_DIR_ENV)
    return Path(raw) if raw else Path(fallback)


def base_weights_from_env(
    environ: Mapping[str, str] = os.environ, *, fallback: str = DEFAULT_WEIGHTS
) -> str:
    """Env XCEPTION_WEIGHTS ("imagenet", a .weights.h5 path, or "none" for random
    weights in fast tests), else `fallback` ("imagenet": Keras downloads them)."""
    return env_str(environ, WEIGHTS_ENV) or fallback


def cache_dir_from_env(environ: Mapping[str, str] = os.environ) -> Path:
    """Env CLOTHING_CACHE_DIR, else $XDG_CACHE_HOME (or ~/.cache)/clothing-classifier
    (XDG Base Directory Specification 0.8)."""
    raw = env_str(environ, CACHE_DIR_ENV)
    if raw:
        return Path(raw)
    xdg = env_str(environ, "XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "clothing-classifier"
