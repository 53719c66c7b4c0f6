"""Which copy of a duplicate group is the best one: the rule every dedup stage uses (`keep: best`).

Order (first difference decides): most original pixels (`original_width * original_height` when the row
carries them, as img2dataset/DataComp shards do, else the decoded size), then the least lossy encoding
(lossless PNG/WebP-lossless/BMP/TIFF ahead of JPEG, lossy WebP, GIF, ...), then, between lossy copies,
more encoded bytes per pixel (a quality-35 re-encode has far fewer than its source), then the higher CLIP
score where known, then the smaller key (and input position), so the choice is deterministic.

Between two lossless copies bytes per pixel say nothing about quality (only about the compressor's
effort), so they are not compared. Limit: an edit saved losslessly at the original size (a brightened PNG
of a PNG) ties with its source on every rule but the key; measured in docs/benchmarks.md.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace

from canvas.curation.records import CompactPickle, Record

LOSSLESS = frozenset({"png", "webp-lossless", "bmp", "tiff"})


def encoding_of(data: bytes) -> str:
    """The container/codec of encoded image bytes, from their magic numbers (no decoding)."""
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data.startswith(b"GIF8"):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        # Walk the chunks: a VP8L chunk is lossless, VP8 (with or without ALPH) lossy.
        pos = 12
        while pos + 8 <= len(data):
            fourcc, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
            if fourcc == b"VP8L":
                return "webp-lossless"
            if fourcc == b"VP8 ":
                return "webp"
            pos += 8 + size + (size & 1)
        return "webp"
    return "other"


@dataclass(frozen=True)
class CopyQuality(CompactPickle):
    """What ranks one copy. `width`/`height` are the original size (metadata) or the decoded one."""

    key: str
    uid: str  # unique per input row (its source): the last tie-break
    width: int
    height: int
    encoding: str
    bytes_per_pixel: float  # encoded bytes / decoded pixels
    clip_score: float | None = None
    pixel_sha256: str = ""  # of the decoded pixels: equal for the same picture in another encoding

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def lossless(self) -> bool:
        return self.encoding in LOSSLESS

    @property
    def lossy_bytes_per_pixel(self) -> float:
        """Bytes per pixel where they measure loss (lossy encodings); 0 for lossless copies."""
        return 0.0 if self.lossless else round(self.bytes_per_pixel, 6)

    def rank(self) -> tuple:
        """Sort ascending: the best copy comes first."""
        known = self.clip_score is not None
        return (
            -self.pixels,
            not self.lossless,
            -self.lossy_bytes_per_pixel,
            not known,
            -(self.clip_score if known else 0.0),
            self.key,
            self.uid,
        )


def best_first(qualities: Sequence[CopyQuality]) -> list[int]:
    """Indices of `qualities` in keep order (the best copy first).

    Copies with identical decoded pixels are one picture in several encodings: a lossless re-save of a
    JPEG's pixels is no better than the JPEG (the same pixels lose the same amount in any format), so within
    such a class every copy ranks with the class's best encoding and the key decides, as exact dedup does.
    """
    best: dict[str, CopyQuality] = {}
    for q in qualities:
        if q.pixel_sha256:
            held = best.get(q.pixel_sha256)
            if held is None or (not q.lossless, -q.lossy_bytes_per_pixel) < (
                not held.lossless,
                -held.lossy_bytes_per_pixel,
            ):
                best[q.pixel_sha256] = q

    def key(i: int) -> tuple:
        q = qualities[i]
        enc = best.get(q.pixel_sha256, q) if q.pixel_sha256 else q
        return replace(q, encoding=enc.encoding, bytes_per_pixel=enc.bytes_per_pixel).rank()

    return sorted(range(len(qualities)), key=key)


def copy_quality(record: Record, with_clip_score: bool = True) -> CopyQuality:
    """A record's quality; original size from the row's metadata when it has one."""
    has_original = bool(record.original_width) and bool(record.original_height)
    width = record.original_width if has_original else record.width
    height = record.original_height if has_original else record.height
    return CopyQuality(
        key=record.key,
        uid=record.source,
        width=int(width),
        height=int(height),
        encoding=encoding_of(record.image),
        bytes_per_pixel=len(record.image) / max(1, record.width * record.height),
        clip_score=record.clip_score if with_clip_score else None,
        pixel_sha256=record.pixel_sha256,
    )


def why_kept(kept: CopyQuality, removed: CopyQuality) -> str:
    """Why `kept` won over `removed`: the first rule of the order that tells them apart."""
    if kept.pixels != removed.pixels:
        return f"more pixels {kept.width}x{kept.height} vs {removed.width}x{removed.height}"
    if kept.pixel_sha256 and kept.pixel_sha256 == removed.pixel_sha256:
        return "identical pixels (another encoding of the same picture): smaller key"
    if kept.lossless != removed.lossless:
        return f"lossless {kept.encoding} vs lossy {removed.encoding}"
    if kept.lossy_bytes_per_pixel != removed.lossy_bytes_per_pixel:
        return (
            f"less lossy: {kept.bytes_per_pixel:.3f} vs {removed.bytes_per_pixel:.3f} bytes per pixel "
            f"({kept.encoding} vs {removed.encoding})"
        )
    if kept.clip_score is not None and kept.clip_score != removed.clip_score:
        other = "unknown" if removed.clip_score is None else f"{removed.clip_score:.4f}"
        return f"higher CLIP score {kept.clip_score:.4f} vs {other}"
    return "same size, encoding and score: smaller key"
