"""Structure-aware fuzzing of the decoder and the handler with mutated real photos.

    python -m bench.fuzz --n 10000 --model runs/bundles/dynamic      # README figures
    python -m bench.fuzz --n 500                                      # decode only, quick
    python -m bench.fuzz --n 10000 --seed 1 --out runs/fuzz           # keep the slowest inputs

Seeds: `--photos` real dataset photos (CLOTHING_DATA_DIR, train split), each
re-encoded in every format this installation accepts (JPEG baseline and
progressive, PNG, GIF, WebP lossy and lossless, BMP, AVIF, HEIC). Each fuzz
input is one seed with 1-3 mutations that know the container: JPEG segments
and scans, PNG chunks, RIFF (WebP) chunks, ISO-BMFF (AVIF/HEIC) boxes, GIF and
BMP header fields; and generic ones (truncation, bit flips, a duplicated or
inserted byte range, a 4-byte field set to 0 / 2^31-1 / 2^32-1).

Each input goes through `inference.decode_image` and, with --model, through
`inference.handle_event` as a base64 event. Counted: answers by code,
unhandled exceptions (anything not an InferenceError out of decode_image,
anything raised by the handler), inputs over --bound seconds, the slowest
input. Exit status 1 when any input raised or went over the bound; the
offending inputs are written to --out.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import struct
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from tqdm import tqdm

from bench._cli import out_dir_arg
from bench._config import default_data_dir
from inference import InferenceError, accepted_formats, decode_image, register_heif

DEFAULT_BOUND_S = 2.0  # issue 11: every input answered in under 2 s
MAX_BYTES = 10 * 1024 * 1024  # FetchConfig.max_bytes: larger inputs never reach the decoder
DEFAULT_DATA = default_data_dir()  # env CLOTHING_DATA_DIR, else ../shared's


# ---------------------------------------------------------------------------
# Seeds: real photos in every accepted format


def seed_files(data_dir: Path, n_photos: int, rng: random.Random) -> dict[str, bytes]:
    """-> {"<photo>.<format>": bytes} for `n_photos` photos from data_dir/train."""
    photos = sorted((data_dir / "train").glob("*/*.jpg"))
    if not photos:
        raise FileNotFoundError(f"No photos in {data_dir / 'train'} (set --data-dir).")
    formats = accepted_formats()
    if "HEIF" in formats:
        register_heif()
    seeds: dict[str, bytes] = {}
    for path in rng.sample(photos, min(n_photos, len(photos))):
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        stem = f"{path.parent.name}-{path.stem[:8]}"
        variants: list[tuple[str, str, dict[str, Any]]] = [
            ("jpg", "JPEG", {"quality": 90}),
            ("progressive.jpg", "JPEG", {"quality": 90, "progressive": True}),
            ("png", "PNG", {}),
            ("gif", "GIF", {}),
            ("webp", "WEBP", {"quality": 80}),
            ("lossless.webp", "WEBP", {"lossless": True}),
            ("bmp", "BMP", {}),
        ]
        if "AVIF" in formats:
            variants.append(("avif", "AVIF", {"quality": 60}))
        if "HEIF" in formats:
            variants.append(("heic", "HEIF", {"quality": 60}))
        for suffix, fmt, options in variants:
            buf = io.BytesIO()
            rgb.save(buf, format=fmt, **options)
            seeds[f"{stem}.{suffix}"] = buf.getvalue()
    return seeds


# ---------------------------------------------------------------------------
# Structure: split a file into units a mutation can duplicate, drop, resize


@dataclass
class Unit:
    """A span of the file: [start, end), and where its length field is, if any."""

    start: int
    end: int
    length_at: int | None = None
    length_size: int = 0
    big_endian: bool = True


def units(data: bytes) -> list[Unit]:
    """JPEG segments and scans, PNG chunks, RIFF chunks, ISO-BMFF boxes; else []."""
    if data[:2] == b"\xff\xd8":
        return _jpeg_units(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _chunk_units(data, 8, header=8, trailer=4, big=True)
    if data[:4] == b"RIFF":
        return _chunk_units(data, 12, header=8, trailer=0, big=False, length_first=False)
    if data[4:8] == b"ftyp":
        return _chunk_units(data, 0, header=8, trailer=0, big=True)
    return []


def _jpeg_units(data: bytes) -> list[Unit]:
    out, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        out.append(Unit(pos, min(pos + 2 + length, len(data)), pos + 2, 2))
        pos += 2 + length
        if marker == 0xDA:  # scans: split at each SOS up to EOI
            end = data.find(b"\xff\xd9", pos)
            end = len(data) if end < 0 else end
            starts = [pos - 2 - length]
            while (found := data.find(b"\xff\xda", starts[-1] + 2, end)) >= 0:
                starts.append(found)
            out.pop()
            for a, b in zip(starts, [*starts[1:], end], strict=True):
                out.append(Unit(a, b, a + 2, 2))
            break
    return out


def _chunk_units(
    data: bytes, pos: int, *, header: int, trailer: int, big: bool, length_first: bool = True
) -> list[Unit]:
    out = []
    order: Literal["big", "little"] = "big" if big else "little"
    for _ in range(10_000):
        if pos + header > len(data):
            break
        at = pos if length_first else pos + 4
        length = int.from_bytes(data[at : at + 4], order)
        if not length_first:  # RIFF: size excludes the header, padded to even
            end = pos + header + length + (length & 1)
        elif trailer:  # PNG: size excludes header and CRC
            end = pos + header + length + trailer
        else:  # ISO-BMFF: size includes the header
            end = pos + max(length, header)
        out.append(Unit(pos, min(end, len(data)), at, 4, big))
        pos = end
    return out


# ---------------------------------------------------------------------------
# Mutations

Mutation = Callable[[bytes, random.Random], bytes]
EXTREMES = (0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, max(len(data), 2))]


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 4, 8, 32))):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def duplicate_range(data: bytes, rng: random.Random) -> bytes:
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.choice((1, 4, 64, 1024, 65536)))
    return data[:b] + data[a:b] * rng.choice((1, 2, 10, 100)) + data[b:]


def extreme_field(data: bytes, rng: random.Random) -> bytes:
    """A 2- or 4-byte field in the first 64 bytes (sizes, dimensions) set to an extreme."""
    size = rng.choice((2, 4))
    i = rng.randrange(0, max(1, min(64, len(data)) - size))
    value = rng.choice(EXTREMES) & ((1 << (8 * size)) - 1)
    order: Literal["big", "little"] = rng.choice(("big", "little"))
    return data[:i] + value.to_bytes(size, order) + data[i + size :]


def duplicate_unit(data: bytes, rng: random.Random) -> bytes:
    found = units(data)
    if not found:
        return duplicate_range(data, rng)
    u = rng.choice(found)
    return data[: u.end] + data[u.start : u.end] * rng.choice((1, 2, 50, 500)) + data[u.end :]


def drop_unit(data: bytes, rng: random.Random) -> bytes:
    found = units(data)
    if not found:
        return truncate(data, rng)
    u = rng.choice(found)
    return data[: u.start] + data[u.end :]


def wrong_length(data: bytes, rng: random.Random) -> bytes:
    found = [u for u in units(data) if u.length_at is not None]
    if not found:
        return extreme_field(data, rng)
    u = rng.choice(found)
    assert u.length_at is not None
    old = int.from_bytes(
        data[u.length_at : u.length_at + u.length_size], "big" if u.big_endian else "little"
    )
    new = rng.choice((0, 1, old - 1, old + 1, old * 2, *EXTREMES)) % (1 << (8 * u.length_size))
    raw = new.to_bytes(u.length_size, "big" if u.big_endian else "little")
    return data[: u.length_at] + raw + data[u.length_at + u.length_size :]


def oversized_unit(data: bytes, rng: random.Random) -> bytes:
    """A unit repeated up to ~1 MB, or a large metadata block inserted after the header."""
    found = units(data)
    if found and rng.random() < 0.5:
        u = rng.choice(found)
        times = max(1, (1 << 20) // max(u.end - u.start, 1))
        return data[: u.end] + data[u.start : u.end] * times + data[u.end :]
    blob = bytes(rng.randrange(256) for _ in range(64)) * rng.choice((16, 1024, 16_000))
    if data[:2] == b"\xff\xd8":  # APP1 segments of XMP-like bytes
        seg = b"\xff\xe1\xff\xff" + blob[:65533]
        return data[:2] + seg * max(1, len(blob) // 65533) + data[2:]
    if data[:4] == b"\x89PNG":
        import zlib

        body = b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(blob * 4)
        crc = zlib.crc32(b"iTXt" + body)
        chunk = struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", crc)
        return data[:33] + chunk + data[33:]
    return data + blob


MUTATIONS: tuple[Mutation, ...] = (
    truncate,
    flip_bits,
    duplicate_range,
    extreme_field,
    duplicate_unit,
    drop_unit,
    wrong_length,
    oversized_unit,
)


def mutate(
    data: bytes, rng: random.Random, *, max_bytes: int = MAX_BYTES
) -> tuple[bytes, list[str]]:
    """1-3 random mutations; the result cut to `max_bytes` (the handler's byte cap)."""
    names = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        fn = rng.choice(MUTATIONS)
        data = fn(data, rng) or data[:1]
        names.append(fn.__name__)
    return data[:max_bytes], names


# ---------------------------------------------------------------------------
# The run


@dataclass
class Tally:
    codes: Counter[str] = field(default_factory=Counter)
    handler_codes: Counter[str] = field(default_factory=Counter)
    unhandled: list[dict[str, Any]] = field(default_factory=list)
    over_bound: list[dict[str, Any]] = field(default_factory=list)
    slowest: dict[str, Any] = field(default_factory=lambda: {"seconds": 0.0})
    slowest_decode: dict[str, Any] = field(default_factory=lambda: {"decode_s": 0.0})


def run_one(
    data: bytes, *, handler: Callable[[bytes], str] | None
) -> tuple[str, str | None, float, float]:
    """-> (decode answer, handler answer, decode seconds, handler seconds)."""
    start = time.perf_counter()
    try:
        decode_image(data)
        answer = "ok"
    except InferenceError as exc:
        answer = exc.code
    except Exception:
        answer = "UNHANDLED " + traceback.format_exc(limit=-3)
    decode_s = time.perf_counter() - start
    if handler is None:
        return answer, None, decode_s, 0.0
    start = time.perf_counter()
    try:
        handled = handler(data)
    except Exception:
        handled = "UNHANDLED " + traceback.format_exc(limit=-3)
    return answer, handled, decode_s, time.perf_counter() - start


def make_handler(model: Path) -> Callable[[bytes], str]:
    from inference import Classifier, FetchConfig, handle_event

    classifier = Classifier.load(model)
    config = FetchConfig()

    def handler(data: bytes) -> str:
        outcome = handle_event(
            {"image": base64.b64encode(data).decode()}, classifier=classifier, fetch_config=config
        )
        return "ok" if outcome.error is None else outcome.error.code

    return handler


def fuzz(
    seeds: dict[str, bytes],
    *,
    n: int,
    rng: random.Random,
    handler: Callable[[bytes], str] | None,
    bound: float,
    out: Path | None,
) -> Tally:
    tally = Tally()
    names = sorted(seeds)
    for i in tqdm(range(n), desc="fuzz", unit="input", file=sys.stderr, mininterval=2):
        seed = names[i % len(names)]
        data, how = mutate(seeds[seed], rng)
        answer, handled, decode_s, handle_s = run_one(data, handler=handler)
        tally.codes[answer.split(" ", 1)[0]] += 1
        if handled is not None:
            tally.handler_codes[handled.split(" ", 1)[0]] += 1
        record = {
            "i": i,
            "seed": seed,
            "mutations": how,
            "bytes": len(data),
            "decode": answer[:2000],
            "handler": None if handled is None else handled[:2000],
            "decode_s": round(decode_s, 4),
            "handler_s": round(handle_s, 4),
        }
        if decode_s > tally.slowest_decode["decode_s"]:
            tally.slowest_decode = record
        seconds = max(decode_s, handle_s)
        if seconds > tally.slowest["seconds"]:
            tally.slowest = {**record, "seconds": round(seconds, 4)}
            _keep(out, "slowest", data)
        if answer.startswith("UNHANDLED") or (handled or "").startswith("UNHANDLED"):
            tally.unhandled.append(record)
            _keep(out, f"unhandled-{i}", data)
        if seconds > bound:
            tally.over_bound.append(record)
            _keep(out, f"slow-{i}", data)
    return tally


def _keep(out: Path | None, name: str, data: bytes) -> None:
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.bin").write_bytes(data)


def report(tally: Tally, *, n: int, seeds: int, bound: float, with_handler: bool) -> str:
    lines = [
        f"inputs: {n} mutants of {seeds} seed files",
        f"decode_image answers: {dict(sorted(tally.codes.items()))}",
    ]
    if with_handler:
        lines.append(f"handler answers: {dict(sorted(tally.handler_codes.items()))}")
    distinct = {c for c in [*tally.codes, *tally.handler_codes] if c != "ok"}
    lines += [
        f"distinct error codes: {len(distinct)} ({', '.join(sorted(distinct))})",
        f"unhandled exceptions: {len(tally.unhandled)}",
        f"over {bound:g} s: {len(tally.over_bound)}",
        "slowest: {seconds} s, {seed} after {mutations} ({bytes} bytes) -> {decode}".format(
            **tally.slowest
        )
        if "seed" in tally.slowest
        else "slowest: -",
    ]
    if "seed" in tally.slowest_decode:
        lines.append(
            "slowest decode_image: {decode_s} s, {seed} after {mutations} ({bytes} bytes)"
            " -> {decode}".format(**tally.slowest_decode)
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fuzz",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=10_000, help="fuzz inputs")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--photos", type=int, default=4, help="real photos to start from")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", type=Path, default=None, help="bundle: also run the handler")
    parser.add_argument("--bound", type=float, default=DEFAULT_BOUND_S, help="seconds per input")
    parser.add_argument(
        "--out", type=out_dir_arg, default=None, help="keep slow/unhandled inputs here"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("n", "photos"):
        if getattr(args, name) < 1:
            print(
                f"error: `--{name}` must be >= 1. Received: {getattr(args, name)}", file=sys.stderr
            )
            return 2
    if args.model is not None and not args.model.is_dir():
        print(f"error: --model: bundle folder not found: {args.model}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    try:
        seeds = seed_files(args.data_dir, args.photos, rng)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        handler = None if args.model is None else make_handler(args.model)
    except InferenceError as exc:  # a folder that is not a bundle
        print(f"error: --model: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    tally = fuzz(seeds, n=args.n, rng=rng, handler=handler, bound=args.bound, out=args.out)
    text = report(tally, n=args.n, seeds=len(seeds), bound=args.bound, with_handler=bool(handler))
    print(text + f"\nwall time: {time.perf_counter() - start:.0f} s")
    if args.out is not None:
        summary = {
            "n": args.n,
            "seed": args.seed,
            "codes": tally.codes,
            "handler_codes": tally.handler_codes,
            "unhandled": tally.unhandled,
            "over_bound": tally.over_bound,
            "slowest": tally.slowest,
            "slowest_decode": tally.slowest_decode,
        }
        (args.out / "fuzz.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 1 if tally.unhandled or tally.over_bound else 0


if __name__ == "__main__":
    sys.exit(main())
