"""pHash near-duplicates without a global index: banded LSH buckets, exact within a bucket.

Why it is exact (recall 1.0 against the global search): a 64-bit hash is cut into `radius + 1` bands. Two
hashes that differ in at most `radius` bits leave at least one band untouched (pigeonhole), so they meet
in the bucket (band index, band value) of that band. Inside a bucket the Hamming distance is checked
exactly, so no false pair survives either.

Engine-agnostic steps (the Beam stage wires them with GroupByKeys):
1. `band_keys`: the buckets a hash belongs to (radius + 1 of them).
2. `bucket_links`: one bucket -> a spanning forest of its within-radius pairs, as (uid, root uid) links.
3. `UnionFind`: the links -> connected components (only records that have a near duplicate appear).
4. `near_dedup.find_near_duplicates` on each component: today's keep-priority rule. A record's fate
   depends only on the records of its component, so this equals the global search record for record.

Border crops (`crop_phashes`, see `near_dedup.find_near_duplicates`): a second key space, bands numbered
from `CROP_BAND` on, cut for `crop_radius`. A whole hash and a central-region hash within `crop_radius`
share one of its buckets (the same pigeonhole); members there carry whether they are a region, and only
whole-vs-region pairs of different records link (`crop_bucket_links`).

Huge buckets: identical hashes collapse to one before the pairwise check (a bucket of a million equal
hashes costs a million, not 10^12); when more than `SPLIT_ABOVE` distinct hashes share a bucket it is
sub-split by the same pigeonhole rule on the bits not yet shared (still exact), so the pairwise check
stays within blocks of about that size. Memory per bucket is its members, about n / 2^(64 / (radius + 1))
records (n / 128 at the default radius 8).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from canvas.curation.arrays import true_cells
from canvas.curation.near_dedup import HashItem, NearDecision, find_near_duplicates

SPLIT_ABOVE = 2048  # distinct hashes in a bucket before it is sub-split
PAIR_BLOCK = 1024  # rows per block of the pairwise XOR-popcount (memory: PAIR_BLOCK x bucket size)
MAX_SPLIT_DEPTH = 2
CROP_BAND = 64  # crop-space band indices start here: whole-hash bands number at most 64 (0-63)


def bands(radius: int, bits: Iterable[int] = range(64)) -> list[list[int]]:
    """`bits` cut into min(radius + 1, len(bits)) contiguous bands of near-equal width."""
    bits = list(bits)
    n = max(1, min(radius + 1, len(bits)))
    edges = [round(i * len(bits) / n) for i in range(n + 1)]
    return [bits[edges[i] : edges[i + 1]] for i in range(n)]


def _mask(bits: list[int]) -> int:
    return sum(1 << b for b in bits)


def band_keys(phash: int, radius: int) -> list[tuple[int, int]]:
    """The (band index, band value) buckets of one hash; near hashes share at least one."""
    if radius >= 64:  # every pair is within the radius: one bucket
        return [(0, 0)]
    return [(i, phash & _mask(b)) for i, b in enumerate(bands(radius))]


def _close_pairs(hashes: np.ndarray, radius: int) -> Iterator[tuple[int, int]]:
    """Index pairs (i < j) of distinct hashes within `radius`, by blocked XOR + popcount."""
    for start in range(0, len(hashes), PAIR_BLOCK):
        block = hashes[start : start + PAIR_BLOCK]
        dist = np.bitwise_count(block[:, None] ^ hashes[None, :])
        rows, cols = true_cells(dist <= radius)
        rows = rows + start
        keep = rows < cols
        yield from zip(rows[keep].tolist(), cols[keep].tolist(), strict=True)


def _pairs(hashes: np.ndarray, radius: int, free_bits: list[int], depth: int) -> Iterator[tuple[int, int]]:
    """Pairs within radius among `hashes` (indices into it), all of which agree outside `free_bits`."""
    if len(hashes) <= SPLIT_ABOVE or depth >= MAX_SPLIT_DEPTH or len(free_bits) <= radius + 1:
        yield from _close_pairs(hashes, radius)
        return
    # Pigeonhole again on the bits that may still differ: a pair within radius shares one sub-band.
    for sub in bands(radius, free_bits):
        values = hashes & np.uint64(_mask(sub))
        order = np.argsort(values, kind="stable")
        cuts = np.flatnonzero(np.diff(values[order])) + 1
        rest = [b for b in free_bits if b not in set(sub)]
        for group in np.split(order, cuts):
            if len(group) > 1:
                for i, j in _pairs(hashes[group], radius, rest, depth + 1):
                    yield int(group[i]), int(group[j])


def bucket_links(members: Iterable[tuple[int, str]], radius: int, band: int = 0) -> list[tuple[str, str]]:
    """One bucket's (phash, uid) members -> (uid, root uid) links joining every within-radius pair.

    Returns a spanning forest (at most members - 1 links), not every pair: components are all that
    the next step needs, and a bucket of k copies yields k - 1 links instead of k^2 / 2.
    """
    by_hash: dict[int, list[str]] = {}
    for phash, uid in members:
        by_hash.setdefault(int(phash), []).append(uid)
    if sum(len(v) for v in by_hash.values()) < 2:
        return []
    values = sorted(by_hash)
    forest = UnionFind()
    for v in values:
        uids = sorted(by_hash[v])
        for uid in uids[1:]:
            forest.union(uids[0], uid)  # identical hashes: distance 0
    if len(values) > 1 and radius > 0:
        hashes = np.array(values, dtype=np.uint64)
        shared = bands(radius)[band] if radius < 64 else []
        free = [b for b in range(64) if b not in set(shared)]
        for i, j in _pairs(hashes, radius, free, 0):
            forest.union(by_hash[values[i]][0], by_hash[values[j]][0])
    return forest.links()


def crop_bucket_links(members: Iterable[tuple[int, str, bool]], crop_radius: int) -> list[tuple[str, str]]:
    """One crop-space bucket's (hash, uid, is_region) members -> links between records whose whole hash
    lies within `crop_radius` of another record's central-region hash."""
    whole: dict[int, list[str]] = {}
    region: dict[int, list[str]] = {}
    for h, uid, is_region in members:
        (region if is_region else whole).setdefault(int(h), []).append(uid)
    if not whole or not region:
        return []
    w_values, r_values = sorted(whole), sorted(region)
    w_arr, r_arr = np.array(w_values, dtype=np.uint64), np.array(r_values, dtype=np.uint64)
    forest = UnionFind()
    for start in range(0, len(w_arr), PAIR_BLOCK):
        dist = np.bitwise_count(w_arr[start : start + PAIR_BLOCK, None] ^ r_arr[None, :])
        for i, j in zip(*true_cells(dist <= crop_radius), strict=True):
            # Records with one whole hash are linked by the whole-hash space; link each region owner to one.
            owners = sorted(whole[w_values[start + int(i)]])
            for uid in region[r_values[int(j)]]:
                other = next((o for o in owners if o != uid), None)
                if other is not None:
                    forest.union(other, uid)
    return forest.links()


def crop_band_keys(item: HashItem, crop_radius: int) -> list[tuple[tuple[int, int], tuple[int, str, bool]]]:
    """(bucket, member) pairs of one record in the crop key space: its whole hash (always: it may be a crop
    of another record) and its region hashes (others may be crops of it)."""
    out = []
    hashes = [(item.phash, False)] + [(h, True) for h in item.crop_phashes]
    for h, is_region in hashes:
        for band, value in band_keys(h, crop_radius):
            out.append(((CROP_BAND + band, value), (h, item.uid, is_region)))
    return sorted(set(out))  # a region equal to the whole hash (flat images) needs its bucket once per kind


def band_members(item: HashItem, radius: int, crop_radius: int | None) -> list[tuple[tuple[int, int], tuple]]:
    """Every (bucket, member) of one record: whole-hash bands, then the crop space (None: crops off)."""
    whole = [(key, (item.phash, item.uid)) for key in band_keys(item.phash, radius)]
    return whole + (crop_band_keys(item, crop_radius) if crop_radius is not None else [])


def links(
    key: tuple[int, int], members: Iterable[tuple], radius: int, crop_radius: int
) -> list[tuple[str, str]]:
    """One bucket -> its links, in whichever key space the bucket belongs to."""
    if key[0] >= CROP_BAND:
        return crop_bucket_links(members, crop_radius)
    return bucket_links(members, radius, band=key[0])


class UnionFind:
    """Components over string ids; the root of a component is its smallest id (deterministic)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        self.parent.setdefault(a, a)
        self.parent.setdefault(b, b)
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            low, high = (ra, rb) if ra < rb else (rb, ra)
            self.parent[high] = low

    def merge(self, other: UnionFind) -> None:
        for a, b in other.links():
            self.union(a, b)

    def links(self) -> list[tuple[str, str]]:
        """(member, root) for every member that is not a root, sorted."""
        return sorted((x, self.find(x)) for x in list(self.parent) if self.find(x) != x)


def find_near_duplicates_banded(
    items: list[HashItem],
    radius: int,
    policy: str = "best",
    crop_radius: int = 4,
    crop_scales: tuple[float, ...] = (),
) -> list[NearDecision]:
    """The whole banded search in one process (tests, benches): equal to `find_near_duplicates`."""
    buckets: dict[tuple[int, int], list[tuple]] = {}
    for it in items:
        for key, member in band_members(it, radius, crop_radius if crop_scales else None):
            buckets.setdefault(key, []).append(member)
    forest = UnionFind()
    for key, members in buckets.items():
        for a, b in links(key, members, radius, crop_radius):
            forest.union(a, b)
    components: dict[str, list[HashItem]] = {}
    by_uid = {it.uid: it for it in items}
    for uid, root in forest.links():
        components.setdefault(root, [by_uid[root]]).append(by_uid[uid])
    decisions: list[NearDecision] = []
    for root in sorted(components):
        decisions += find_near_duplicates(
            components[root], radius, policy, crop_radius=crop_radius, crop_scales=crop_scales
        )
    return decisions
