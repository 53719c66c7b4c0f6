"""Options of the labeling commands: one dataclass per command, the single source of its CLI flags.

Kept free of heavy imports so `canvas --help` stays fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from canvas.core.errors import CanvasError


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
        metadata={
            "help": "the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, when it is not our server but this "
            "machine can write into it; without it, images to any other server go through its upload API"
        },
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
        self.project = _title(self.project)
        if len(self.project) < 3:
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
        self.project = _title(self.project)


@dataclass
class ServerConfig:
    """Which server: options shared by `canvas label annotators ...` and `canvas label status`."""

    url: str | None = field(
        default=None, metadata={"help": "server URL; default: the server `canvas label server start` runs"}
    )
    data_dir: Path | None = field(
        default=None,
        metadata={"help": "data dir of that server (its token); default $CANVAS_HOME/labelstudio"},
    )


@dataclass
class ServerDirConfig:
    """Options of `canvas label server stop|status`: which local server."""

    data_dir: Path | None = field(
        default=None, metadata={"help": "server data dir (default: $CANVAS_HOME/labelstudio)"}
    )


@dataclass
class ServerStartConfig(ServerDirConfig):
    """Options of `canvas label server start`."""

    port: int | None = field(default=None, metadata={"help": "port (default: a free one); refused if taken"})


@dataclass
class AnnotatorAddConfig(ServerConfig):
    """Options of `canvas label annotators add`."""

    email: str = field(default="", metadata={"help": "the annotator's email (their login)", "required": True})
    password_file: Path | None = field(
        default=None,
        metadata={
            "help": "write the generated password to this new file (mode 0600) instead of printing it; "
            "without it the password is printed once and stored nowhere"
        },
    )


@dataclass
class StatusConfig(ServerConfig):
    """Options of `canvas label status`."""

    project: str = field(default="", metadata={"help": "Label Studio project title", "required": True})

    def __post_init__(self) -> None:
        self.project = _title(self.project)


def _title(title: str) -> str:
    """A project title as Label Studio stores it (it strips the ends), so push, pull and status find the
    project under the title it was given; an empty one is an error."""
    title = str(title).strip()
    if not title:
        raise CanvasError("--project must name a project (the title is empty)")
    return title


Kind = Literal["small", "bulk", "export"]


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait on Label Studio, by kind of call; each can be set by an environment variable.

    small (`CANVAS_LABEL_TIMEOUT`, 20 s): find, get, create one thing; a local server answers in ms.
    bulk (`CANVAS_LABEL_BULK_TIMEOUT`, 120 s): import a batch of 1000 tasks, list 5000 tasks, fetch an image.
    export (`CANVAS_LABEL_EXPORT_TIMEOUT`, 600 s): the JSON export (10k tasks take ~10 s).
    connect (`CANVAS_LABEL_CONNECT_TIMEOUT`, 5 s): to open a connection, per try.
    """

    small: float = 20.0
    bulk: float = 120.0
    export: float = 600.0
    connect: float = 5.0

    ENV = {
        "small": "CANVAS_LABEL_TIMEOUT",
        "bulk": "CANVAS_LABEL_BULK_TIMEOUT",
        "export": "CANVAS_LABEL_EXPORT_TIMEOUT",
        "connect": "CANVAS_LABEL_CONNECT_TIMEOUT",
    }

    @classmethod
    def from_env(cls) -> Timeouts:
        values = {}
        for name, variable in cls.ENV.items():
            raw = os.environ.get(variable)
            if raw is None or raw == "":
                continue
            try:
                values[name] = float(raw)
            except ValueError:
                values[name] = -1.0
            if not 0 < values[name] < 86400:
                raise CanvasError(f"{variable} must be a number of seconds between 0 and 86400, got {raw!r}")
        return cls(**values)

    def read(self, kind: Kind) -> float:
        return float(getattr(self, kind))

    def bound(self, kind: Kind, tries: int, backoff: float) -> float:
        """The longest one call waits: every connection try, the backoff between them, one read."""
        return self.read(kind) + tries * min(self.connect, self.read(kind)) + backoff * (2 ** (tries - 1) - 1)
