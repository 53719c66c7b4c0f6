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
# Central regions hashed beside the whole image: a 5-20% border crop (2.5-10% off each side) resized back
# lands within a few bits of the original's region at the nearest of these (bench_near_dup_variants.py).
CROP_SCALES = (0.95, 0.925, 0.9, 0.875, 0.85, 0.8)


@dataclass
class NearDedupConfig:
    """Perceptual near-dup detection with pHash."""

    enabled: bool = field(default=True, metadata={"help": "run pHash near-dup detection"})
    hamming_radius: int = field(
        default=8,
        metadata={
            "help": "pHash bits (of 64) two whole images may differ in and still count as copies. Real "
            "photos and tiles: re-encodes/resizes/brightness 0-2 on average, distinct >= 14"
        },
    )
    crop_scales: list[float] = field(
        default_factory=lambda: list(CROP_SCALES),
        metadata={
            "help": "border crops: also hash each image's central region keeping these fractions of each "
            "dimension; an image whose whole pHash is within crop_radius of one is a crop of it. [] = off"
        },
    )
    crop_radius: int = field(
        default=4,
        metadata={
            "help": "bits a crop's whole pHash may differ from the original's central-region hash. Real "
            "photos and tiles: 2.5-20% crops 1.2 on average at the nearest scale, distinct images >= 12"
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
    crop_phashes: tuple[int, ...] = ()  # pHashes of its central regions at the config's crop_scales


class NearDecision(NamedTuple):
    """One removed record: its uid, the kept key it copies, their Hamming distance, why that one won, and
    which hashes matched (`match`, the rejection reason's words)."""

    uid: str
    kept: str
    distance: int
    why: str
    match: str = ""


def match_words(kept: str, distance: int, radius: int, crop: tuple[float, bool] | None = None) -> str:
    """The reason's words for one match: whole image against whole image, or which one is a crop of which.

    `crop`: (scale, removed_is_crop); `radius` is the radius of the hashes that matched.
    """
    if crop is None:
        return f"pHash Hamming distance {distance} <= {radius}"
    scale, removed_is_crop = crop
    if removed_is_crop:
        return f"a border crop of {kept}: pHash {distance} bits (<= {radius}) from {kept}'s centre at scale {scale:g}"
    return f"{kept} is a border crop of it: {kept}'s pHash {distance} bits (<= {radius}) from its centre at scale {scale:g}"


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


def _crop_edges(
    items: list[HashItem], order: list[int], crop_radius: int, query_batch: int
) -> dict[int, list[tuple[int, int, int, bool]]]:
    """Pairs (by priority position) where one image's whole pHash is within `crop_radius` of the other's
    central-region hash: position -> [(other position, distance, scale index, this one is the crop)].
    Regions are never compared with regions (that brings distinct photos closer, docs/benchmarks.md)."""
    import faiss

    regions = [(pos, s, h) for pos, i in enumerate(order) for s, h in enumerate(items[i].crop_phashes)]
    edges: dict[int, list[tuple[int, int, int, bool]]] = {}
    if not regions:
        return edges
    index = faiss.IndexBinaryFlat(64)
    index.add(phash_to_bytes([h for _, _, h in regions]))
    whole = phash_to_bytes([items[i].phash for i in order])
    for start in range(0, len(order), query_batch):
        lims, dist, ids = index.range_search(whole[start : start + query_batch], crop_radius + 1)
        for q in range(len(lims) - 1):
            lo, hi = lims[q], lims[q + 1]
            for hit, d in zip(ids[lo:hi].tolist(), dist[lo:hi].tolist(), strict=True):
                owner, scale, _ = regions[hit]
                pos = start + q
                if owner != pos:  # whole(pos) ~ centre(owner): pos is a crop of owner
                    edges.setdefault(pos, []).append((owner, int(d), scale, True))
                    edges.setdefault(owner, []).append((pos, int(d), scale, False))
    return edges


def find_near_duplicates(
    items: list[HashItem],
    radius: int,
    policy: str = "best",
    query_batch: int = 65536,
    crop_radius: int = 4,
    crop_scales: tuple[float, ...] = (),
) -> list[NearDecision]:
    """Returns a decision for every record that goes (the rest are kept).

    Two records match when their whole-image pHashes are within `radius`, or (items with `crop_phashes`,
    taken at `crop_scales`) when one's whole pHash is within `crop_radius` of the other's central region.
    """
    import faiss

    if len(items) < 2:
        return []
    order = priority(items, policy)
    codes = phash_to_bytes([items[i].phash for i in order])
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    crops = _crop_edges(items, order, crop_radius, query_batch) if crop_scales else {}
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
            match: tuple[int, int, tuple[float, bool] | None] | None = None  # (position, distance, crop)
            if mask.any():
                best = int(np.argmin(np.where(mask, hit_dist, 1 << 30)))
                match = (int(hits[best]), int(hit_dist[best]), None)
            for other, d, scale, is_crop in crops.get(pos, []):
                if other < pos and kept[other] and (match is None or d < match[1]):
                    match = (other, d, (crop_scales[scale], is_crop))
            if match is None:
                kept[pos] = True
                continue
            gone, kept_item = items[order[pos]], items[order[match[0]]]
            words = match_words(
                kept_item.key, match[1], radius if match[2] is None else crop_radius, match[2]
            )
            removed.append(
                NearDecision(gone.uid, kept_item.key, match[1], _why(policy, kept_item, gone), words)
            )
    return removed
