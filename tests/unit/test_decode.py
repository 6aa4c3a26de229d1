"""Decoding by content: every awkward image normalised, every bad file rejected with a reason."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnlab.data.decode import Rejected, decode, pixel_sha


def _bytes(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def _noise(size=(24, 24), mode="RGB", seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def _rejected(data: bytes, **kwargs) -> str:
    with pytest.raises(Rejected) as caught:
        decode(data, **kwargs)
    return caught.value.reason


def test_plain_rgb_jpeg_and_png_keep_their_bytes():
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png")):
        data = _bytes(_noise(), fmt)
        decoded = decode(data)
        assert decoded.image.mode == "RGB" and decoded.image.size == (24, 24)
        assert decoded.original == data and decoded.ext == ext
        assert decoded.encoded() == (data, ext)


def test_grayscale_stays_single_channel():
    decoded = decode(_bytes(_noise(mode="L"), "PNG"))
    assert decoded.image.mode == "L" and decoded.grayscale
    assert decoded.original is not None


def test_cmyk_jpeg_becomes_rgb():
    data = _bytes(Image.new("CMYK", (24, 24), (0, 255, 255, 0)), "JPEG", quality=95)
    decoded = decode(data)
    assert decoded.image.mode == "RGB"
    red, green, blue = decoded.image.getpixel((12, 12))
    assert red > 200 and green < 60 and blue < 60
    assert decoded.original is None  # CMYK bytes are re-encoded


def test_16_bit_png_is_scaled_to_8_bit_gray():
    pixels = np.array([[0, 32896, 65535] * 8] * 24, dtype=np.uint16)
    image = Image.fromarray(pixels)
    assert image.mode.startswith("I;16")
    data = _bytes(image, "PNG")
    decoded = decode(data)
    assert decoded.image.mode == "L"
    assert decoded.image.getpixel((0, 0)) == 0
    assert decoded.image.getpixel((1, 0)) == 128
    assert decoded.image.getpixel((2, 0)) == 255
    assert decoded.original is None


def test_16_bit_rgb_png_is_not_stored_as_is():
    pixels = (np.arange(24 * 24 * 3).reshape(24, 24, 3) * 50).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    data = _png(24, 24, bit_depth=16, colour_type=2, idat=zlib.compress(raw))
    decoded = decode(data)
    assert decoded.image.mode == "RGB"
    assert decoded.original is None


def test_palette_with_transparency_is_composited_over_white():
    image = Image.new("P", (24, 24), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (0, 0, 12, 24))
    data = _bytes(image, "PNG", transparency=0)
    decoded = decode(data)
    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((2, 2)) == (0, 0, 255)
    assert decoded.image.getpixel((20, 2)) == (255, 255, 255)  # transparent red -> white


def test_gray_palette_becomes_l():
    image = Image.new("P", (24, 24), 0)
    image.putpalette([0, 0, 0, 128, 128, 128] + [7, 9, 11] * 254)
    image.paste(1, (0, 0, 12, 24))
    decoded = decode(_bytes(image, "PNG"))
    assert decoded.image.mode == "L"
    assert decoded.image.getpixel((2, 2)) == 128


def test_rgba_and_la_are_composited_over_white():
    rgba = Image.new("RGBA", (24, 24), (0, 0, 0, 0))
    rgba.paste((10, 20, 30, 255), (0, 0, 12, 24))
    decoded = decode(_bytes(rgba, "PNG"))
    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((2, 2)) == (10, 20, 30)
    assert decoded.image.getpixel((20, 2)) == (255, 255, 255)

    half = Image.new("LA", (24, 24), (0, 128))
    decoded = decode(_bytes(half, "PNG"))
    assert decoded.image.mode == "L"
    assert decoded.image.getpixel((5, 5)) in (126, 127, 128)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (30, 20), (200, 0, 0))
    image.paste((0, 0, 200), (0, 0, 10, 20))  # blue stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = _bytes(image, "JPEG", exif=exif.tobytes(), quality=95)
    decoded = decode(data)
    assert decoded.image.size == (20, 30)
    top = decoded.image.getpixel((10, 2))
    assert top[2] > 150 and top[0] < 80  # the left stripe is now at the top
    assert decoded.original is None  # rotated pixels must be re-encoded


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (24, 24), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50)
    decoded = decode(buffer.getvalue())
    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((5, 5)) == (255, 0, 0)


def test_other_modes_are_normalised():
    one_bit = Image.new("1", (24, 24), 1)
    assert decode(_bytes(one_bit, "PNG")).image.mode == "L"
    floats = Image.fromarray(np.full((24, 24), 0.5, dtype=np.float32), "F")
    decoded = decode(_bytes(floats, "TIFF"))
    assert decoded.image.mode == "L" and decoded.image.getpixel((0, 0)) == 128
    bmp = decode(_bytes(_noise(), "BMP"))
    assert bmp.image.mode == "RGB" and bmp.original is None


def test_decoded_by_content_not_extension():
    png_bytes = _bytes(_noise(), "PNG")
    assert decode(png_bytes).ext == "png"  # whatever the upload called it


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"hello, I am a text file pretending to be a PNG\n", "not an image: the file holds text"),
        (bytes(range(256)) * 4, "not an image"),
        (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>',
            "SVG file: vector images are not supported; export it as PNG or JPEG",
        ),
        (b"<svg width='10'></svg>", "vector images are not supported"),
        (b"%PDF-1.4\n%...", "PDF file: vector images are not supported"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "EPS/PostScript file: vector images"),
    ],
)
def test_unusable_files_are_rejected_with_a_reason(data, reason):
    assert reason in _rejected(data)


def test_truncated_jpeg():
    data = _bytes(_noise((64, 64)), "JPEG")
    reason = _rejected(data[: len(data) // 2])
    assert reason.startswith("truncated")


def test_corrupt_png_data():
    data = bytearray(_bytes(_noise((32, 32)), "PNG"))
    data[60:80] = b"\x00" * 20  # damage the compressed pixel data
    reason = _rejected(bytes(data))
    assert reason.startswith(("corrupt", "truncated"))


def test_too_small_says_the_minimum():
    assert _rejected(_bytes(_noise((5, 7)), "PNG")) == ("too small: 5x7 pixels; the minimum is 8x8")
    assert decode(_bytes(_noise((8, 8)), "PNG")).image.size == (8, 8)


def test_pixel_limit_is_checked_from_the_header():
    data = _bytes(_noise((40, 40)), "PNG")
    assert _rejected(data, max_pixels=1000).startswith("too large: 40x40 pixels")


def test_decompression_bomb_header_is_refused_cleanly():
    # A 100 kB PNG whose header claims 60000 x 60000 pixels (3.6 gigapixels).
    data = _png(60000, 60000, bit_depth=8, colour_type=0, idat=zlib.compress(b"\x00" * 1000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Pillow warning may escape
        reason = _rejected(data)
    assert reason.startswith("too large") and "megapixels" in reason
    # Between our limit and Pillow's: our own check answers, still without a warning.
    data = _png(7000, 7000, bit_depth=8, colour_type=0, idat=zlib.compress(b"\x00" * 1000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _rejected(data).startswith("too large: 7000x7000 pixels")


def test_pixel_sha_ignores_format_and_gray_vs_rgb():
    gray = _noise(mode="L")
    assert pixel_sha(gray) == pixel_sha(gray.convert("RGB"))
    png = decode(_bytes(gray, "PNG"))
    bmp = decode(_bytes(gray, "BMP"))
    assert png.sha == bmp.sha
    assert png.sha != decode(_bytes(_noise(mode="L", seed=1), "PNG")).sha


def _png(width: int, height: int, *, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_heic_gets_a_specific_reason():
    data = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100
    assert _rejected(data).startswith("HEIC/HEIF photos are not supported")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_damaged_files_only_ever_raise_rejected(fmt):
    """Random byte damage: an image or a Rejected, never another exception or a warning."""
    original = _bytes(_noise((32, 32)), fmt)
    rng = np.random.default_rng(0)
    for _ in range(60):
        data = bytearray(original)
        for position in rng.integers(0, len(data), size=int(rng.integers(1, 12))):
            data[position] = int(rng.integers(0, 256))
        cut = int(rng.integers(len(data) // 2, len(data) + 1))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                decoded = decode(bytes(data[:cut]))
        except Rejected as rejected:
            assert rejected.reason
        else:
            assert decoded.image.mode in ("L", "RGB")
