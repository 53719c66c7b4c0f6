"""`canvas curate` end to end on the sample set, checked against its truth manifest; runners, determinism,
a SIGKILLed run, other input formats, user mistakes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from canvas.cli import main
from canvas.core.errors import CanvasError
from canvas.curation.index import read_report
from canvas.pipelines.curate import run_curation

BROKEN_REASONS = {
    "null": "null",
    "empty": "empty",
    "undecodable": "undecodable",
    "truncated": "truncated",
    "decompression bomb": "decompression bomb",
}


def _tables(out: Path) -> tuple[pa.Table, pa.Table]:
    return pq.read_table(out / "curated"), pq.read_table(out / "rejected")


def _truth(sample: Path) -> list[dict]:
    return json.loads(sample.with_suffix(".truth.json").read_text())


@pytest.fixture(scope="module")
def sample_run(sample_parquet: Path, tiny_presets: dict, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("curate") / "out"
    report = run_curation([str(sample_parquet)], out)
    return report, out


def test_sample_set_matches_truth_manifest(sample_parquet: Path, sample_run) -> None:
    report, out = sample_run
    curated, rejected = _tables(out)
    truth = _truth(sample_parquet)
    expect_keep = sorted(t["key"] for t in truth if t["expect"] == "keep")
    assert sorted(curated.column("key").to_pylist()) == expect_keep  # every distinct original survives
    by_source = {r["source"]: r for r in rejected.to_pylist()}
    for t in truth:
        source = f"{sample_parquet}#{t['row']}"
        if t["expect"] == "keep":
            assert source not in by_source, (t["key"], by_source.get(source))
            continue
        row = by_source[source]  # every planted problem goes, at the stage the manifest names
        assert row["stage"] == t["stage"], (t, row)
        if t["of"]:
            assert row["duplicate_of"] == t["of"], (t, row)
        if t["kind"] == "broken":
            assert BROKEN_REASONS[t["note"]] in row["reason"], (t, row)
    # in = kept + rejected, each input row exactly once
    sources = curated.column("source").to_pylist() + rejected.column("source").to_pylist()
    assert len(sources) == len(set(sources)) == len(truth) == report["input_count"]


def test_output_contract_and_report(sample_run) -> None:
    report, out = sample_run
    curated, rejected = _tables(out)
    pointed_at = {k for k in rejected.column("duplicate_of").to_pylist() if k}
    assert pointed_at and pointed_at <= set(curated.column("key").to_pylist())  # duplicates name kept keys
    schema = curated.schema
    for name, kind in [
        ("key", pa.string()),
        ("caption", pa.string()),
        ("image", pa.binary()),
        ("sha256", pa.string()),
        ("phash", pa.string()),
        ("clip_score", pa.float32()),
        ("nsfw_score", pa.float32()),
    ]:
        assert schema.field(name).type == kind, name
    assert pa.types.is_integer(schema.field("width").type) and pa.types.is_integer(
        schema.field("cluster_id").type
    )
    assert schema.field("embedding").type == pa.list_(pa.float32(), 64)
    emb = np.array(curated.column("embedding").to_pylist())
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert all(len(h) == 16 for h in curated.column("phash").to_pylist())
    saved = json.loads((out / "report.json").read_text())
    assert saved["clip_model"] == "canvas-tiny-clip" and saved["clip_pretrained"] == "tiny"
    assert saved["embedding_dim"] == 64 and saved["input_count"] == 41 and saved["kept_count"] == 19
    assert (
        saved["thresholds"]["clip_score"]["mode"] == "off"
        and "random weights" in saved["notes"]["clip_score"]
    )
    assert saved["rejected_by_stage"]["decode"] == 5 and saved["timings_s"]["pipeline"] > 0
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 3  # per-stage bars, CLIP and NSFW histograms, cluster sizes
    assert (
        html.count("class=group") >= 5 and "kept orig-astronaut" in html
    )  # duplicate groups with thumbnails
    assert html.count('<figure class=kept><img src="data:image/jpeg') == html.count(
        "class=group"
    )  # read back


def test_every_optional_stage_off_still_writes_readable_output(
    sample_parquet: Path, tiny_presets: dict, tmp_path: Path
) -> None:
    config = tmp_path / "off.yaml"
    stages = ("basic_filter", "exact_dedup", "near_dedup", "clip", "nsfw", "semdedup")
    config.write_text("".join(f"{s}:\n  enabled: false\n" for s in stages) + "clip_score:\n  mode: 'off'\n")
    report = run_curation([str(sample_parquet)], tmp_path / "out", config_path=config)
    curated, rejected = _tables(tmp_path / "out")  # readable, though no row has an embedding
    assert curated.num_rows == report["kept_count"] == 36
    assert set(rejected.column("stage").to_pylist()) == {"decode"}
    assert curated.column("embedding").null_count == curated.num_rows and report["embedding_dim"] is None
    with pytest.raises(CanvasError, match="no CLIP embeddings"):
        read_report(tmp_path / "out")


def test_semdedup_alone_with_calibrated_eps_never_merges_distinct_photos(
    sample_parquet: Path, tiny_presets: dict, tmp_path: Path
) -> None:
    config = tmp_path / "semonly.yaml"
    config.write_text(
        "exact_dedup:\n  enabled: false\nnear_dedup:\n  enabled: false\nnsfw:\n  enabled: false\n"
    )
    report = run_curation([str(sample_parquet)], tmp_path / "out", config_path=config)
    curated, rejected = _tables(tmp_path / "out")
    truth = {f"{sample_parquet}#{t['row']}": t for t in _truth(sample_parquet)}
    sem = [r for r in rejected.to_pylist() if r["stage"] == "semantic_dedup"]
    for row in sem:  # whatever SemDeDup removes is a planted copy of the original it names
        assert truth[row["source"]]["of"] == row["duplicate_of"], row
    removed = {truth[r["source"]]["key"] for r in sem}
    originals = {t["key"] for t in truth.values() if t["kind"] == "original"}
    assert originals <= set(curated.column("key").to_pylist())
    # byte/pixel copies (cosine 1) and re-encodes/resizes are caught by the calibrated eps alone
    expected = {
        t["key"]
        for t in truth.values()
        if t["kind"] in ("exact_dup", "pixel_dup") or "jpeg" in t["note"] or "resize" in t["note"]
    }
    assert expected <= removed
    assert report["rejected_by_stage"]["semantic_dedup"] == len(sem)


def test_multiprocessing_runner_via_cli_matches_in_process(
    sample_parquet: Path, sample_run, tmp_path: Path
) -> None:
    _, reference = sample_run
    out = tmp_path / "mp"
    code = main(
        [
            "curate",
            "--input",
            str(sample_parquet),
            "--output",
            str(out),
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["pipeline_args"] == ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    (c1, r1), (c2, r2) = _tables(reference), _tables(out)
    cols = ["key", "sha256", "phash", "cluster_id", "source"]
    assert c1.select(cols).equals(c2.select(cols))
    assert r1.select(["key", "stage", "duplicate_of", "source"]).equals(
        r2.select(["key", "stage", "duplicate_of", "source"])
    )
    np.testing.assert_allclose(
        np.array(c1.column("embedding").to_pylist()), np.array(c2.column("embedding").to_pylist()), atol=1e-5
    )


def test_portable_runner_through_the_job_api_gives_the_same_files(
    sample_parquet: Path, sample_run, tmp_path: Path
) -> None:
    # The path Flink and Spark take: the pipeline is submitted as a portable proto to a job server
    # (here Beam's embedded Python one; a Flink/Spark cluster needs their Java job servers) and runs in
    # an SDK worker over the Fn API. Every output file must match the DirectRunner's.
    _, reference = sample_run
    out = tmp_path / "portable"
    args = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]
    assert main(["curate", "--input", str(sample_parquet), "--output", str(out), *args]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["runner"] == "PortableRunner"
    assert report["metrics"]["curate/records_in"] == report["input_count"]  # counters come back too
    for part in ("curated", "rejected"):
        files = sorted(p.name for p in (reference / part).iterdir())
        assert files == sorted(p.name for p in (out / part).iterdir())
        for name in files:
            assert pq.read_table(reference / part / name).equals(pq.read_table(out / part / name))


def test_same_input_same_output(sample_parquet: Path, sample_run, tmp_path: Path) -> None:
    _, reference = sample_run
    run_curation([str(sample_parquet)], tmp_path / "again")
    for part in ("curated", "rejected"):
        files = sorted(p.name for p in (reference / part).iterdir())
        assert files == sorted(p.name for p in (tmp_path / "again" / part).iterdir())
        for name in files:
            assert pq.read_table(reference / part / name).equals(
                pq.read_table(tmp_path / "again" / part / name)
            )


def test_sigkilled_run_leaves_nothing_complete_and_rerun_finishes(
    sample_parquet: Path, sample_run, tmp_path: Path
) -> None:
    _, reference = sample_run
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "canvas", "curate", "--input", str(sample_parquet), "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 120
    while (
        not list(tmp_path.glob(".killed.partial-*")) and time.monotonic() < deadline and proc.poll() is None
    ):
        time.sleep(0.05)
    time.sleep(1.5)  # into the pipeline proper
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing at the output path: a killed run cannot be mistaken for a result
    assert not list(tmp_path.glob(".killed.partial-*/report.json"))
    run_curation([str(sample_parquet)], out)
    assert not list(tmp_path.glob(".killed.partial-*"))  # the leftover was cleaned
    assert pq.read_table(out / "curated").equals(pq.read_table(reference / "curated"))


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_img2dataset_parquet_and_webdataset_tar_inputs(
    sample_parquet: Path, tiny_presets: dict, tmp_path: Path
) -> None:
    rows = {r["key"]: r for r in pq.read_table(sample_parquet).to_pylist()}
    names = ["orig-chelsea", "orig-coffee", "orig-rocket", "orig-china"]
    i2d = tmp_path / "i2d" / "00000.parquet"
    i2d.parent.mkdir()
    pq.write_table(
        pa.table(
            {
                "url": ["http://x/1", "http://x/2", "http://x/3"],
                "caption": [
                    rows[names[0]]["caption"],
                    rows[names[1]]["caption"],
                    "a caption for a failed download",
                ],
                "key": ["000000000", "000000001", "000000002"],
                "status": ["success", "success", "failed_to_download"],
                "jpg": [rows[names[0]]["image"], rows[names[1]]["image"], None],
            }
        ),
        i2d,
    )
    shard = tmp_path / "wds" / "00000.tar"
    shard.parent.mkdir()
    with tarfile.open(shard, "w") as tar:
        for i, name in enumerate(names[2:]):
            _add(tar, f"1000{i}.png", rows[name]["image"])
            _add(tar, f"1000{i}.txt", rows[name]["caption"].encode())
    config = tmp_path / "fast.yaml"
    config.write_text("nsfw:\n  enabled: false\n")
    report = run_curation([str(i2d.parent), str(shard)], tmp_path / "out", config_path=config)
    curated, rejected = _tables(tmp_path / "out")
    assert sorted(curated.column("key").to_pylist()) == ["000000000", "000000001", "10000", "10001"]
    assert rejected.select(["key", "stage"]).to_pylist() == [{"key": "000000002", "stage": "decode"}]
    assert report["input_count"] == 5


def test_truncated_webdataset_shard_is_one_rejection_and_the_rest_is_curated(
    sample_parquet: Path, tiny_presets: dict, tmp_path: Path
) -> None:
    rows = {r["key"]: r for r in pq.read_table(sample_parquet).to_pylist()}
    good = tmp_path / "good.parquet"
    pq.write_table(pa.Table.from_pylist([rows["orig-clock"], rows["orig-hopper"]]), good)
    shard = tmp_path / "00000.tar"
    with tarfile.open(shard, "w") as tar:
        for i, name in enumerate(["orig-chelsea", "orig-cell", "orig-coins", "orig-brick"]):
            _add(tar, f"2000{i}.png", rows[name]["image"])
            _add(tar, f"2000{i}.txt", rows[name]["caption"].encode())
    with tarfile.open(shard) as tar:
        cut = tar.getmember("20002.png").offset_data + 1000  # inside the third sample's image
    shard.write_bytes(shard.read_bytes()[:cut])
    config = tmp_path / "fast.yaml"
    config.write_text("nsfw:\n  enabled: false\n")
    report = run_curation([str(good), str(shard)], tmp_path / "out", config_path=config)
    curated, rejected = _tables(tmp_path / "out")
    assert sorted(curated.column("key").to_pylist()) == ["20000", "20001", "orig-clock", "orig-hopper"]
    assert rejected.select(["key", "stage", "reason", "source"]).to_pylist() == [
        {
            "key": f"<unreadable: {shard} after 2 samples>",
            "stage": "decode",
            "reason": f"unreadable input: {shard}: truncated tar (unexpected end of data) after 2 complete "
            "samples; the rest of the shard is lost",
            "source": f"{shard}#2",
        }
    ]
    assert report["input_count"] == 5 == report["kept_count"] + report["rejected_count"]
    assert report["invariant_holds"]


def test_user_mistakes_are_one_line_errors(
    tmp_path: Path, sample_parquet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["curate", "--input", str(tmp_path / "missing.parquet"), "--output", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("canvas: error: input not found") and err.count("\n") == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("semdedup:\n  eps: [0.1\n")
    assert (
        main(
            ["curate", "--input", str(sample_parquet), "--output", str(tmp_path / "o"), "--config", str(bad)]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "not valid YAML" in err and err.count("\n") == 1
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"key": ["a"], "url": ["http://x"]}), wrong)
    assert main(["curate", "--input", str(wrong), "--output", str(tmp_path / "o")]) == 2
    assert "needs an image column" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["curate", "--print-config"]) == 0
    assert "hamming_radius" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--runner=NoSuchRunner"], "--runner=NoSuchRunner: Unexpected pipeline runner"),
        (["--direct_num_workers=two"], "Beam pipeline option: argument --direct_num_workers: invalid int"),
        (["--direct_num_worker=2"], "unknown option --direct_num_worker (neither canvas curate's nor a Beam"),
        (["--clip-pretrained", "/nonexistent/w.safetensors"], "no such weights file"),
        (["--clip-model", "ViT-B-32", "--clip-pretrained", "no_such_tag"], "nor a pretrained tag"),
        (["--clip-model", "ViT-B-32", "--clip-pretrained", "laion2b_s34b_b79k"], "hf download laion/"),
    ],
    ids=["runner", "option-value", "option-typo", "weights-path", "unknown-tag", "tag-not-cached"],
)
def test_beam_option_and_clip_weight_mistakes_fail_before_the_run(
    tmp_path: Path,
    sample_parquet: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # empty cache
    rc = main(["curate", "--input", str(sample_parquet), "--output", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("canvas: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.partial-*"))  # nothing started


def test_cached_or_local_clip_weights_pass_the_early_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    from canvas.core.presets.clip import check_clip_weights

    hub = tmp_path / "hub"  # the Hugging Face cache layout, holding ViT-B-32/laion2b's file
    repo = hub / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "open_clip_model.safetensors").write_bytes(b"")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    for model, pretrained in [
        ("ViT-B-32", "laion2b_s34b_b79k"),
        ("ViT-B-32", str(weights)),
        ("ViT-B-32", "none"),  # random weights (benchmarks)
        ("canvas-tiny-clip", "tiny"),
        ("canvas-tiny-clip", None),
    ]:
        check_clip_weights(model, pretrained)
