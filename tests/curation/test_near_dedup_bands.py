"""Banded LSH near dedup equals the global FAISS search: same removals, same survivors, same reasons."""

from __future__ import annotations

import numpy as np
import pytest

from canvas.curation import near_dedup_bands
from canvas.curation.near_dedup import HashItem, find_near_duplicates
from canvas.curation.near_dedup_bands import band_keys, bands, bucket_links, find_near_duplicates_banded


def _flip(h: int, rng: np.random.Generator, flips: int) -> int:
    for bit in rng.choice(64, flips, replace=False):
        h ^= 1 << int(bit)
    return h


def _planted(seed: int, n: int, radius: int) -> list[HashItem]:
    """Random hashes plus copies at every distance 0..radius+1, chains and clusters of copies."""
    rng = np.random.default_rng(seed)
    base = [int(v) for v in rng.integers(0, 2**63, n, dtype=np.uint64)]
    items = [HashItem(f"k{i:05d}", h, int(rng.integers(50, 200)), f"s{i}") for i, h in enumerate(base)]
    for j in range(n // 4):
        h = base[j]
        for c in range(int(rng.integers(1, 4))):  # a chain: each copy is an edit of the previous one
            h = _flip(h, rng, int(rng.integers(0, radius + 2)))
            items.append(HashItem(f"d{j:05d}-{c}", h, int(rng.integers(50, 200)), f"d{j}-{c}"))
    return items


def _as_set(decisions: list) -> set:
    return {(d.uid, d.kept, d.distance, d.why) for d in decisions}


@pytest.mark.parametrize(
    ("radius", "policy"),
    [(0, "best"), (3, "best"), (8, "best"), (12, "best"), (8, "largest"), (8, "smallest_key")],
)
def test_banded_search_decides_exactly_like_the_global_search(radius: int, policy: str) -> None:
    items = _planted(radius, 800, radius)
    expected = find_near_duplicates(items, radius, policy)
    assert len(expected) > 60  # the planted copies are found at all
    assert _as_set(find_near_duplicates_banded(items, radius, policy)) == _as_set(expected)


def test_every_pair_within_the_radius_shares_a_band() -> None:
    # Pigeonhole: radius + 1 bands, at most radius differing bits -> one band untouched. Recall 1.0.
    rng = np.random.default_rng(3)
    for radius in (1, 5, 8, 15):
        assert sum(len(b) for b in bands(radius)) == 64
        for _ in range(300):
            a = int(rng.integers(0, 2**63, dtype=np.uint64))
            b = _flip(a, rng, radius)
            assert set(band_keys(a, radius)) & set(band_keys(b, radius))


def test_a_huge_bucket_is_sub_split_without_losing_a_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    # 4000 hashes sharing band 0 (as a flat image region would): the sub-split must find the same pairs.
    rng = np.random.default_rng(4)
    radius = 8
    shared = band_keys(0, radius)[0][1]
    hashes = [(int(v) & ~((1 << len(bands(radius)[0])) - 1)) | shared for v in rng.integers(0, 2**63, 3000)]
    hashes += [_flip(h, rng, int(rng.integers(1, 9))) & ~((1 << 8) - 1) for h in hashes[:1000]]
    members = [(h, f"u{i:05d}") for i, h in enumerate(hashes)]
    split = bucket_links(members, radius, band=0)
    monkeypatch.setattr(near_dedup_bands, "SPLIT_ABOVE", 10**9)  # the plain all-pairs check
    whole = bucket_links(members, radius, band=0)
    assert split == whole and len(whole) >= 900


def test_identical_hashes_collapse_before_the_pairwise_check() -> None:
    links = bucket_links([(7, f"u{i}") for i in range(50_000)], radius=8)
    assert len(links) == 49_999 and {root for _, root in links} == {"u0"}


def _planted_crops(seed: int, n: int, crop_radius: int) -> tuple[list[HashItem], tuple[float, ...]]:
    """Records with central-region hashes; 'crops' whose whole hash lies near another's region, flat images
    whose region equals their own whole hash, and crops of crops."""
    rng = np.random.default_rng(seed)
    scales = (0.9, 0.8)
    items = []
    for i in range(n):
        whole = int(rng.integers(0, 2**63, dtype=np.uint64))
        regions = (whole, whole) if i % 10 == 0 else tuple(_flip(whole, rng, 20) for _ in scales)
        items.append(HashItem(f"k{i:05d}", whole, int(rng.integers(50, 200)), f"s{i}", crop_phashes=regions))
    for j in range(n // 3):
        src = items[j if j % 10 else j + 1]  # not a flat one: its crops would also match the whole hash
        crop = _flip(src.crop_phashes[j % 2], rng, int(rng.integers(0, crop_radius + 2)))
        regions = tuple(_flip(crop, rng, 10) for _ in scales)
        items.append(HashItem(f"c{j:05d}", crop, int(rng.integers(50, 200)), f"c{j}", crop_phashes=regions))
    return items, scales


@pytest.mark.parametrize(("crop_radius", "policy"), [(0, "best"), (4, "best"), (6, "smallest_key")])
def test_banded_search_with_crop_hashes_decides_exactly_like_the_global_search(
    crop_radius: int, policy: str
) -> None:
    items, scales = _planted_crops(crop_radius, 600, crop_radius)
    expected = find_near_duplicates(items, 8, policy, crop_radius=crop_radius, crop_scales=scales)
    crops = [d for d in expected if "border crop" in d.match]
    assert len(crops) > 60  # the planted crops are found through their regions (either one may go)
    banded = find_near_duplicates_banded(items, 8, policy, crop_radius=crop_radius, crop_scales=scales)
    assert {(*d,) for d in banded} == {(*d,) for d in expected}
    # Without crop scales only whole hashes match: none of the crops (whole hashes >= 13 apart) is found.
    assert not [d for d in find_near_duplicates(items, 8, policy) if d.uid.startswith("c")]


def test_a_region_never_matches_a_region_nor_its_own_whole_hash() -> None:
    r, scales = (1 << 32) - 1, (0.9, 0.8)
    a = HashItem("a", 0, 100, "a", crop_phashes=(r, r))
    b = HashItem("b", (1 << 64) - 1, 100, "b", crop_phashes=(r ^ 0xF00, r ^ 0xF00))  # regions 4 bits from a's
    flat = HashItem("c", 0xAAAA_AAAA_AAAA_AAAA, 100, "c", crop_phashes=(0xAAAA_AAAA_AAAA_AAAA,) * 2)
    for search in (find_near_duplicates, find_near_duplicates_banded):
        assert search([a, b, flat], 8, crop_radius=4, crop_scales=scales) == []
    crop = HashItem("d", r ^ 1, 100, "d")  # its whole hash is 1 bit from a's centre: d is a crop of a
    for search in (find_near_duplicates, find_near_duplicates_banded):
        (d,) = search([a, b, flat, crop], 8, "smallest_key", crop_radius=4, crop_scales=scales)
        assert (d.uid, d.kept, d.distance) == ("d", "a", 1)
        assert d.match == "a border crop of a: pHash 1 bits (<= 4) from a's centre at scale 0.9"
