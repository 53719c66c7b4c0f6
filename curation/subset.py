"""Targeted subsets of a curated set: rows near some text queries and not near others.

Selection, for include texts T and exclude texts X (all embedded with the index's CLIP model):

- a row's score is its best cosine to any text in T (`max`), computed exactly from its stored embedding;
- candidates come from the index: the top `k` per include text, or every row scoring >= `min_score`;
- a candidate is dropped when it is closer to some exclude text than to its best include text, or, with
  `exclude_min_score`, when its cosine to some exclude text reaches that threshold;
- with `k` the best `k` survivors are kept, with `min_score` all survivors scoring at least that.

The output folder holds `subset.parquet` (the selected curated rows, same schema, best first),
`subset.json` (the query and each selected key's scores) and `contact_sheet.html` (thumbnails).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from canvas.core.errors import CanvasError
from canvas.curation.index import (
    CURATED_SUBDIR,
    EMBEDDING_COLUMN,
    CuratedIndex,
    QueryEncoder,
    embedding_matrix,
    read_report,
)

SUBSET_FILE = "subset.parquet"
SUMMARY_FILE = "subset.json"
CONTACT_SHEET_FILE = "contact_sheet.html"


@dataclass
class SubsetQuery:
    """What to select. Exactly one of `k` and `min_score` is set."""

    texts: list[str]
    exclude_texts: list[str] = field(default_factory=list)
    k: int | None = None
    min_score: float | None = None
    exclude_min_score: float | None = None

    def __post_init__(self) -> None:
        if not self.texts or not all(t.strip() for t in self.texts):
            raise CanvasError("give at least one non-empty --text to select rows")
        if (self.k is None) == (self.min_score is None):
            raise CanvasError("give exactly one of -k N and --min-score S")
        if self.k is not None and self.k < 1:
            raise CanvasError(f"-k must be at least 1, got {self.k}")


@dataclass(frozen=True)
class Selected:
    row: int
    key: str
    score: float  # best cosine to an include text
    exclude_score: float | None  # best cosine to an exclude text (None without exclude texts)


def select(
    index: CuratedIndex, curated_dir: Path, query: SubsetQuery, encoder: QueryEncoder | None = None
) -> list[Selected]:
    """The selected rows, best score first (ties by key). Raises `CanvasError` if nothing is selected."""
    encoder = encoder or QueryEncoder(index.manifest)
    include = encoder.texts(query.texts)
    exclude = encoder.texts(query.exclude_texts) if query.exclude_texts else None
    keys = index.rows["key"].to_pylist()
    # With -k, excluded rows leave holes: widen the candidate search until k rows survive (or none are left).
    want = query.k if query.k is not None else None
    while True:
        candidates: set[int] = set()
        for vector in include:
            candidates.update(h.row for h in index.search_hits(vector, want, query.min_score))
        chosen = _score(
            index, curated_dir, np.array(sorted(candidates), np.int64), include, exclude, query, keys
        )
        if want is None or len(chosen) >= query.k or want >= len(index):
            break
        want = min(len(index), want * 4)
    chosen.sort(key=lambda s: (-s.score, s.key))
    if query.k is not None:
        chosen = chosen[: query.k]
    if not chosen:
        raise CanvasError(
            f"the subset is empty: no row matched {query.texts}"
            + (f" with score >= {query.min_score}" if query.min_score is not None else "")
            + (f" once rows near {query.exclude_texts} were excluded" if query.exclude_texts else "")
            + "; loosen the query"
        )
    return chosen


def _score(
    index: CuratedIndex,
    curated_dir: Path,
    rows: np.ndarray,
    include: np.ndarray,
    exclude: np.ndarray | None,
    query: SubsetQuery,
    keys: list[str],
) -> list[Selected]:
    """Exact scores of candidate rows from their stored embeddings; drops excluded and low-scoring rows."""
    if not len(rows):
        return []
    embeddings = read_rows_embeddings(index, curated_dir, rows)
    scores = (embeddings @ include.T).max(axis=1)
    keep = np.ones(len(rows), dtype=bool)
    if query.min_score is not None:
        keep &= scores >= query.min_score  # exact scores: the index's approximate ones only found candidates
    exclude_scores = None
    if exclude is not None:
        exclude_scores = (embeddings @ exclude.T).max(axis=1)
        keep &= exclude_scores < (scores if query.exclude_min_score is None else query.exclude_min_score)
    return [
        Selected(
            int(r), keys[r], float(scores[i]), None if exclude_scores is None else float(exclude_scores[i])
        )
        for i, r in enumerate(rows)
        if keep[i]
    ]


def _row_locations(index: CuratedIndex, rows: np.ndarray) -> dict[str, list[tuple[int, int]]]:
    """file name -> [(index row, row within that file)]."""
    files = index.rows["file"].to_pylist()
    file_rows = index.rows["file_row"].to_pylist()
    by_file: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in rows.tolist():
        by_file[files[r]].append((r, file_rows[r]))
    return by_file


def read_rows(
    index: CuratedIndex, curated_dir: Path, rows: np.ndarray, columns: list[str] | None = None
) -> pa.Table:
    """The curated rows at these index rows, in the given order; checks they are the indexed rows."""
    curated = Path(curated_dir) / CURATED_SUBDIR
    keys = index.rows["key"].to_pylist()
    parts, order = [], []
    for name, located in _row_locations(index, rows).items():
        path = curated / name
        if not path.exists():
            raise CanvasError(f"{path} is gone: the index at {index.path} belongs to another curated set")
        table = pq.read_table(path, columns=None if columns is None else sorted({"key", *columns}))
        picked = table.take(pa.array([fr for _, fr in located], pa.int64()))
        if picked["key"].to_pylist() != [keys[r] for r, _ in located]:
            raise CanvasError(
                f"{path} does not hold the rows the index at {index.path} was built from: rebuild the index"
            )
        parts.append(picked if columns is None else picked.select(columns))
        order.extend(r for r, _ in located)
    if not parts:
        return pa.table({}) if columns is None else pa.table({c: [] for c in columns})
    table = pa.concat_tables(parts)
    position = {r: i for i, r in enumerate(order)}
    return table.take(pa.array([position[r] for r in rows.tolist()], pa.int64()))


def read_rows_embeddings(index: CuratedIndex, curated_dir: Path, rows: np.ndarray) -> np.ndarray:
    """Exact stored embeddings (unit norm) of these rows."""
    dim = index.manifest.embedding_dim
    if not len(rows):
        return np.zeros((0, dim), np.float32)
    table = read_rows(index, curated_dir, rows, columns=[EMBEDDING_COLUMN])
    matrix = embedding_matrix(table[EMBEDDING_COLUMN], dim, str(curated_dir))
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def write_subset(
    curated_dir: str | Path,
    index_dir: str | Path,
    query: SubsetQuery,
    output_dir: str | Path,
    clip_pretrained: str | None = None,
) -> dict:
    """Select rows and write `subset.parquet`, `subset.json`, `contact_sheet.html`; returns the summary.
    `clip_pretrained`: the weights that made a pool's precomputed embeddings (`index.query_weights`)."""
    curated_dir, output_dir = Path(curated_dir), Path(output_dir)
    index = CuratedIndex.load(index_dir)
    report = read_report(curated_dir)
    index.check_model(report["clip_model"], report.get("clip_pretrained"), f"the curated set {curated_dir}")
    chosen = select(index, curated_dir, query, QueryEncoder(index.manifest, clip_pretrained))
    table = read_rows(index, curated_dir, np.array([s.row for s in chosen], np.int64))
    output_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, output_dir / SUBSET_FILE)
    summary = {
        "query": asdict(query),
        "curated_dir": str(curated_dir.resolve()),
        "index_dir": str(Path(index_dir).resolve()),
        "clip_model": index.manifest.clip_model,
        "clip_pretrained": index.manifest.clip_pretrained,
        "rows": len(chosen),
        "selected": [asdict(s) for s in chosen],
    }
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    write_contact_sheet(table, chosen, output_dir / CONTACT_SHEET_FILE, title=" + ".join(query.texts))
    return summary


def write_contact_sheet(
    table: pa.Table, chosen: list[Selected], path: Path, title: str, limit: int = 120, thumb: int = 128
) -> Path:
    """A self-contained HTML grid of the first `limit` selected images (JPEG thumbnails inline)."""
    from PIL import Image

    cells = []
    images, captions = table["image"].to_pylist(), table["caption"].to_pylist()
    for sel, data, caption in zip(chosen[:limit], images, captions, strict=False):
        try:
            with Image.open(io.BytesIO(data)) as img:
                small = img.convert("RGB")
                small.thumbnail((thumb, thumb))
            buf = io.BytesIO()
            small.save(buf, format="JPEG", quality=80)
            src = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
            img_tag = f'<img src="{src}" alt="{html.escape(sel.key)}">'
        except OSError:
            img_tag = "<div class=broken>unreadable</div>"
        cells.append(
            f"<figure>{img_tag}<figcaption><b>{sel.score:.3f}</b> {html.escape(sel.key)}<br>"
            f"{html.escape(caption or '')}</figcaption></figure>"
        )
    more = f"<p>... and {len(chosen) - limit} more</p>" if len(chosen) > limit else ""
    path.write_text(
        "<!doctype html><meta charset=utf-8>"
        f"<title>subset: {html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}figure{display:inline-block;width:"
        f"{thumb + 12}px;margin:4px;vertical-align:top;font-size:11px}}</style>"
        f"<h1>{html.escape(title)}</h1><p>{len(chosen)} rows, best cosine first</p>" + "".join(cells) + more
    )
    return path
