"""Decode and validate one record with Pillow; every failure becomes a `Rejection` with a reason.

Catches null/empty bytes, undecodable and truncated files, decompression bombs (size is checked from the
header before any pixel is decoded), and converts the odd modes scrapes contain (CMYK, palette, 16-bit,
alpha, 1-bit) to RGB: alpha is composited on white, 16-bit is scaled, not clipped.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from PIL import Image

from canvas.core.images import (  # noqa: F401  (re-exported: curation's decode stage is their first user)
    MAX_BYTES,
    PILLOW_MAX_PIXELS,
    allow_in_pillow,
    check_image_path,
    open_image_file,
    open_rgb,
    to_rgb,
)
from canvas.curation.hashing import phashes, sha256_bytes, sha256_pixels
from canvas.curation.records import DECODE, RawRecord, Record, Rejection


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


def thumbnail(img: Image.Image, size: int) -> bytes:
    small = img.copy()
    small.thumbnail((size, size))
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def decode(raw: RawRecord, config: DecodeConfig, crop_scales: tuple[float, ...] = ()) -> Record | Rejection:
    """Validate and decode one raw record; never raises for bad data.

    `crop_scales`: also hash the central regions near dedup matches border crops against (hashed here,
    where the pixels are decoded anyway).
    """

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
    whole, regions = phashes(img, crop_scales)
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
        phash=whole,
        crop_phashes=regions,
        original_width=raw.original_width,
        original_height=raw.original_height,
    )
