"""`canvas generate`'s output, `DIR/candidates.parquet`: one row per pair of images made for one prompt.

`canvas label push` needs only `REQUIRED_COLUMNS`; the other columns record how the pair was made.
A candidates file may come from shared storage, so `read_candidates_table` checks the columns and their
types before any row is read: a file that cannot be used at all is one `CanvasError`; what is wrong with
single rows is the consumer's to judge (push rejects them one by one, with reasons).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from canvas.core.errors import CanvasError

__all__ = [
    "CANDIDATES_FILE",
    "CANDIDATES_SCHEMA",
    "IMAGE_COLUMNS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "check_schema",
    "read_candidates_table",
]

CANDIDATES_FILE = "candidates.parquet"

CANDIDATES_SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("prompt", pa.string()),
        ("image_0", pa.binary()),  # encoded image bytes (generate writes PNG)
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

IMAGE_COLUMNS: tuple[str, ...] = ("image_0", "image_1")
REQUIRED_COLUMNS: tuple[str, ...] = ("pair_id", "prompt", *IMAGE_COLUMNS)
# Read when present: `model` (what generated the pair) becomes Pick-a-Pic's model_0/model_1 on pull.
OPTIONAL_COLUMNS: tuple[str, ...] = ("model",)


def _column_kind_ok(name: str, kind: pa.DataType) -> bool:
    # Lenient where a hand-made file is harmless: large types, and an integer pair_id (read as text).
    if name in IMAGE_COLUMNS:
        return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
    if name == "pair_id":
        return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def check_schema(schema: pa.Schema, path: Path | str) -> None:
    """CanvasError (one line) unless `schema` has the required columns with usable types."""
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise CanvasError(f"{path} lacks columns {missing}; expected {list(REQUIRED_COLUMNS)}")
    wrong = [
        f"{c} is {schema.field(c).type}"
        for c in REQUIRED_COLUMNS
        if not _column_kind_ok(c, schema.field(c).type)
    ]
    if wrong:
        raise CanvasError(
            f"{path}: wrong column types ({', '.join(wrong)}); expected pair_id string, prompt string, "
            "image_0/image_1 binary (encoded image bytes)"
        )


def read_candidates_table(path: Path | str) -> tuple[pa.Table, Path]:
    """The required columns (and the optional ones it has, as text) of a candidates file (a folder means
    `folder/candidates.parquet`), and the file's path; the schema is checked before the rows are read."""
    path = Path(path)
    if path.is_dir():
        path = path / CANDIDATES_FILE
    if not path.is_file():
        raise CanvasError(f"no candidates file at {path} (make one with `canvas generate`)")
    try:
        schema = pq.read_schema(path)
        check_schema(schema, path)
        optional = [
            c for c in OPTIONAL_COLUMNS if c in schema.names and pa.types.is_string(schema.field(c).type)
        ]
        table = pq.read_table(path, columns=[*REQUIRED_COLUMNS, *optional])
    except (pa.ArrowException, OSError) as exc:
        raise CanvasError(f"{path} is not a readable Parquet file: {str(exc).splitlines()[0][:200]}") from exc
    return table, path
