"""Decode and validate one record with Pillow; every failure becomes a `Rejection` with a reason.

Catches null/empty bytes, undecodable and truncated files, decompression bombs (size is checked from the
header before any pixel is decoded), and converts the odd modes scrapes contain (CMYK, palette, 16-bit,
alpha, 1-bit) to RGB: alpha is composited on white, 16-bit is scaled, not clipped.
"""

from __future__ import annotations

import io
import stat
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from canvas.core.errors import CanvasError
from canvas.curation.hashing import phash, sha256_bytes, sha256_pixels
from canvas.curation.records import DECODE, RawRecord, Record, Rejection

PILLOW_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit (Image.MAX_IMAGE_PIXELS)
MAX_BYTES = 64 * 1024 * 1024


@dataclass
class DecodeConfig:
    """Limits of the decode/validate stage. It always runs: every later stage needs pixels."""

    max_pixels: int = field(
        default=PILLOW_MAX_PIXELS,
        metadata={"help": "reject images with more pixels than this (decompression bombs); Pillow's limit"},
    )
    max_bytes: int = field(default=MAX_BYTES, metadata={"help": "reject encoded images larger than this"})
    thumbnail_px: int = field(
        default=96, metadata={"help": "longest side of the thumbnails kept for rejected records (report)"}
    )


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, compositing transparency on white and scaling high bit depths."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if img.mode in ("I", "F") and arr.max() <= 255:
            top = 255.0
        arr = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def thumbnail(img: Image.Image, size: int) -> bytes:
    small = img.copy()
    small.thumbnail((size, size))
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


_PILLOW_LIMIT_LOCK = threading.Lock()


def allow_in_pillow(max_pixels: int) -> None:
    """Raise Pillow's global bomb limit to at least `max_pixels`, so that our limit is the one enforced.

    Pillow refuses anything above 2 x MAX_IMAGE_PIXELS at open time, before our check could run. The
    global is process-wide, so it is only ever raised (never lowered: another part of the process may
    have set it higher on purpose, and None means it switched the check off); our own header check in
    `open_rgb` then enforces `max_pixels`. Done per call, not at startup, because it must happen in every
    worker process, including those that open records another process decoded (the model stages call it
    with the record's size); the lock keeps concurrent threads with different limits from lowering it.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or limit >= max_pixels:
        return
    with _PILLOW_LIMIT_LOCK:
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and limit < max_pixels:
            Image.MAX_IMAGE_PIXELS = max_pixels


def open_rgb(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """Decode bytes to a fully loaded RGB image; raises ValueError/OSError with a readable message,
    and DecompressionBombError above `max_pixels`.

    `max_pixels=None` is for bytes that already passed `decode`: re-checking them against Pillow's
    default would reject what a configured higher limit accepted.
    """
    if max_pixels is not None:
        allow_in_pillow(max_pixels)
    with warnings.catch_warnings():
        # Pillow warns above its own limit (>= ours, see above); the header check below rejects those
        # images as bombs with our limit in the message, so the warning adds nothing.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(data))
        pixels = img.width * img.height
        if max_pixels is not None and pixels > max_pixels:
            raise Image.DecompressionBombError(
                f"{img.width}x{img.height} = {pixels} pixels > limit {max_pixels}"
            )
        if ImageFile.LOAD_TRUNCATED_IMAGES:  # another library may have flipped this global; we never accept
            raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; truncated files would pass")
        img.load()
        return to_rgb(img)


def _one_line(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def check_image_path(path: str | Path, max_bytes: int = MAX_BYTES) -> None:
    """CanvasError unless `path` is a regular, non-empty file of at most `max_bytes` (stat only: cheap
    enough to check every file before a model loads; a FIFO or device is never opened)."""
    try:
        info = Path(path).stat()
    except FileNotFoundError:
        raise CanvasError(f"{path}: no such file") from None
    except OSError as exc:
        raise CanvasError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a special file"
        raise CanvasError(f"{path}: not a file ({kind}); give an image file")
    if info.st_size == 0:
        raise CanvasError(f"{path}: empty file (0 bytes), not an image")
    if info.st_size > max_bytes:
        raise CanvasError(f"{path}: {info.st_size} bytes is over the image size limit of {max_bytes} bytes")


def open_image_file(
    path: str | Path, max_pixels: int = PILLOW_MAX_PIXELS, max_bytes: int = MAX_BYTES
) -> Image.Image:
    """A user's image file as a loaded RGB image, under curation's limits, or a one-line CanvasError.

    The one way a command opens an image file (a query image, a picture to score): like `decode`, it
    refuses a picture over `max_pixels` from its header, before any pixel is decoded, so a small file
    cannot make the command allocate gigabytes.
    """
    check_image_path(path, max_bytes)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)  # bounded even if the file grew since the check
    except OSError as exc:
        raise CanvasError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise CanvasError(f"{path}: over the image size limit of {max_bytes} bytes")
    try:
        return open_rgb(data, max_pixels)
    except Image.DecompressionBombError as exc:
        raise CanvasError(
            f"{path}: too many pixels to decode, limit {max_pixels} (decompression-bomb guard): "
            f"{_one_line(str(exc))}"
        ) from None
    except Image.UnidentifiedImageError:
        raise CanvasError(f"{path}: not an image format Pillow can identify") from None
    except Exception as exc:  # Pillow plugins raise assorted types on hostile input (see `decode`)
        text = _one_line(str(exc)) or type(exc).__name__
        kind = "truncated" if "truncated" in text.lower() else "unreadable"
        raise CanvasError(f"{path}: {kind} image ({text})") from None


def decode(raw: RawRecord, config: DecodeConfig) -> Record | Rejection:
    """Validate and decode one raw record; never raises for bad data."""

    def reject(reason: str) -> Rejection:
        return Rejection(key=raw.key, stage=DECODE, reason=reason, source=raw.source)

    if raw.error is not None:  # the reader could not read this part of the file at all
        return reject(raw.error)
    if raw.image is None:
        return reject("no image bytes (null)")
    if len(raw.image) == 0:
        return reject("empty image (0 bytes)")
    if len(raw.image) > config.max_bytes:
        return reject(f"encoded image is {len(raw.image)} bytes > max_bytes {config.max_bytes}")
    try:
        img = open_rgb(raw.image, config.max_pixels)
    except Image.DecompressionBombError as exc:  # Pillow's own (> 2x its limit) or our header check
        return reject(f"decompression bomb: {exc}")
    except Image.UnidentifiedImageError:
        return reject("undecodable: not an image format Pillow can identify")
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        text = str(exc) or type(exc).__name__
        kind = "truncated" if "truncated" in text.lower() else "undecodable"
        return reject(f"{kind}: {text}")
    except Exception as exc:  # Pillow plugins raise assorted types on hostile input; none may crash a run
        return reject(f"undecodable: {type(exc).__name__}: {exc}")
    if img.width == 0 or img.height == 0:
        return reject(f"empty image ({img.width}x{img.height})")
    return Record(
        key=raw.key,
        caption=raw.caption,
        image=raw.image,
        source=raw.source,
        ordinal=raw.ordinal,
        width=img.width,
        height=img.height,
        sha256=sha256_bytes(raw.image),
        pixel_sha256=sha256_pixels(img),
        phash=phash(img),
    )
