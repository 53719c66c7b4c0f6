"""The typed records that flow between curation stages, and the stage names rejections carry.

A `Record` is one image-text pair; each stage fills the fields it declares and never edits others
(stages return new records with `dataclasses.replace`). A `Rejection` is the ledger line for one input
row that was removed: which stage, why, and which kept record it duplicates where there is one.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Stage names, in pipeline order. They appear in `rejected/*.parquet` and in the report.
DECODE = "decode"
BASIC_FILTER = "basic_filter"
EXACT_DEDUP = "exact_dedup"
NEAR_DEDUP = "near_dedup"
CLIP_SCORE = "clip_score"
NSFW = "nsfw"
SEMANTIC_DEDUP = "semantic_dedup"
STAGES = (DECODE, BASIC_FILTER, EXACT_DEDUP, NEAR_DEDUP, CLIP_SCORE, NSFW, SEMANTIC_DEDUP)


def _rebuild(cls: type, values: tuple) -> Any:
    names, _, arrays = cls._layout()
    if arrays:
        values = list(values)
        for i in arrays:
            if values[i] is not None:  # read-only arrays: records are never edited
                dtype, shape, data = values[i]
                values[i] = np.frombuffer(data, dtype=dtype).reshape(shape)
    # The fields as they were pickled, set without __init__ (as pickle does by default): a frozen
    # dataclass's __init__ sets each field through object.__setattr__, half of the decoding time.
    obj = cls.__new__(cls)
    obj.__dict__.update(zip(names, values, strict=True))  # a record pickled by another layout fails here
    return obj


class CompactPickle:
    """Pickles a frozen dataclass as its class and a tuple of field values, the fields named in `ARRAYS` as
    (dtype, shape, bytes). Beam encodes every record with pickle at each shuffle and materialised collection:
    pickling the instance's __dict__ and each array's own reduce took 21.5 us a record (encode + decode,
    512-d float32 embedding), this 12.4 us, and 2229 bytes instead of 2569 (Beam's coder, measured). No
    coder to register, so every runner gets it, and a Flink/Spark/Dataflow shuffle carries the smaller
    bytes."""

    __slots__ = ()
    ARRAYS: tuple[str, ...] = ()

    @classmethod
    def _layout(cls) -> tuple[tuple[str, ...], Callable[[Any], tuple], tuple[int, ...]]:
        """(field names, a getter of all their values as a tuple, the array fields' positions), once a class."""
        layout = cls.__dict__.get("_LAYOUT")
        if layout is None:
            names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
            getter = operator.attrgetter(*names) if len(names) > 1 else lambda obj: (getattr(obj, names[0]),)
            layout = (names, getter, tuple(i for i, n in enumerate(names) if n in cls.ARRAYS))
            cls._LAYOUT = layout  # type: ignore[attr-defined]
        return layout

    def __reduce__(self) -> tuple:
        _, getter, arrays = self._layout()
        values = getter(self)
        if arrays:
            values = list(values)
            for i in arrays:
                a = values[i]
                if a is not None:
                    a = np.asarray(a)
                    values[i] = (a.dtype.str, a.shape, a.tobytes())
            values = tuple(values)
        return (_rebuild, (type(self), values))


@dataclass(frozen=True)
class RawRecord(CompactPickle):
    """One input row as read: `source` (`path#row`) and `ordinal` (file index, row) say where it came from.

    `error` is set on the one record that stands for the unreadable rest of a corrupt or truncated input
    file; decoding rejects it with that reason, so the loss is counted and reported, never silent.
    """

    ARRAYS = ("embedding", "text_embedding")

    key: str
    caption: str | None
    image: bytes | None
    source: str
    ordinal: tuple[int, int]
    error: str | None = None
    # The size before img2dataset/DataComp resized it on download (their `original_width/height`).
    original_width: int | None = None
    original_height: int | None = None
    # A pool row without an image (DataComp metadata + .npz): its precomputed CLIP embeddings.
    embedding: np.ndarray | None = field(default=None, compare=False)
    text_embedding: np.ndarray | None = field(default=None, compare=False)
    # The DataComp uid a downloaded sample's `.json` sidecar names: what joins it to its pool row.
    uid: str | None = None


@dataclass(frozen=True)
class Record(CompactPickle):
    """An image-text pair that passed decoding; later stages fill the optional fields."""

    ARRAYS = ("embedding",)

    key: str
    caption: str | None
    image: bytes
    source: str
    ordinal: tuple[int, int]
    width: int
    height: int
    sha256: str  # of the encoded bytes
    pixel_sha256: str  # of the decoded RGB pixels (and their size): same picture, other encoding
    phash: int  # 64-bit DCT perceptual hash, as an unsigned integer
    crop_phashes: tuple[int, ...] = ()  # pHashes of central regions (near_dedup.crop_scales), for crops
    original_width: int | None = None  # the row's metadata, when it has it (see RawRecord)
    original_height: int | None = None
    clip_score: float | None = None
    nsfw_score: float | None = None
    cluster_id: int | None = None
    # The image embedding: float32 and L2-normalised, or float16 exactly as a pool shipped it (DataComp's are
    # unit vectors rounded to float16), half the bytes and no second rounding; read it through
    # `unit_embedding`. The caption's is used once, for `clip_score`, and not carried: at pool scale every
    # byte a record holds is held again by each grouping stage it passes.
    embedding: np.ndarray | None = field(default=None, compare=False)

    @property
    def phash_hex(self) -> str:
        return format(self.phash, "016x")

    @property
    def rank_key(self) -> tuple[str, tuple[int, int]]:
        """The deterministic tie-break every stage uses: smallest key, then earliest input position."""
        return (self.key, self.ordinal)


def file_and_row(source: str) -> str:
    """A record's `source` (`path#row`) less the folders: `shard_00018.parquet#4303`. Hashes that choose a
    sample or a batch use this, not the path, so the same input read from another folder or mount is
    sampled and batched, hence computed and decided, the same."""
    path, _, row = source.rpartition("#")
    return f"{path.rsplit('/', 1)[-1]}#{row}"


def unit_embedding(embedding: np.ndarray) -> np.ndarray:
    """`Record.embedding` as every stage uses it: float32, unit norm (float32 ones are stored unit already)."""
    x = np.asarray(embedding)
    if x.dtype == np.float32:
        return x
    x = x.astype(np.float32)
    return x / float(np.linalg.norm(x))


@dataclass(frozen=True)
class Rejection(CompactPickle):
    """Why one input row was removed. `score` is the number the decision used (e.g. a cosine)."""

    key: str
    stage: str
    reason: str
    source: str
    duplicate_of: str | None = None
    score: float | None = None
    clip_score: float | None = None
    nsfw_score: float | None = None
    cluster_id: int | None = None
    thumbnail: bytes | None = None  # small JPEG of the removed image, for the report's duplicate groups
