"""`canvas curate` as one Beam pipeline: read -> decode -> basic filter -> exact dedup -> pHash near dedup
-> CLIP (RunInference) -> CLIP-score filter -> NSFW -> SemDeDup -> curated/ + rejected/ + report.

The output folder appears all at once: everything is written to a sibling temp folder that is renamed
into place only after the run finished and `records in = kept + rejected` was checked, so a killed run
leaves nothing that looks complete, and a rerun starts clean.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from canvas.core.errors import CanvasError
from canvas.core.outputs import commit_output, prepare_output
from canvas.core.presets.registry import TINY_CLIP_NAME, TINY_PRETRAINED
from canvas.curation.config import CurationConfig, load_config, resolve
from canvas.curation.report import render_html, summarize
from canvas.pipelines.curate_io import (
    REJECTED_SCHEMA,
    ReadImageText,
    WriteSortedParquet,
    curated_schema,
    expand_inputs,
    record_row,
    rejection_row,
)
from canvas.pipelines.curate_ledger import ResolveDuplicateOf
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
    NearDedup,
    NsfwFilter,
)

__all__ = ["Curate", "run_curation"]

log = logging.getLogger(__name__)


class Curate(beam.PTransform):
    """RawRecords -> {"kept": curated Records, "rejected": Rejections, "threshold": the CLIP-score threshold
    applied (one element, none when that filter is off)}; stages in order, each switchable."""

    def __init__(self, config: CurationConfig, clip_model: str, clip_pretrained: str | None) -> None:
        super().__init__()
        self.config = config
        self.clip_model = clip_model
        self.clip_pretrained = clip_pretrained

    def expand(self, raw: beam.PCollection) -> dict[str, beam.PCollection]:
        cfg, px = self.config, self.config.decode.thumbnail_px
        rejected = []

        def step(label: str, transform: beam.PTransform, records: beam.PCollection) -> beam.PCollection:
            out = records | label >> transform
            rejected.append(out[REJECTED])
            return out[KEPT]

        records = step("Decode", Decode(cfg.decode), raw)
        records = step("BasicFilter", BasicFilter(cfg.basic_filter), records)
        records = step("ExactDedup", ExactDedup(cfg.exact_dedup, px), records)
        records = step("NearDedup", NearDedup(cfg.near_dedup, px), records)
        if cfg.clip.enabled:
            records = records | "Clip" >> ClipEmbed(
                self.clip_model, self.clip_pretrained, cfg.clip.batch_size, cfg.clip.threads
            )
        score = records | "ClipScore" >> ClipScoreFilter(cfg.clip_score)
        rejected.append(score[REJECTED])
        records = score[KEPT]
        records = step("Nsfw", NsfwFilter(cfg.nsfw), records)
        records = step("SemanticDedup", SemanticDedup(cfg.semdedup, px), records)
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


def _check_inputs(files: list[str]) -> None:
    """Fail before the pipeline starts when a local Parquet file lacks the columns we need."""
    from canvas.curation.sources import is_tar, parquet_columns

    for path in files:
        if is_tar(path) or "://" in path:
            continue
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise CanvasError(f"{path}: not a readable Parquet file ({exc})") from exc
        parquet_columns(schema.names, path, schema)


def _write_empty(folder: str, schema: pa.Schema) -> None:
    with FileSystems.create(f"{folder}/part-00000-of-00001.parquet") as handle:
        pq.write_table(schema.empty_table(), handle)


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(text.encode())


def _write_count(n: int, path: str) -> None:
    _write_text(path, json.dumps({"input_count": n}))


def _thresholds(cfg: CurationConfig, applied_clip_threshold: float | None) -> dict[str, Any]:
    score = asdict(cfg.clip_score)
    if applied_clip_threshold is not None:  # the percentile mode's is computed from the run's scores
        score["effective_threshold"] = applied_clip_threshold
    return {
        "decode": asdict(cfg.decode),
        "basic_filter": asdict(cfg.basic_filter),
        "exact_dedup": asdict(cfg.exact_dedup),
        "near_dedup": asdict(cfg.near_dedup),
        "clip_score": score,
        "nsfw": asdict(cfg.nsfw),
        "semdedup": asdict(cfg.semdedup),
    }


def _pipeline_options(pipeline_args: list[str]) -> tuple[PipelineOptions, str]:
    """Parse the Beam options and look up the runner now: a mistake is one line, before any work."""
    import argparse
    import contextlib
    import difflib
    import io

    from apache_beam.runners import create_runner

    options = PipelineOptions(pipeline_args)
    usage = io.StringIO()
    unknown: list[str] = []
    known: list[str] = []

    def find_unknown(parser: argparse.ArgumentParser) -> None:  # called with every options class's flags
        unknown.extend(a for a in parser.parse_known_args(pipeline_args)[1] if a.startswith("-"))
        known.extend(o for action in parser._actions for o in action.option_strings)

    try:
        with contextlib.redirect_stderr(usage):  # Beam's argparse prints its whole usage, then exits
            options.get_all_options(add_extra_args_fn=find_unknown, retain_unknown_options=True)
    except SystemExit as exc:
        error = (usage.getvalue().strip().splitlines() or ["invalid value"])[-1].split("error: ", 1)[-1]
        raise CanvasError(f"Beam pipeline option: {error}") from exc
    # Beam only logs a warning for a flag no options class declares, so a typo such as
    # --direct_num_worker=2 would run with the default; every runner's own flags are declared here.
    if unknown:
        name = unknown[0].split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise CanvasError(f"unknown option {name} (neither canvas curate's nor a Beam pipeline option){hint}")
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    try:
        create_runner(runner)
    except (ValueError, ImportError, AttributeError) as exc:  # unknown name, module, or class
        raise CanvasError(f"--runner={runner}: {exc}") from exc
    return options, runner


def _workers_are_local(options: PipelineOptions, runner: str) -> bool:
    """Whether the workers run on this machine (the direct runners, or a portable job in LOOPBACK mode)."""
    from apache_beam.options.pipeline_options import PortableOptions

    direct = runner.rsplit(".", 1)[-1] in ("DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")
    return direct or (options.view_as(PortableOptions).environment_type or "").upper() == "LOOPBACK"


def _curate_into(
    tmp: str,
    files: list[str],
    config: CurationConfig,
    options: PipelineOptions,
    runner: str,
    models: tuple[str, str, int | None],
    pipeline_args: list[str],
    started: float,
) -> dict[str, Any]:
    """Run the pipeline writing every output file into `tmp`; returns the report (also in tmp)."""
    clip_model, clip_pretrained, embedding_dim = models
    t0 = time.perf_counter()
    pipeline = beam.Pipeline(options=options)
    raw = pipeline | "Read" >> ReadImageText(files)
    _ = (
        raw
        | "CountInput" >> beam.combiners.Count.Globally()
        | "WriteCount" >> beam.Map(_write_count, path=f"{tmp}/_stats/input_count.json")
    )
    out = raw | "Curate" >> Curate(config, clip_model, clip_pretrained)
    _ = (
        out[KEPT]
        | "CuratedRows" >> beam.Map(record_row)
        | "WriteCurated"
        >> WriteSortedParquet(f"{tmp}/curated", curated_schema(embedding_dim), config.output.rows_per_shard)
    )
    _ = (
        out[REJECTED]
        | "RejectedRows" >> beam.Map(rejection_row)
        | "WriteRejected"
        >> WriteSortedParquet(f"{tmp}/rejected", REJECTED_SCHEMA, config.output.rows_per_shard)
    )
    stats_path = f"{tmp}/_stats/report_stats.json"
    _ = (out[KEPT], out[REJECTED], out[THRESHOLD]) | "ReportStats" >> ReportStats(stats_path)
    result = pipeline.run()
    result.wait_until_finish()
    pipeline_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    with FileSystems.open(f"{tmp}/_stats/input_count.json") as handle:
        input_count = json.loads(handle.read())["input_count"]
    with FileSystems.open(stats_path) as handle:
        stats = json.loads(handle.read())
    FileSystems.delete([f"{tmp}/_stats"])
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
        "runner": runner,
        "pipeline_args": list(pipeline_args),
        "inputs": files,
        "config": {k: v for k, v in config.to_dict().items() if k != "notes"},
        "metrics": _metrics(result),
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
    _write_text(f"{tmp}/report.html", render_html(report, stats))
    _write_text(f"{tmp}/report.json", json.dumps(report, indent=1, default=str))
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
    options, runner = _pipeline_options(pipeline_args or [])
    config = resolve(load_config(config_path), clip_model)
    files = expand_inputs([str(i) for i in inputs])
    _check_inputs(files)
    embedding_dim = _embedding_dim(clip_model) if config.clip.enabled else None
    if config.clip.enabled and _workers_are_local(options, runner):  # a cluster's may hold other weights
        from canvas.core.presets.clip import check_clip_weights

        check_clip_weights(clip_model, clip_pretrained)  # one line here, not a traceback per worker
    output = str(output).rstrip("/")
    with prepare_output(output, "curate", files, overwrite) as tmp:  # checked and locked before any work
        if config.clip.enabled:
            from canvas.core.presets.clip import resolve_clip

            resolve_clip(clip_model, clip_pretrained)  # builds the tiny preset here once, not in every worker
        log.info("curating %d file(s) into %s with %s on %s", len(files), output, clip_model, runner)
        models = (clip_model, clip_pretrained, embedding_dim)
        report = _curate_into(tmp, files, config, options, runner, models, pipeline_args or [], started)
        commit_output(tmp, output, "curate")
    log.info("kept %d of %d records -> %s", report["kept_count"], report["input_count"], output)
    return report


def _metrics(result: beam.runners.runner.PipelineResult) -> dict[str, Any]:
    """Beam counters of the run (rejections per stage, records in), where the runner reports them."""
    try:
        found = result.metrics().query()
    except Exception:  # noqa: BLE001 - not every runner reports metrics
        return {}
    out: dict[str, Any] = {}
    for counter in found.get("counters", []):
        name = f"{counter.key.metric.namespace}/{counter.key.metric.name}"
        out[name] = out.get(name, 0) + (counter.committed or 0)
    return dict(sorted(out.items()))
