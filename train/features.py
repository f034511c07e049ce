"""Frozen-base embedding cache.

The base is frozen and runs in inference mode, so each image's pooled 2048-d
feature vector never changes for a given (image bytes, image size, resize,
preprocessing, base weights, Keras version). We compute it once and keep it on
disk; later epochs, runs and sweeps train only the head.

Layout: CACHE_DIR/features/<key digest>/meta.json and one file per image,
named by the sha256 of its bytes, holding float32[2048] + sha256 of those
bytes. A file that fails its checksum is deleted and recomputed, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from inference import InferenceError, decode_image, preprocess_image
from inference.preprocess import PREPROCESSING, RESIZE
from train.model import FEATURES

_VECTOR_BYTES = FEATURES * 4
_DIGEST_BYTES = 32


@dataclass(frozen=True)
class CacheKey:
    base_weights_sha256: str
    image_size: int
    preprocessing: str = PREPROCESSING
    resize: str = RESIZE
    keras_version: str = keras.__version__

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:24]


class FeatureCache:
    def __init__(self, root: Path, key: CacheKey) -> None:
        self.key = key
        self.directory = Path(root) / "features" / key.digest()
        self.rebuilt = 0  # entries found corrupt and recomputed
        self._open()

    def _open(self) -> None:
        meta_path = self.directory / "meta.json"
        expected = asdict(self.key)
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
                _atomic_write(meta_path, json.dumps(expected, indent=2).encode())
        except OSError as exc:
            raise OSError(
                f"Feature cache folder {str(self.directory)!r} is not writable ({exc.strerror}); "
                "set CLOTHING_CACHE_DIR or --cache-dir to a writable folder."
            ) from None

    def _path(self, image_sha256: str) -> Path:
        return self.directory / image_sha256[:2] / image_sha256

    def get(self, image_sha256: str) -> np.ndarray | None:
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
        body = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        if len(body) != _VECTOR_BYTES:
            raise ValueError(f"`vector` must have {FEATURES} floats. Received: {len(body) // 4}")
        path = self._path(image_sha256)
        path.parent.mkdir(exist_ok=True)
        _atomic_write(path, body + hashlib.sha256(body).digest())


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


@dataclass(frozen=True)
class Features:
    vectors: np.ndarray  # (n_ok, 2048) float32
    keep: np.ndarray  # bool mask over the split's paths: which images decoded
    skipped: tuple[Skipped, ...]
    computed: int  # how many ran through the base (cache misses)


def load_preprocessed(path: Path, *, image_size: int) -> np.ndarray:
    """The one path from file to model input, shared with serving."""
    return preprocess_image(decode_image(path.read_bytes()), image_size=image_size)


def extract_features(
    paths: Sequence[Path],
    *,
    extractor: keras.Model,
    cache: FeatureCache,
    batch_size: int = 32,
    desc: str = "features",
    progress: bool = True,
) -> Features:
    """Cached pooled features for each path; unreadable images are skipped."""
    size = cache.key.image_size
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
                batch.append(load_preprocessed(paths[i], image_size=size))
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
