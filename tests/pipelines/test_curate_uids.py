"""DataComp's submission file written in parts by range of uid, then merged: never all uids on one worker."""

from __future__ import annotations

import itertools
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from canvas.curation.pool import UID_DTYPE, submission_array
from canvas.curation.records import Record
from canvas.pipelines.curate_uids import WriteUidParts, merge_uid_parts


def _record(uid: str) -> Record:
    return Record(
        key=uid,
        caption="",
        image=b"",
        source=uid,
        ordinal=(0, 0),
        width=0,
        height=0,
        sha256="",
        pixel_sha256="",
        phash=0,
    )


def test_kept_uids_are_written_in_bounded_sorted_parts_and_merged_into_one_sorted_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    uids = [f"{int(a):016x}{int(b):016x}" for a, b in rng.integers(0, 2**64, (1000, 2), dtype=np.uint64)]
    uids += uids[:50]  # kept twice (a run without exact dedup): submitted once
    folder = tmp_path / "_uids"
    with BeamTestPipeline() as p:
        _ = p | beam.Create([_record(u) for u in uids]) | WriteUidParts(str(folder), uids_per_part=64)
    parts = sorted(folder.iterdir())
    arrays = [np.fromfile(part, dtype=UID_DTYPE) for part in parts]
    assert len(parts) == 17 and max(len(a) for a in arrays) <= 2 * 64  # 1050 / 64: no part holds them all
    assert all((np.sort(a) == a).all() for a in arrays)
    ends = [(a[0].tolist(), a[-1].tolist()) for a in arrays]
    assert all(last < first for (_, last), (first, _) in itertools.pairwise(ends))  # ranges in order
    assert merge_uid_parts(str(folder), str(tmp_path / "uids.npy")) == 1000
    merged = np.load(tmp_path / "uids.npy")
    assert merged.dtype == UID_DTYPE and merged.tolist() == submission_array(uids).tolist()


def test_no_kept_uid_is_an_empty_submission(tmp_path: Path) -> None:
    assert merge_uid_parts(str(tmp_path / "none"), str(tmp_path / "uids.npy")) == 0
    empty = np.load(tmp_path / "uids.npy")
    assert empty.dtype == UID_DTYPE and empty.shape == (0,)
