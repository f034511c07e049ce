"""The small runtime: TFLite bundle + safe image decoding, no TensorFlow.

Usage: `Classifier.load("runs/bundles/int8", num_threads=2).predict_file("shirt.jpg").to_dict()`
gives the label, the scores of every class, the logits and the top k.
"""

from inference._batch import BatchConfig, BatchSummary, run_batch
from inference._bundle import (
    MANIFEST_FILENAME,
    MODEL_FILENAME,
    SCHEMA_VERSION,
    Bundle,
    Manifest,
    check_calibration,
    check_labels,
    read_bundle,
    sha256_file,
)
from inference._classifier import (
    Classifier,
    InferenceConfig,
    Prediction,
    check_unsure_threshold,
    softmax,
)
from inference._decode import (
    ALLOWED_FORMATS,
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    decode_image,
    load_image,
    to_rgb,
)
from inference._errors import (
    BundleError,
    CorruptImageError,
    DeadlineExceededError,
    FetchError,
    FetchTimeoutError,
    ImageTooLargeError,
    InferenceError,
    InvalidRequestError,
    PayloadTooLargeError,
    RuntimeUnavailableError,
    TooManyItemsError,
    UnsupportedFormatError,
    URLNotAllowedError,
)
from inference._events import (
    DEFAULT_MAX_BATCH_ITEMS,
    MAX_BATCH_ITEMS_LIMIT,
    is_batch_event,
    is_http_event,
)
from inference._fetch import FetchConfig, fetch_url
from inference._form import FormData, is_form_data, parse_form_data
from inference._handle import BatchOutcome, Outcome, handle_batch, handle_event
from inference._page import render_page
from inference._publish import publish_dir, staging_dir, write_atomic, write_json_atomic
from inference._quiet import quiet_tensorflow
from inference._routes import RouteConfig, request_header, route
from inference._runtime import DEFAULT_ORDER as RUNTIME_ORDER
from inference._runtime import (
    FORMAT_RUNTIMES,
    RUNTIMES,
    RuntimeInfo,
    interpreter_class,
    make_interpreter,
)
from inference._s3 import (
    S3AccessDeniedError,
    S3BucketNotAllowedError,
    S3Config,
    S3ObjectNotFoundError,
    S3ReadError,
    S3Ref,
    parse_s3_ref,
    read_s3_object,
)
from inference._serve import LocalServer, make_server
from inference._sniff import accepted_formats, register_heif
from inference._timing import Laps, Timing, time_interleaved
from inference.preprocess import (
    MIN_IMAGE_SIZE,
    PREPROCESSING,
    RESIZE,
    check_image_size,
    preprocess_file,
    preprocess_image,
)

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_BATCH_ITEMS",
    "DEFAULT_MAX_PIXELS",
    "FORMAT_RUNTIMES",
    "IMAGE_SUFFIXES",
    "MANIFEST_FILENAME",
    "MAX_BATCH_ITEMS_LIMIT",
    "MIN_IMAGE_SIZE",
    "MODEL_FILENAME",
    "PREPROCESSING",
    "RESIZE",
    "RUNTIMES",
    "RUNTIME_ORDER",
    "SCHEMA_VERSION",
    "BatchConfig",
    "BatchOutcome",
    "BatchSummary",
    "Bundle",
    "BundleError",
    "Classifier",
    "CorruptImageError",
    "DeadlineExceededError",
    "FetchConfig",
    "FetchError",
    "FetchTimeoutError",
    "FormData",
    "ImageTooLargeError",
    "InferenceConfig",
    "InferenceError",
    "InvalidRequestError",
    "Laps",
    "LocalServer",
    "Manifest",
    "Outcome",
    "PayloadTooLargeError",
    "Prediction",
    "RouteConfig",
    "RuntimeInfo",
    "RuntimeUnavailableError",
    "S3AccessDeniedError",
    "S3BucketNotAllowedError",
    "S3Config",
    "S3ObjectNotFoundError",
    "S3ReadError",
    "S3Ref",
    "Timing",
    "TooManyItemsError",
    "URLNotAllowedError",
    "UnsupportedFormatError",
    "accepted_formats",
    "check_calibration",
    "check_image_size",
    "check_labels",
    "check_unsure_threshold",
    "decode_image",
    "fetch_url",
    "handle_batch",
    "handle_event",
    "interpreter_class",
    "is_batch_event",
    "is_form_data",
    "is_http_event",
    "load_image",
    "make_interpreter",
    "make_server",
    "parse_form_data",
    "parse_s3_ref",
    "preprocess_file",
    "preprocess_image",
    "publish_dir",
    "quiet_tensorflow",
    "read_bundle",
    "read_s3_object",
    "register_heif",
    "render_page",
    "request_header",
    "route",
    "run_batch",
    "sha256_file",
    "softmax",
    "staging_dir",
    "time_interleaved",
    "to_rgb",
    "write_atomic",
    "write_json_atomic",
]
