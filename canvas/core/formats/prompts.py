"""Prompt files, read the same way by `canvas generate`, `canvas train ddpo` and `canvas eval`.

One rule set:
- `.txt` (or `.txt.gz`, any `.gz`): UTF-8, one prompt per line, stripped; blank lines and lines whose
  first non-blank character is `#` are skipped (comments and layout, not prompts).
- `.parquet`: the `caption` column (a curated output's), else `prompt`; one prompt per row, stripped.
  A null or blank caption is kept as an empty entry: it is a row of data, and `generate` reports it as
  a rejected "empty prompt"; `read_prompts` drops it. A caption starting with `#` is data (a hashtag).
- Local paths, or `scheme://` paths (gs://, s3://, ...) through Beam's FileSystems, imported only then.

`read_prompt_entries` gives every entry with its line (or row) number, empty ones included, for a caller
that reports them; `read_prompts` gives the non-empty prompts and refuses a file that has none.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from canvas.core.errors import CanvasError

__all__ = ["PARQUET_COLUMNS", "PromptEntry", "read_prompt_entries", "read_prompts"]

PARQUET_COLUMNS = ("caption", "prompt")  # first present wins
COMMENT = "#"


@dataclass(frozen=True)
class PromptEntry:
    """One prompt of a file: `number` is its 1-based line (text) or row (Parquet); `text` is stripped,
    "" for a null or blank Parquet caption."""

    number: int
    text: str


def _read_bytes(path: str) -> bytes:
    """The whole file (prompt files are small), local or through Beam's FileSystems."""
    if "://" in path:
        # Lazy: a local read must not load Beam (the base layer stays light).
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        if not FileSystems.exists(path):
            raise CanvasError(f"prompt file not found: {path}")
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            return handle.read()
    local = Path(path).expanduser()
    if not local.is_file():
        raise CanvasError(f"prompt file not found: {path}")
    return local.read_bytes()


def _parquet_entries(data: bytes, path: str) -> list[PromptEntry]:
    try:
        buffer = pa.BufferReader(data)
        names = pq.read_schema(buffer).names
        column = next((c for c in PARQUET_COLUMNS if c in names), None)
        if column is None:
            raise CanvasError(
                f"{path} has no {' or '.join(PARQUET_COLUMNS)} column (columns: {', '.join(names)})"
            )
        values = pq.read_table(pa.BufferReader(data), columns=[column]).column(column).to_pylist()
    except (pa.ArrowException, OSError) as exc:  # pyarrow raises several types for a non-Parquet file
        raise CanvasError(f"cannot read {path} as Parquet: {str(exc).splitlines()[0][:200]}") from exc
    return [PromptEntry(i, v.strip() if isinstance(v, str) else "") for i, v in enumerate(values, 1)]


def _text_entries(data: bytes, path: str) -> list[PromptEntry]:
    try:
        if path.lower().endswith(".gz"):
            data = gzip.decompress(data)
        text = data.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not part of line 1
    except (OSError, EOFError, zlib.error) as exc:
        raise CanvasError(f"{path} is not a readable gzip file: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise CanvasError(f"{path} is not UTF-8 text: {exc}") from exc
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith(COMMENT):
            entries.append(PromptEntry(number, line))
    return entries


def read_prompt_entries(path: str | Path) -> list[PromptEntry]:
    """Every prompt in file order (duplicates kept), Parquet's empty captions included as ""."""
    path = str(path)
    data = _read_bytes(path)
    if path.lower().endswith(".parquet"):
        return _parquet_entries(data, path)
    return _text_entries(data, path)


def read_prompts(path: str | Path) -> list[str]:
    """The non-empty prompts in file order (duplicates kept: they weight sampling); an error if none."""
    prompts = [e.text for e in read_prompt_entries(path) if e.text]
    if not prompts:
        raise CanvasError(f"no prompts in {path} (empty file, only comments or only blank captions)")
    return prompts


def training_prompts(given: list[str] | None, path: str | None) -> list[str]:
    """A trainer's prompts: the list a caller passed, else the `--prompts` file; one line if neither or empty."""
    if given is None:
        if not path:
            raise CanvasError("no prompts: pass --prompts FILE (.txt or .parquet)")
        given = read_prompts(path)
    if not given:
        raise CanvasError("the prompt list is empty")
    return list(given)
