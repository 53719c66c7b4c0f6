"""A pool's embedding rows read again from its files by (file, row): the same bits a carried row gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from canvas.curation.embedding_rows import EmbeddingRows, npy_rows, npz_rows
from canvas.curation.records import unit_embedding


def _carried(row: np.ndarray) -> np.ndarray:
    """What a record carrying the row uses: float16 as shipped through `unit_embedding`; a float32 row is
    stored unit by `pool.metadata_record` (row over its float32 norm)."""
    if row.dtype == np.float16:
        return unit_embedding(row)
    x = np.asarray(row, np.float32)
    return x / float(np.linalg.norm(x))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_rows_read_by_ordinal_equal_the_carried_rows_bit_for_bit(tmp_path: Path, dtype: type) -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((n, 24)).astype(dtype) for n in (50, 7)]
    for i, a in enumerate(arrays):  # other arrays around the one read, as in DataComp's .npz
        np.savez(tmp_path / f"s{i}.npz", b32_img=a, b32_txt=a[::-1].copy(), l14_img=a[:, :3].copy())
    rows = EmbeddingRows.of_files([npz_rows(str(tmp_path / f"s{i}.npz"), "b32_img") for i in range(2)])
    assert rows is not None and rows.dim == 24
    # scattered, unordered, repeated, and runs of consecutive rows across both files
    ordinals = [(1, 6), (0, 3), (0, 4), (0, 5), (1, 0), (0, 49), (0, 3), (1, 1), (0, 0)]
    got = rows.unit(ordinals)
    want = np.stack([_carried(arrays[f][r]) for f, r in ordinals])
    assert got.dtype == np.float32 and got.tobytes() == want.tobytes()
    assert rows.unit([]).shape == (0, 24)
    with pytest.raises(IndexError, match="rows 7..7 of 7"):
        rows.unit([(1, 7)])


def test_npy_rows_read_clip_retrievals_arrays(tmp_path: Path) -> None:
    a = np.random.default_rng(1).standard_normal((9, 16)).astype(np.float16)
    np.save(tmp_path / "img_emb_0.npy", a)
    rows = EmbeddingRows.of_files([npy_rows(str(tmp_path / "img_emb_0.npy"))])
    assert rows is not None
    assert rows.unit([(0, 8), (0, 2)]).tobytes() == np.stack([_carried(a[8]), _carried(a[2])]).tobytes()


def test_arrays_that_cannot_be_read_in_place_are_refused(tmp_path: Path) -> None:
    a = np.ones((4, 8), np.float16)
    np.savez_compressed(tmp_path / "c.npz", b32_img=a)
    np.savez(tmp_path / "f.npz", b32_img=np.asfortranarray(np.ones((4, 8), np.float32)))
    np.savez(tmp_path / "i.npz", b32_img=np.ones((4, 8), np.int8))
    assert npz_rows(str(tmp_path / "c.npz"), "b32_img") is None  # deflated: no offset to read at
    assert npz_rows(str(tmp_path / "f.npz"), "b32_img") is None
    assert npz_rows(str(tmp_path / "i.npz"), "b32_img") is None
    np.savez(tmp_path / "w.npz", b32_img=np.ones((4, 6), np.float16))
    files = [npz_rows(str(tmp_path / "w.npz"), "b32_img"), npy_rows(str(_npy(tmp_path, a)))]
    assert EmbeddingRows.of_files(files) is None  # widths differ
    assert EmbeddingRows.of_files([]) is None


def _npy(tmp_path: Path, a: np.ndarray) -> Path:
    np.save(tmp_path / "a.npy", a)
    return tmp_path / "a.npy"


def test_a_file_rewritten_after_it_was_looked_at_is_an_error_not_other_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    np.savez(path, b32_img=np.ones((4, 8), np.float16))
    rows = EmbeddingRows.of_files([npz_rows(str(path), "b32_img")])
    np.savez(path, b32_img=np.full((4, 8), 2.0, np.float16))  # same size, new contents
    with pytest.raises(OSError, match="changed since the run looked at it"):
        rows.unit([(0, 1)])
