"""Hostile image files given to `canvas index query --image` and `canvas score --images`.

Each case must end in exit 0 or 2 with one line on stderr and no traceback; a picture over the
decompression-bomb limit curation uses (`max_pixels`) is refused from its header, before any decoding.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from canvas.cli import main
from canvas.curation.decode import PILLOW_MAX_PIXELS


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def big_png(side: int, pixel_rows: int | None = None) -> bytes:
    """A 1-bit grey PNG of side x side; all its rows (a valid file) or only `pixel_rows` (truncated).

    Zeros compress ~1000:1, so even 30000 x 30000 is a few hundred KB, built row block by row block.
    """
    rows = side if pixel_rows is None else pixel_rows
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    comp, parts = zlib.compressobj(9), []
    for start in range(0, rows, 1000):
        parts.append(comp.compress(row * min(1000, rows - start)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
    )


def _good_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# name -> (make the path under tmp, exit code, a word the one line must hold)
CASES: dict[str, tuple[Callable[[Path], Path], int, str]] = {
    "good": (lambda d: _write(d / "ok.png", _good_png()), 0, ""),
    # 9500^2 = 90.25 Mpx: a valid file just over the limit, which Pillow alone would only warn about
    "over the limit": (lambda d: _write(d / "big.png", big_png(9500)), 2, "pixels"),
    "30000x30000 header": (lambda d: _write(d / "huge.png", big_png(30000, pixel_rows=10)), 2, "pixels"),
    "truncated": (lambda d: _write(d / "cut.png", _good_png()[:60]), 2, "cut.png"),
    "text named .png": (lambda d: _write(d / "note.png", b"just some text\n"), 2, "not an image"),
    "empty file": (lambda d: _write(d / "empty.png", b""), 2, "empty"),
    "nonexistent": (lambda d: d / "missing.png", 2, "no such file"),
    "directory": (lambda d: _mkdir(d / "folder.png"), 2, "not a file"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_the_big_png_declares_what_it_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PILLOW_MAX_PIXELS < 9500 * 9500
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's own guard would refuse to open it
    with Image.open(io.BytesIO(big_png(30000, pixel_rows=10))) as img:  # header only: no decode
        assert img.size == (30000, 30000)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A four-row flat index in the tiny CLIP's 64-d space (random unit vectors are enough to query)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from canvas.curation.index import build_index

    cur = tmp_path_factory.mktemp("cur")
    (cur / "curated").mkdir()
    vectors = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = pa.table(
        {
            "key": [f"k{i}" for i in range(4)],
            "caption": [f"row {i}" for i in range(4)],
            "image": [_good_png()] * 4,
            "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32(), 64)),
        }
    )
    pq.write_table(table, cur / "curated" / "part-00000.parquet")
    report = {"clip_model": "canvas-tiny-clip", "clip_pretrained": "tiny", "embedding_dim": 64, "rows_out": 4}
    (cur / "report.json").write_text(json.dumps(report))
    out = tmp_path_factory.mktemp("idx") / "index"
    build_index(cur, out)
    return out


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", ["index query", "score"])
def test_hostile_image_file_is_one_line_exit_0_or_2(
    command: str, case: str, tmp_path: Path, request: pytest.FixtureRequest, capfd: pytest.CaptureFixture
) -> None:
    make, code, word = CASES[case]
    image = make(tmp_path)
    if command == "score":
        argv = ["score", "--reward", "brightness", "--images", str(image)]
    else:
        index = request.getfixturevalue("index_dir")
        argv = ["index", "query", "--index", str(index), "--image", str(image), "-k", "2"]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, err
    assert "Traceback" not in err
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("canvas: error: ") and word in lines[0], err
