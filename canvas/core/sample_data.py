"""The built-in sample image-text set: real photos that ship inside PyPI wheels, plus planted problems.

Only files inside the installed wheels are read (never scikit-image's pooch downloads). Every planted
record is listed in a truth manifest (`FILE.truth.json`): what it is, which original it copies, and
whether curation should keep or reject it, so curation can be checked against the truth.

Keys: originals are `orig-NAME`, planted records `plant-KIND-...`; `orig-` sorts before `plant-`, so a
"smallest key wins" dedup policy keeps the originals.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageEnhance

SEED = 1234
SCHEMA = pa.schema([("key", pa.string()), ("caption", pa.string()), ("image", pa.binary())])

# (package, resource path, name, caption). Captions are ours; photos are the wheels' own files.
PHOTOS: tuple[tuple[str, str, str, str], ...] = (
    (
        "skimage",
        "data/astronaut.png",
        "astronaut",
        "an astronaut in a white spacesuit posing in front of a flag",
    ),
    ("skimage", "data/brick.png", "brick", "close-up of a grey brick wall with mortar lines"),
    ("skimage", "data/camera.png", "camera", "a man with a camera on a tripod standing in a field"),
    ("skimage", "data/cell.png", "cell", "microscope image of a single cell with a rough outline"),
    ("skimage", "data/chelsea.png", "chelsea", "a ginger tabby cat looking to the side"),
    ("skimage", "data/clock_motion.png", "clock", "a wall clock photographed with motion blur"),
    ("skimage", "data/coffee.png", "coffee", "a cup of coffee on a saucer seen from above"),
    ("skimage", "data/coins.png", "coins", "old coins laid out in rows on a dark background"),
    ("skimage", "data/grass.png", "grass", "a dense patch of green grass blades"),
    ("skimage", "data/gravel.png", "gravel", "small stones of gravel on the ground"),
    ("skimage", "data/hubble_deep_field.jpg", "hubble", "deep space full of distant galaxies"),
    ("skimage", "data/ihc.png", "ihc", "stained tissue sample under a microscope"),
    ("skimage", "data/moon.png", "moon", "craters on the surface of the moon"),
    ("skimage", "data/motorcycle_left.png", "motorcycle", "a red motorcycle parked in a workshop"),
    ("skimage", "data/retina.jpg", "retina", "photograph of the back of a human eye"),
    ("skimage", "data/rocket.jpg", "rocket", "a rocket standing on its launch pad"),
    ("sklearn", "datasets/images/china.jpg", "china", "a chinese temple roof among green trees"),
    ("sklearn", "datasets/images/flower.jpg", "flower", "a pink flower with a yellow centre in close-up"),
    (
        "matplotlib",
        "mpl-data/sample_data/grace_hopper.jpg",
        "hopper",
        "portrait of a woman in a navy uniform",
    ),
)
# Real photos whose shorter side is under DataComp's 200 px: curation's basic filter must drop them.
SMALL_PHOTOS: tuple[tuple[str, str, str, str], ...] = (
    ("skimage", "data/text.png", "text", "printed text on a sheet of paper photographed at an angle"),
    ("skimage", "data/page.png", "page", "a scanned page of a book with two columns of text"),
)


@dataclass(frozen=True)
class TruthEntry:
    """What one sample row is. `expect` is `keep` or `reject`; `stage` the curation stage that rejects it."""

    row: int
    key: str
    kind: str
    of: str | None = None
    expect: str = "keep"
    stage: str | None = None
    note: str = ""


def _read(package: str, path: str) -> bytes:
    return resources.files(package).joinpath(path).read_bytes()


def _encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _rgb(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def build_sample() -> tuple[list[dict], list[TruthEntry]]:
    """Build the rows (key, caption, image) and the truth manifest, deterministically."""
    rng = random.Random(SEED)
    rows: list[dict] = []
    truth: list[TruthEntry] = []

    def add(key: str, caption: str | None, image: bytes | None, kind: str, **kw: object) -> None:
        truth.append(TruthEntry(row=len(rows), key=key, kind=kind, **kw))
        rows.append({"key": key, "caption": caption, "image": image})

    originals = {name: (_read(pkg, path), caption) for pkg, path, name, caption in PHOTOS}
    # Some originals are stored in the odd modes real scrapes contain; they must survive conversion to RGB.
    odd_modes = {
        "coffee": lambda b: _encode(_rgb(b).convert("CMYK"), "JPEG", quality=92),
        "chelsea": lambda b: _encode(_rgb(b).quantize(colors=128, method=Image.Quantize.MEDIANCUT), "PNG"),
        "camera": lambda b: _encode(Image.open(io.BytesIO(b)).convert("I;16"), "PNG"),
        "rocket": lambda b: _encode(_rgb(b).convert("RGBA"), "PNG"),
    }
    for name, (data, caption) in originals.items():
        note = ""
        if name in odd_modes:
            data = odd_modes[name](data)
            note = f"stored as {Image.open(io.BytesIO(data)).mode}"
            originals[name] = (data, caption)
        add(f"orig-{name}", caption, data, "original", note=note)
    for pkg, path, name, caption in SMALL_PHOTOS:
        add(f"orig-{name}", caption, _read(pkg, path), "too_small", expect="reject", stage="basic_filter")

    # Exact duplicates: identical bytes, and identical pixels in another encoding.
    for name in ("astronaut", "china", "moon"):
        data, caption = originals[name]
        add(
            f"plant-exactdup-{name}",
            caption,
            data,
            "exact_dup",
            of=f"orig-{name}",
            expect="reject",
            stage="exact_dedup",
        )
    for name in ("flower", "coins"):
        data, caption = originals[name]
        add(
            f"plant-pixeldup-{name}",
            caption,
            _encode(_rgb(data), "PNG"),
            "pixel_dup",
            of=f"orig-{name}",
            expect="reject",
            stage="exact_dedup",
            note="same pixels, PNG re-encode",
        )

    # Near duplicates: the edits a scrape is full of.
    def jpeg(img: Image.Image) -> bytes:
        return _encode(img, "JPEG", quality=60)

    def resize(img: Image.Image) -> bytes:
        return _encode(
            img.resize((int(img.width * 0.8), int(img.height * 0.8)), Image.Resampling.LANCZOS),
            "JPEG",
            quality=90,
        )

    def crop(img: Image.Image) -> bytes:
        dx, dy = img.width // 40, img.height // 40
        return _encode(img.crop((dx, dy, img.width - dx, img.height - dy)), "JPEG", quality=90)

    def brighten(img: Image.Image) -> bytes:
        # Saved as a scrape would carry it (JPEG). A lossless PNG of the edit would be the better-encoded
        # copy by curation's `keep: best` rule and rightly survive over a JPEG original.
        return _encode(ImageEnhance.Brightness(img).enhance(1.1), "JPEG", quality=70)

    edits = {"jpeg60": jpeg, "resize80": resize, "crop95": crop, "bright110": brighten}
    for (name, edit), fn in zip(
        [
            ("astronaut", "jpeg60"),
            ("chelsea", "resize80"),
            ("hubble", "crop95"),
            ("hopper", "bright110"),
            ("motorcycle", "jpeg60"),
            ("retina", "resize80"),
        ],
        [edits[e] for e in ("jpeg60", "resize80", "crop95", "bright110", "jpeg60", "resize80")],
        strict=True,
    ):
        data, caption = originals[name]
        add(
            f"plant-neardup-{name}-{edit}",
            caption,
            fn(_rgb(data)),
            "near_dup",
            of=f"orig-{name}",
            expect="reject",
            stage="near_dedup",
            note=edit,
        )

    # Caption and shape problems (DataComp basic filter).
    add(
        "plant-nocaption-gravel",
        None,
        _encode(_rgb(originals["gravel"][0]).rotate(90), "PNG"),
        "bad_caption",
        expect="reject",
        stage="basic_filter",
        note="null caption",
    )
    add(
        "plant-shortcaption-brick",
        "a wall",
        _encode(_rgb(originals["brick"][0]).rotate(180), "PNG"),
        "bad_caption",
        expect="reject",
        stage="basic_filter",
        note="2 words",
    )
    strip = _rgb(originals["china"][0]).crop((0, 0, 640, 200)).resize((800, 200))
    add(
        "plant-widestrip-china",
        "a wide strip cut from a photo of a temple roof",
        _encode(strip, "JPEG", quality=90),
        "bad_aspect",
        expect="reject",
        stage="basic_filter",
        note="aspect 4:1",
    )

    # Broken images.
    good = originals["astronaut"][0]
    add(
        "plant-broken-null",
        "an image that is missing entirely",
        None,
        "broken",
        expect="reject",
        stage="decode",
        note="null",
    )
    add(
        "plant-broken-empty",
        "an image with zero bytes of data",
        b"",
        "broken",
        expect="reject",
        stage="decode",
        note="empty",
    )
    add(
        "plant-broken-random",
        "an image made of random bytes",
        rng.randbytes(4096),
        "broken",
        expect="reject",
        stage="decode",
        note="undecodable",
    )
    add(
        "plant-broken-truncated",
        "an image cut off half way through",
        good[: len(good) // 2],
        "broken",
        expect="reject",
        stage="decode",
        note="truncated",
    )
    bomb = _encode(Image.new("1", (16000, 16000)), "PNG", optimize=True)  # 256 Mpx, ~30 kB on disk
    add(
        "plant-broken-bomb",
        "a decompression bomb of a huge blank image",
        bomb,
        "broken",
        expect="reject",
        stage="decode",
        note="decompression bomb",
    )

    # A second record under an existing key: keys must be unique.
    add(
        "orig-moon",
        "another photo claiming the moon's key",
        _encode(_rgb(originals["grass"][0]).rotate(270), "PNG"),
        "dup_key",
        of="orig-moon",
        expect="reject",
        stage="exact_dedup",
        note="duplicate input key",
    )
    return rows, truth


def write_sample(output: Path) -> dict:
    """Write the sample Parquet and `<output>.truth.json`; returns a small summary."""
    rows, truth = build_sample()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), output)
    truth_path = output.with_suffix(".truth.json")
    truth_path.write_text(json.dumps([asdict(t) for t in truth], indent=1))
    by_kind: dict[str, int] = {}
    for t in truth:
        by_kind[t.kind] = by_kind.get(t.kind, 0) + 1
    return {"rows": len(rows), "truth": str(truth_path), "by_kind": by_kind}
