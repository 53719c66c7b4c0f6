"""The best copy survives every dedup stage: real photos with planted degraded variants whose keys sort
first, so a key or pixel-count tie-break (the old `largest`) would keep the variant."""

from __future__ import annotations

import io
from importlib import resources

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from canvas.curation.best_copy import CopyQuality, copy_quality, encoding_of, why_kept
from canvas.curation.decode import DecodeConfig, decode
from canvas.curation.exact_dedup import dedup_same_pixels
from canvas.curation.near_dedup import HashItem, find_near_duplicates
from canvas.curation.records import RawRecord, Record
from canvas.curation.semdedup import dedup_cluster

# PNG (lossless) and JPEG originals from the wheels (see canvas.core.sample_data).
PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "hubble": ("skimage", "data/hubble_deep_field.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}


def _encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _variants(img: Image.Image) -> dict[str, bytes]:
    """The degradations a scrape is full of, saved as JPEG as scrapes carry them (quality 75 default)."""
    w, h = img.size
    dx, dy = w // 40, h // 40  # 2.5% off each side: 5% of the width and height
    return {
        "jpeg35": _encode(img, "JPEG", quality=35),
        "bright112": _encode(ImageEnhance.Brightness(img).enhance(1.12), "JPEG"),
        "half": _encode(img.resize((w // 2, h // 2), Image.Resampling.LANCZOS), "JPEG"),
        "crop5": _encode(img.crop((dx, dy, w - dx, h - dy)).resize((w, h)), "JPEG"),
    }


def _record(key: str, data: bytes, row: int, **kw: object) -> Record:
    out = decode(RawRecord(key, "a caption of words", data, f"t#{row}", (0, row), **kw), DecodeConfig())
    assert isinstance(out, Record)
    return out


@pytest.fixture(scope="module")
def planted() -> list[Record]:
    """Each original `z-NAME` plus its variants `a-NAME-EDIT`: every variant's key sorts first."""
    records: list[Record] = []
    for name, (pkg, path) in PHOTOS.items():
        data = resources.files(pkg).joinpath(path).read_bytes()
        records.append(_record(f"z-{name}", data, len(records)))
        img = Image.open(io.BytesIO(data)).convert("RGB")
        for edit, variant in _variants(img).items():
            records.append(_record(f"a-{name}-{edit}", variant, len(records)))
    return records


def test_near_dedup_keeps_the_original_of_every_group(planted: list[Record]) -> None:
    items = [HashItem(r.key, r.phash, r.width * r.height, r.source, copy_quality(r)) for r in planted]
    removed = find_near_duplicates(items, radius=8, policy="best")
    by_key = {r.source: r.key for r in planted}
    gone = {by_key[d.uid] for d in removed}
    assert not any(k.startswith("z-") for k in gone), f"an original was removed: {sorted(gone)}"
    for d in removed:  # every removed variant names its own original, and says why that one won
        assert d.kept == "z-" + by_key[d.uid].split("-")[1]
        assert d.why.startswith(("more pixels", "lossless", "less lossy")), d.why
    # Re-encodes, brightness and half-size copies are all caught (the crops, resized back, too).
    assert len(gone) == 4 * len(PHOTOS)


def test_why_names_the_deciding_rule(planted: list[Record]) -> None:
    q = {r.key: copy_quality(r) for r in planted}
    assert why_kept(q["z-china"], q["a-china-half"]) == "more pixels 640x427 vs 320x213"
    assert why_kept(q["z-astronaut"], q["a-astronaut-jpeg35"]) == "lossless png vs lossy jpeg"
    assert why_kept(q["z-china"], q["a-china-jpeg35"]).startswith(
        "less lossy: 0.720 vs 0.119 bytes per pixel"
    )


def test_original_size_metadata_outranks_the_decoded_size() -> None:
    """img2dataset shards are resized on download: the row whose original was larger is the better copy."""
    img = Image.open(io.BytesIO(resources.files("sklearn").joinpath(PHOTOS["china"][1]).read_bytes()))
    data = _encode(img.convert("RGB"), "JPEG", quality=90)
    small_source = _record("a", data, 0, original_width=640, original_height=427)
    big_source = _record("b", data, 1, original_width=1280, original_height=854)
    kept, rejections = dedup_same_pixels([small_source, big_source])
    assert kept.key == "b"
    assert rejections[0].reason.endswith("kept b: more pixels 1280x854 vs 640x427")


def test_exact_dedup_lets_only_original_size_and_key_decide_identical_pixels() -> None:
    pixels = Image.fromarray(np.full((64, 64, 3), 128, dtype=np.uint8))
    jpeg = _encode(pixels, "JPEG", quality=100)
    png = _encode(Image.open(io.BytesIO(jpeg)).convert("RGB"), "PNG")  # the JPEG's pixels, losslessly
    kept, rejections = dedup_same_pixels([_record("b", png, 0), _record("a", jpeg, 1)])
    assert kept.key == "a" and rejections[0].reason.endswith("kept a: same pixels: smaller key")


def test_semdedup_best_keeps_the_better_copy() -> None:
    keys = ["a", "b"]
    x = np.ones((2, 4), dtype=np.float32) / 2
    qualities = [
        CopyQuality("a", "1", 100, 100, "jpeg", 0.1, clip_score=0.30),
        CopyQuality("b", "2", 200, 100, "jpeg", 0.1, clip_score=0.20),
    ]
    decisions = dedup_cluster(keys, x, np.zeros(2), np.zeros(2), 0.01, "best", qualities=qualities)
    assert [(d.key, d.duplicate_of, d.why) for d in decisions] == [
        ("a", "b", "more pixels 200x100 vs 100x100")
    ]
    qualities[1] = CopyQuality("b", "2", 100, 100, "jpeg", 0.1, clip_score=0.20)  # equal: CLIP score decides
    decisions = dedup_cluster(keys, x, np.zeros(2), np.zeros(2), 0.01, "best", qualities=qualities)
    assert [(d.key, d.why) for d in decisions] == [("b", "higher CLIP score 0.3000 vs 0.2000")]


def test_encoding_of_tells_lossless_webp_from_lossy() -> None:
    img = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8))
    assert encoding_of(_encode(img, "WEBP", lossless=True)) == "webp-lossless"
    assert encoding_of(_encode(img, "WEBP", quality=80)) == "webp"
    assert encoding_of(_encode(img, "PNG")) == "png" and encoding_of(b"junk") == "other"
