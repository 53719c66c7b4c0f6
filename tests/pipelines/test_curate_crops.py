"""`canvas curate` catches border crops of real photos (resized back) as near duplicates of their originals,
and merges no distinct real photos (issue 17, item 2: the whole-image pHash alone let 5-10% crops through)."""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from canvas.cli import main
from canvas.core.sample_data import PHOTOS

CONFIG = "clip:\n  enabled: false\nclip_score:\n  mode: 'off'\nnsfw:\n  enabled: false\nsemdedup:\n  enabled: false\n"
# (photo, fraction of each dimension cropped away, half off each side). Whole-image pHash distances from
# the original: 10-20, beyond the radius 8 (the old detector kept every one of them).
CROPPED = {"astronaut": 0.10, "chelsea": 0.10, "china": 0.15, "coffee": 0.20, "hopper": 0.10}


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _crop(img: Image.Image, frac: float) -> bytes:
    w, h = img.size
    dx, dy = round(w * frac / 2), round(h * frac / 2)
    return _encode(img.crop((dx, dy, w - dx, h - dy)).resize((w, h)), "JPEG")


def test_border_crops_of_real_photos_are_near_duplicates_and_distinct_photos_survive(tmp_path: Path) -> None:
    rows = []
    for pkg, path, name, caption in PHOTOS:  # all 19 distinct real photos, lossless
        img = Image.open(io.BytesIO(resources.files(pkg).joinpath(path).read_bytes())).convert("RGB")
        rows.append({"key": f"orig-{name}", "caption": caption, "image": _encode(img, "PNG")})
        if (
            name in CROPPED
        ):  # its crop's key sorts first: the keep rule, not the order, must pick the original
            rows.append({"key": f"a-crop-{name}", "caption": caption, "image": _crop(img, CROPPED[name])})
    data = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    (tmp_path / "c.yaml").write_text(CONFIG)
    out = tmp_path / "out"
    assert (
        main(["curate", "--input", str(data), "--output", str(out), "--config", str(tmp_path / "c.yaml")])
        == 0
    )
    curated, rejected = pq.read_table(out / "curated"), pq.read_table(out / "rejected").to_pylist()
    assert sorted(curated.column("key").to_pylist()) == sorted(f"orig-{name}" for *_, name, _ in PHOTOS)
    assert sorted(r["key"] for r in rejected) == sorted(f"a-crop-{name}" for name in CROPPED)
    for row in rejected:
        original = "orig-" + row["key"].removeprefix("a-crop-")
        assert row["stage"] == "near_dedup" and row["duplicate_of"] == original, row
        # The reason says which hashes matched and why the original won.
        assert row["reason"].startswith(f"near duplicate of {original}: a border crop of {original}: pHash ")
        assert f"from {original}'s centre at scale 0." in row["reason"], row["reason"]
        assert row["reason"].endswith("lossless png vs lossy jpeg"), row["reason"]
    assert curated.num_rows + len(rejected) == len(rows)  # in = kept + rejected


def test_crop_matching_off_switch(tmp_path: Path) -> None:
    """`near_dedup.crop_scales: []` is the old whole-image detector: a 10% crop of a real photo survives."""
    pkg, path, name, caption = PHOTOS[0]
    img = Image.open(io.BytesIO(resources.files(pkg).joinpath(path).read_bytes())).convert("RGB")
    rows = [
        {"key": "orig", "caption": caption, "image": _encode(img, "PNG")},
        {"key": "crop", "caption": caption, "image": _crop(img, 0.10)},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    (tmp_path / "c.yaml").write_text(CONFIG + "near_dedup:\n  crop_scales: []\n")
    args = ["--input", str(tmp_path / "in.parquet"), "--config", str(tmp_path / "c.yaml")]
    assert main(["curate", *args, "--output", str(tmp_path / "out")]) == 0
    assert pq.read_table(tmp_path / "out" / "curated").num_rows == 2
