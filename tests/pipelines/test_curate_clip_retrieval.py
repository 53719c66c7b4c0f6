"""clip-retrieval's embeddings folder (img_emb/ text_emb/ metadata/) through `canvas curate`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from canvas.core.errors import CanvasError
from canvas.curation.pool import submission_array
from canvas.pipelines.curate import run_curation

ROOT = Path(__file__).resolve().parents[2]


def _clip_retrieval_folder(tmp: Path, n: int, uids: bool) -> Path:
    spec = importlib.util.spec_from_file_location("make_pool", ROOT / "bench" / "make_pool.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_pool(tmp / "pool", n, shards=2, seed=3)
    module.as_clip_retrieval(tmp / "pool", tmp / "embeddings", uids=uids)
    return tmp / "embeddings"


def _truth(tmp: Path, key: str) -> dict[str, int]:
    """Planted group per row key (uid, or clip-retrieval's `key` column)."""
    truth = pq.read_table(tmp / "pool_truth.parquet").to_pydict()
    group = dict(zip(truth["uid"], truth["group"], strict=True))
    if key == "uid":
        return group
    out = {}
    for shard in sorted((tmp / "pool").glob("shard_*.parquet")):
        meta = pq.read_table(shard, columns=["uid", "key"]).to_pydict()
        out.update({k: group[u] for u, k in zip(meta["uid"], meta["key"], strict=True)})
    return out


@pytest.mark.parametrize("uids", [True, False])
def test_clip_retrieval_folder_is_curated_from_its_embeddings(tmp_path: Path, uids: bool) -> None:
    folder = _clip_retrieval_folder(tmp_path, 300, uids)
    assert (folder / "img_emb" / "img_emb_0.npy").exists()  # the layout clip-retrieval writes
    report = run_curation([str(folder)], tmp_path / "out")
    assert report["invariant_holds"] and report["input_count"] == 300
    assert report["precomputed_embeddings"] == "clip-retrieval" and report["clip_model"] == "ViT-B-32"
    assert report["inputs"] == [str(folder / "metadata" / f"metadata_{i}.parquet") for i in (0, 1)]
    curated = pq.read_table(tmp_path / "out" / "curated").to_pylist()
    rejected = pq.read_table(tmp_path / "out" / "rejected").to_pylist()
    assert {r["stage"] for r in rejected} <= {"semantic_dedup", "clip_score", "basic_filter"}
    group = _truth(tmp_path, "uid" if uids else "key")
    removed = [r for r in rejected if r["stage"] == "semantic_dedup"]
    assert removed and all(group[r["key"]] == group[r["duplicate_of"]] for r in removed)
    kept_groups = [group[r["key"]] for r in curated]
    assert len(kept_groups) == len(set(kept_groups))
    if uids:  # DataComp uids carried through clip-retrieval's metadata: the submission file too
        assert report["submission_uids"] == "uids.npy"
        assert (
            np.load(tmp_path / "out" / "uids.npy").tolist()
            == submission_array([r["key"] for r in curated]).tolist()
        )
    else:  # keys are img2dataset's, which DataComp's resharder cannot read: no submission file
        assert report["submission_uids"] is None and not (tmp_path / "out" / "uids.npy").exists()


def test_clip_retrieval_misaligned_embeddings_is_one_line(tmp_path: Path) -> None:
    folder = _clip_retrieval_folder(tmp_path, 40, uids=True)
    npy = folder / "text_emb" / "text_emb_1.npy"
    np.save(npy, np.load(npy)[:-1])
    with pytest.raises(CanvasError, match=r"text_emb_1\.npy has shape \(19, 512\), expected \(20, dim\)"):
        run_curation([str(folder)], tmp_path / "out")
