"""A FAISS index over a curated set's CLIP image embeddings, and nearest-row search on it.

Engine-agnostic (no Beam). A curated folder holds `curated/*.parquet` (one row per kept image, with an
L2-normalised `embedding` column) and `report.json` (which CLIP model made the embeddings). An index
folder holds:

- `index.faiss`: the FAISS index; row `i` of the index is the `i`-th curated row in file order;
- `rows.parquet`: row -> key, caption, and where the row lives (`file`, `file_row`) in the curated dir;
- `index.json`: the manifest (`IndexManifest`): CLIP model and weights, embedding dim, metric, factory,
  search parameters. Queries embed text or images with exactly that model.

Scores are cosine similarities of unit vectors. Small sets get an exact flat index (inner product); large
ones PCA + IVF + 6-bit residual codes (L2, converted to cosine; see `choose_factory` and
`bench/bench_index.py` for the recall/size trade-off it was picked for), trained on a seeded sample.
Loading memory-maps the inverted lists (`faiss.IO_FLAG_MMAP`) so a large index is not read into RAM.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from canvas.core.errors import CanvasError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
ROWS_FILE = "rows.parquet"
MANIFEST_FILE = "index.json"
CURATED_SUBDIR = "curated"
REPORT_FILE = "report.json"
EMBEDDING_COLUMN = "embedding"
METRIC = "inner_product"  # on unit vectors: cosine similarity

# Below this many vectors an exact flat index is both small and fast enough (a flat scan of 100k x 512
# floats takes ~10 ms per query), so approximation buys nothing.
FLAT_MAX_ROWS = 100_000
ROWS_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("key", pa.string()),
        ("caption", pa.string()),
        ("file", pa.string()),
        ("file_row", pa.int64()),
    ]
)


PRECOMPUTED = "precomputed "  # how a curated set names embeddings it was given (`canvas curate` on a pool)
# DataComp's pools ship OpenAI CLIP's embeddings (ViT-B/32 and ViT-L/14): a query is embedded with those
PRECOMPUTED_WEIGHTS = {"precomputed b32": "openai", "precomputed l14": "openai"}


def query_weights(manifest: IndexManifest, clip_pretrained: str | None = None) -> str | None:
    """The weights that embed a query: the index's own, or, for a pool's precomputed embeddings, those that
    made them (`clip_pretrained`, else DataComp's known source). clip-retrieval folders do not say which
    weights made them: then `clip_pretrained` must."""
    ours = manifest.clip_pretrained
    if not (ours or "").startswith(PRECOMPUTED):
        return ours
    if clip_pretrained:
        return clip_pretrained
    if ours in PRECOMPUTED_WEIGHTS:
        return PRECOMPUTED_WEIGHTS[ours]
    raise CanvasError(
        f"the index holds {manifest.clip_model} embeddings made elsewhere ({ours}): name the weights that made "
        "them with --clip_pretrained (an open_clip tag or file) to embed the query"
    )


@dataclass
class IndexManifest:
    """What an index folder remembers about how it was made (`index.json`)."""

    clip_model: str
    clip_pretrained: str | None
    embedding_dim: int
    num_rows: int
    factory: str
    metric: str = field(default=METRIC, metadata={"help": "inner_product, or l2 (scores = 1 - l2^2 / 2)"})
    nprobe: int = field(default=0, metadata={"help": "IVF lists scanned per query (0 = not an IVF index)"})
    k_factor: int = field(default=1, metadata={"help": "candidates re-ranked per result (refine stage)"})
    curated_dir: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> IndexManifest:
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Hit:
    """One search result: the index row, its curated key and caption, and the cosine score."""

    row: int
    key: str
    caption: str | None
    score: float


def choose_factory(num_rows: int, dim: int) -> tuple[str, int, int]:
    """The FAISS factory string and search parameters (nprobe, k_factor) for a set of this size.

    Flat (exact) up to `FLAT_MAX_ROWS`. Above it: a PCA rotation keeping the leading 19/32 of the
    dimensions (CLIP-like embeddings have a fast-decaying spectrum), IVF with ~4 sqrt(n) lists (a power of
    two), and 6-bit scalar quantization of the residuals: dim * 57/256 bytes + 8 (the id) per vector,
    about 1/8.5 of float32 (dim * 4 bytes) at dim 512 once the centroids are amortised. At the same size,
    4-bit codes of 15/16 of the dims or PQ lose more recall (`bench/bench_index.py` measures these
    strings against exact search; docs/benchmarks.md). The inverted lists are plain arrays, so loading
    can memory-map them. nprobe = nlist / 64: recall was flat beyond it in the bench.
    """
    if num_rows <= FLAT_MAX_ROWS:
        return "Flat", 0, 1
    nlist = 2 ** round(math.log2(4 * math.sqrt(num_rows)))
    kept = max(8, dim * 19 // 32)
    return f"PCAR{kept},IVF{nlist},SQ6", max(8, nlist // 64), 1


def metric_for(factory: str) -> str:
    """PCA centres the vectors, which changes inner products but not L2 distances: PCA indexes use L2.

    On unit vectors L2 ranks exactly as cosine does, and cosine = 1 - L2^2 / 2.
    """
    return "l2" if "PCA" in factory.upper() else METRIC


# -- reading a curated folder ------------------------------------------------------------------------


def read_report(curated_dir: Path) -> dict[str, Any]:
    path = Path(curated_dir) / REPORT_FILE
    if not path.exists():
        raise CanvasError(f"{curated_dir} is not a curated folder: no {REPORT_FILE}")
    report = json.loads(path.read_text())
    if "embedding_dim" in report and report["embedding_dim"] is None:
        raise CanvasError(f"{curated_dir} has no CLIP embeddings: it was curated with `clip: enabled: false`")
    missing = [k for k in ("clip_model", "embedding_dim") if not report.get(k)]
    if missing:
        raise CanvasError(f"{path} does not say which CLIP model made the embeddings (missing {missing})")
    return report


def curated_files(curated_dir: Path) -> list[Path]:
    files = sorted((Path(curated_dir) / CURATED_SUBDIR).glob("*.parquet"))
    if not files:
        raise CanvasError(f"no curated rows: {Path(curated_dir) / CURATED_SUBDIR}/*.parquet not found")
    return files


def embedding_matrix(column: pa.ChunkedArray | pa.Array, dim: int, where: str) -> np.ndarray:
    """A (fixed-size) list<float> column -> (n, dim) float32; nulls and wrong lengths are errors."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        raise CanvasError(f"{where}: {array.null_count} rows have no embedding; re-run curation with CLIP on")
    if pa.types.is_fixed_size_list(array.type):
        if array.type.list_size != dim:
            raise CanvasError(f"{where}: embeddings have dim {array.type.list_size}, report.json says {dim}")
        return array.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        lengths = np.asarray(array.value_lengths())
        if len(lengths) and (lengths != dim).any():
            raise CanvasError(f"{where}: embedding lengths {sorted(set(lengths.tolist()))[:3]} != {dim}")
        return array.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    raise CanvasError(f"{where}: column {EMBEDDING_COLUMN!r} is {array.type}, not a list of floats")


def read_curated_embeddings(curated_dir: Path) -> tuple[pa.Table, np.ndarray, dict[str, Any]]:
    """(rows table with ROWS_SCHEMA, (n, d) unit-norm float32 embeddings, report) of a curated folder.

    Only the key, caption and embedding columns are read: image bytes stay on disk.
    """
    curated_dir = Path(curated_dir)
    report = read_report(curated_dir)
    dim = int(report["embedding_dim"])
    tables, matrices, start = [], [], 0
    for path in curated_files(curated_dir):
        names = pq.read_schema(path).names
        if EMBEDDING_COLUMN not in names:
            raise CanvasError(
                f"{path} has no {EMBEDDING_COLUMN!r} column: the curated set was made without CLIP "
                "embeddings; re-run `canvas curate` with CLIP enabled"
            )
        table = pq.read_table(path, columns=["key", "caption", EMBEDDING_COLUMN])
        n = table.num_rows
        matrices.append(embedding_matrix(table[EMBEDDING_COLUMN], dim, str(path)))
        tables.append(
            pa.table(
                {
                    "row": pa.array(np.arange(start, start + n), pa.int64()),
                    "key": table["key"].cast(pa.string()),
                    "caption": table["caption"].cast(pa.string()),
                    "file": pa.array([path.name] * n, pa.string()),
                    "file_row": pa.array(np.arange(n), pa.int64()),
                },
                schema=ROWS_SCHEMA,
            )
        )
        start += n
    if start == 0:
        raise CanvasError(f"{curated_dir} has no curated rows to index")
    embeddings = np.ascontiguousarray(np.concatenate(matrices))
    norms = np.linalg.norm(embeddings, axis=1)
    if not np.isfinite(norms).all() or (norms == 0).any():
        raise CanvasError(f"{curated_dir}: some embeddings are zero or not finite")
    embeddings /= norms[:, None]  # the contract says unit norm; re-normalising keeps scores cosines anyway
    return pa.concat_tables(tables), embeddings, report


# -- building --------------------------------------------------------------------------------------


def build_index(
    curated_dir: str | Path,
    output_dir: str | Path,
    factory: str = "auto",
    train_sample: int = 256_000,
    seed: int = 0,
) -> IndexManifest:
    """Index a curated folder's image embeddings into `output_dir` (index, row mapping, manifest)."""
    import faiss

    curated_dir, output_dir = Path(curated_dir), Path(output_dir)
    rows, embeddings, report = read_curated_embeddings(curated_dir)
    n, dim = embeddings.shape
    if factory == "auto":
        factory, nprobe, k_factor = choose_factory(n, dim)
    else:
        nprobe, k_factor = 0, 1
    try:
        metric = metric_for(factory)
        faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        index = faiss.index_factory(dim, factory, faiss_metric)
    except RuntimeError as exc:
        raise CanvasError(f"invalid FAISS factory string {factory!r}: {str(exc).splitlines()[-1]}") from exc
    _no_polysemous_training(index)
    ivf = _ivf(index)
    if ivf is not None and nprobe == 0:
        nprobe = max(1, min(ivf.nlist, 16))
    if "Refine" in factory or "RFlat" in factory:
        k_factor = max(k_factor, 4)
    if not index.is_trained:
        sample = embeddings
        if n > train_sample:
            picked = np.sort(np.random.default_rng(seed).choice(n, train_sample, replace=False))
            sample = embeddings[picked]
        if ivf is not None and len(sample) < ivf.nlist:
            raise CanvasError(f"{factory!r} needs at least {ivf.nlist} rows to train, the set has {n}")
        # FAISS's k-means (coarse quantizer, PQ codebooks) seeds itself with a fixed default: same sample,
        # same index.
        log.info("training %s on %d of %d vectors", factory, len(sample), n)
        index.train(sample)
    log.info("adding %d vectors", n)
    index.add(embeddings)
    output_dir.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(output_dir / INDEX_FILE))
    pq.write_table(rows, output_dir / ROWS_FILE)
    manifest = IndexManifest(
        clip_model=str(report["clip_model"]),
        clip_pretrained=report.get("clip_pretrained"),
        embedding_dim=dim,
        num_rows=n,
        factory=factory,
        metric=metric,
        nprobe=nprobe,
        k_factor=k_factor,
        curated_dir=str(curated_dir.resolve()),
    )
    (output_dir / MANIFEST_FILE).write_text(manifest.to_json())
    return manifest


def _no_polysemous_training(index: Any) -> None:
    """index_factory turns on polysemous training for PQ codes; it only serves Hamming pre-filtering,
    which we do not use, and makes training ~10x slower."""
    import faiss

    index = faiss.downcast_index(index)
    if hasattr(index, "do_polysemous_training"):
        index.do_polysemous_training = False
    for child in ("base_index", "refine_index", "index"):
        if isinstance(getattr(index, child, None), faiss.Index):
            _no_polysemous_training(getattr(index, child))


def _ivf(index: Any) -> Any:
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


# -- loading and searching ---------------------------------------------------------------------------


class CuratedIndex:
    """A loaded index folder: `search` unit-norm query vectors, get curated rows with cosine scores."""

    def __init__(self, index: Any, rows: pa.Table, manifest: IndexManifest, path: Path) -> None:
        self.index = index
        self.rows = rows
        self.manifest = manifest
        self.path = path
        self._keys = rows["key"].to_pylist()
        self._captions = rows["caption"].to_pylist()

    @classmethod
    def load(cls, index_dir: str | Path, mmap: bool = True) -> CuratedIndex:
        """Open an index folder; with `mmap` the index file is memory-mapped, not read into RAM."""
        import faiss

        index_dir = Path(index_dir)
        missing = [f for f in (INDEX_FILE, ROWS_FILE, MANIFEST_FILE) if not (index_dir / f).exists()]
        if missing:
            raise CanvasError(f"{index_dir} is not an index folder (missing {', '.join(missing)})")
        manifest = IndexManifest.from_json((index_dir / MANIFEST_FILE).read_text())
        # IVF: the inverted lists are mapped (IO_FLAG_MMAP); flat codes need their own flag (IO_FLAG_MMAP_IFC).
        ivf_flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
        flags = (ivf_flags if "IVF" in manifest.factory else faiss.IO_FLAG_MMAP_IFC) if mmap else 0
        index = faiss.read_index(str(index_dir / INDEX_FILE), flags)
        rows = pq.read_table(index_dir / ROWS_FILE)
        if index.ntotal != rows.num_rows or index.d != manifest.embedding_dim:
            raise CanvasError(f"{index_dir}: index, row mapping and manifest disagree; rebuild the index")
        return cls(index, rows, manifest, index_dir)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def check_model(self, clip_model: str, clip_pretrained: str | None, what: str) -> None:
        """Raise unless `what` (a query, a curated set) comes from the CLIP model this index was built with.
        A pool's precomputed embeddings name no weights we hold: there the model must match, and the weights
        given are taken as those that made them (`query_weights`)."""
        ours = (self.manifest.clip_model, self.manifest.clip_pretrained)
        precomputed = (ours[1] or "").startswith(PRECOMPUTED) and clip_pretrained != ours[1]
        if clip_model != ours[0] or (clip_pretrained != ours[1] and not precomputed):
            raise CanvasError(
                f"{what} uses CLIP {clip_model}/{clip_pretrained} but the index at {self.path} was built from "
                f"{ours[0]}/{ours[1]} embeddings: scores across models mean nothing; rebuild the index or "
                "query with the index's model"
            )

    def _params(self) -> Any:
        import faiss

        ivf_params = faiss.SearchParametersIVF(nprobe=self.manifest.nprobe) if self.manifest.nprobe else None
        if isinstance(faiss.downcast_index(self.index), faiss.IndexRefine):
            return faiss.IndexRefineSearchParameters(
                k_factor=self.manifest.k_factor, base_index_params=ivf_params
            )
        return ivf_params

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of shape (q, k'), k' = min(k, len); rows of missing results are -1."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.index.d:
            raise CanvasError(
                f"query embeddings have dim {queries.shape[1]}, the index {self.index.d}: "
                "they come from a different model"
            )
        k = max(1, min(int(k), len(self)))
        params = self._params()
        scores, rows = (
            self.index.search(queries, k, params=params) if params else self.index.search(queries, k)
        )
        if self.manifest.metric == "l2":
            scores = 1.0 - scores / 2.0  # squared L2 between unit vectors -> cosine
        return scores, rows

    def search_hits(self, query: np.ndarray, k: int | None = 10, min_score: float | None = None) -> list[Hit]:
        """Nearest rows of one query: the top `k`, and/or every row scoring at least `min_score`.

        With only `min_score`, k grows (doubling) until the last result falls below it.
        """
        want = k if k is not None else 64
        while True:
            scores, rows = self.search(query, want)
            scores, rows = scores[0], rows[0]
            if min_score is None or k is not None or scores[-1] < min_score or len(scores) >= len(self):
                break
            want *= 2
        hits = [
            Hit(int(r), self._keys[r], self._captions[r], float(s))
            for s, r in zip(scores, rows, strict=True)
            if r >= 0 and (min_score is None or s >= min_score)
        ]
        return hits if k is None else hits[:k]


class QueryEncoder:
    """Embeds query texts and images with the CLIP model an index was built with."""

    def __init__(self, manifest: IndexManifest, clip_pretrained: str | None = None) -> None:
        """`clip_pretrained`: the weights that made a pool's precomputed embeddings (see `query_weights`)."""
        from canvas.core.presets.clip import check_clip_weights
        from canvas.curation.embedding import ClipEmbedder

        weights = query_weights(manifest, clip_pretrained)
        check_clip_weights(manifest.clip_model, weights)  # one line, not open_clip's log and traceback
        self.embedder = ClipEmbedder(manifest.clip_model, weights).setup()
        if self.embedder.embedding_dim != manifest.embedding_dim:
            raise CanvasError(
                f"CLIP {manifest.clip_model}/{weights} now gives {self.embedder.embedding_dim}-d "
                f"embeddings, the index holds {manifest.embedding_dim}-d ones: it was made with another model"
            )

    def texts(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode_texts(list(texts))

    def images(self, images: list[str | Path | Image.Image]) -> np.ndarray:
        """Embeds images: loaded ones as given, paths through `open_image_file` (curation's limits)."""
        from PIL import Image

        from canvas.core.images import open_image_file

        loaded = [im if isinstance(im, Image.Image) else open_image_file(im) for im in images]
        return self.embedder.encode_images(loaded)
