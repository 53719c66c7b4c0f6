"""What `canvas curate` was given: image shards to embed, or a pool of metadata + precomputed embeddings
(DataComp's Parquet + `.npz` shards, or clip-retrieval's `img_emb/ text_emb/ metadata/` folder).

Checked before the pipeline starts, so a missing column or a misaligned embedding file is one line, not a
traceback per worker.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from canvas.core.errors import CanvasError
from canvas.core.presets.registry import TINY_CLIP_NAME
from canvas.curation import clip_retrieval
from canvas.curation.embedding_rows import EmbeddingRows, npy_rows, npz_rows
from canvas.curation.pool import CLIP_MODEL_OF, check_pool_shard, embeddings_path, is_pool, npz_shapes
from canvas.curation.sources import is_tar, parquet_columns

log = logging.getLogger(__name__)

CLIP_RETRIEVAL = "clip-retrieval"  # `PoolInput.which` for clip-retrieval's layout


@dataclass(frozen=True)
class PoolInput:
    """A pool without images: whose embeddings (`b32`/`l14` of DataComp's `.npz`, or `clip-retrieval`),
    their width, and whether every row has a DataComp uid (then `uids.npy` is written)."""

    which: str
    dim: int
    uids: bool
    images: bool = False  # with its downloaded WebDataset shards, joined by uid (curate_pool_images)

    def clip_model(self, asked: str) -> str:
        """The CLIP model whose score rule applies: DataComp names it; clip-retrieval's is the one asked
        for with --clip-model, else told by the width (its default ViT-B/32 is 512, ViT-L/14 768)."""
        if self.which in CLIP_MODEL_OF:
            return CLIP_MODEL_OF[self.which]
        if asked != TINY_CLIP_NAME:
            return asked
        if self.dim not in clip_retrieval.CLIP_MODEL_OF_WIDTH:
            raise CanvasError(
                f"clip-retrieval embeddings of width {self.dim}: name their model with --clip-model"
            )
        return clip_retrieval.CLIP_MODEL_OF_WIDTH[self.dim]


def _open(path: str):  # noqa: ANN202 - a Beam file handle
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _clip_retrieval_shard(path: str, schema: pa.Schema) -> int:
    img_path, txt_path = clip_retrieval.embedding_paths(path)
    shapes = []
    for npy in (img_path, txt_path):
        try:
            with _open(npy) as handle:
                shapes.append(clip_retrieval.npy_shape(handle))
        except Exception as exc:  # noqa: BLE001 - BeamIOError, OSError or a bad header: all one line
            raise CanvasError(f"{path}: clip-retrieval shard without readable {npy} ({exc})") from exc
    return clip_retrieval.check_shard(path, _parquet_rows(path), schema.names, *shapes)


def _parquet_rows(path: str) -> int:
    with _open(path) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def _datacomp_embeddings(precomputed: str, clip_model: str) -> str:
    """Which of a DataComp pool's embeddings to use: `clip.precomputed`, else the one --clip-model names
    (b32 when none is named). A model the pool has no embeddings of is refused, not ignored."""
    named = clip_model != TINY_CLIP_NAME
    if precomputed != "auto":
        if named and clip_model != CLIP_MODEL_OF[precomputed]:
            raise CanvasError(
                f"clip.precomputed is {precomputed} ({CLIP_MODEL_OF[precomputed]}'s embeddings), "
                f"but --clip-model is {clip_model}: name one of them"
            )
        return precomputed
    if not named:
        return "b32"
    for which, model in CLIP_MODEL_OF.items():
        if model == clip_model:
            return which
    raise CanvasError(
        f"a DataComp pool ships {' and '.join(CLIP_MODEL_OF.values())} embeddings, not {clip_model}'s: "
        "name one of those with --clip-model, or leave it out (ViT-B-32)"
    )


def check_inputs(files: list[str], precomputed: str, clip_model: str = TINY_CLIP_NAME) -> PoolInput | None:
    """Fail before the pipeline starts when a Parquet file lacks the columns we need.

    Returns the pool's description when the input is a pool (its precomputed embeddings, with or without
    its downloaded image tars), else None: the run then embeds its images with the CLIP model (`clip_model`, which also picks a DataComp pool's embeddings).
    """
    datacomp, retrieval, others, tars, dims, uids = [], [], [], [], set(), True
    which = ""
    for path in files:
        if is_tar(path):
            tars.append(path)
            continue
        try:
            with _open(path) as handle:
                schema = pq.read_schema(handle)
        except Exception as exc:  # noqa: BLE001 - BeamIOError (remote), OSError, ArrowInvalid: one line
            raise CanvasError(f"{path}: not a readable Parquet file ({exc})") from exc
        if clip_retrieval.is_metadata_shard(path) and FileSystems.exists(
            clip_retrieval.embedding_paths(path)[0]
        ):
            retrieval.append(path)
            dims.add(_clip_retrieval_shard(path, schema))
            uids = uids and "uid" in schema.names
            continue
        if not is_pool(schema.names):
            parquet_columns(schema.names, path, schema)
            others.append(path)
            continue
        which = which or _datacomp_embeddings(precomputed, clip_model)
        datacomp.append(path)
        npz = embeddings_path(path)
        try:
            with _open(npz) as handle:
                shapes = npz_shapes(handle)
        except Exception as exc:  # noqa: BLE001 - BeamIOError, OSError, BadZipFile (a ValueError): one line
            raise CanvasError(f"{path}: a pool shard without readable embeddings {npz} ({exc})") from exc
        dims.add(check_pool_shard(path, _parquet_rows(path), shapes, which))
    images = bool(datacomp and tars)  # DataComp's metadata/ and shards/: a pool with its images
    if not images:
        others += tars
    kinds = [k for k in (datacomp, retrieval, others) if k]
    if len(kinds) > 1:
        a, b = (k[0] for k in kinds[:2])
        raise CanvasError(f"inputs mix layouts: {a} and {b} (DataComp pool, clip-retrieval, image shards)")
    if not datacomp and not retrieval:
        if precomputed != "auto":
            raise CanvasError(f"clip.precomputed is {precomputed}: the input must be DataComp pool shards")
        return None
    if retrieval and precomputed != "auto":
        raise CanvasError(
            f"clip.precomputed is {precomputed}, but clip-retrieval folders hold one model's embeddings: "
            "leave it auto"
        )
    name = which if datacomp else CLIP_RETRIEVAL
    if len(dims) > 1:
        raise CanvasError(f"pool shards hold {name} embeddings of different widths: {sorted(dims)}")
    return PoolInput(name, dims.pop(), uids=bool(datacomp) or uids, images=images)


def pool_rows(files: list[str], pool: PoolInput, mode: str) -> EmbeddingRows | None:
    """The pool's image embeddings as files read by (file, row) (`clip.precomputed_rows`: reread), or None
    when records carry them (carry; auto where a file is not local or an array is stored compressed).
    `files` in the pipeline's order: a record's `ordinal[0]` indexes them."""
    if pool.images and mode == "reread":
        raise CanvasError("clip.precomputed_rows is reread, but a pool with its images carries them")
    if mode == "carry" or pool.images:  # joined to their images, records carry the embeddings
        return None
    found, why = [], ""
    retrieval = pool.which == CLIP_RETRIEVAL
    for path in files:
        img = clip_retrieval.embedding_paths(path)[0] if retrieval else embeddings_path(path)
        if "://" in img or not os.path.isfile(img):
            found, why = [None], f"{img} is not a local file"
            break
        try:
            spec = npy_rows(img) if retrieval else npz_rows(img, f"{pool.which}_img")
        except (OSError, ValueError, KeyError) as exc:  # read once already by check_inputs: rare
            spec, why = None, f"{img}: {exc}"
        if spec is None:
            found, why = [None], why or f"{img}: stored compressed or not C-ordered float16/float32 rows"
            break
        found.append(spec)
    rows = EmbeddingRows.of_files(found)
    if rows is None:
        why = why or "the pool files differ in width"
        if mode == "reread":
            raise CanvasError(f"clip.precomputed_rows is reread, but {why}")
        # worth a line: carried embeddings are ~4x a record's bytes in every grouping (memory at scale)
        log.info("clip.precomputed_rows auto: records carry their embeddings (%s)", why)
    return rows
