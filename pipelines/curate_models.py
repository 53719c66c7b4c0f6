"""Beam `ModelHandler`s for the curation models. `RunInference` calls `load_model()` once per worker
process (shared by its threads) and `run_inference()` on batches; both models load from files we trust
(open_clip + safetensors through `canvas.core.presets.create_clip`; the ONNX graph inside the NSFW wheel)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from canvas.core.threads import worker_threads
from canvas.curation.decode import allow_in_pillow
from canvas.curation.embedding import ClipEmbedder
from canvas.curation.nsfw import NsfwScorer
from canvas.curation.records import Record


class ClipModelHandler(ModelHandler[list[Record], PredictionResult, ClipEmbedder]):
    """Batches of records (formed upstream, see `ClipEmbed`) -> one PredictionResult per record, whose
    example is the record with embedding and clip_score filled."""

    def __init__(
        self,
        model_name: str,
        pretrained: str | None,
        batch_size: int = 32,
        threads: int = 0,
        workers_per_machine: int = 1,
    ) -> None:
        super().__init__()
        self.model_name = model_name
        self.pretrained = pretrained
        self.batch_size = batch_size
        self.threads = threads
        self.workers_per_machine = workers_per_machine

    def load_model(self) -> ClipEmbedder:  # runs in the worker: its cores, not the driver's
        threads = worker_threads(self.threads, self.workers_per_machine)
        return ClipEmbedder(self.model_name, self.pretrained, threads).setup()

    def run_inference(
        self, batch: Sequence[Record], model: ClipEmbedder, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        """`batch` is one upstream-formed list of records (batching is skipped in RunInference)."""
        allow_in_pillow(max(r.width * r.height for r in batch))  # decode may have run in another process
        outputs = model.embed([(r.image, r.caption) for r in batch])
        for record, out in zip(batch, outputs, strict=True):
            scored = dataclasses.replace(record, embedding=out.image_embedding, clip_score=out.score)
            yield PredictionResult(scored, out, model_id=f"{self.model_name}/{self.pretrained}")

    def should_skip_batching(self) -> bool:
        return True  # each element already is a deterministic batch

    def get_num_bytes(self, batch: Sequence[Record]) -> int:
        return sum(len(r.image) for r in batch)

    def get_metrics_namespace(self) -> str:
        return "curate_clip"


class NsfwModelHandler(ModelHandler[Record, PredictionResult, NsfwScorer]):
    """Records -> PredictionResult(record with nsfw_score filled, score)."""

    def __init__(self, batch_size: int = 16, threads: int = 0, workers_per_machine: int = 1) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.threads = threads
        self.workers_per_machine = workers_per_machine

    def load_model(self) -> NsfwScorer:
        return NsfwScorer(worker_threads(self.threads, self.workers_per_machine)).setup()

    def run_inference(
        self, batch: Sequence[Record], model: NsfwScorer, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        allow_in_pillow(max(r.width * r.height for r in batch))
        scores = model.score([r.image for r in batch])
        for record, score in zip(batch, scores, strict=True):
            yield PredictionResult(dataclasses.replace(record, nsfw_score=float(score)), float(score))

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self.batch_size}

    def get_num_bytes(self, batch: Sequence[Record]) -> int:
        return sum(len(r.image) for r in batch)

    def get_metrics_namespace(self) -> str:
        return "curate_nsfw"
