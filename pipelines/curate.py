"""`canvas curate` as one Beam pipeline: read -> decode -> basic filter -> exact dedup -> pHash near dedup
-> CLIP (RunInference) -> CLIP-score filter -> NSFW -> SemDeDup -> curated/ + rejected/ + report.

The output folder appears all at once: everything is written to a sibling temp folder that is renamed
into place only after the run finished and `records in = kept + rejected` was checked, so a killed run
leaves nothing that looks complete, and a rerun starts clean.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from canvas.core.errors import CanvasError
from canvas.core.formats.curated import REJECTED_SCHEMA, curated_schema
from canvas.core.presets.registry import TINY_CLIP_NAME, TINY_PRETRAINED
from canvas.curation.config import CurationConfig, load_config, resolve
from canvas.curation.embedding_rows import EmbeddingRows
from canvas.curation.report import render_html, summarize
from canvas.pipelines.curate_config import CurateConfig
from canvas.pipelines.curate_inputs import PoolInput, check_inputs, pool_rows
from canvas.pipelines.curate_io import (
    ReadImageText,
    RecordRows,
    WriteSortedParquet,
    expand_inputs,
    rejection_rows,
)
from canvas.pipelines.curate_ledger import ResolveDuplicateOf
from canvas.pipelines.curate_near_dedup import NearDedup
from canvas.pipelines.curate_pool_images import JoinPoolImages
from canvas.pipelines.curate_report import ReportStats, attach_group_pictures
from canvas.pipelines.curate_semdedup import SemanticDedup
from canvas.pipelines.curate_stages import (
    KEPT,
    REJECTED,
    THRESHOLD,
    BasicFilter,
    ClipEmbed,
    ClipScoreFilter,
    Decode,
    ExactDedup,
    NsfwFilter,
)
from canvas.pipelines.curate_uids import WriteUidParts, merge_uid_parts
from canvas.pipelines.launch import BeamLauncher, WriteCounts, delete_folder, metrics, read_json, write_text

__all__ = ["Curate", "run_curation"]

# `canvas curate`'s own keys, which may sit in the same YAML as the stage sections
COMMAND_KEYS = tuple(f.name for f in dataclasses.fields(CurateConfig))

log = logging.getLogger(__name__)


class Curate(beam.PTransform):
    """RawRecords -> {"kept": curated Records, "rejected": Rejections, "threshold": the CLIP-score threshold
    applied (one element, none when that filter is off)}; stages in order, each switchable.
    `workers_per_machine`: the SDK workers sharing a machine; each model takes its share of the cores."""

    def __init__(
        self,
        config: CurationConfig,
        clip_model: str,
        clip_pretrained: str | None,
        workers_per_machine: int = 1,
        images: bool = True,
        uids: bool = True,
        rows: EmbeddingRows | None = None,
        precomputed: bool = False,
    ) -> None:
        super().__init__()
        self.config = config
        self.precomputed = precomputed  # records hold a pool's CLIP embeddings: nothing is embedded
        self.clip_model = clip_model
        self.clip_pretrained = clip_pretrained
        self.workers_per_machine = workers_per_machine
        self.images = images  # False: a pool of metadata + precomputed embeddings (SKIPPED_WITHOUT_IMAGES)
        self.uids = uids  # a pool's keys must be DataComp uids (False: clip-retrieval keys without a uid)
        self.rows = rows  # a pool's embedding files: records go without their embeddings (precomputed_rows)

    def expand(self, raw: beam.PCollection) -> dict[str, beam.PCollection]:
        cfg, px = self.config, self.config.decode.thumbnail_px
        rejected = []

        def step(label: str, transform: beam.PTransform, records: beam.PCollection) -> beam.PCollection:
            out = records | label >> transform
            rejected.append(out[REJECTED])
            return out[KEPT]

        crop_scales = tuple(cfg.near_dedup.crop_scales) if cfg.near_dedup.enabled else ()
        decode = Decode(cfg.decode, crop_scales, require_uid=self.uids, keep_embedding=self.rows is None)
        records = decoded = step("Decode", decode, raw)
        records = step("BasicFilter", BasicFilter(cfg.basic_filter), records)
        records = step("ExactDedup", ExactDedup(cfg.exact_dedup, px, pixels=self.images), records)
        if self.images:
            records = step("NearDedup", NearDedup(cfg.near_dedup, px), records)
        if cfg.clip.enabled and self.images and not self.precomputed:
            records = records | "Clip" >> ClipEmbed(
                self.clip_model,
                self.clip_pretrained,
                cfg.clip.batch_size,
                cfg.clip.threads,
                self.workers_per_machine,
            )
        ranked = decoded if cfg.clip_score.percentile_of == "pool" else None
        score = records | "ClipScore" >> ClipScoreFilter(cfg.clip_score, ranked)
        rejected.append(score[REJECTED])
        records = score[KEPT]
        if self.images:
            records = step("Nsfw", NsfwFilter(cfg.nsfw, self.workers_per_machine), records)
        records = step("SemanticDedup", SemanticDedup(cfg.semdedup, px, not self.images, self.rows), records)
        rejections = tuple(rejected) | "AllRejected" >> beam.Flatten()
        if any(c.enabled for c in (cfg.exact_dedup, cfg.near_dedup, cfg.semdedup)):
            rejections = (records, rejections) | "ResolveDuplicateOf" >> ResolveDuplicateOf()
        return {KEPT: records, REJECTED: rejections, THRESHOLD: score[THRESHOLD]}


def _embedding_dim(clip_model: str) -> int:
    import open_clip

    from canvas.core.presets.clip import register_model_configs

    register_model_configs()
    cfg = open_clip.get_model_config(clip_model)
    if cfg is None:
        raise CanvasError(
            f"unknown CLIP model {clip_model!r}; open_clip knows e.g. ViT-B-32, ViT-L-14, {TINY_CLIP_NAME}"
        )
    return int(cfg["embed_dim"])


UIDS_FILE = "uids.npy"
SKIPPED_WITHOUT_IMAGES = ("exact_dedup (pixels)", "near_dedup", "clip (embedding)", "nsfw")


def _pool_notes(pool: PoolInput | None, rows: EmbeddingRows | None) -> dict[str, Any]:
    if pool is None:
        return {}
    why = "the input is a pool without images (metadata + precomputed embeddings): not run, not rejections"
    skipped = {name: why for name in SKIPPED_WITHOUT_IMAGES}
    if pool.images:
        skipped = {"clip (embedding)": "the pool's own embeddings, joined to its downloaded images by uid"}
    return {
        "precomputed_embeddings": pool.which,
        "precomputed_rows": "carry" if rows is None else "reread",
        "pool_images": pool.images,
        "skipped_stages": skipped,
        # no DataComp uids (a clip-retrieval folder without a uid column): no submission file
        "submission_uids": UIDS_FILE if pool.uids else None,
    }


def _write_empty(folder: str, schema: pa.Schema) -> None:
    with FileSystems.create(f"{folder}/part-00000-of-00001.parquet") as handle:
        pq.write_table(schema.empty_table(), handle)


def _thresholds(cfg: CurationConfig, applied_clip_threshold: float | None) -> dict[str, Any]:
    score = asdict(cfg.clip_score)
    if applied_clip_threshold is not None:  # the percentile mode's is computed from the run's scores
        # -inf when no record reached the filter: null, as JSON has no infinity
        score["effective_threshold"] = (
            applied_clip_threshold if math.isfinite(applied_clip_threshold) else None
        )
    return {
        "decode": asdict(cfg.decode),
        "basic_filter": asdict(cfg.basic_filter),
        "exact_dedup": asdict(cfg.exact_dedup),
        "near_dedup": asdict(cfg.near_dedup),
        "clip_score": score,
        "nsfw": asdict(cfg.nsfw),
        "semdedup": asdict(cfg.semdedup),
    }


def _curate_into(
    tmp: str,
    files: list[str],
    config: CurationConfig,
    launcher: BeamLauncher,
    models: tuple[str, str, int | None],
    started: float,
    pool: PoolInput | None = None,
    rows: EmbeddingRows | None = None,
) -> dict[str, Any]:
    """Run the pipeline writing every output file into `tmp`; returns the report (also in tmp)."""
    clip_model, clip_pretrained, embedding_dim = models
    t0 = time.perf_counter()
    pipeline = launcher.pipeline()
    raw = pipeline | "Read" >> ReadImageText(files, pool and pool.which)
    if pool and pool.images:  # one record per pool row, its downloaded image joined by uid
        raw = raw | "JoinPoolImages" >> JoinPoolImages()
    _ = {"input_count": raw} | "WriteCount" >> WriteCounts(f"{tmp}/_stats/input_count.json")
    out = raw | "Curate" >> Curate(
        config,
        clip_model,
        clip_pretrained,
        launcher.workers_per_machine,
        images=pool is None or pool.images,
        uids=pool is None or pool.uids,
        rows=rows,
        precomputed=pool is not None,
    )
    if pool and pool.uids:  # DataComp's submission file: one sorted array, 16 bytes per kept uid
        _ = out[KEPT] | "WriteUids" >> WriteUidParts(f"{tmp}/_uids")
    _ = out[KEPT] | "WriteCurated" >> WriteSortedParquet(
        f"{tmp}/curated",
        curated_schema(embedding_dim),
        config.output.rows_per_shard,
        to_rows=RecordRows(rows),
    )
    _ = out[REJECTED] | "WriteRejected" >> WriteSortedParquet(
        f"{tmp}/rejected", REJECTED_SCHEMA, config.output.rows_per_shard, to_rows=rejection_rows
    )
    stats_path = f"{tmp}/_stats/report_stats.json"
    _ = (out[KEPT], out[REJECTED], out[THRESHOLD]) | "ReportStats" >> ReportStats(stats_path)
    result = launcher.run(pipeline)
    pipeline_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    input_count = read_json(f"{tmp}/_stats/input_count.json")["input_count"]
    stats = read_json(stats_path)
    delete_folder(f"{tmp}/_stats")
    if pool and pool.uids:
        merge_uid_parts(f"{tmp}/_uids", f"{tmp}/{UIDS_FILE}")
        delete_folder(f"{tmp}/_uids")
    for folder, schema in (("curated", curated_schema(embedding_dim)), ("rejected", REJECTED_SCHEMA)):
        if not FileSystems.match([f"{tmp}/{folder}/*.parquet"])[0].metadata_list:
            _write_empty(f"{tmp}/{folder}", schema)  # no rows: still a readable, typed folder
    attach_group_pictures(stats, f"{tmp}/curated", f"{tmp}/rejected")
    report = {
        "clip_model": clip_model,
        "clip_pretrained": clip_pretrained,
        "embedding_dim": embedding_dim,
        **summarize(stats, input_count, _thresholds(config, stats["clip_threshold"])),
        "notes": config.notes,
        "runner": launcher.runner,
        "pipeline_args": launcher.pipeline_args,
        "inputs": files,
        "config": {k: v for k, v in config.to_dict().items() if k != "notes"},
        **_pool_notes(pool, rows),
        "metrics": metrics(result),
    }
    if not report["invariant_holds"]:
        raise RuntimeError(
            f"records in ({input_count}) != kept ({report['kept_count']}) + rejected ({report['rejected_count']})"
        )
    report["timings_s"] = {
        "pipeline": round(pipeline_s, 3),
        "report": round(time.perf_counter() - t1, 3),
        "total": round(time.perf_counter() - started, 3),
    }
    write_text(f"{tmp}/report.html", render_html(report, stats))
    write_text(f"{tmp}/report.json", json.dumps(report, indent=1, default=str))
    return report


def run_curation(
    inputs: list[str],
    output: str | Path,
    config_path: str | Path | None = None,
    clip_model: str = TINY_CLIP_NAME,
    clip_pretrained: str = TINY_PRETRAINED,
    pipeline_args: list[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Curate `inputs` (Parquet / img2dataset Parquet / WebDataset tar; paths or globs) into `output`.

    Args:
        inputs: files, folders or globs.
        output: the output folder; an existing one is replaced atomically only if it is empty or a
            previous `canvas curate` output (see `canvas.core.outputs`), else refused unless `overwrite`.
        config_path: YAML config (see `curation/default_config.yaml`); None = defaults.
        clip_model, clip_pretrained: open_clip names; the defaults are the offline tiny preset.
        pipeline_args: Beam pipeline options, e.g. ["--runner=DirectRunner", "--direct_num_workers=2"].
        overwrite: replace an output folder that is not a previous curate output (never one holding an
            input).

    Returns:
        The report dict that is also written to `output/report.json`.
    """
    started = time.perf_counter()
    if not inputs:
        raise CanvasError("no --input given")
    launcher = BeamLauncher("curate", pipeline_args or [])
    loaded = load_config(config_path, ignore=COMMAND_KEYS)
    files = expand_inputs([str(i) for i in inputs])
    pool = check_inputs(files, loaded.clip.precomputed, clip_model)
    if pool:  # the pool's own embeddings: the score rule is that model's, nothing is loaded
        clip_model, clip_pretrained = pool.clip_model(clip_model), f"precomputed {pool.which}"
    config = resolve(loaded, clip_model, pool=pool is not None)
    if pool:
        embedding_dim = pool.dim if config.clip.enabled else None
    else:
        embedding_dim = _embedding_dim(clip_model) if config.clip.enabled else None
    if config.clip.enabled and launcher.workers_are_local and not pool:  # a cluster's may hold other weights
        from canvas.core.presets.clip import check_clip_weights

        check_clip_weights(clip_model, clip_pretrained)  # one line here, not a traceback per worker
    rows = pool_rows(files, pool, config.clip.precomputed_rows) if pool and config.clip.enabled else None
    output = str(output).rstrip("/")
    with launcher.output(output, files, overwrite) as tmp:  # checked and locked before any work
        if config.clip.enabled and not pool:
            from canvas.core.presets.clip import resolve_clip

            resolve_clip(clip_model, clip_pretrained)  # builds the tiny preset here once, not in every worker
        log.info("curating %d file(s) into %s with %s on %s", len(files), output, clip_model, launcher.runner)
        models = (clip_model, clip_pretrained, embedding_dim)
        report = _curate_into(tmp, files, config, launcher, models, started, pool, rows)
    log.info("kept %d of %d records -> %s", report["kept_count"], report["input_count"], output)
    return report
