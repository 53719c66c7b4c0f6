"""Non-model curation stages (decode/validate, basic filter, exact + pHash dedup) in records/s per core.

Goal: >= 300 records/s per core (img2dataset's published figure is ~100 samples/s per core). Baseline,
measured in the same run on the same records: the same `curation/` functions in a plain Python loop
(no Beam), so the ratio is what the Beam wiring costs. Records are distinct 256 px JPEGs with captions
(every record does all the work; nothing is filtered early).

Usage: .venv/bin/python bench/bench_curate_stages.py [--records 3000]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

GOAL_PER_CORE = 300.0
CONFIG = "clip:\n  enabled: false\nclip_score:\n  mode: 'off'\nnsfw:\n  enabled: false\nsemdedup:\n  enabled: false\n"


def raw_loop(path: Path) -> float:
    """records/s of decode + basic filter + hashes in one Python loop (exact/near dedup are negligible)."""
    import pyarrow.parquet as pq

    from canvas.curation.decode import DecodeConfig, decode
    from canvas.curation.filters import BasicFilterConfig, basic_filter
    from canvas.curation.records import RawRecord, Record

    table = pq.read_table(path).to_pylist()
    dcfg, bcfg = DecodeConfig(), BasicFilterConfig()
    start = time.perf_counter()
    kept = 0
    for i, row in enumerate(table):
        rec = decode(RawRecord(row["key"], row["caption"], row["image"], f"b#{i}", (0, i)), dcfg)
        kept += isinstance(rec, Record) and basic_filter(rec, bcfg) is None
    elapsed = time.perf_counter() - start
    assert kept == len(table), kept
    return len(table) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from _curate_data import write_records

    from canvas.pipelines.curate import run_curation

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_records(tmp / "in" / "records.parquet", args.records)
        (tmp / "c.yaml").write_text(CONFIG)
        raw = raw_loop(data)
        print(f"raw curation/ loop (1 core): {raw:.0f} records/s")
        results = {}
        for label, extra, cores in [
            ("DirectRunner in-process", [], 1),
            (
                "DirectRunner multi_processing x2",
                [
                    "--direct_running_mode=multi_processing",
                    "--direct_num_workers=2",
                    "--default_sdk_harness_log_level=WARNING",
                ],
                2,
            ),
        ]:
            report = run_curation(
                [str(data)], tmp / f"out-{cores}", config_path=tmp / "c.yaml", pipeline_args=extra
            )
            assert report["kept_count"] == args.records, report["rejected_by_stage"]
            per_s = args.records / report["timings_s"]["pipeline"]
            results[label] = per_s / cores
            print(
                f"{label}: {args.records} records in {report['timings_s']['pipeline']:.1f} s = {per_s:.0f} records/s "
                f"= {per_s / cores:.0f} per core; ratio to raw loop {per_s / cores / raw:.2f}; "
                f"goal {GOAL_PER_CORE:.0f}/core: {'met' if per_s / cores >= GOAL_PER_CORE else 'NOT met'}"
            )


if __name__ == "__main__":
    main()
