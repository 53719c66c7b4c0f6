"""The basic filter judges img2dataset/DataComp rows as DataComp does: size and aspect on the original size
the row carries (shards are resized on download), characters on the raw caption."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from canvas.curation.decode import DecodeConfig, decode
from canvas.curation.filters import BasicFilterConfig, basic_filter
from canvas.curation.language import LanguageConfig
from canvas.curation.records import RawRecord, Record
from canvas.curation.sources import read_parquet, read_webdataset

CAPTION = "a wide photo of a harbour at dusk"


def _jpeg(size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize(size)
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def _decoded(raw: RawRecord) -> Record:
    record = decode(raw, DecodeConfig())
    assert isinstance(record, Record)  # the stored image is still decoded and validated
    return record


def _img2dataset_parquet(path: Path) -> Path:
    """A shard as img2dataset writes it: bytes in `jpg`, the pre-resize size beside them."""
    rows = [
        # 1200x400 resized to fit 512: 512x171, whose short side alone would fail min_side 200.
        {"key": "wide", "caption": CAPTION, "jpg": _jpeg((512, 171)), "original_width": 1200, "original_height": 400},
        # Stored 512x512 (center-cropped/padded), but the original was a 6:1 strip.
        {"key": "strip", "caption": CAPTION, "jpg": _jpeg((512, 512)), "original_width": 1800, "original_height": 300},
        # No usable metadata: the decoded size decides.
        {"key": "small", "caption": CAPTION, "jpg": _jpeg((512, 171)), "original_width": None, "original_height": 0},
    ]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_img2dataset_rows_are_filtered_on_their_original_size(tmp_path: Path) -> None:
    path = _img2dataset_parquet(tmp_path / "shard.parquet")
    with path.open("rb") as f:
        records = {r.key: _decoded(r) for r in read_parquet(f, str(path), 0)}
    reasons = {key: basic_filter(r, BasicFilterConfig()) for key, r in records.items()}
    assert reasons["wide"] is None  # kept: DataComp sees a 1200x400 original, aspect 3.0
    assert reasons["strip"] == "original image is 1800x300 (stored 512x512): aspect ratio 6.00 > 3.0"
    assert reasons["small"] == "image is 512x171: shorter side 171 < 200 px"


def test_webdataset_json_sidecar_carries_the_original_size(tmp_path: Path) -> None:
    path = tmp_path / "shard.tar"
    meta = json.dumps({"caption": CAPTION, "original_width": 1200, "original_height": 400}).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in (("s1.jpg", _jpeg((512, 171))), ("s1.json", meta)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with path.open("rb") as f:
        (raw,) = list(read_webdataset(f, str(path), 0))
    assert (raw.original_width, raw.original_height) == (1200, 400)
    assert basic_filter(_decoded(raw), BasicFilterConfig()) is None


def test_caption_characters_are_counted_on_the_raw_text() -> None:
    """DataComp: `len(text) > 5` on the raw caption, `len(text.split()) > 2`."""

    def reason(caption: str) -> str | None:
        raw = RawRecord("k", caption, _jpeg((300, 300)), "t#0", (0, 0))
        return basic_filter(_decoded(raw), BasicFilterConfig(language=LanguageConfig(enabled=False)))

    assert reason(" a b c") is None  # 6 raw characters, 3 words: DataComp keeps it
    assert reason("a b c") == "caption has 5 characters < 6"
    assert reason("a b ") == "caption has 2 word(s) < 3"
    assert reason("   ") == "no caption"


def test_binned_percentile_equals_the_sorted_percentile_exactly() -> None:
    # The distributed CLIP-score percentile (bin counts, then the scores of one bin) must give the very
    # threshold the single-worker sort gives: ties, clumps inside one bin, out-of-range values, n = 1.
    from canvas.curation.filters import percentile_bin, percentile_threshold, score_bin, threshold_in_bin

    rng = np.random.default_rng(0)
    cases = [
        rng.normal(0.25, 0.05, 5000),
        np.round(rng.normal(0.3, 0.01, 3000), 3),  # many ties
        0.3 + rng.random(2000) * 1e-4,  # everything inside one 0.001 bin
        np.array([1.0000001, -1.2, 0.5, 0.5, 0.2]),
        np.array([0.42]),
    ]
    for scores in cases:
        for top in (0.01, 1, 30, 50, 99.9, 100):
            counts = np.bincount([score_bin(s) for s in scores], minlength=2001)
            target = percentile_bin(counts, top)
            in_bin = [float(s) for s in scores if score_bin(s) == target[0]]
            assert threshold_in_bin(in_bin, target) == percentile_threshold(scores, top)
    assert threshold_in_bin([], percentile_bin(np.zeros(2001, dtype=int), 30)) == float("-inf")


def test_a_record_without_a_size_is_rejected_even_when_min_side_is_0() -> None:
    """A pool row with null original_width/height is 0x0; with `min_side: 0` the aspect ratio divided by
    zero and the ZeroDivisionError failed the whole pipeline instead of rejecting one record."""
    record = Record("k", CAPTION, b"", "pool#0", (0, 0), 0, 0, "", "", 0)
    config = BasicFilterConfig(min_side=0, language=LanguageConfig(enabled=False))
    assert basic_filter(record, config) == "image is 0x0: no size to judge"
