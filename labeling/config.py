"""Options of the labeling commands: one dataclass per command, the single source of its CLI flags.

Kept free of heavy imports so `canvas --help` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from canvas.errors import CanvasError


@dataclass
class PushConfig:
    """Options of `canvas label push` (one source for the CLI flags and their help)."""

    candidates: Path = field(
        default=Path("candidates"),
        metadata={"help": "folder with candidates.parquet (or the file itself)", "required": True},
    )
    project: str = field(
        default="", metadata={"help": "Label Studio project title (created if missing)", "required": True}
    )
    url: str | None = field(
        default=None, metadata={"help": "server URL; default: the server `canvas label server start` runs"}
    )
    data_dir: Path | None = field(
        default=None,
        metadata={"help": "data dir of that server (token, files root); default $CANVAS_HOME/labelstudio"},
    )
    files_root: Path | None = field(
        default=None,
        metadata={"help": "the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, when it is not our server"},
    )
    overlap: int = field(default=1, metadata={"help": "distinct annotators per pair"})
    gold: Path | None = field(
        default=None, metadata={"help": 'JSON {pair_id: "left"|"right"|"tie"}: known answers for QC'}
    )
    reward: str | None = field(
        default=None, metadata={"help": "pre-label with this reward (name or reward-model folder)"}
    )
    batch_size: int = field(default=1000, metadata={"help": "tasks per import request"})
    rejected: Path | None = field(
        default=None,
        metadata={"help": "write the rejected rows (row, pair_id, reason) here as JSON lines"},
    )

    def __post_init__(self) -> None:
        if len(self.project.strip()) < 3:
            raise CanvasError("--project must be a title of at least 3 characters (Label Studio's rule)")
        if self.overlap < 1:
            raise CanvasError("--overlap must be at least 1")
        if self.batch_size < 1:
            raise CanvasError("--batch-size must be at least 1")


@dataclass
class PullConfig:
    """Options of `canvas label pull`."""

    project: str = field(default="", metadata={"help": "Label Studio project title", "required": True})
    output: Path = field(default=Path("preferences"), metadata={"help": "output folder", "required": True})
    url: str | None = field(
        default=None, metadata={"help": "server URL; default: the server `canvas label server start` runs"}
    )
    data_dir: Path | None = field(
        default=None,
        metadata={"help": "data dir of that server (token, files root); default $CANVAS_HOME/labelstudio"},
    )
    files_root: Path | None = field(
        default=None, metadata={"help": "read images from this local-files root instead of over HTTP"}
    )

    def __post_init__(self) -> None:
        if not self.project.strip():
            raise CanvasError("--project must name a project")
