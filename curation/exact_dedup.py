"""Exact dedup: unique input keys, then one record per decoded picture (sha256 of pixels; same bytes
implies same pixels, so one grouping catches both and the reason says which it was)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from canvas.curation.best_copy import copy_quality, why_kept
from canvas.curation.records import EXACT_DEDUP, Record, Rejection

EXACT_KEEP_POLICIES = ("best", "smallest_key")


@dataclass
class ExactDedupConfig:
    """Exact duplicates: repeated keys, identical bytes, identical pixels in another encoding."""

    enabled: bool = field(default=True, metadata={"help": "run exact dedup (keys, bytes, pixels)"})
    unique_keys: bool = field(
        default=True,
        metadata={"help": "reject every record whose key was already used by an earlier input row"},
    )
    keep: str = field(
        default="best",
        metadata={
            "help": "which copy of one picture survives: best (most original pixels per the rows' metadata, "
            "then key: identical pixels carry identical loss, so the encoding cannot decide) | smallest_key"
        },
    )


def dedup_same_key(records: Iterable[Record]) -> tuple[Record, list[Rejection]]:
    """Records sharing one key: the earliest input row keeps it, later rows are rejected."""
    ordered = sorted(records, key=lambda r: r.ordinal)
    first = ordered[0]
    rejections = [
        Rejection(
            key=r.key,
            stage=EXACT_DEDUP,
            reason=f"duplicate input key: first used by row {first.source}",
            source=r.source,
            duplicate_of=first.key,
        )
        for r in ordered[1:]
    ]
    return first, rejections


def dedup_same_pixels(records: Iterable[Record], policy: str = "best") -> tuple[Record, list[Rejection]]:
    """Records with identical decoded pixels: the best copy (or the smallest key) survives."""
    if policy not in EXACT_KEEP_POLICIES:
        raise ValueError(f"unknown exact-dedup keep policy {policy!r}")
    if policy == "best":
        # Identical pixels carry identical loss whatever the container (a PNG of a JPEG's pixels is no
        # better than the JPEG), so only the original size (row metadata) and then the key can decide.
        ordered = sorted(records, key=lambda r: (-copy_quality(r).pixels, r.rank_key))
    else:
        ordered = sorted(records, key=lambda r: r.rank_key)
    kept = ordered[0]
    rejections = []
    for r in ordered[1:]:
        if r.sha256 == kept.sha256:
            reason = f"identical bytes (sha256 {r.sha256[:16]}...)"
        else:
            reason = f"identical pixels in another encoding (pixel sha256 {r.pixel_sha256[:16]}...)"
        k, q = copy_quality(kept), copy_quality(r)
        why = why_kept(k, q) if policy == "best" and k.pixels != q.pixels else "same pixels: smaller key"
        reason += f"; kept {kept.key}: {why}"
        rejections.append(
            Rejection(
                key=r.key, stage=EXACT_DEDUP, reason=reason, source=r.source, duplicate_of=kept.key, score=1.0
            )
        )
    return kept, rejections
