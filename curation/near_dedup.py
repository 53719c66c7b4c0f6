"""Perceptual near-duplicates: 64-bit pHash within a Hamming radius, searched globally with a FAISS binary
index (`IndexBinaryFlat.range_search`: exact, popcount over packed codes, not Python pairs).

Decision rule (shared with SemDeDup's "keep one per group", but without chaining): records are visited in
keep-priority order; a record is removed when an already kept record lies within the radius, and it
names that record (the nearest) as `duplicate_of`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from canvas.curation.best_copy import CopyQuality, best_first, why_kept
from canvas.curation.hashing import phash_to_bytes

# best: most original pixels, least lossy encoding, CLIP score, key (curation/best_copy.py).
# largest: most decoded pixels, then key (the old default). smallest_key: key only.
NEAR_KEEP_POLICIES = ("best", "largest", "smallest_key")


@dataclass
class NearDedupConfig:
    """Perceptual near-dup detection with pHash."""

    enabled: bool = field(default=True, metadata={"help": "run pHash near-dup detection"})
    hamming_radius: int = field(
        default=8,
        metadata={
            "help": "pHash bits (of 64) two images may differ in and still count as copies. Sample photos: "
            "re-encodes/resizes/brightness 0-4, border crops 2.5% up to 12 and 5% up to 18, distinct >= 20"
        },
    )
    keep: str = field(
        default="best",
        metadata={
            "help": "which copy survives: best (most original pixels, then lossless ahead of lossy, then "
            "more bytes per pixel, then key) | largest (most decoded pixels, then key) | smallest_key"
        },
    )
    query_batch: int = field(
        default=65536, metadata={"help": "queries per FAISS range search call (memory bound)"}
    )


@dataclass(frozen=True)
class HashItem:
    """What near dedup needs of a record: its hash and what ranks it."""

    key: str
    phash: int
    pixels: int
    uid: str  # unique per input row (its source), so decisions join back even if keys repeat
    quality: CopyQuality | None = None  # what `best` ranks by; None ranks by decoded pixels alone


class NearDecision(NamedTuple):
    """One removed record: its uid, the kept key it copies, their Hamming distance, why that one won."""

    uid: str
    kept: str
    distance: int
    why: str


def _quality(item: HashItem) -> CopyQuality:
    return item.quality or CopyQuality(item.key, item.uid, item.pixels, 1, "other", 0.0)


def _why(policy: str, kept: HashItem, removed: HashItem) -> str:
    if policy == "best":
        return why_kept(_quality(kept), _quality(removed))
    if policy == "largest" and kept.pixels != removed.pixels:
        return f"more pixels ({kept.pixels} vs {removed.pixels})"
    return "smaller key"


def priority(items: list[HashItem], policy: str) -> list[int]:
    if policy == "best":
        return best_first([_quality(item) for item in items])
    if policy == "largest":
        return sorted(range(len(items)), key=lambda i: (-items[i].pixels, items[i].key, items[i].uid))
    if policy == "smallest_key":
        return sorted(range(len(items)), key=lambda i: (items[i].key, items[i].uid))
    raise ValueError(f"unknown near-dedup keep policy {policy!r}; known: {', '.join(NEAR_KEEP_POLICIES)}")


def find_near_duplicates(
    items: list[HashItem], radius: int, policy: str = "best", query_batch: int = 65536
) -> list[NearDecision]:
    """Returns a decision for every record that goes (the rest are kept)."""
    import faiss

    if len(items) < 2:
        return []
    order = priority(items, policy)
    codes = phash_to_bytes([items[i].phash for i in order])
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    kept = np.zeros(len(order), dtype=bool)
    removed: list[NearDecision] = []
    for start in range(0, len(order), query_batch):
        # FAISS binary range search returns distances strictly below the radius it is given.
        lims, dist, ids = index.range_search(codes[start : start + query_batch], radius + 1)
        for q in range(len(lims) - 1):
            pos = start + q
            lo, hi = lims[q], lims[q + 1]
            hits, hit_dist = ids[lo:hi], dist[lo:hi]
            # Only records earlier in priority order can have been kept before this one.
            mask = (hits < pos) & kept[np.clip(hits, 0, None)]
            if mask.any():
                best = int(np.argmin(np.where(mask, hit_dist, 1 << 30)))
                gone, kept_item = items[order[pos]], items[order[hits[best]]]
                why = _why(policy, kept_item, gone)
                removed.append(NearDecision(gone.uid, kept_item.key, int(hit_dist[best]), why))
            else:
                kept[pos] = True
    return removed
