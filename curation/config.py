"""The curation config: one dataclass per stage, loaded from YAML, with model-dependent `auto` values.

Thresholds belong to the model. `resolve()` fills every `auto` from `MODEL_RULES` and records why in
`notes`, which the report prints. `default_config.yaml` beside this file documents every field.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canvas.core.errors import CanvasError
from canvas.curation.decode import DecodeConfig
from canvas.curation.embedding import ClipConfig
from canvas.curation.exact_dedup import EXACT_KEEP_POLICIES, ExactDedupConfig
from canvas.curation.filters import BasicFilterConfig
from canvas.curation.language import KNOWN_LANGUAGES
from canvas.curation.near_dedup import NEAR_KEEP_POLICIES, NearDedupConfig
from canvas.curation.nsfw import NsfwConfig
from canvas.curation.semdedup import KEEP_POLICIES, SemDedupConfig

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.yaml")
CLIP_SCORE_MODES = ("auto", "off", "threshold", "percentile")


@dataclass
class ClipScoreConfig:
    """CLIP-score filter: cosine(image, text) >= threshold, or keep the top X% (DataComp)."""

    mode: str = field(
        default="auto",
        metadata={
            "help": "auto (the model's published rule; off for the tiny preset) | off | threshold | percentile"
        },
    )
    threshold: float | None = field(default=None, metadata={"help": "minimum cosine when mode is threshold"})
    keep_top_percent: float | None = field(
        default=None,
        metadata={"help": "percent of scored records kept when mode is percentile (DataComp: 30)"},
    )
    percentile_of: str = field(
        default="auto",
        metadata={
            "help": "whose scores the top X% is taken of: pool (every decoded row, as DataComp's get_threshold "
            "ranks the whole pool; needs its precomputed embeddings) | stage (the records that reach this "
            "filter) | auto (pool for a pool, else stage: images are embedded after the cheaper filters)"
        },
    )


@dataclass
class OutputConfig:
    """How the output is written."""

    rows_per_shard: int = field(
        default=10_000,
        metadata={"help": "curated rows per Parquet shard (each shard is sorted in one worker)"},
    )


@dataclass
class CurationConfig:
    """Every stage's settings. Stages run in the order of the fields below."""

    decode: DecodeConfig = field(default_factory=DecodeConfig)
    basic_filter: BasicFilterConfig = field(default_factory=BasicFilterConfig)
    exact_dedup: ExactDedupConfig = field(default_factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = field(default_factory=NearDedupConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    clip_score: ClipScoreConfig = field(default_factory=ClipScoreConfig)
    nsfw: NsfwConfig = field(default_factory=NsfwConfig)
    semdedup: SemDedupConfig = field(default_factory=SemDedupConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    notes: dict[str, str] = field(default_factory=dict, metadata={"help": "why each auto value was chosen"})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelRule:
    """Published (or, for the tiny preset, calibrated) thresholds for one CLIP architecture."""

    clip_score_mode: str
    clip_score_value: float | None
    clip_score_why: str
    eps: float
    eps_why: str
    keep: str
    keep_why: str


_REAL_EPS = (0.01, "NeMo Curator's SemDeDup tutorial value for CLIP embeddings")
_BEST = (
    "most original pixels, then lossless ahead of lossy, then more bytes per pixel, then CLIP score, then key"
)
_REAL_KEEP = ("best", f"the best copy of each group survives: {_BEST}")
MODEL_RULES: dict[str, ModelRule] = {
    "canvas-tiny-clip": ModelRule(
        "off",
        None,
        "the tiny preset has random weights, so its CLIP scores carry no meaning; filtering on them would "
        "drop records at random",
        5e-5,
        "calibrated on `canvas data sample`: distinct photos reach cosine 0.99975 under the random tiny model, "
        "re-encodes and resizes >= 0.99998; 1 - 5e-5 lies between them",
        "best",
        f"the best copy of each group survives: {_BEST} (the tiny model's CLIP scores are random, so that "
        "step breaks ties arbitrarily, but deterministically)",
    ),
    "ViT-B-32": ModelRule(
        "threshold", 0.28, "LAION-2B's rule for ViT-B/32: cosine >= 0.28", *_REAL_EPS, *_REAL_KEEP
    ),
    "ViT-L-14": ModelRule(
        "percentile", 30.0, "DataComp's best CLIP filter: top 30% by ViT-L/14 score", *_REAL_EPS, *_REAL_KEEP
    ),
}


def model_rule(model_name: str) -> ModelRule:
    if model_name in MODEL_RULES:
        return MODEL_RULES[model_name]
    return ModelRule(
        "off",
        None,
        f"no published CLIP-score threshold for {model_name!r}; set clip_score.mode to threshold or "
        "percentile in the config",
        *_REAL_EPS,
        *_REAL_KEEP,
    )


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        what = f"`{where}`" if where else "the config"  # `where` is empty at the top level
        raise CanvasError(f"config: {what} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "notes"}

    def path(name: str) -> str:
        return f"{where}.{name}" if where else name

    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CanvasError(f"config: unknown key `{path(unknown[0])}`; known: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        sub = (
            fields[name].default_factory if fields[name].default_factory is not dataclasses.MISSING else None
        )
        if dataclasses.is_dataclass(sub):
            kwargs[name] = _build(sub, value, path(name))
        else:
            kwargs[name] = _check_type(cls, fields[name], value, path(name))
    return cls(**kwargs)


def _check_type(cls: type, f: dataclasses.Field, value: Any, where: str) -> Any:
    default = f.default
    if f.type == "list[str]":  # list-valued settings: a YAML list of strings or of numbers
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise CanvasError(f"config: `{where}` must be a list of strings, got {value!r}")
        return value
    if f.type == "list[float]":
        if not isinstance(value, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            raise CanvasError(f"config: `{where}` must be a list of numbers, got {value!r}")
        return [float(v) for v in value]
    if isinstance(value, str) and value != "auto" and f.type != "str":
        # YAML 1.1 reads `5e-5` (no dot) as a string; accept it as the number it obviously is.
        with contextlib.suppress(ValueError):
            value = float(value)
    if value is None and default is None:
        return None
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float) or default is None:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str) and default == "auto" and f.type not in ("str",):
        ok = value == "auto" or (isinstance(value, int | float) and not isinstance(value, bool))
    else:
        ok = isinstance(value, str)
    if not ok:
        hint = ""
        if isinstance(value, bool) and isinstance(default, str):  # YAML 1.1: off/on/no/yes are booleans
            hint = f"; YAML reads an unquoted off/on/no/yes as {value}: quote the word, e.g. '{default}'"
        raise CanvasError(f"config: `{where}` has the wrong type: {value!r} (default is {default!r}){hint}")
    return value


def load_config(path: str | Path | None = None, ignore: tuple[str, ...] = ()) -> CurationConfig:
    """Read a YAML config (any subset of the sections in `default_config.yaml`); unresolved.

    `ignore`: top-level keys that belong to the command rather than the stages (`canvas curate`'s
    `input`, `output`, ... may sit in the same file).
    """
    import yaml

    if path is None:
        return CurationConfig()
    path = Path(path)
    if not path.is_file():
        raise CanvasError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise CanvasError(f"config file {path} is not valid YAML{where}") from exc
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in ignore}
    return _build(CurationConfig, data or {}, "")


@dataclasses.dataclass(frozen=True)
class _Bound:
    """A config number's allowed range; `None` values (unset optional knobs) pass."""

    name: str
    value: float | None
    low: float
    high: float | None = None
    low_open: bool = False
    why: str = ""

    def check(self) -> None:
        v = self.value
        if v is None:
            return
        if (v <= self.low if self.low_open else v < self.low) or (self.high is not None and v > self.high):
            if self.high is None:
                span = f">= {self.low}"
            else:
                span = f"in {'(' if self.low_open else '['}{self.low}, {self.high}]"
            why = f" ({self.why})" if self.why else ""
            raise CanvasError(f"config: {self.name} must be {span}{why}, got {v}")


def resolve(config: CurationConfig, model_name: str, pool: bool = False) -> CurationConfig:
    """Fill every `auto` from the model's rule, check cross-field consistency, record why in `notes`.
    `pool`: the input is a pool of precomputed embeddings (every row has its CLIP score from the start)."""
    cfg = dataclasses.replace(config, notes=dict(config.notes))
    rule = model_rule(model_name)
    score = dataclasses.replace(cfg.clip_score)
    if score.mode not in CLIP_SCORE_MODES:
        raise CanvasError(
            f"config: clip_score.mode must be one of {', '.join(CLIP_SCORE_MODES)}, got {score.mode!r}"
        )
    if score.mode == "auto":
        score.mode = rule.clip_score_mode
        if rule.clip_score_mode == "threshold":
            score.threshold = rule.clip_score_value
        elif rule.clip_score_mode == "percentile":
            score.keep_top_percent = rule.clip_score_value
        cfg.notes["clip_score"] = f"auto for {model_name}: {rule.clip_score_why}"
    else:
        cfg.notes["clip_score"] = f"set in the config: mode {score.mode}"
    if score.mode == "threshold" and score.threshold is None:
        raise CanvasError("config: clip_score.mode is threshold but clip_score.threshold is not set")
    if score.mode == "percentile" and score.keep_top_percent is None:  # its range: the bounds below
        raise CanvasError(
            "config: clip_score.mode is percentile: set clip_score.keep_top_percent in (0, 100]"
        )
    if score.percentile_of not in ("auto", "pool", "stage"):
        raise CanvasError(
            f"config: clip_score.percentile_of must be auto, pool or stage, got {score.percentile_of!r}"
        )
    if score.percentile_of == "pool" and not pool:
        raise CanvasError(
            "config: clip_score.percentile_of is pool, which needs a pool's precomputed embeddings; images "
            "are scored after the cheaper filters: use stage"
        )
    if score.percentile_of == "auto":
        score.percentile_of = "pool" if pool else "stage"
        if score.mode == "percentile":
            cfg.notes["clip_score.percentile_of"] = (
                "auto: pool, every decoded row ranks (DataComp's get_threshold), the other filters apply too"
                if pool
                else "auto: stage, the records reaching the filter rank (images are embedded after the "
                "cheaper filters)"
            )
    sem = dataclasses.replace(cfg.semdedup)
    if sem.eps == "auto":
        sem.eps = rule.eps
        cfg.notes["semdedup.eps"] = f"auto for {model_name}: {rule.eps} ({rule.eps_why})"
    if sem.keep == "auto":
        sem.keep = rule.keep
        cfg.notes["semdedup.keep"] = f"auto for {model_name}: {rule.keep} ({rule.keep_why})"
    if not isinstance(sem.eps, int | float) or not 0 <= sem.eps < 1:
        raise CanvasError(f"config: semdedup.eps must be a number in [0, 1), got {sem.eps!r}")
    if sem.keep not in KEEP_POLICIES:
        raise CanvasError(
            f"config: semdedup.keep must be one of auto, {', '.join(KEEP_POLICIES)}, got {sem.keep!r}"
        )
    if sem.n_clusters != "auto" and (not isinstance(sem.n_clusters, int) or sem.n_clusters < 1):
        raise CanvasError(
            f"config: semdedup.n_clusters must be auto or a positive integer, got {sem.n_clusters!r}"
        )
    lang = cfg.basic_filter.language
    if lang.enabled and not lang.languages:
        raise CanvasError("config: basic_filter.language.languages is empty; list some or set enabled: false")
    unknown = [code for code in lang.languages if code not in KNOWN_LANGUAGES]
    if unknown:
        raise CanvasError(
            f"config: basic_filter.language.languages: unknown language code {unknown[0]!r} "
            "(ISO 639-1 codes py3langid knows, such as en, de, zh)"
        )
    if cfg.exact_dedup.keep not in EXACT_KEEP_POLICIES:
        raise CanvasError(f"config: exact_dedup.keep must be one of {', '.join(EXACT_KEEP_POLICIES)}")
    if cfg.near_dedup.keep not in NEAR_KEEP_POLICIES:
        raise CanvasError(f"config: near_dedup.keep must be one of {', '.join(NEAR_KEEP_POLICIES)}")
    bad_scale = [s for s in cfg.near_dedup.crop_scales if not 0 < s < 1]
    if bad_scale:
        raise CanvasError(
            f"config: near_dedup.crop_scales must be fractions in (0, 1) (the central part kept), got {bad_scale[0]!r}"
        )
    if cfg.clip.precomputed not in ("auto", "b32", "l14"):
        raise CanvasError(f"config: clip.precomputed must be auto, b32 or l14, got {cfg.clip.precomputed!r}")
    if cfg.clip.precomputed_rows not in ("auto", "reread", "carry"):
        raise CanvasError(
            f"config: clip.precomputed_rows must be auto, reread or carry, got {cfg.clip.precomputed_rows!r}"
        )
    if not cfg.clip.enabled and (score.mode != "off" or sem.enabled):
        raise CanvasError(
            "config: clip.enabled is false, so clip_score.mode must be off and semdedup.enabled false"
        )
    for bound in (
        _Bound("clip.batch_size", cfg.clip.batch_size, 1),
        _Bound("nsfw.batch_size", cfg.nsfw.batch_size, 1),
        _Bound("output.rows_per_shard", cfg.output.rows_per_shard, 1),
        _Bound("semdedup.sample_size", sem.sample_size, 1),
        _Bound("semdedup.kmeans_iters", sem.kmeans_iters, 1),
        _Bound("semdedup.max_block_bytes", sem.max_block_bytes, 1),
        _Bound("decode.max_pixels", cfg.decode.max_pixels, 1),
        _Bound("decode.max_bytes", cfg.decode.max_bytes, 1),
        _Bound("decode.thumbnail_px", cfg.decode.thumbnail_px, 1),
        _Bound("near_dedup.query_batch", cfg.near_dedup.query_batch, 1),
        _Bound(
            "near_dedup.hamming_radius", cfg.near_dedup.hamming_radius, 0, 64, why="bits of a 64-bit hash"
        ),
        _Bound("near_dedup.crop_radius", cfg.near_dedup.crop_radius, 0, 64, why="bits of a 64-bit hash"),
        _Bound("basic_filter.min_side", cfg.basic_filter.min_side, 0),
        _Bound("basic_filter.min_caption_words", cfg.basic_filter.min_caption_words, 0),
        _Bound("basic_filter.min_caption_chars", cfg.basic_filter.min_caption_chars, 0),
        _Bound(
            "basic_filter.max_aspect_ratio", cfg.basic_filter.max_aspect_ratio, 1, why="long / short side"
        ),
        _Bound("clip.threads", cfg.clip.threads, 0),
        _Bound("nsfw.threads", cfg.nsfw.threads, 0),
        _Bound("nsfw.threshold", cfg.nsfw.threshold, 0, 1, why="a probability"),
        _Bound("clip_score.threshold", score.threshold, -1, 1, why="a cosine"),
        _Bound("clip_score.keep_top_percent", score.keep_top_percent, 0, 100, low_open=True),
    ):
        bound.check()
    cfg.clip_score = score
    cfg.semdedup = sem
    return cfg
