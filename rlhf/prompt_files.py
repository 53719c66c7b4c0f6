"""Prompts for RL fine-tuning from a text file (one a line) or a Parquet of captions."""

from __future__ import annotations

from pathlib import Path

from canvas.core.errors import CanvasError

PARQUET_COLUMNS = ("caption", "prompt")


def load_prompts(path: str | Path) -> list[str]:
    """Non-empty, stripped prompts in file order (duplicates kept: they weight sampling).

    `.parquet`: the `caption` column (or `prompt`); anything else is read as UTF-8 text, one prompt a line.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CanvasError(f"prompt file not found: {path}")
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise CanvasError(f"cannot read {path} as Parquet: {exc}") from exc
        column = next((c for c in PARQUET_COLUMNS if c in names), None)
        if column is None:
            raise CanvasError(
                f"{path} has no {' or '.join(PARQUET_COLUMNS)} column (columns: {', '.join(names)})"
            )
        raw = pq.read_table(path, columns=[column]).column(column).to_pylist()
    else:
        try:
            raw = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise CanvasError(f"{path} is not UTF-8 text: {exc}") from exc
    prompts = [p.strip() for p in raw if isinstance(p, str) and p.strip()]
    if not prompts:
        raise CanvasError(f"no prompts in {path} (empty file or only blank captions)")
    return prompts
