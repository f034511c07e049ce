"""Typed errors of the runtime: each carries a stable code and an HTTP status.

The Lambda handler maps these to responses; the CLIs print their message and
exit non-zero. Anything that is not an `InferenceError` is a bug.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base class: a bad input or a bad bundle, never a bug."""

    code: str = "INTERNAL_ERROR"
    http_status: int = 500


class InvalidRequestError(InferenceError):
    """The request is malformed: bad JSON, a missing or invalid field, a bad URL (HTTP 400)."""

    code = "INVALID_REQUEST"
    http_status = 400


class PayloadTooLargeError(InferenceError):
    """The image (body, base64 field or fetched URL) is over the byte limit (HTTP 413)."""

    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class UnsupportedFormatError(InferenceError):
    """The bytes are not an accepted image format, or a compressed fetch answer (HTTP 415)."""

    code = "UNSUPPORTED_FORMAT"
    http_status = 415


class ImageTooLargeError(InferenceError):
    """The image has more pixels than `max_pixels` or needs more memory than there is (HTTP 422)."""

    code = "IMAGE_TOO_LARGE"
    http_status = 422


class CorruptImageError(InferenceError):
    """The bytes look like an accepted format but do not decode (empty, truncated): HTTP 422."""

    code = "CORRUPT_IMAGE"
    http_status = 422


class URLNotAllowedError(InferenceError):
    """The URL is refused by policy: scheme, user info, host list, non-public address (HTTP 400)."""

    code = "URL_NOT_ALLOWED"
    http_status = 400


class FetchError(InferenceError):
    """Fetching the image URL failed: DNS, connection, TLS, HTTP status, redirects (HTTP 502)."""

    code = "FETCH_FAILED"
    http_status = 502


class FetchTimeoutError(FetchError):
    """Fetching the image URL passed its deadline (HTTP 504)."""

    code = "FETCH_TIMEOUT"
    http_status = 504


class BundleError(InferenceError):
    """The model bundle is missing, inconsistent or cannot be loaded."""

    code = "BUNDLE_INVALID"
    http_status = 500


class RuntimeUnavailableError(BundleError):
    """No interpreter for the bundle's format is installed, or the one asked for
    cannot run it (e.g. INFERENCE_RUNTIME=onnxruntime for a .tflite bundle)."""

    code = "RUNTIME_UNAVAILABLE"


class TooManyItemsError(InvalidRequestError):
    """A batch has more items than MAX_BATCH_ITEMS (HTTP 400)."""

    code = "TOO_MANY_ITEMS"


class DeadlineExceededError(InferenceError):
    """The function's time ran out before this batch item's turn (HTTP 504)."""

    code = "DEADLINE_EXCEEDED"
    http_status = 504
