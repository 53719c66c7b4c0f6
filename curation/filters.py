"""Record filters: DataComp's basic filter, the CLIP-score filter, the NSFW filter. Pure functions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from canvas.curation.language import LanguageConfig, count_words, language_problem
from canvas.curation.records import BASIC_FILTER, CLIP_SCORE, NSFW, Record, Rejection


@dataclass
class BasicFilterConfig:
    """DataComp's basic filter (its defaults). Size and aspect use the row's `original_width/height` when it
    carries them (img2dataset/DataComp shards), as DataComp does; otherwise the decoded size. Captions
    must be English (`language`), detected offline."""

    enabled: bool = field(default=True, metadata={"help": "run the basic filter"})
    language: LanguageConfig = field(
        default_factory=LanguageConfig,
        metadata={"help": "caption language rule (offline py3langid): enabled, languages (default [en])"},
    )
    min_side: int = field(
        default=200,
        metadata={"help": "reject images whose shorter side is below this (px; original size when known)"},
    )
    max_aspect_ratio: float = field(
        default=3.0, metadata={"help": "reject images whose long/short side ratio exceeds this"}
    )
    min_caption_words: int = field(
        default=3, metadata={"help": "captions need at least this many words (DataComp: more than 2)"}
    )
    min_caption_chars: int = field(
        default=6, metadata={"help": "captions need at least this many characters (DataComp: more than 5)"}
    )


def _size(record: Record) -> tuple[int, int, str]:
    """(width, height, how to name them): the original size when the row carries it, as DataComp's
    `apply_filter.py` uses it (img2dataset shards are resized on download), else the decoded one."""
    if record.original_width and record.original_height:
        w, h = record.original_width, record.original_height
        return w, h, f"original image is {w}x{h} (stored {record.width}x{record.height})"
    return record.width, record.height, f"image is {record.width}x{record.height}"


def basic_filter(record: Record, config: BasicFilterConfig) -> str | None:
    """The reason this record fails the basic filter, or None if it passes.

    Counted as DataComp counts: words `len(text.split())` (CJK: one per character), characters `len(text)`
    on the raw caption."""
    caption = record.caption or ""
    if not caption.strip():
        return "no caption"
    if config.language.enabled:
        problem = language_problem(caption, config.language)
        if problem is not None:
            return problem
    words = count_words(caption)
    if words < config.min_caption_words:
        return f"caption has {words} word(s) < {config.min_caption_words}"
    if len(caption) < config.min_caption_chars:
        return f"caption has {len(caption)} characters < {config.min_caption_chars}"
    width, height, what = _size(record)
    short, long = sorted((width, height))
    if short <= 0:  # a pool row without its size: nothing to judge it by (and no aspect ratio)
        return f"{what}: no size to judge"
    if short < config.min_side:
        return f"{what}: shorter side {short} < {config.min_side} px"
    if long / short > config.max_aspect_ratio:
        return f"{what}: aspect ratio {long / short:.2f} > {config.max_aspect_ratio}"
    return None


def basic_filter_rejection(record: Record, config: BasicFilterConfig) -> Rejection | None:
    reason = basic_filter(record, config)
    if reason is None:
        return None
    return Rejection(key=record.key, stage=BASIC_FILTER, reason=reason, source=record.source)


def percentile_threshold(scores: np.ndarray | list[float], keep_top_percent: float) -> float:
    """The score at which the top `keep_top_percent`% of records survive (DataComp's top-X% rule).

    The top ceil(n * X / 100) scores are at or above it (more survive only on exact ties).
    """
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    if scores.size == 0:
        return float("-inf")
    keep = max(1, math.ceil(scores.size * keep_top_percent / 100.0 - 1e-9))
    return float(scores[scores.size - min(keep, scores.size)])


SCORE_BINS = 2000  # fixed bins over [-1, 1] for the distributed percentile (0.001 wide)


def score_bin(score: float, bins: int = SCORE_BINS) -> int:
    """The fixed bin of a cosine score; out-of-range scores go to the end bins, NaN after all (as np.sort)."""
    if math.isnan(score):
        return bins
    return min(max(int((score + 1.0) / 2.0 * bins), 0), bins - 1)


def percentile_bin(counts: np.ndarray | list[int], keep_top_percent: float) -> tuple[int, int] | None:
    """From bin counts: (the bin holding `percentile_threshold`'s order statistic, its rank in that bin).

    With this and the scores of that one bin, `threshold_in_bin` returns exactly what
    `percentile_threshold` returns on all scores: bins are ordered, so the k-th smallest score is the
    (k - scores in lower bins)-th smallest of its bin. None when there are no scores.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        return None
    keep = max(1, math.ceil(n * keep_top_percent / 100.0 - 1e-9))
    rank = n - min(keep, n)
    cumulative = np.cumsum(counts)
    b = int(np.searchsorted(cumulative, rank, side="right"))
    return b, rank - (int(cumulative[b - 1]) if b else 0)


def threshold_in_bin(values: list[float], target: tuple[int, int] | None) -> float:
    if target is None:
        return float("-inf")
    return float(np.sort(np.asarray(values, dtype=np.float64))[target[1]])


def clip_score_rejection(record: Record, threshold: float) -> Rejection | None:
    assert record.clip_score is not None
    if record.clip_score >= threshold:
        return None
    return Rejection(
        key=record.key,
        stage=CLIP_SCORE,
        reason=f"CLIP score {record.clip_score:.4f} < {threshold:.4f}",
        source=record.source,
        score=record.clip_score,
        clip_score=record.clip_score,
    )


def nsfw_rejection(record: Record, threshold: float) -> Rejection | None:
    assert record.nsfw_score is not None
    if record.nsfw_score < threshold:
        return None
    return Rejection(
        key=record.key,
        stage=NSFW,
        reason=f"NSFW score {record.nsfw_score:.4f} >= {threshold:.4f}",
        source=record.source,
        score=record.nsfw_score,
        clip_score=record.clip_score,
        nsfw_score=record.nsfw_score,
    )
