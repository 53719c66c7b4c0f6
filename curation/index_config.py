"""The knobs of `canvas index build`, `canvas index query` and `canvas subset`, one dataclass per command.

A flag of the command or a key of its `--config FILE.yaml` (canvas.core.config_parser); each config
checks itself on construction, so a mistake is one line before any model or index loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from canvas.core.config_parser import must_exist
from canvas.core.errors import CanvasError


@dataclass
class IndexBuildConfig:
    curated: Path | None = field(
        default=None, metadata={"help": "curated folder (from `canvas curate`)", "required": True}
    )
    output: Path | None = field(default=None, metadata={"help": "index folder to write", "required": True})
    factory: str = field(
        default="auto",
        metadata={"help": "FAISS index_factory string, e.g. 'IVF1024,PQ64' or 'HNSW32', or 'auto'"},
    )
    train_sample: int = field(default=256_000, metadata={"help": "vectors to train IVF/PQ on"})
    seed: int = field(default=0, metadata={"help": "seed of the training sample and k-means"})

    def __post_init__(self) -> None:
        must_exist("--curated", self.curated)


_WEIGHTS_HELP = (
    "weights tag or file of the query model; for a pool's precomputed embeddings, the weights that made them "
    "(default for a DataComp pool: openai)"
)


@dataclass
class IndexQueryConfig:
    index: Path | None = field(
        default=None, metadata={"help": "index folder (`canvas index build`)", "required": True}
    )
    text: str | None = field(default=None, metadata={"help": "query text (or --image)"})
    # a plain path: `open_image_file` checks it and says what is wrong in one line
    image: Path | None = field(default=None, metadata={"help": "query image file (or --text)"})
    k: int | None = field(
        default=None,
        metadata={"help": "number of results (default 10 without --min-score)", "aliases": ["-k"]},
    )
    min_score: float | None = field(default=None, metadata={"help": "only results with cosine >= S"})
    clip_model: str | None = field(
        default=None, metadata={"help": "assert the query model (default: the one the index remembers)"}
    )
    clip_pretrained: str | None = field(default=None, metadata={"help": _WEIGHTS_HELP})

    def __post_init__(self) -> None:
        if (self.text is None) == (self.image is None):
            raise CanvasError("give exactly one of --text and --image")
        if self.k is not None and self.k < 1:
            raise CanvasError(f"-k must be at least 1, got {self.k}")
        must_exist("--index", self.index)

    @property
    def limit(self) -> int | None:
        """How many results: -k, else all above --min-score, else 10."""
        return self.k if self.k is not None or self.min_score is not None else 10


@dataclass
class SubsetConfig:
    curated: Path | None = field(default=None, metadata={"help": "curated folder", "required": True})
    index: Path | None = field(
        default=None, metadata={"help": "its index (`canvas index build`)", "required": True}
    )
    text: list[str] = field(
        default_factory=list,
        metadata={
            "help": "include query (repeatable: --text A --text B)",
            "required": True,
            "action": "append",
        },
    )
    exclude_text: list[str] = field(
        default_factory=list, metadata={"help": "exclude query (repeatable)", "action": "append"}
    )
    k: int | None = field(default=None, metadata={"help": "keep the best N rows", "aliases": ["-k"]})
    min_score: float | None = field(default=None, metadata={"help": "keep every row with cosine >= S"})
    exclude_min_score: float | None = field(
        default=None, metadata={"help": "drop rows with cosine >= S to an exclude text"}
    )
    output: Path | None = field(default=None, metadata={"help": "output folder", "required": True})
    clip_pretrained: str | None = field(default=None, metadata={"help": _WEIGHTS_HELP})

    def __post_init__(self) -> None:
        if (self.k is None) == (self.min_score is None):
            raise CanvasError("give exactly one of -k N and --min-score S")
        must_exist("--curated", self.curated)
        must_exist("--index", self.index)
