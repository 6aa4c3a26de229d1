"""Decode one uploaded file into a normalised image, or say in plain words why not.

Every file is identified by its content, never its extension. A readable image is
normalised once: EXIF orientation applied, the first frame of an animation taken,
transparency composited over white, CMYK / 16-bit / palette / float images turned into
8-bit ``L`` (grayscale) or ``RGB``. Anything else becomes a :class:`Rejected` carrying a
reason a person understands ("too small: 5x7 pixels; the minimum is 8x8").

Pillow's own decompression-bomb guard is replaced by an explicit pixel limit that is
checked from the header, before any pixel is decoded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Smallest side we accept; smaller images carry too little to learn from or look at.
MIN_SIDE = 8
# Largest image (width x height) we decode: 40 megapixels, about 120 MB as RGB.
MAX_PIXELS = 40_000_000
# Largest single file we read into memory.
MAX_FILE_BYTES = 128 * 1024 * 1024

_WHITE = {"L": 255, "RGB": (255, 255, 255)}
_HIGH_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_HEIF_BRANDS = {b"ftyp" + brand for brand in (b"heic", b"heix", b"hevc", b"heim", b"mif1")}


class Rejected(Exception):
    """A file that is not a usable image; ``reason`` is shown to the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Decoded:
    """A normalised image, ready to store.

    Attributes:
        image: the pixels, mode ``L`` or ``RGB``, orientation applied.
        sha: SHA-256 of the pixels (see :func:`pixel_sha`).
        original: the file's own bytes when they already hold exactly ``image`` in a
            format every decoder reads (8-bit JPEG or PNG, L or RGB, no rotation, one
            frame); storing them avoids a re-encode. ``None`` when a re-encode is needed.
        ext: the extension for ``original`` (``jpg`` or ``png``).
    """

    image: Image.Image
    sha: str
    original: bytes | None = None
    ext: str = "png"

    @property
    def grayscale(self) -> bool:
        return self.image.mode == "L"

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    def encoded(self, mode: str | None = None) -> tuple[bytes, str]:
        """The bytes to store and their extension, converting to ``mode`` if given."""
        image = self.image
        if mode is not None and image.mode != mode:
            image = image.convert(mode)
        elif self.original is not None:
            return self.original, self.ext
        return encode_png(image), "png"


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # compress_level 1: files a little larger than the default, several times faster.
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def pixel_sha(image: Image.Image) -> str:
    """SHA-256 of an image's pixels and size, the same for a gray image and its RGB copy.

    Grayscale pixels are hashed as RGB so that a picture stored gray in one upload and
    as (equal-channel) RGB in another is still recognised as the same picture, and so a
    dataset that turns from gray to colour keeps every hash.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def decode(
    data: bytes,
    *,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> Decoded:
    """Decode and normalise one file's bytes.

    Args:
        data: the whole file.
        max_pixels: refuse images with more pixels than this (decompression bombs).
        min_side: refuse images whose width or height is smaller.

    Returns:
        The normalised image.

    Raises:
        Rejected: with a reason for the user when the file is not a usable image.
    """
    if not data:
        raise Rejected("empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise Rejected(
            f"file too large ({len(data) / 2**20:.0f} MB); the limit is "
            f"{MAX_FILE_BYTES // 2**20} MB per image"
        )
    if data[4:12] in _HEIF_BRANDS:
        raise Rejected("HEIC/HEIF photos are not supported; export it as JPEG or PNG")
    vector = _vector_kind(data)
    if vector:
        raise Rejected(f"{vector} file: vector images are not supported; export it as PNG or JPEG")
    # We apply our own pixel limit below, and a damaged file's metadata warnings
    # (TIFF tags, EXIF) mean nothing to the user: no Pillow warning escapes.
    with _warnings_ignored():
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise Rejected(_too_many_pixels_reason(None, max_pixels)) from None
        except UnidentifiedImageError:
            raise Rejected(_not_an_image_reason(data)) from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as error:
            raise Rejected(f"corrupt image: {short_reason(error)}") from None
        try:
            # No ``with``: closing would free the pixels we may hand back unchanged.
            return _normalise(image, data, max_pixels=max_pixels, min_side=min_side)
        except Rejected:
            raise
        except Exception as error:  # a decoder plugin's own bug must not cost other files
            raise Rejected(f"corrupt image: {short_reason(error)}") from None


class _InQuietThread:
    """Matches any warning text, but only in a thread inside :func:`_warnings_ignored`.

    Used as the message pattern of one warnings filter (the warnings machinery calls
    its ``match``), so ignoring warnings during a decode is a per-thread switch:
    ``warnings.catch_warnings`` would swap the process-wide filter list and need one
    lock held for the whole decode, which made every session wait for the others.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def active(self) -> bool:
        return getattr(self._local, "depth", 0) > 0

    def enter(self) -> None:
        self._local.depth = getattr(self._local, "depth", 0) + 1

    def leave(self) -> None:
        self._local.depth -= 1

    def match(self, text: str) -> bool:
        return self.active


_QUIET = _InQuietThread()
_IGNORE_IN_QUIET_THREADS = ("ignore", _QUIET, Warning, None, 0)


@contextlib.contextmanager
def _warnings_ignored() -> Iterator[None]:
    """Ignore every warning raised in this thread until the block ends; other threads
    keep their warnings and decode in parallel."""
    filters = warnings.filters
    if not filters or filters[0] is not _IGNORE_IN_QUIET_THREADS:
        # First, so a caller's own filters (e.g. "error") do not win; idempotent and
        # never restored, so threads doing this at once cannot undo each other.
        with contextlib.suppress(ValueError):
            filters.remove(_IGNORE_IN_QUIET_THREADS)
        filters.insert(0, _IGNORE_IN_QUIET_THREADS)
        mutated = getattr(warnings, "_filters_mutated", None)
        if mutated is not None:
            mutated()  # as warnings.filterwarnings does: forget cached decisions
    _QUIET.enter()
    try:
        yield
    finally:
        _QUIET.leave()


def _normalise(image: Image.Image, data: bytes, *, max_pixels: int, min_side: int) -> Decoded:
    width, height = image.size
    if width * height > max_pixels:
        raise Rejected(_too_many_pixels_reason((width, height), max_pixels))
    if width < min_side or height < min_side:
        raise Rejected(f"too small: {width}x{height} pixels; the minimum is {min_side}x{min_side}")
    file_format = image.format
    raw_mode = _raw_mode(image)  # read before load(), which clears the tile list
    try:
        frames = getattr(image, "n_frames", 1)
        image.seek(0)
        image.load()
    except Image.DecompressionBombError:
        raise Rejected(_too_many_pixels_reason((width, height), max_pixels)) from None
    except OSError as error:
        if "truncated" in str(error).lower():
            raise Rejected("truncated: the file ends before the image data does") from None
        raise Rejected(f"corrupt image: {short_reason(error)}") from None
    except (SyntaxError, ValueError, EOFError, struct.error, zlib.error, MemoryError) as error:
        raise Rejected(f"corrupt image: {short_reason(error)}") from None

    source_mode = image.mode
    rotated = _orientation(image) not in (0, 1)
    if rotated:
        try:
            image = ImageOps.exif_transpose(image)
        except Exception:  # a broken EXIF block must not cost a readable picture
            rotated = False
    result = _to_l_or_rgb(image)

    original = None
    ext = "png"
    if (
        file_format in ("JPEG", "PNG")
        and frames == 1
        and not rotated
        and source_mode in ("L", "RGB")
        and raw_mode == source_mode
        and "transparency" not in image.info
    ):
        original, ext = data, ("jpg" if file_format == "JPEG" else "png")
    return Decoded(image=result, sha=pixel_sha(result), original=original, ext=ext)


def _to_l_or_rgb(image: Image.Image) -> Image.Image:
    """Turn any Pillow mode into 8-bit L or RGB; alpha is composited over white."""
    mode = image.mode
    if mode in ("L", "RGB"):
        if "transparency" not in image.info:
            return image
        return _flatten(image.convert("LA" if mode == "L" else "RGBA"))
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        gray = _gray_palette(image)
        if "transparency" in image.info:
            flat = _flatten(image.convert("RGBA"))
            return flat.convert("L") if gray else flat
        return image.convert("L" if gray else "RGB")
    if mode in ("LA", "La"):
        return _flatten(image.convert("LA"))
    if mode in ("RGBA", "RGBa", "PA"):
        return _flatten(image.convert("RGBA"))
    if mode in _HIGH_BIT_MODES:
        return _high_bit_to_l(image)
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...


def _flatten(image: Image.Image) -> Image.Image:
    """Composite an LA or RGBA image over white."""
    target = "L" if image.mode == "LA" else "RGB"
    background = Image.new(target, image.size, _WHITE[target])
    background.paste(image.convert(target), mask=image.getchannel("A"))
    return background


def _high_bit_to_l(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float grayscale to 8-bit, keeping the full range visible."""
    pixels = np.asarray(image).astype(np.float64)
    if image.mode == "F" and pixels.size and np.nanmax(pixels) <= 1.0:
        pixels = pixels * 255.0
    elif pixels.size and np.nanmax(pixels) > 255:
        top = 65535.0 if np.nanmax(pixels) <= 65535 else float(np.nanmax(pixels))
        pixels = pixels * (255.0 / top)
    pixels = np.nan_to_num(pixels, nan=0.0)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")


def _gray_palette(image: Image.Image) -> bool:
    palette = image.getpalette("RGB") or []
    used = image.getcolors(256) or []
    for _, index in used:
        red, green, blue = palette[3 * index : 3 * index + 3] or (0, 0, 0)
        if not red == green == blue:
            return False
    return True


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # unreadable EXIF: treat as upright
        return 1


def _raw_mode(image: Image.Image) -> str | None:
    """The decoder's raw mode (e.g. ``RGB;16B`` for a 16-bit PNG reduced to 8 bits)."""
    tile = getattr(image, "tile", None)
    if tile:
        args = tile[0][3] if len(tile[0]) > 3 else None
        if isinstance(args, tuple):
            return args[0]
        return args
    return image.mode


def _vector_kind(data: bytes) -> str | None:
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"%PDF-"):
        return "PDF"
    if head.startswith(b"%!PS") or data[:4] == b"\xc5\xd0\xd3\xc6":
        return "EPS/PostScript"
    lowered = head.lower()
    if lowered.startswith((b"<?xml", b"<svg", b"<!doctype svg")) and b"<svg" in lowered:
        return "SVG"
    if data[:2] == b"\x1f\x8b" and b"<svg" in _gunzip_head(data):
        return "SVGZ"
    return None


def _gunzip_head(data: bytes) -> bytes:
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[:4096], 4096).lower()
    except zlib.error:
        return b""


def from_image(image: Image.Image) -> Decoded:
    """Normalise an in-memory image (the built-in samples) like an uploaded one."""
    result = _to_l_or_rgb(image)
    return Decoded(image=result, sha=pixel_sha(result))


def _not_an_image_reason(data: bytes) -> str:
    sample = data[:512]
    try:
        sample.decode("utf-8")
        looks_text = all(byte >= 9 for byte in sample)
    except UnicodeDecodeError:
        looks_text = False
    if looks_text:
        return "not an image: the file holds text"
    return "not an image: its content matches no image format Pillow can read"


def _too_many_pixels_reason(size: tuple[int, int] | None, max_pixels: int) -> str:
    shown = f"{size[0]}x{size[1]} pixels" if size else "more pixels than Pillow allows"
    return (
        f"too large: {shown}; the limit is {max_pixels / 1e6:g} megapixels "
        "(very large images are refused as possible decompression bombs)"
    )


def short_reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:160]
