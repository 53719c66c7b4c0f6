"""A DataComp pool with its downloaded images: metadata/ (Parquet + .npz) and shards/ (WebDataset tars whose
.json names the uid), joined by uid. The image stages run on the pixels, the CLIP stages on the pool's own
embeddings; pool rows that were not downloaded and samples without a pool row are rejections with reasons."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from canvas.curation.pool import submission_array
from canvas.pipelines.curate import run_curation

ROOT = Path(__file__).resolve().parents[2]


def _make_pool(out: Path, n: int) -> None:
    spec = importlib.util.spec_from_file_location("make_pool", ROOT / "bench" / "make_pool.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_pool(out, n, shards=2, seed=3)


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_shard(path: Path, samples: list[tuple[str, bytes, dict]]) -> None:
    """img2dataset's WebDataset layout: KEY.png, KEY.txt, KEY.json (uid, original size)."""
    with tarfile.open(path, "w") as tar:
        for key, image, meta in samples:
            for ext, data in (("png", image), ("txt", b"a caption"), ("json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_a_pool_with_its_images_is_curated_on_pixels_and_the_pools_embeddings(tmp_path: Path) -> None:
    _make_pool(tmp_path / "metadata", 120)
    rows = [
        r
        for shard in sorted((tmp_path / "metadata").glob("*.parquet"))
        for r in pq.read_table(shard).to_pylist()
    ]
    downloaded, missing = rows[:100], rows[100:]
    samples = [(f"{i:09d}", _png(i), {"uid": r["uid"]}) for i, r in enumerate(downloaded)]
    samples[1] = (samples[1][0], samples[0][1], samples[1][2])  # two uids, the same picture: exact dedup
    samples.append(("000000900", _png(900), {"uid": "f" * 32}))  # a sample without a pool row
    samples.append(("000000901", _png(901), {}))  # a sidecar that names no uid
    (tmp_path / "shards").mkdir()
    _write_shard(tmp_path / "shards" / "00000000.tar", samples[:60])
    _write_shard(tmp_path / "shards" / "00000001.tar", samples[60:])

    report = run_curation([str(tmp_path / "metadata"), str(tmp_path / "shards")], tmp_path / "out")
    assert report["pool_images"] and report["invariant_holds"]
    assert report["input_count"] == 120 + 2  # pool rows + samples without one
    rejected = pq.read_table(tmp_path / "out" / "rejected").to_pylist()
    reasons = {r["key"]: r["reason"] for r in rejected if r["stage"] == "decode"}
    assert all("not downloaded" in reasons[r["uid"]] for r in missing)
    assert "has no row in the pool's metadata" in reasons["000000900"]
    assert "names no DataComp uid" in reasons["000000901"]
    exact = [r for r in rejected if r["stage"] == "exact_dedup"]
    assert [r["duplicate_of"] for r in exact] in ([downloaded[0]["uid"]], [downloaded[1]["uid"]])
    assert "near_dedup" not in report["skipped_stages"] and "clip (embedding)" in report["skipped_stages"]
    # The CLIP score is the pool's (img . txt of its b32 rows), the pixels those downloaded for the uid.
    arrays = {}
    for shard in sorted((tmp_path / "metadata").glob("*.npz")):
        table = pq.read_table(shard.with_suffix(".parquet"))
        with np.load(shard) as npz:
            for uid, img, txt in zip(table["uid"].to_pylist(), npz["b32_img"], npz["b32_txt"], strict=True):
                img, txt = img.astype(np.float32), txt.astype(np.float32)
                arrays[uid] = float(img @ txt / np.linalg.norm(img) / np.linalg.norm(txt))
    curated = pq.read_table(tmp_path / "out" / "curated").to_pylist()
    assert curated and all(abs(r["clip_score"] - arrays[r["key"]]) < 1e-6 for r in curated)
    image_of = {meta["uid"]: image for _, image, meta in samples if "uid" in meta}
    assert all(r["image"] == image_of[r["key"]] for r in curated)
    assert (
        np.load(tmp_path / "out" / "uids.npy").tolist()
        == submission_array([r["key"] for r in curated]).tolist()
    )
