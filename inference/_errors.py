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
    code = "INVALID_REQUEST"
    http_status = 400


class PayloadTooLargeError(InferenceError):
    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class UnsupportedFormatError(InferenceError):
    code = "UNSUPPORTED_FORMAT"
    http_status = 415


class ImageTooLargeError(InferenceError):
    code = "IMAGE_TOO_LARGE"
    http_status = 422


class CorruptImageError(InferenceError):
    code = "CORRUPT_IMAGE"
    http_status = 422


class URLNotAllowedError(InferenceError):
    code = "URL_NOT_ALLOWED"
    http_status = 400


class FetchError(InferenceError):
    code = "FETCH_FAILED"
    http_status = 502


class FetchTimeoutError(FetchError):
    code = "FETCH_TIMEOUT"
    http_status = 504


class BundleError(InferenceError):
    """The model bundle is missing, inconsistent or cannot be loaded."""

    code = "BUNDLE_INVALID"
    http_status = 500


class RuntimeUnavailableError(BundleError):
    """No TFLite interpreter package is installed (or the one asked for is not)."""

    code = "RUNTIME_UNAVAILABLE"
