"""DataComp-style pools (metadata Parquet + .npz embeddings, no images) through `canvas curate`."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from canvas.core.errors import CanvasError
from canvas.curation.pool import UID_DTYPE, submission_array
from canvas.pipelines.curate import run_curation

ROOT = Path(__file__).resolve().parents[2]


def _make_pool(out: Path, n: int, shards: int = 2) -> dict[str, int]:
    spec = importlib.util.spec_from_file_location("make_pool", ROOT / "bench" / "make_pool.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_pool(out, n, shards=shards, seed=1)


def test_submission_array_is_datacomps_sorted_u8_pairs() -> None:
    uids = ["ffffffffffffffff0000000000000001", "00000000000000010000000000000002"]
    arr = submission_array(uids)
    assert arr.dtype == np.dtype("u8,u8") == UID_DTYPE
    assert arr.tolist() == [(1, 2), (2**64 - 1, 1)]


def test_pool_without_images_is_curated_from_its_embeddings(tmp_path: Path) -> None:
    counts = _make_pool(tmp_path / "pool", 400)
    report = run_curation([str(tmp_path / "pool")], tmp_path / "out")
    assert report["invariant_holds"] and report["input_count"] == 400
    assert report["precomputed_embeddings"] == "b32" and report["clip_model"] == "ViT-B-32"
    assert "near_dedup" in report["skipped_stages"] and "nsfw" in report["skipped_stages"]
    curated = pq.read_table(tmp_path / "out" / "curated").to_pylist()
    rejected = pq.read_table(tmp_path / "out" / "rejected").to_pylist()
    stages = {r["stage"] for r in rejected}
    assert stages <= {"semantic_dedup", "clip_score", "basic_filter"}  # no image stage rejected anything
    truth = {r["uid"]: r for r in pq.read_table(tmp_path / "pool_truth.parquet").to_pylist()}
    removed_copies = [r for r in rejected if r["stage"] == "semantic_dedup"]
    assert all(truth[r["key"]]["group"] == truth[r["duplicate_of"]]["group"] for r in removed_copies)
    kept_groups = [truth[r["key"]]["group"] for r in curated]
    assert len(kept_groups) == len(set(kept_groups))  # one survivor per planted group at most
    assert len(removed_copies) >= 0.95 * (400 - counts["original"]) - sum(
        1 for r in rejected if r["stage"] != "semantic_dedup"
    )
    uids = np.load(tmp_path / "out" / "uids.npy")
    assert uids.dtype == np.dtype("u8,u8") and (np.sort(uids) == uids).all()
    assert uids.tolist() == submission_array([r["key"] for r in curated]).tolist()


def test_pool_shard_with_misaligned_embeddings_is_one_line(tmp_path: Path) -> None:
    _make_pool(tmp_path / "pool", 40, shards=1)
    shard = tmp_path / "pool" / "shard_00000.npz"
    arrays = dict(np.load(shard))
    np.savez(shard, **{k: v[:-1] for k, v in arrays.items()})
    with pytest.raises(CanvasError, match=r"`b32_img` has shape \(39, 512\), expected \(40, dim\)"):
        run_curation([str(tmp_path / "pool")], tmp_path / "out")
    cli = [
        sys.executable,
        "-m",
        "canvas",
        "curate",
        "--input",
        str(tmp_path / "pool"),
        "--output",
        str(tmp_path / "o"),
    ]
    done = subprocess.run(cli, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "canvas: error:" in done.stderr


def _outputs(out: Path) -> tuple:
    curated = pq.read_table(out / "curated")
    rejected = pq.read_table(out / "rejected")
    return curated.to_pylist(), rejected.to_pylist(), np.load(out / "uids.npy").tolist()


def test_embeddings_read_again_by_row_give_the_outputs_of_carried_ones(tmp_path: Path) -> None:
    """`clip.precomputed_rows`: records travel without their embeddings (reread, the default where the
    pool's arrays are stored uncompressed) or with them (carry): the same curated rows, embeddings
    included, the same ledger and submission file."""
    _make_pool(tmp_path / "pool", 600, shards=3)
    carry = tmp_path / "carry.yaml"
    carry.write_text("clip:\n  precomputed_rows: carry\n")
    reread = run_curation([str(tmp_path / "pool")], tmp_path / "reread")
    carried = run_curation([str(tmp_path / "pool")], tmp_path / "carried", config_path=carry)
    assert (reread["precomputed_rows"], carried["precomputed_rows"]) == ("reread", "carry")
    assert reread["rejected_by_stage"]["semantic_dedup"] > 20
    a, b = _outputs(tmp_path / "reread"), _outputs(tmp_path / "carried")
    assert a == b
    assert all(len(r["embedding"]) == 512 for r in a[0])


def test_a_compressed_pool_carries_its_embeddings_and_reread_says_why_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _make_pool(tmp_path / "pool", 60, shards=1)
    shard = tmp_path / "pool" / "shard_00000.npz"
    np.savez_compressed(shard, **dict(np.load(shard)))
    with caplog.at_level(logging.INFO, logger="canvas.pipelines.curate_inputs"):
        report = run_curation([str(tmp_path / "pool")], tmp_path / "out")
    assert report["precomputed_rows"] == "carry" and report["invariant_holds"]
    assert (
        "records carry their embeddings" in caplog.text
        and "shard_00000.npz: stored compressed" in caplog.text
    )
    reread = tmp_path / "reread.yaml"
    reread.write_text("clip:\n  precomputed_rows: reread\n")
    with pytest.raises(
        CanvasError, match=r"precomputed_rows is reread, but .*shard_00000.npz: stored compressed"
    ):
        run_curation([str(tmp_path / "pool")], tmp_path / "o2", config_path=reread)


def test_a_pool_moved_to_another_folder_is_curated_the_same(tmp_path: Path) -> None:
    """SemDeDup's k-means sample is chosen by a hash of each record's key and place in its file, not of the
    folder the pool sits in: the same pool read from two folders gets the same clusters and removals."""
    _make_pool(tmp_path / "pool", 600, shards=3)
    moved = tmp_path / "mounted" / "elsewhere" / "pool"
    shutil.copytree(tmp_path / "pool", moved)
    small = tmp_path / "small_sample.yaml"  # a sample smaller than the pool, as at scale
    small.write_text("semdedup:\n  sample_size: 100\n  n_clusters: 8\n")
    a = run_curation([str(tmp_path / "pool")], tmp_path / "a", config_path=small)
    b = run_curation([str(moved)], tmp_path / "b", config_path=small)
    assert a["rejected_by_stage"] == b["rejected_by_stage"] and a["rejected_by_stage"]["semantic_dedup"] > 20

    def placeless(out: Path) -> tuple:
        curated, rejected, uids = _outputs(out)
        strip = [{k: v for k, v in r.items() if k != "source"} for r in curated + rejected]
        return strip, uids

    assert placeless(tmp_path / "a") == placeless(tmp_path / "b")


def test_a_pool_in_an_object_store_is_curated_as_the_same_pool_on_disk(
    object_store: str, tmp_path: Path
) -> None:
    """gs:// or s3:// pool shards (here the test's `canvastest://` store) are read through Beam's FileSystems
    like local ones: the Parquet schema, the `.npz` headers and the row counts, not taken for image shards."""
    _make_pool(tmp_path / "bucket" / "pool", 300, shards=2)
    local = run_curation([str(tmp_path / "bucket" / "pool")], tmp_path / "local")
    remote = run_curation([f"{object_store}bucket/pool"], tmp_path / "remote")
    assert (
        remote["precomputed_embeddings"] == "b32"
        and remote["rejected_by_stage"] == local["rejected_by_stage"]
    )
    assert (
        local["rejected_by_stage"]["semantic_dedup"] > 10 and remote["kept_count"] == local["kept_count"] > 0
    )
    assert (
        np.load(tmp_path / "remote" / "uids.npy").tolist()
        == np.load(tmp_path / "local" / "uids.npy").tolist()
    )


def test_a_uid_repeated_in_the_pool_keeps_one_copy_and_is_submitted_once(tmp_path: Path) -> None:
    """A pool row repeated (same uid and embeddings) and one repeated with its uid in capitals: exact dedup
    catches both (a uid is case-blind hex). With exact dedup off, SemDeDup keeps one of the two copies that
    share a uid (it decided by key before: both were rejected, each pointing at the other), and uids.npy
    holds each uid once, since DataComp's resharder would write a sample twice."""
    _make_pool(tmp_path / "pool", 40, shards=1)
    shard = tmp_path / "pool" / "shard_00000"
    table = pq.read_table(f"{shard}.parquet")
    rows = table.to_pylist()
    shouted = dict(rows[1], uid=rows[1]["uid"].upper())
    pq.write_table(table.from_pylist([*rows, rows[0], shouted], schema=table.schema), f"{shard}.parquet")
    arrays = dict(np.load(f"{shard}.npz"))
    np.savez(f"{shard}.npz", **{k: np.concatenate([v, v[[0, 1]]]) for k, v in arrays.items()})
    lenient = tmp_path / "clip_off.yaml"
    lenient.write_text("clip_score:\n  mode: 'off'\nbasic_filter:\n  enabled: false\n")
    report = run_curation([str(tmp_path / "pool")], tmp_path / "dedup", config_path=lenient)
    assert report["rejected_by_stage"].get("exact_dedup") == 2
    kept = report["kept_count"]
    no_exact = tmp_path / "no_exact.yaml"
    no_exact.write_text(lenient.read_text() + "exact_dedup:\n  enabled: false\n")
    report = run_curation([str(tmp_path / "pool")], tmp_path / "sem", config_path=no_exact)
    curated, rejected, uids = _outputs(tmp_path / "sem")
    assert report["invariant_holds"] and report["kept_count"] == kept
    assert [r["key"] for r in curated].count(rows[0]["uid"]) == 1
    assert not any("not among the results" in r["reason"] for r in rejected)
    assert uids == _outputs(tmp_path / "dedup")[2] and len(uids) == len(set(uids)) == kept


def test_a_percentile_run_that_keeps_nothing_writes_strict_json(tmp_path: Path) -> None:
    """No record reached the top-X% filter (`percentile_of: stage`): its threshold is null in report.json, not -Infinity (which
    Python writes and other JSON readers refuse), and uids.npy is an empty submission."""
    _make_pool(tmp_path / "pool", 40, shards=1)
    config = tmp_path / "none_pass.yaml"
    config.write_text(
        "basic_filter:\n  min_caption_words: 100\nclip_score:\n  mode: percentile\n  keep_top_percent: 30\n  percentile_of: stage\n"
    )
    report = run_curation([str(tmp_path / "pool")], tmp_path / "out", config_path=config)
    assert report["kept_count"] == 0 and report["rejected_by_stage"]["basic_filter"] == 40

    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    strict = json.loads((tmp_path / "out" / "report.json").read_text(), parse_constant=refuse)
    assert strict["thresholds"]["clip_score"]["effective_threshold"] is None
    assert np.load(tmp_path / "out" / "uids.npy").shape == (0,)


def test_clip_model_picks_the_pools_embeddings_and_one_it_lacks_is_refused(tmp_path: Path) -> None:
    """`--clip-model ViT-L-14` on a DataComp pool uses its l14 arrays and their rule (top 30%); it was
    ignored before (b32 and cosine >= 0.28). A model the pool ships nothing of, or one that contradicts
    `clip.precomputed`, is a one-line error."""
    _make_pool(tmp_path / "pool", 200, shards=1)
    report = run_curation([str(tmp_path / "pool")], tmp_path / "l14", clip_model="ViT-L-14")
    assert (report["precomputed_embeddings"], report["clip_model"]) == ("l14", "ViT-L-14")
    assert report["thresholds"]["clip_score"]["mode"] == "percentile"
    with pytest.raises(CanvasError, match="ships ViT-B-32 and ViT-L-14 embeddings, not ViT-H-14's"):
        run_curation([str(tmp_path / "pool")], tmp_path / "h14", clip_model="ViT-H-14")
    b32 = tmp_path / "b32.yaml"
    b32.write_text("clip:\n  precomputed: b32\n")
    with pytest.raises(CanvasError, match="precomputed is b32 .* but --clip-model is ViT-L-14"):
        run_curation([str(tmp_path / "pool")], tmp_path / "both", config_path=b32, clip_model="ViT-L-14")


def test_a_pools_top_percent_ranks_every_decoded_row_as_datacomp_does(tmp_path: Path) -> None:
    """DataComp's get_threshold ranks the whole pool; the other filters then apply too. Before, the top X%
    was of the records that reached the filter (after the basic filter): a stricter size rule moved it."""
    _make_pool(tmp_path / "pool", 400, shards=2)

    def run(name: str, extra: str) -> tuple[dict, list[dict]]:
        config = tmp_path / f"{name}.yaml"
        config.write_text(f"clip_score:\n  mode: percentile\n  keep_top_percent: 50\n{extra}")
        report = run_curation([str(tmp_path / "pool")], tmp_path / name, config_path=config)
        rows = pq.read_table(tmp_path / name / "curated").to_pylist()
        rows += pq.read_table(tmp_path / name / "rejected").to_pylist()
        return report, rows

    whole, _ = run("whole", "basic_filter:\n  enabled: false\n")
    sized, rows = run("sized", "basic_filter:\n  min_side: 600\n")
    staged, _ = run("staged", "  percentile_of: stage\nbasic_filter:\n  min_side: 600\n")
    threshold = whole["thresholds"]["clip_score"]["effective_threshold"]
    assert whole["rejected_by_stage"]["clip_score"] == 200  # half of every row
    assert sized["rejected_by_stage"]["basic_filter"] > 100
    assert sized["thresholds"]["clip_score"]["effective_threshold"] == threshold
    assert sized["thresholds"]["clip_score"]["percentile_of"] == "pool"
    assert all(
        (r["clip_score"] < threshold) == (r.get("stage") == "clip_score")
        for r in rows
        if r.get("stage") != "basic_filter"
    )
    assert staged["thresholds"]["clip_score"]["effective_threshold"] != threshold


def test_an_input_under_a_quoted_home_path_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    _make_pool(tmp_path / "pool", 40, shards=1)
    assert run_curation(["~/pool"], tmp_path / "out")["input_count"] == 40
