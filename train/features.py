"""Frozen-base embedding cache.

The base is frozen and runs in inference mode, so each image's pooled 2048-d
feature vector never changes for a given (image bytes, image size, resize,
preprocessing, base weights, Keras and Pillow versions). We compute it once and keep it on
disk; later epochs, runs and sweeps train only the head.

Layout: CACHE_DIR/features/<key digest>/meta.json and one file per image,
named by the sha256 of its bytes, holding float32[2048] + sha256 of those
bytes. A file that fails its checksum is deleted and recomputed, never used.

Augmentation lives in the same cache: a *view* (a deterministic flip, crop,
rescale or JPEG re-encoding of the decoded photo, see `VIEWS`) is part of the
key, so each view's features are computed once, like the plain ones, and a
head trains on plain + view features with no base pass per epoch. The plain view's key is the one
used before views existed, so old caches stay valid.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import PIL
from PIL import Image, ImageOps
from tqdm import tqdm

from inference import InferenceError, decode_image, preprocess_image, write_atomic
from inference.preprocess import PREPROCESSING, RESIZE
from train.model import FEATURES

_VECTOR_BYTES = FEATURES * 4
_DIGEST_BYTES = 32

# Central crop keeping 80% of each side: the scale of the seed's RandomZoom(0.1)
# plus framing slack, a standard "center crop" test-time view (Krizhevsky et al.
# 2012 used 224/256 = 0.875).
CROP_FRACTION = 0.8
# "small": the photo at half its resolution, as a seller's low-resolution photo.
SMALL_FACTOR = 0.5
# "jpeg": the photo re-encoded as JPEG at quality 60, the low end of what phones,
# the listing page's canvas upload (quality 0.9) and re-uploads do to a photo: the
# JPEG q60 variant of issue 10's robustness check.
JPEG_VIEW_QUALITY = 60


def _crop(img: Image.Image) -> Image.Image:
    w, h = img.size
    cw, ch = max(1, round(w * CROP_FRACTION)), max(1, round(h * CROP_FRACTION))
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch))


def _small(img: Image.Image) -> Image.Image:
    w, h = img.size
    size = (max(1, round(w * SMALL_FACTOR)), max(1, round(h * SMALL_FACTOR)))
    return img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _jpeg(img: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=JPEG_VIEW_QUALITY)
    buffer.seek(0)
    with Image.open(buffer) as reencoded:
        return reencoded.convert("RGB")


# view name -> transform of the decoded RGB photo, applied before preprocessing.
VIEWS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "plain": lambda img: img,
    "flip": ImageOps.mirror,
    "crop": _crop,
    "flip_crop": lambda img: ImageOps.mirror(_crop(img)),
    "small": _small,
    "jpeg": _jpeg,
}


def view_params(view: str) -> dict[str, float]:
    """The numbers `view`'s transform depends on, read now: part of its cache key, so
    that changing one computes new features instead of reusing the old ones."""
    params: dict[str, dict[str, float]] = {
        "crop": {"crop_fraction": CROP_FRACTION},
        "flip_crop": {"crop_fraction": CROP_FRACTION},
        "small": {"small_factor": SMALL_FACTOR},
        "jpeg": {"jpeg_quality": JPEG_VIEW_QUALITY},
    }
    return params.get(view, {})


def check_view(view: str) -> str:
    """Validate a view name.

    Args:
        view: str, a key of VIEWS ("plain", "flip", "crop", "flip_crop", "small", "jpeg").

    Returns:
        `view`, unchanged.

    Raises:
        ValueError: `view` is not a key of VIEWS.
    """
    if view not in VIEWS:
        raise ValueError(f"`view` must be one of {sorted(VIEWS)}. Received: view={view!r}")
    return view


@dataclass(frozen=True)
class CacheKey:
    """What the cached feature vectors depend on; its digest names the cache folder.

    Attributes:
        base_weights_sha256: str, hex SHA-256 of the Xception base weights file.
        image_size: int, square input side in pixels.
        preprocessing: str, the preprocessing rule's name.
        resize: str, the resize rule's name.
        keras_version: str, the Keras version that extracts the features.
        pillow_version: str, the Pillow version that decodes the photos (its
            bundled libjpeg-turbo, libwebp... decode them; a new one may give
            other pixels).
        view: str, a key of VIEWS (the transform applied before preprocessing).

    Raises:
        ValueError: `view` is not a key of VIEWS.
    """

    base_weights_sha256: str
    image_size: int
    preprocessing: str = PREPROCESSING
    resize: str = RESIZE
    keras_version: str = keras.__version__
    pillow_version: str = PIL.__version__
    view: str = "plain"

    def __post_init__(self) -> None:
        check_view(self.view)

    def identity(self) -> dict[str, object]:
        """The fields that name the folder; the plain view keeps its pre-views identity."""
        data: dict[str, object] = asdict(self)
        if self.view == "plain":
            del data["view"]
        elif view_params(self.view):
            data["view_params"] = view_params(self.view)
        return data

    def digest(self) -> str:
        """The cache folder name: the first 24 hex digits of the SHA-256 of
        `identity()` as sorted-key JSON.

        Returns:
            str of 24 lowercase hex digits.
        """
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:24]


class FeatureCache:
    """On-disk cache of base-model feature vectors, one file per image.

    Files live under `root`/features/`key.digest()`/ab/<image sha256>; each holds
    FEATURES float32 values followed by their SHA-256 digest. A folder whose
    meta.json does not match `key.identity()` is discarded and started over.

    Args:
        root: Path, the cache root folder (CLOTHING_CACHE_DIR / --cache-dir).
        key: CacheKey the vectors depend on.

    Raises:
        OSError: the cache folder cannot be created or written.
    """

    def __init__(self, root: Path, key: CacheKey) -> None:
        self.key = key
        self.directory = Path(root) / "features" / key.digest()
        self.rebuilt = 0  # entries found corrupt and recomputed
        self._open()

    def _open(self) -> None:
        meta_path = self.directory / "meta.json"
        expected = self.key.identity()
        if self.directory.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                meta = None
            if meta != expected:  # stale or damaged: start over
                shutil.rmtree(self.directory, ignore_errors=True)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if not meta_path.exists():
                write_atomic(meta_path, json.dumps(expected, indent=2), durable=False)
        except OSError as exc:
            raise OSError(
                f"Feature cache folder {str(self.directory)!r} is not writable ({exc.strerror}); "
                "set CLOTHING_CACHE_DIR or --cache-dir to a writable folder."
            ) from None

    def _path(self, image_sha256: str) -> Path:
        return self.directory / image_sha256[:2] / image_sha256

    def get(self, image_sha256: str) -> np.ndarray | None:
        """The cached vector of one image, or None when absent or corrupt.

        A corrupt entry (wrong size or checksum) is deleted and counted in
        `self.rebuilt`.

        Args:
            image_sha256: str, hex SHA-256 of the image file's bytes.

        Returns:
            float32 array of shape (FEATURES,), a copy, or None.
        """
        path = self._path(image_sha256)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        body, digest = blob[:_VECTOR_BYTES], blob[_VECTOR_BYTES:]
        if len(blob) != _VECTOR_BYTES + _DIGEST_BYTES or hashlib.sha256(body).digest() != digest:
            path.unlink(missing_ok=True)
            self.rebuilt += 1
            return None
        return np.frombuffer(body, dtype=np.float32).copy()

    def put(self, image_sha256: str, vector: np.ndarray) -> None:
        """Store one image's vector (atomically, not fsynced).

        Args:
            image_sha256: str, hex SHA-256 of the image file's bytes.
            vector: array of FEATURES values (any shape/dtype castable to float32).

        Raises:
            ValueError: `vector` does not hold exactly FEATURES values.
            OSError: the entry cannot be written.
        """
        body = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        if len(body) != _VECTOR_BYTES:
            raise ValueError(f"`vector` must have {FEATURES} floats. Received: {len(body) // 4}")
        path = self._path(image_sha256)
        path.parent.mkdir(exist_ok=True)
        # Not durable: a torn entry fails its checksum on read and is recomputed.
        write_atomic(path, body + hashlib.sha256(body).digest(), durable=False)


@dataclass(frozen=True)
class Skipped:
    """An image file left out of training because it could not be read.

    Attributes:
        path: Path of the image file.
        reason: str, why it was skipped (the decoder's message).
    """

    path: Path
    reason: str


@dataclass(frozen=True)
class Features:
    """Feature vectors of one split and view.

    Attributes:
        vectors: float32 array of shape (n_ok, FEATURES), one row per decoded image.
        keep: bool array of shape (n,), over the split's paths: which decoded.
        skipped: tuple of Skipped, the images that did not decode.
        computed: int, how many vectors ran through the base (cache misses).
    """

    vectors: np.ndarray  # (n_ok, 2048) float32
    keep: np.ndarray  # bool mask over the split's paths: which images decoded
    skipped: tuple[Skipped, ...]
    computed: int  # how many ran through the base (cache misses)


def load_preprocessed(path: Path, *, image_size: int, view: str = "plain") -> np.ndarray:
    """The one path from file to model input, shared with serving.

    -> float32 (image_size, image_size, 3) in [-1, 1]; `view` transforms the
    decoded photo first (see VIEWS). Raises InferenceError, OSError.
    """
    img = VIEWS[check_view(view)](decode_image(path.read_bytes()))
    return preprocess_image(img, image_size=image_size)


def extract_features(
    paths: Sequence[Path],
    *,
    extractor: keras.Model,
    cache: FeatureCache,
    batch_size: int = 32,
    desc: str = "features",
    progress: bool = True,
) -> Features:
    """Cached pooled features for each path, in the cache key's view.

    -> Features with float32 (n_readable, 2048) vectors; unreadable images are
    skipped and listed, never raised.
    """
    size, view = cache.key.image_size, cache.key.view
    vectors: list[np.ndarray | None] = [None] * len(paths)
    shas: list[str] = [""] * len(paths)
    skipped: list[Skipped] = []
    for i, path in enumerate(paths):
        try:
            shas[i] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            skipped.append(Skipped(path, f"unreadable: {exc.strerror}"))
            continue
        vectors[i] = cache.get(shas[i])
    todo = [i for i, p in enumerate(paths) if vectors[i] is None and shas[i]]
    bar = tqdm(
        total=len(todo), desc=desc, unit="img", disable=not progress or not todo, file=sys.stderr
    )
    for chunk in _chunks(todo, batch_size):
        batch, good = [], []
        for i in chunk:
            try:
                batch.append(load_preprocessed(paths[i], image_size=size, view=view))
                good.append(i)
            except (InferenceError, OSError) as exc:
                skipped.append(Skipped(paths[i], str(exc)))
        if batch:
            out = np.asarray(extractor.predict_on_batch(np.stack(batch)))
            for i, vec in zip(good, out, strict=True):
                cache.put(shas[i], vec)
                vectors[i] = vec
        bar.update(len(chunk))
    bar.close()
    keep = np.array([v is not None for v in vectors], dtype=bool)
    stacked = (
        np.stack([v for v in vectors if v is not None])
        if keep.any()
        else np.zeros((0, FEATURES), np.float32)
    )
    return Features(
        vectors=stacked.astype(np.float32), keep=keep, skipped=tuple(skipped), computed=len(todo)
    )


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
