"""Perceptual near-duplicates: 64-bit pHash within a Hamming radius, searched globally with a FAISS binary
index (`IndexBinaryFlat.range_search`: exact, popcount over packed codes, not Python pairs).

Decision rule (shared with SemDeDup's "keep one per group", but without chaining): records are visited in
keep-priority order; a record is removed when an already kept record lies within the radius, and it
names that record (the nearest) as `duplicate_of`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from canvas.curation.hashing import phash_to_bytes

NEAR_KEEP_POLICIES = ("largest", "smallest_key")


@dataclass
class NearDedupConfig:
    """Perceptual near-dup detection with pHash."""

    enabled: bool = field(default=True, metadata={"help": "run pHash near-dup detection"})
    hamming_radius: int = field(
        default=8,
        metadata={
            "help": "pHash bits (of 64) two images may differ in and still count as copies. Sample set: "
            "re-encodes/resizes differ by 0, a 5% crop by 6, distinct photos by >= 20"
        },
    )
    keep: str = field(
        default="largest",
        metadata={"help": "which copy survives: largest (most pixels, then key) | smallest_key"},
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


def priority(items: list[HashItem], policy: str) -> list[int]:
    if policy == "largest":
        return sorted(range(len(items)), key=lambda i: (-items[i].pixels, items[i].key, items[i].uid))
    if policy == "smallest_key":
        return sorted(range(len(items)), key=lambda i: (items[i].key, items[i].uid))
    raise ValueError(f"unknown near-dedup keep policy {policy!r}; known: {', '.join(NEAR_KEEP_POLICIES)}")


def find_near_duplicates(
    items: list[HashItem], radius: int, policy: str = "largest", query_batch: int = 65536
) -> list[tuple[str, str, int]]:
    """Returns (removed uid, kept key, Hamming distance) for every record that goes."""
    import faiss

    if len(items) < 2:
        return []
    order = priority(items, policy)
    codes = phash_to_bytes([items[i].phash for i in order])
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    kept = np.zeros(len(order), dtype=bool)
    removed: list[tuple[str, str, int]] = []
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
                removed.append((items[order[pos]].uid, items[order[hits[best]]].key, int(hit_dist[best])))
            else:
                kept[pos] = True
    return removed
