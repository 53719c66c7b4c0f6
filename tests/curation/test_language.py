"""Caption language: DataComp's English-only rule, offline, with a reason naming language and confidence."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from canvas.core.errors import CanvasError
from canvas.curation.config import load_config, resolve
from canvas.curation.decode import DecodeConfig, decode
from canvas.curation.filters import BasicFilterConfig, basic_filter
from canvas.curation.language import LanguageConfig, count_words
from canvas.curation.records import RawRecord, Record


def _reason(caption: str, config: BasicFilterConfig | None = None) -> str | None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((300, 300, 3), dtype=np.uint8)).save(buf, format="PNG")
    record = decode(RawRecord("k", caption, buf.getvalue(), "t#0", (0, 0)), DecodeConfig())
    assert isinstance(record, Record)
    return basic_filter(record, config or BasicFilterConfig())


@pytest.mark.parametrize(
    ("caption", "lang"),
    [
        ("zwei Hunde spielen im Schnee", "de"),
        ("un coche rojo aparcado en una calle tranquila", "es"),
        ("一辆红色汽车停在安静的街道上", "zh"),
        ("雪の中で遊ぶ二匹の犬", "ja"),
    ],
)
def test_non_english_captions_are_rejected_naming_the_language(caption: str, lang: str) -> None:
    reason = _reason(caption)
    assert reason is not None and reason.startswith(f"caption language is {lang} (confidence ")
    assert reason.endswith(", not en")


def test_english_captions_pass_and_the_rule_is_configurable() -> None:
    assert _reason("two dogs playing in the snow") is None
    german = BasicFilterConfig(language=LanguageConfig(languages=["en", "de"]))
    assert _reason("zwei Hunde spielen im Schnee", german) is None
    off = BasicFilterConfig(language=LanguageConfig(enabled=False))
    assert _reason("un coche rojo aparcado en una calle tranquila", off) is None


def test_cjk_words_are_counted_by_characters() -> None:
    assert count_words("两只狗在雪地里玩耍") == 9
    assert count_words("雪の中で遊ぶ 2 dogs") == 8
    assert count_words("a red car") == 3
    chinese = BasicFilterConfig(language=LanguageConfig(languages=["zh"]))
    assert _reason("两只狗在雪地里玩耍", chinese) is None  # not "1 word", as a space count would say
    assert _reason("红车", chinese) == "caption has 2 word(s) < 3"


def test_language_config_mistakes_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("basic_filter:\n  language:\n    languages: [english]\n")
    with pytest.raises(CanvasError, match="unknown language code 'english'"):
        resolve(load_config(path), "canvas-tiny-clip")
    path.write_text("basic_filter:\n  language:\n    languages: en\n")
    with pytest.raises(CanvasError, match="must be a list of strings"):
        load_config(path)
    path.write_text("basic_filter:\n  language:\n    languages: [de, fr]\n")
    assert resolve(load_config(path), "canvas-tiny-clip").basic_filter.language.languages == ["de", "fr"]
