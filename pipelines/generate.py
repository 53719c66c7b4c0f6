"""Candidate generation: prompts -> N images each (diffusers through Beam RunInference) -> image pairs.

`GenerateCandidates` reads as its stages: validate prompts (empty and duplicate prompts go to a tagged
`rejected` output with the reason), attach per-image seeds, generate through `RunInference` with our own
`DiffusersPipelineHandler` (loads once per worker via `canvas.core.presets.load_pipeline`, i.e. diffusers'
`from_pretrained`), and form every unordered pair of a prompt's images.

Determinism: each image's seed is derived from (seed, prompt, image index), and one inference call holds
exactly one prompt's images, so the pixels do not depend on how Beam batches or orders elements.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from canvas.core.errors import CanvasError
from canvas.core.outputs import commit_output, prepare_output
from canvas.pipelines.generate_config import GenerateConfig

logger = logging.getLogger(__name__)

CANDIDATES_FILE = "candidates.parquet"
REJECTED_FILE = "rejected_prompts.jsonl"
NAMESPACE = "canvas_generate"

CANDIDATES_SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("prompt", pa.string()),
        ("image_0", pa.binary()),
        ("image_1", pa.binary()),
        ("seed_0", pa.int64()),
        ("seed_1", pa.int64()),
        ("model", pa.string()),
        ("scheduler", pa.string()),
        ("steps", pa.int32()),
        ("guidance", pa.float32()),
        ("prompt_index", pa.int64()),
    ]
)


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


def read_prompts(path: Path) -> list[str | None]:
    """Prompts from a .txt (blank lines skipped) or a Parquet's `caption` (or `prompt`) column."""
    path = Path(path)
    if not path.exists():
        raise CanvasError(f"no prompts file at {path}")
    if path.suffix == ".parquet":
        names = pq.read_schema(path).names
        column = next((c for c in ("caption", "prompt") if c in names), None)
        if column is None:
            raise CanvasError(f"{path} has no caption or prompt column (columns: {names})")
        return pq.read_table(path, columns=[column]).column(column).to_pylist()
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class DiffusersPipelineHandler(ModelHandler[GenerationRequest, PredictionResult, Any]):
    """RunInference handler: a diffusers text-to-image pipeline loaded with `canvas.core.presets.load_pipeline`.

    Each element yields `PredictionResult(request, {"images": [PNG bytes...], "scheduler": name})`.
    """

    def __init__(self, pretrained: str, steps: int, guidance: float, threads: int = 0) -> None:
        super().__init__()
        self.pretrained, self.steps, self.guidance, self.threads = pretrained, steps, guidance, threads

    def load_model(self) -> Any:
        import torch

        from canvas.core.presets.loading import load_pipeline

        if self.threads > 0:
            torch.set_num_threads(self.threads)

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

    def __init__(self, config: GenerateConfig) -> None:
        super().__init__()
        self.config = config

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
            >> RunInference(DiffusersPipelineHandler(c.pretrained, c.steps, c.guidance, c.threads))
            | "Pair" >> beam.FlatMap(_to_pairs, c.pretrained, c.steps, c.guidance)
        )
        return {"pairs": pairs, "rejected": checked[_ValidatePrompt.REJECTED]}


def run_generation(
    prompts: Path | Sequence[str],
    output: Path,
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

    `prompts` is a file (.txt or Parquet) or a list of strings. `beam_args` are Beam pipeline options
    (default DirectRunner), e.g. `["--direct_num_workers=2", "--direct_running_mode=multi_processing"]`.
    The output folder appears whole, at the end (`canvas.core.outputs`): an existing one is replaced only if
    it is empty or a previous generate output, otherwise refused unless `overwrite`.
    """
    config = GenerateConfig(
        Path(prompts) if isinstance(prompts, (str, Path)) else Path("<list>"),
        Path(output),
        pretrained,
        images_per_prompt,
        steps,
        guidance,
        seed,
        threads,
        overwrite,
    )
    texts = read_prompts(config.prompts) if isinstance(prompts, (str, Path)) else list(prompts)
    if not texts:
        raise CanvasError(f"no prompts in {prompts}")
    inputs = [str(config.prompts)] if isinstance(prompts, (str, Path)) else []
    with prepare_output(config.output, "generate", inputs, overwrite) as tmp:  # checked before any work
        summary = _generate_into(Path(tmp), texts, config, beam_args)
        commit_output(tmp, config.output, "generate")
    summary["output"] = str(config.output / CANDIDATES_FILE)
    logger.info(
        "generated %d pairs from %d prompts (%d rejected)",
        summary["pairs"],
        summary["prompts"],
        summary["prompts_rejected"],
    )
    return summary


def _generate_into(
    folder: Path, texts: list[str | None], config: GenerateConfig, beam_args: Sequence[str]
) -> dict[str, Any]:
    """Run the pipeline writing candidates.parquet and rejected_prompts.jsonl into `folder`."""
    shard_dir = folder / ".candidates-shards"
    options = PipelineOptions(list(beam_args))
    if options.view_as(StandardOptions).runner is None:
        # The DirectRunner would first try to download the Prism runner binary; we are offline.
        options.view_as(StandardOptions).runner = "FnApiRunner"
    pipeline = beam.Pipeline(options=options)
    outputs = (
        pipeline
        | "Prompts" >> beam.Create(list(enumerate(texts)), reshuffle=False)
        | "GenerateCandidates" >> GenerateCandidates(config)
    )
    _ = outputs["pairs"] | "WritePairs" >> beam.io.WriteToParquet(
        str(shard_dir / "part"), CANDIDATES_SCHEMA, file_name_suffix=".parquet"
    )
    _ = (
        outputs["rejected"]
        | "RejectedJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
        | "WriteRejected" >> beam.io.WriteToText(str(shard_dir / "rejected"), file_name_suffix=".jsonl")
    )
    result = pipeline.run()
    result.wait_until_finish()
    # One sorted file, the same bytes for the same inputs whatever the shard layout was.
    shards = sorted(shard_dir.glob("part*.parquet"))
    table = (
        pa.concat_tables([pq.read_table(s, schema=CANDIDATES_SCHEMA) for s in shards])
        if shards
        else (CANDIDATES_SCHEMA.empty_table())
    )
    table = table.sort_by([("prompt_index", "ascending"), ("seed_0", "ascending"), ("seed_1", "ascending")])
    pq.write_table(table, folder / CANDIDATES_FILE)
    rejected = sorted(
        (
            json.loads(line)
            for s in sorted(shard_dir.glob("rejected*"))
            for line in s.read_text().splitlines()
        ),
        key=lambda r: r["prompt_index"],
    )
    (folder / REJECTED_FILE).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rejected))
    shutil.rmtree(shard_dir)
    return {
        "prompts": len(texts),
        "prompts_kept": len(texts) - len(rejected),
        "prompts_rejected": len(rejected),
        "pairs": table.num_rows,
        "metrics": _counters(result),
    }


def _counters(result: Any) -> dict[str, int]:
    try:
        counters = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))["counters"]
    except Exception:  # some runners do not report metrics; the summary does without them
        return {}
    return {c.key.metric.name: int(c.committed or c.attempted or 0) for c in counters}
