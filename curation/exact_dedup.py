"""Exact dedup: unique input keys, then one record per decoded picture (sha256 of pixels; same bytes
implies same pixels, so one grouping catches both and the reason says which it was)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from canvas.curation.records import EXACT_DEDUP, Record, Rejection


@dataclass
class ExactDedupConfig:
    """Exact duplicates: repeated keys, identical bytes, identical pixels in another encoding."""

    enabled: bool = field(default=True, metadata={"help": "run exact dedup (keys, bytes, pixels)"})
    unique_keys: bool = field(
        default=True,
        metadata={"help": "reject every record whose key was already used by an earlier input row"},
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


def dedup_same_pixels(records: Iterable[Record]) -> tuple[Record, list[Rejection]]:
    """Records with identical decoded pixels: the smallest key survives."""
    ordered = sorted(records, key=lambda r: r.rank_key)
    kept = ordered[0]
    rejections = []
    for r in ordered[1:]:
        if r.sha256 == kept.sha256:
            reason = f"identical bytes (sha256 {r.sha256[:16]}...)"
        else:
            reason = f"identical pixels in another encoding (pixel sha256 {r.pixel_sha256[:16]}...)"
        rejections.append(
            Rejection(
                key=r.key, stage=EXACT_DEDUP, reason=reason, source=r.source, duplicate_of=kept.key, score=1.0
            )
        )
    return kept, rejections
