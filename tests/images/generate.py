"""Regenerate the golden image files in this folder.

    python tests/images/generate.py

Each case is an input file and, where decoding must give exact pixels, an
`<name>.expected.npy` RGB array computed here with numpy from the source
pixels (not by inference's decoder), following the documented conversion in
inference/_decode.py. tests/test_decode.py reads them.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
W, H = 12, 8


def _rng_pixels(channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (H, W) if channels == 1 else (H, W, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _save_expected(name: str, rgb: np.ndarray) -> None:
    np.save(HERE / f"{name}.expected.npy", rgb.astype(np.uint8))


def _on_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float64) / 255.0
    return np.rint(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha))


def rgba_png() -> None:
    rgba = _rng_pixels(4, 1)
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 255  # one fully clear, one opaque pixel
    Image.fromarray(rgba, "RGBA").save(HERE / "rgba.png")
    _save_expected("rgba.png", _on_white(rgba))


def la_png() -> None:
    la = _rng_pixels(2, 2)
    Image.fromarray(la, "LA").save(HERE / "la.png")
    grey = la[..., :1].repeat(3, axis=2)
    _save_expected("la.png", _on_white(np.concatenate([grey, la[..., 1:]], axis=2)))


def palette_transparent(fmt: str) -> None:
    palette = [255, 0, 0, 0, 128, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    index = np.zeros((H, W), dtype=np.uint8)
    index[:, 4:8], index[:, 8:] = 1, 2
    img = Image.fromarray(index, "P")
    img.putpalette(palette)
    name = f"palette_transparent.{fmt.lower()}"
    img.save(HERE / name, format=fmt, transparency=1)  # green is transparent
    expected = np.array(palette[:9], dtype=np.uint8).reshape(3, 3)[index]
    expected[index == 1] = 255
    _save_expected(name, expected)


def grey_png() -> None:
    grey = _rng_pixels(1, 3)
    Image.fromarray(grey, "L").save(HERE / "grey.png")
    _save_expected("grey.png", np.stack([grey] * 3, axis=2))


def grey16_png() -> None:
    values = np.linspace(0, 65535, H * W).astype(np.uint16).reshape(H, W)
    Image.fromarray(values).save(HERE / "grey16.png")
    scaled = np.rint(values / 257.0)  # 16-bit -> 8-bit: 65535 / 255 = 257
    _save_expected("grey16.png", np.stack([scaled] * 3, axis=2))


def exif_rotated_png() -> None:
    """Stored 12x8 with orientation 6 (display rotated 90 degrees clockwise)."""
    rgb = _rng_pixels(3, 4)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation tag (EXIF 2.3, section 4.6.4)
    Image.fromarray(rgb, "RGB").save(HERE / "exif_rotated.png", exif=exif)
    _save_expected("exif_rotated.png", np.rot90(rgb, k=-1))


def animated(fmt: str) -> None:
    frames = [Image.new("RGB", (W, H), c) for c in ((250, 0, 0), (0, 0, 250))]
    name = f"animated.{fmt.lower()}"
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(
        HERE / name, format=fmt, save_all=True, append_images=frames[1:], duration=100, **kwargs
    )
    _save_expected(name, np.asarray(frames[0]))


def cmyk_jpeg() -> None:
    cmyk = _rng_pixels(4, 5)
    Image.fromarray(cmyk, "CMYK").save(HERE / "cmyk.jpg", quality=95)


def bmp_and_webp() -> None:
    rgb = _rng_pixels(3, 6)
    Image.fromarray(rgb, "RGB").save(HERE / "rgb.bmp")
    _save_expected("rgb.bmp", rgb)
    Image.fromarray(rgb, "RGB").save(HERE / "rgb.webp", lossless=True)
    _save_expected("rgb.webp", rgb)


def png_named_jpg() -> None:
    rgb = _rng_pixels(3, 7)
    Image.fromarray(rgb, "RGB").save(HERE / "png_named.jpg", format="PNG")
    _save_expected("png_named.jpg", rgb)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with one tiny IDAT: a pixel bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def bad_files() -> None:
    (HERE / "bomb_100000.png").write_bytes(_png_header_only(100_000, 100_000))
    (HERE / "bomb_9000.png").write_bytes(
        _png_header_only(9_000, 9_000)
    )  # 81 MP: under Pillow's error limit
    buf = io.BytesIO()
    Image.fromarray(_rng_pixels(3, 8), "RGB").resize((64, 64)).save(buf, format="JPEG")
    (HERE / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (HERE / "not_an_image.jpg").write_bytes(b"<html><body>Not found</body></html>")
    buf = io.BytesIO()
    Image.fromarray(_rng_pixels(3, 9), "RGB").save(buf, format="TIFF")
    (HERE / "tiff_named.jpg").write_bytes(buf.getvalue())
    (HERE / "empty.jpg").write_bytes(b"")


def main() -> None:
    rgba_png()
    la_png()
    palette_transparent("PNG")
    palette_transparent("GIF")
    grey_png()
    grey16_png()
    exif_rotated_png()
    for fmt in ("GIF", "WEBP", "PNG"):
        animated(fmt)
    cmyk_jpeg()
    bmp_and_webp()
    png_named_jpg()
    bad_files()
    print(f"wrote golden images to {HERE}")


if __name__ == "__main__":
    main()
