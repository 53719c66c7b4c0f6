"""Caption language, offline: py3langid (BSD-3-Clause; its naive-Bayes model, 4.6 MB, ships inside the
wheel, nothing is downloaded). Chosen over pycld2 and lingua by `bench/bench_language_id.py` (accuracy
and captions/s on short captions in 12 languages, docs/benchmarks.md). DataComp keeps captions whose
top-1 language is English (fastText lid.176, whose model is CC BY-SA, so not shipped here).

Also: CJK text has no spaces between words, so its words are counted by characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

# py3langid's 0.4 label set (ISO 639-1 where one exists); a config naming anything else is a typo.
_LABELS = (
    "af am ar as az be bg bn br bs ca cs cy da de el en eo es et eu fa fi fr fy ga gd gl gu ha he hi hr ht hu "
    "hy id ig is it ja jv ka kk km kn ko ku ky la lg ln lo lt lv mg mk ml mn mr ms my ne nl no om or pa pl ps "
    "pt qu ro ru sa si sk sl so sq sr sv sw ta te th tl tr ug uk ur uz vi xh yo zh zu zxx ace bcl dz ext gcf "
    "gom grc gug hbo kik nso pcm rw se sn st an ary crh fo fuv gcr guw kab lb lij ltg uzs wa sdh arz ba mt nn "
    "oc tg tk tt vec vo wuu yue"
)
KNOWN_LANGUAGES = frozenset(_LABELS.split())
# Han ideographs and Japanese kana: one character is about one word. (Hangul is written with spaces.)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")


@dataclass
class LanguageConfig:
    """Caption language rule of the basic filter (DataComp: English only)."""

    enabled: bool = field(default=True, metadata={"help": "reject captions in other languages"})
    languages: list[str] = field(
        default_factory=lambda: ["en"],
        metadata={"help": "captions whose detected language (ISO 639-1, py3langid) is one of these are kept"},
    )


@lru_cache(maxsize=1)
def detector() -> Callable[[str], tuple[str, float]]:
    """text -> (language code, probability); loaded once per process (~3 s, the model is compressed)."""
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)

    def detect(text: str) -> tuple[str, float]:
        lang, prob = ident.classify(text)
        return str(lang), float(prob)

    return detect


def language_problem(caption: str, config: LanguageConfig) -> str | None:
    """Why the caption's language is not wanted, or None."""
    lang, prob = detector()(caption)
    if lang in config.languages:
        return None
    return f"caption language is {lang} (confidence {prob:.2f}), not {' or '.join(config.languages)}"


def count_words(text: str) -> int:
    """Whitespace-separated words (DataComp's `len(text.split())`), each CJK character counting as one."""
    cjk = len(_CJK.findall(text))
    if cjk == 0:
        return len(text.split())
    return cjk + len(_CJK.sub(" ", text).split())
