"""Candidate generation: prompts -> N images each (diffusers through Beam RunInference) -> image pairs.

`GenerateCandidates` reads as its stages: validate prompts (empty and duplicate prompts go to a tagged
`rejected` output with the reason), attach per-image seeds, generate through `RunInference` with our own
`DiffusersPipelineHandler` (loads once per worker via `canvas.core.presets.load_pipeline`, i.e. diffusers'
`from_pretrained`), and form every unordered pair of a prompt's images.

The run goes through `canvas.pipelines.launch` like `canvas curate`: Beam options are checked, the runner
is the user's (default DirectRunner), and the workers write `candidates.parquet`, `rejected_prompts.jsonl`
and the counts into the output's temp folder through Beam's FileSystems (local or gs://-style); the
driver reads back only the counts.

Determinism: each image's seed is derived from (seed, prompt, image index), and one inference call holds
exactly one prompt's images, so the pixels do not depend on how Beam batches or orders elements; both
files are written sorted (by prompt index, then seeds), so the same seed and prompts give the same bytes
on every runner.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from canvas.core.errors import CanvasError
from canvas.core.formats.candidates import CANDIDATES_FILE, CANDIDATES_SCHEMA
from canvas.core.formats.prompts import read_prompt_entries
from canvas.core.threads import set_worker_threads, worker_threads
from canvas.pipelines.generate_config import GenerateConfig
from canvas.pipelines.launch import BeamLauncher, WriteCounts, delete_folder, metrics, read_json, write_text

logger = logging.getLogger(__name__)

REJECTED_FILE = "rejected_prompts.jsonl"
NAMESPACE = "canvas_generate"


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt and the seeds of its images."""

    prompt_index: int
    prompt: str
    seeds: tuple[int, ...]


def image_seed(seed: int, prompt: str, index: int) -> int:
    """Seed of one image, stable under adding or reordering other prompts."""
    digest = hashlib.sha256(f"{seed}:{index}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def pair_id(model: str, prompt: str, seed_0: int, seed_1: int, steps: int, guidance: float) -> str:
    key = json.dumps([model, prompt, seed_0, seed_1, steps, guidance])
    return hashlib.sha256(key.encode()).hexdigest()[:20]


class DiffusersPipelineHandler(ModelHandler[GenerationRequest, PredictionResult, Any]):
    """RunInference handler: a diffusers text-to-image pipeline loaded with `canvas.core.presets.load_pipeline`.

    Each element yields `PredictionResult(request, {"images": [PNG bytes...], "scheduler": name})`.
    """

    def __init__(
        self, pretrained: str, steps: int, guidance: float, threads: int = 0, workers_per_machine: int = 1
    ) -> None:
        super().__init__()
        self.pretrained, self.steps, self.guidance, self.threads = pretrained, steps, guidance, threads
        self.workers_per_machine = workers_per_machine

    def load_model(self) -> Any:  # runs in the worker: its share of its machine's cores
        from canvas.core.presets.loading import load_pipeline

        set_worker_threads(worker_threads(self.threads, self.workers_per_machine))

        return load_pipeline(self.pretrained)

    def run_inference(
        self, batch: Sequence[GenerationRequest], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        import torch

        for request in batch:
            generators = [torch.Generator("cpu").manual_seed(s) for s in request.seeds]
            with torch.inference_mode():
                images = model(
                    prompt=[request.prompt] * len(request.seeds),
                    generator=generators,
                    num_inference_steps=self.steps,
                    guidance_scale=self.guidance,
                    output_type="np",
                ).images
            pngs = [_png(image) for image in images]
            yield PredictionResult(
                request,
                {"images": pngs, "scheduler": type(model.scheduler).__name__},
                model_id=self.pretrained,
            )

    def batch_elements_kwargs(self) -> dict[str, Any]:
        # One prompt per call: the batch composition, hence the pixels, never depends on Beam's batching.
        return {"min_batch_size": 1, "max_batch_size": 1}

    def get_metrics_namespace(self) -> str:
        return NAMESPACE


def _png(image: Any) -> bytes:
    import numpy as np
    from PIL import Image

    arr = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


class _ValidatePrompt(beam.DoFn):
    """(normalized prompt, [(index, prompt)...]) -> the first as a request, the rest rejected."""

    REJECTED = "rejected"

    def __init__(self, seed: int, images_per_prompt: int) -> None:
        self.seed, self.images_per_prompt = seed, images_per_prompt
        self.kept = beam.metrics.Metrics.counter(NAMESPACE, "prompts_kept")
        self.rejected = beam.metrics.Metrics.counter(NAMESPACE, "prompts_rejected")

    def process(self, element: tuple[str, Iterable[tuple[int, str | None]]]) -> Iterable[Any]:
        key, items = element
        items = sorted(items)
        if not key:
            for index, prompt in items:
                self.rejected.inc()
                yield beam.pvalue.TaggedOutput(
                    self.REJECTED, {"prompt_index": index, "prompt": prompt, "reason": "empty prompt"}
                )
            return
        (first, prompt), duplicates = items[0], items[1:]
        self.kept.inc()
        seeds = tuple(image_seed(self.seed, prompt, j) for j in range(self.images_per_prompt))
        yield GenerationRequest(first, prompt, seeds)
        for index, dup in duplicates:
            self.rejected.inc()
            yield beam.pvalue.TaggedOutput(
                self.REJECTED,
                {"prompt_index": index, "prompt": dup, "reason": f"duplicate of prompt #{first}"},
            )


def _to_pairs(result: PredictionResult, model: str, steps: int, guidance: float) -> Iterable[dict[str, Any]]:
    request: GenerationRequest = result.example
    images = result.inference["images"]
    for i, j in itertools.combinations(range(len(images)), 2):
        s0, s1 = request.seeds[i], request.seeds[j]
        yield {
            "pair_id": pair_id(model, request.prompt, s0, s1, steps, guidance),
            "prompt": request.prompt,
            "image_0": images[i],
            "image_1": images[j],
            "seed_0": s0,
            "seed_1": s1,
            "model": model,
            "scheduler": result.inference["scheduler"],
            "steps": steps,
            "guidance": guidance,
            "prompt_index": request.prompt_index,
        }


class GenerateCandidates(beam.PTransform):
    """(index, prompt) records -> {"pairs": candidate pair rows, "rejected": rejected prompts}."""

    def __init__(self, config: GenerateConfig, workers_per_machine: int = 1) -> None:
        super().__init__()
        self.config = config
        self.workers_per_machine = workers_per_machine

    def expand(self, prompts: beam.PCollection) -> dict[str, beam.PCollection]:
        c = self.config
        checked = (
            prompts
            | "KeyByText" >> beam.Map(lambda r: (" ".join((r[1] or "").split()).lower(), r))
            | "GroupDuplicates" >> beam.GroupByKey()
            | "Validate"
            >> beam.ParDo(_ValidatePrompt(c.seed, c.images_per_prompt)).with_outputs(
                _ValidatePrompt.REJECTED, main="requests"
            )
        )
        pairs = (
            checked.requests
            | "Generate"
            >> RunInference(
                DiffusersPipelineHandler(
                    c.pretrained, c.steps, c.guidance, c.threads, self.workers_per_machine
                )
            )
            | "Pair" >> beam.FlatMap(_to_pairs, c.pretrained, c.steps, c.guidance)
        )
        return {"pairs": pairs, "rejected": checked[_ValidatePrompt.REJECTED]}


def _write_candidates(rows: list[dict[str, Any]], path: str) -> None:
    # Sorted, so the same seed and prompts give the same bytes whatever order the runner delivered.
    rows = sorted(rows, key=lambda r: (r["prompt_index"], r["seed_0"], r["seed_1"]))
    with FileSystems.create(path) as handle:
        pq.write_table(pa.Table.from_pylist(rows, schema=CANDIDATES_SCHEMA), handle)


def _write_rejected(rows: list[dict[str, Any]], path: str) -> None:
    rows = sorted(rows, key=lambda r: r["prompt_index"])
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


class WriteOneFile(beam.PTransform):
    """Rows -> one file at `path`, written by `write(rows, path)` in a worker (also for no rows).

    One file, not shards: `candidates.parquet` is one sorted file so that equal inputs give equal bytes,
    and the only way to get one sorted file without reading shards back in the driver is to gather the
    rows in one worker. Candidate sets are small (a few thousand pairs), so that worker holds them easily.
    """

    def __init__(self, path: str, write: Any) -> None:
        super().__init__()
        self.path, self.write = path, write

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return (
            rows
            | "Gather" >> beam.combiners.ToList()  # one list, [] when there are no rows
            | "Write" >> beam.Map(self.write, path=self.path)
        )


def run_generation(
    prompts: str | Path | Sequence[str],
    output: str | Path,
    pretrained: str = "tiny",
    images_per_prompt: int = 2,
    steps: int = 10,
    guidance: float = 5.0,
    seed: int = 0,
    threads: int = 0,
    beam_args: Sequence[str] = (),
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the pipeline; writes OUTPUT/candidates.parquet (+ rejected_prompts.jsonl); returns a summary.

    `prompts` is a file (.txt or Parquet; local or gs://-style) or a list of strings. `output` is a
    local or gs://-style folder. `beam_args` are Beam pipeline options, checked like `canvas curate`'s
    (`canvas.pipelines.launch`): the runner is the user's (default DirectRunner), e.g.
    `["--direct_num_workers=2", "--direct_running_mode=multi_processing"]` or `["--runner=FlinkRunner",
    ...]`. The output folder appears whole, at the end (`canvas.core.outputs`): an existing one is replaced
    only if it is empty or a previous generate output, otherwise refused unless `overwrite`.

    Returns:
        {"prompts", "prompts_kept", "prompts_rejected", "pairs" (counted by the pipeline), "metrics" (the
        runner's counters, where it reports them), "output" (the candidates file)}.
    """
    is_file = isinstance(prompts, (str, Path))
    out = str(output).rstrip("/")
    config = GenerateConfig(
        str(prompts) if is_file else "<list>",
        out,
        pretrained,
        images_per_prompt,
        steps,
        guidance,
        seed,
        threads,
        overwrite,
    )
    launcher = BeamLauncher("generate", beam_args)
    if launcher.workers_are_local:  # a cluster's workers may hold other models
        from canvas.core.presets.loading import check_pipeline_source

        check_pipeline_source(config.pretrained)
    # Empty Parquet captions stay in: the pipeline records them as rejected "empty prompt"s.
    texts = [e.text for e in read_prompt_entries(config.prompts)] if is_file else list(prompts)
    if not texts:
        raise CanvasError(f"no prompts in {prompts}")
    inputs = [config.prompts] if is_file else []
    with launcher.output(out, inputs, overwrite) as tmp:  # checked and locked before any work
        summary = _generate_into(tmp, texts, config, launcher)
    summary["output"] = f"{out}/{CANDIDATES_FILE}"
    logger.info(
        "generated %d pairs from %d prompts (%d rejected) on %s",
        summary["pairs"],
        summary["prompts"],
        summary["prompts_rejected"],
        launcher.runner,
    )
    return summary


def _generate_into(
    tmp: str, texts: list[str | None], config: GenerateConfig, launcher: BeamLauncher
) -> dict[str, Any]:
    """Run the pipeline; its workers write candidates.parquet, rejected_prompts.jsonl and the counts
    into `tmp`. Nothing is read back but the counts."""
    counts_path = f"{tmp}/_stats/counts.json"
    pipeline = launcher.pipeline()
    prompts = pipeline | "Prompts" >> beam.Create(list(enumerate(texts)), reshuffle=False)
    outputs = prompts | "GenerateCandidates" >> GenerateCandidates(config, launcher.workers_per_machine)
    _ = outputs["pairs"] | "WritePairs" >> WriteOneFile(f"{tmp}/{CANDIDATES_FILE}", _write_candidates)
    _ = outputs["rejected"] | "WriteRejected" >> WriteOneFile(f"{tmp}/{REJECTED_FILE}", _write_rejected)
    _ = {
        "prompts": prompts,
        "prompts_rejected": outputs["rejected"],
        "pairs": outputs["pairs"],
    } | "Counts" >> WriteCounts(counts_path)
    result = launcher.run(pipeline)
    counts = read_json(counts_path)
    delete_folder(f"{tmp}/_stats")
    return {
        "prompts": counts["prompts"],
        "prompts_kept": counts["prompts"] - counts["prompts_rejected"],
        "prompts_rejected": counts["prompts_rejected"],
        "pairs": counts["pairs"],
        "metrics": metrics(result, NAMESPACE),
    }
