"""The candidates format: what `canvas generate` writes is what `label push` accepts, checked in one place."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from canvas.core.errors import CanvasError
from canvas.core.formats.candidates import (
    CANDIDATES_FILE,
    CANDIDATES_SCHEMA,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    check_schema,
    read_candidates_table,
)


def test_the_written_schema_passes_the_readers_check(tmp_path: Path) -> None:
    check_schema(CANDIDATES_SCHEMA, "generated")
    row = {"pair_id": "p1", "prompt": "a cat", "image_0": b"png", "image_1": b"png", "steps": 2}
    pq.write_table(pa.Table.from_pylist([row], schema=CANDIDATES_SCHEMA), tmp_path / CANDIDATES_FILE)
    table, path = read_candidates_table(tmp_path)  # a folder means folder/candidates.parquet
    assert path == tmp_path / CANDIDATES_FILE and table.column_names == [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"pair_id": ["a"], "prompt": ["x"]}, "lacks columns ['image_0', 'image_1']"),
        ({"pair_id": ["a"], "prompt": ["x"], "image_0": ["s"], "image_1": [b"b"]}, "image_0 is string"),
    ],
)
def test_unusable_schemas_are_one_line_errors(tmp_path: Path, columns: dict, message: str) -> None:
    pq.write_table(pa.table(columns), tmp_path / "c.parquet")
    with pytest.raises(CanvasError, match=re.escape(message)) as caught:
        read_candidates_table(tmp_path / "c.parquet")
    assert "\n" not in str(caught.value)
