"""Preference pairs in the Pick-a-Pic v2 schema: `caption, jpg_0, jpg_1, label_0, label_1`.

`label_0 = 1, label_1 = 0` means image 0 was preferred; `0.5 / 0.5` is a tie. The source is a Parquet
file or folder (as `canvas label pull` writes it), a Hugging Face `datasets.Dataset`, a folder written
by `Dataset.save_to_disk`, or a dataset name `datasets.load_dataset` can resolve. Other columns (Pick-a-Pic
has many) are ignored.

Columns and labels are checked when the data is opened, images when it is opened (header) and when
decoded (pixels); every problem is one `CanvasError` that names the row. Row numbers are positions in
the source, counted from 0.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from canvas.core.errors import CanvasError
from canvas.core.formats.preferences import IMAGE_COLUMNS, PREFERENCES_SCHEMA, REQUIRED_COLUMNS
from canvas.core.images import open_lazily

LABEL_SUM_TOLERANCE = 1e-4


@dataclass(frozen=True)
class PreferencePair:
    """One labelled pair, oriented so that `preferred` is the winner (for a tie: image 0)."""

    row: int
    caption: str
    preferred: bytes
    rejected: bytes
    # Probability that `preferred` wins: 1.0 for a clear preference, 0.5 for a tie.
    target: float
    # Whether `preferred` is image 0 (shown left): calibration reads pairs as shown, not winner-first.
    preferred_is_left: bool = True

    @property
    def is_tie(self) -> bool:
        return self.target == 0.5


class PreferenceData:
    """Validated preference pairs with their source row numbers; indexable, splittable."""

    def __init__(self, table: pa.Table, rows: Sequence[int], source: str) -> None:
        self._table = table
        self.rows = list(rows)
        self.source = source

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> PreferencePair:
        row = self.rows[i]
        record = {name: self._table.column(name)[row].as_py() for name in REQUIRED_COLUMNS}
        jpg_0, jpg_1 = (_image_bytes(record[c]) for c in IMAGE_COLUMNS)
        label_0, label_1 = float(record["label_0"]), float(record["label_1"])
        if label_1 > label_0:
            return PreferencePair(row, record["caption"], jpg_1, jpg_0, label_1, preferred_is_left=False)
        return PreferencePair(row, record["caption"], jpg_0, jpg_1, label_0)

    @property
    def num_ties(self) -> int:
        labels = self._table.column("label_0").to_numpy(zero_copy_only=False)[self.rows]
        return int(np.sum(labels == 0.5))

    def without_ties(self) -> PreferenceData:
        labels = self._table.column("label_0").to_numpy(zero_copy_only=False)
        return self._subset([r for r in self.rows if labels[r] != 0.5])

    def split(self, heldout_fraction: float, seed: int) -> tuple[PreferenceData, PreferenceData]:
        """Seeded random split into (train, held-out); held-out gets round(fraction * n) pairs."""
        if not 0 <= heldout_fraction < 1:
            raise CanvasError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
        n_heldout = round(heldout_fraction * len(self))
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).tolist()
        heldout = sorted(order[:n_heldout])
        train = sorted(order[n_heldout:])
        return self._subset([self.rows[i] for i in train]), self._subset([self.rows[i] for i in heldout])

    def _subset(self, rows: Sequence[int]) -> PreferenceData:
        return PreferenceData(self._table, rows, self.source)


def load_preferences(
    source: str | Path | Any, split: str = "train", check_images: bool = True
) -> PreferenceData:
    """Open and validate preference pairs; raises `CanvasError` naming the first bad row.

    Args:
        source: Parquet file/folder, `save_to_disk` folder, `datasets.Dataset`, or a dataset name.
        split: the split to read when `source` is a dataset name or a `DatasetDict` folder.
        check_images: open every image header up front (cheap) so that garbage bytes fail early.
    """
    table, name = _read_table(source, split)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise CanvasError(
            f"{name}: missing column(s) {', '.join(missing)}; the Pick-a-Pic v2 schema needs "
            f"{', '.join(REQUIRED_COLUMNS)}"
        )
    if table.num_rows == 0:
        raise CanvasError(f"{name}: no preference rows")
    _check_rows(table, name, check_images)
    return PreferenceData(table, range(table.num_rows), name)


def _read_table(source: str | Path | Any, split: str) -> tuple[pa.Table, str]:
    if hasattr(source, "flatten_indices") and hasattr(source, "data"):  # a datasets.Dataset
        return source.flatten_indices().data.table, "dataset"
    path = Path(source).expanduser()
    if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
        import datasets

        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise CanvasError(f"{path}: no split {split!r} (has {', '.join(loaded)})")
            loaded = loaded[split]
        return loaded.flatten_indices().data.table, str(path)
    if path.exists():
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path), str(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise CanvasError(f"{path}: not a readable Parquet file or folder ({exc})") from exc
    if "/" in str(source) and not str(source).startswith((".", "/", "~")):
        import datasets

        try:
            return datasets.load_dataset(str(source), split=split).flatten_indices().data.table, str(source)
        except Exception as exc:  # noqa: BLE001 - hub/network errors come in many types
            raise CanvasError(f"cannot load dataset {source!r} (split {split!r}): {exc}") from exc
    raise CanvasError(f"no such preference file or folder: {source}")


def _check_rows(table: pa.Table, name: str, check_images: bool) -> None:
    captions = table.column("caption").to_pylist()
    labels_0 = table.column("label_0").to_pylist()
    labels_1 = table.column("label_1").to_pylist()
    for row, (caption, l0, l1) in enumerate(zip(captions, labels_0, labels_1, strict=True)):
        if not isinstance(caption, str):
            raise CanvasError(f"{name}: row {row}: caption is {caption!r}, expected text")
        if not all(isinstance(v, int | float) and math.isfinite(v) and 0 <= v <= 1 for v in (l0, l1)):
            raise CanvasError(f"{name}: row {row}: labels must be numbers in [0, 1], got {l0!r}, {l1!r}")
        if abs(l0 + l1 - 1) > LABEL_SUM_TOLERANCE:
            raise CanvasError(
                f"{name}: row {row}: label_0 + label_1 = {l0 + l1:g}, expected 1 (0.5/0.5 marks a tie)"
            )
    if check_images:
        for column in IMAGE_COLUMNS:
            for row, value in enumerate(table.column(column).to_pylist()):
                _open_image(_image_bytes(value), row, column, name, decode=False)


def _image_bytes(value: Any) -> bytes:
    """Binary column -> bytes; a `datasets.Image` struct -> its `bytes` field."""
    if isinstance(value, dict):
        value = value.get("bytes")
    return value if isinstance(value, bytes) else b""


def _open_image(data: bytes, row: int, column: str, name: str, decode: bool = True) -> Image.Image:
    try:
        image = open_lazily(data)  # the pixel limit, from the header, before anything is decoded
        if decode:
            image = image.convert("RGB")
        return image
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad bytes
        raise CanvasError(f"{name}: row {row}: {column} is not a decodable image ({exc})") from exc


def decode_pair(data: PreferenceData, pair: PreferencePair) -> tuple[Image.Image, Image.Image]:
    """(preferred, rejected) as RGB images; an undecodable one raises naming its row."""
    return (
        _open_image(pair.preferred, pair.row, "preferred image", data.source),
        _open_image(pair.rejected, pair.row, "rejected image", data.source),
    )


def write_preferences(path: str | Path, records: Sequence[dict[str, Any]]) -> Path:
    """Write pairs (dicts with the five schema columns; PIL images or bytes for jpg_*) as Parquet."""
    import pyarrow.parquet as pq

    def encode(value: Any) -> bytes:
        if isinstance(value, Image.Image):
            buf = io.BytesIO()
            value.convert("RGB").save(buf, format="PNG")
            return buf.getvalue()
        return value

    columns = {c: [encode(r[c]) if c in IMAGE_COLUMNS else r[c] for r in records] for c in REQUIRED_COLUMNS}
    schema = pa.schema([PREFERENCES_SCHEMA.field(c) for c in REQUIRED_COLUMNS])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns, schema=schema), path)
    return path
