"""The converter's one error type: a bad input, never a bug.

`python -m convert` prints its message and exits with status 2; anything else
that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class ConvertError(Exception):
    """A missing or malformed input, or an output the converter refuses to overwrite."""
