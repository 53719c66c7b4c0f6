"""Opening untrusted images with limits: the one place that decodes image bytes or a user's image file.

Size is checked from the header before any pixel is decoded (a small file cannot make a process allocate
gigabytes), truncated files are never accepted, and odd modes (CMYK, palette, 16-bit, alpha) become RGB.
Curation's decode stage, the commands that open a user's file (`index query`, `score`) and the trainers that
decode images from Parquet all go through here.
"""

from __future__ import annotations

import io
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from canvas.core.errors import CanvasError

PILLOW_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit (Image.MAX_IMAGE_PIXELS)
MAX_BYTES = 64 * 1024 * 1024


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


def open_lazily(data: bytes, max_pixels: int = PILLOW_MAX_PIXELS) -> Image.Image:
    """`Image.open` (header only, nothing decoded yet) with the pixel limit checked: ValueError above it.

    For code that decodes images itself (the trainers' data loaders): Pillow alone only warns between its
    limit and twice it, so a 100-Mpx PNG would be decoded into gigabytes.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ValueError(f"too many pixels to decode (limit {max_pixels}): {exc}") from None
    if img.width * img.height > max_pixels:
        raise ValueError(
            f"{img.width}x{img.height} pixels is over the limit of {max_pixels} (decompression-bomb guard)"
        )
    return img
