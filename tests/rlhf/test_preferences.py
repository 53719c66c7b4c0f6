"""Preference files in the Pick-a-Pic v2 schema: read, oriented, split; malformed ones fail naming the row."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from canvas.core.errors import CanvasError
from canvas.rlhf.preferences import decode_pair, load_preferences, write_preferences


def _records(n: int = 6) -> list[dict]:
    dark, light = Image.new("RGB", (8, 8), (20, 20, 20)), Image.new("RGB", (8, 8), (230, 230, 230))
    labels = [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)]
    return [
        {
            "caption": f"p{i}",
            "jpg_0": light,
            "jpg_1": dark,
            "label_0": labels[i % 3][0],
            "label_1": labels[i % 3][1],
        }
        for i in range(n)
    ]


def test_pairs_are_oriented_winner_first_and_ties_kept_apart(tmp_path: Path) -> None:
    data = load_preferences(write_preferences(tmp_path / "p.parquet", _records()))
    assert len(data) == 6 and data.num_ties == 2
    first, second, tie = data[0], data[1], data[2]
    assert first.target == 1.0 and second.target == 1.0 and tie.is_tie and tie.target == 0.5
    # Row 1 prefers image 1 (the dark one): it must come out as the winner.
    win, lose = decode_pair(data, second)
    assert win.getpixel((0, 0)) == (20, 20, 20) and lose.getpixel((0, 0)) == (230, 230, 230)
    strict = data.without_ties()
    assert len(strict) == 4 and strict.num_ties == 0 and strict.rows == [0, 1, 3, 4]
    train, heldout = data.split(0.5, seed=0)
    assert sorted(train.rows + heldout.rows) == list(range(6)) and len(heldout) == 3
    assert data.split(0.5, seed=0)[1].rows == heldout.rows


def test_hugging_face_dataset_in_the_schema_loads(tmp_path: Path) -> None:
    import datasets

    path = write_preferences(tmp_path / "p.parquet", _records(4))
    ds = datasets.Dataset(pq.read_table(path)).add_column("extra", list(range(4)))
    ds.save_to_disk(str(tmp_path / "saved"))
    for source in (ds, tmp_path / "saved"):
        data = load_preferences(source)
        assert len(data) == 4 and data[1].caption == "p1" and data[1].target == 1.0


def _huge_png() -> bytes:
    """A 90-Mpx 1-bit PNG (a few kB): over Pillow's limit, which Pillow alone only warns about."""
    import io

    buf = io.BytesIO()
    Image.new("1", (9500, 9500)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop_columns(["label_1"]), r"missing column\(s\) label_1"),
        (
            lambda t: t.set_column(3, "label_0", pa.array([1.0, 0.0, 0.5, 0.7, 0.0, 0.5])),
            r"row 3: label_0 \+ label_1 = 0.7, expected 1",
        ),
        (
            lambda t: t.set_column(
                2, "jpg_1", pa.array([b"x"] * 4 + [b"not an image"] + [b"x"], pa.binary())
            ),
            r"row 0: jpg_1 is not a decodable image",
        ),
        (
            lambda t: t.set_column(
                1, "jpg_0", pa.array([t.column("jpg_0")[0].as_py()] * 4 + [b"\x89PNG junk", b""])
            ),
            r"row 4: jpg_0 is not a decodable image",
        ),
        (
            lambda t: t.set_column(
                1, "jpg_0", pa.array([t.column("jpg_0")[0].as_py()] * 2 + [_huge_png()] * 4)
            ),
            r"row 2: jpg_0 is not a decodable image \(9500x9500 pixels is over the limit",
        ),
    ],
    ids=["missing-column", "label-sum", "garbage-image", "truncated-image", "over-pixel-limit"],
)
def test_malformed_files_fail_naming_the_row(tmp_path: Path, change, message: str) -> None:
    path = write_preferences(tmp_path / "p.parquet", _records())
    pq.write_table(change(pq.read_table(path)), path)
    with pytest.raises(CanvasError, match=message) as exc:
        load_preferences(path)
    assert "\n" not in str(exc.value)


def test_image_that_fails_only_when_decoded_names_its_row(tmp_path: Path) -> None:
    import io

    import numpy as np

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    noise.save(buf, format="PNG")
    cut = buf.getvalue()[:200]  # a PNG whose header reads but whose pixels are missing
    path = write_preferences(tmp_path / "p.parquet", _records(3))
    table = pq.read_table(path)
    good = table.column("jpg_1")[0].as_py()
    pq.write_table(table.set_column(2, "jpg_1", pa.array([good, good, cut], pa.binary())), path)
    data = load_preferences(path)
    with pytest.raises(CanvasError, match=r"row 2: .*not a decodable image"):
        decode_pair(data, data[2])


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CanvasError, match="no such preference file"):
        load_preferences(tmp_path / "nope.parquet")
