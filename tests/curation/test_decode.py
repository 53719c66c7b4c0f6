"""Decoding never crashes on bad bytes, rejects each broken class with its reason, and converts odd modes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from canvas.curation.decode import DecodeConfig, decode, open_rgb
from canvas.curation.records import DECODE, RawRecord, Record, Rejection


def _raw(data: bytes | None, key: str = "k") -> RawRecord:
    return RawRecord(key=key, caption="a caption of some words", image=data, source="test#0", ordinal=(0, 0))


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


GOOD_PNG = _encode(_photo(), "PNG")
GOOD_JPEG = _encode(_photo(), "JPEG", quality=90)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (None, "null"),
        (b"", "empty"),
        (b"\x00" * 100, "undecodable"),
        (GOOD_JPEG[: len(GOOD_JPEG) // 2], "truncated"),
        (GOOD_PNG[: len(GOOD_PNG) // 2], "truncated"),
        (_encode(Image.new("1", (4000, 4000)), "PNG"), "decompression bomb"),
    ],
    ids=["null", "empty", "garbage", "truncated-jpeg", "truncated-png", "bomb"],
)
def test_each_broken_class_is_rejected_with_its_reason(data: bytes | None, reason: str) -> None:
    out = decode(_raw(data), DecodeConfig(max_pixels=1_000_000))
    assert isinstance(out, Rejection)
    assert out.stage == DECODE and reason in out.reason


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height`: tests the pixel limit without allocating it."""
    data = bytearray(_encode(Image.new("L", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)  # IHDR data follows the signature and chunk header
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # CRC over chunk type + data
    return bytes(data)


def test_max_pixels_is_the_bomb_limit_above_and_below_pillows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    between = _png_claiming(10_000, 10_000)  # 1e8: above Pillow's limit, below twice it (its warning)
    above = _png_claiming(15_000, 15_000)  # 2.25e8: above twice Pillow's default (its error)
    for data in (between, above):
        out = decode(_raw(data), DecodeConfig())
        assert isinstance(out, Rejection) and out.reason.startswith("decompression bomb"), out.reason
    low = decode(_raw(between), DecodeConfig(max_pixels=1_000_000))
    assert low.reason == "decompression bomb: 10000x10000 = 100000000 pixels > limit 1000000"
    for data in (between, above):  # within a higher limit: only the (tiny) pixel data is wrong
        out = decode(_raw(data), DecodeConfig(max_pixels=300_000_000))
        assert isinstance(out, Rejection) and "bomb" not in out.reason and "limit" not in out.reason
    huge = decode(_raw(_png_claiming(20_000, 20_000)), DecodeConfig(max_pixels=300_000_000))
    assert huge.reason.startswith("decompression bomb") and "limit 300000000" in huge.reason
    # The configured limit still holds after a higher one raised Pillow's process-wide global.
    assert decode(_raw(between), DecodeConfig()).reason.startswith("decompression bomb")
    for preset in (10**9, None):  # a limit set higher (or switched off) elsewhere is never lowered
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", preset)
        assert decode(_raw(between), DecodeConfig()).reason.startswith("decompression bomb")
        assert preset == Image.MAX_IMAGE_PIXELS


def test_valid_images_decode_with_hashes() -> None:
    out = decode(_raw(GOOD_PNG), DecodeConfig())
    assert isinstance(out, Record)
    assert (out.width, out.height) == (64, 48)
    assert len(out.sha256) == 64 and len(out.pixel_sha256) == 64
    # Same pixels in another lossless encoding: different bytes hash, same pixel hash.
    other = decode(_raw(_encode(_photo(), "BMP")), DecodeConfig())
    assert other.sha256 != out.sha256 and other.pixel_sha256 == out.pixel_sha256


def test_odd_modes_become_faithful_rgb() -> None:
    grey16 = Image.fromarray((np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16))
    img = open_rgb(_encode(grey16, "PNG"))
    arr = np.asarray(img)
    assert (
        img.mode == "RGB" and arr.max() >= 250 and arr.min() <= 5 and np.unique(arr).size > 100
    )  # not clipped
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red -> white
    assert np.asarray(open_rgb(_encode(rgba, "PNG")))[0, 0].tolist() == [255, 255, 255]
    for mode in ("CMYK", "P", "L", "1", "LA"):
        img = _photo().convert(mode)
        fmt = "JPEG" if mode == "CMYK" else "PNG"
        assert open_rgb(_encode(img, fmt)).mode == "RGB"


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        buf[pos % len(buf)] = value
    return bytes(buf[: max(1, len(buf) - cut)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from([GOOD_PNG, GOOD_JPEG, _encode(_photo(), "GIF"), _encode(_photo(), "WEBP")]),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    cut=st.integers(0, 2000),
)
def test_fuzz_mutated_images_never_crash(base: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    out = decode(_raw(_mutate(base, edits, cut)), DecodeConfig())
    assert isinstance(out, Record | Rejection)
    if isinstance(out, Record):
        assert out.width > 0 and out.height > 0
    else:
        assert out.reason


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=4096))
def test_fuzz_random_bytes_never_crash(data: bytes) -> None:
    out = decode(_raw(data), DecodeConfig())
    assert isinstance(out, Record | Rejection)
