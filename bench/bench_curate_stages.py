"""Non-model curation stages (decode/validate, basic filter, exact + pHash dedup) in records/s per core.

Goal: >= 300 records/s per core (img2dataset's published figure is ~100 samples/s per core). Baseline,
measured in the same run on the same records: the same `curation/` functions in a plain Python loop
(no Beam), so the ratio is what the Beam wiring costs. Records are distinct 256 px JPEGs with captions
(every record does all the work; nothing is filtered early).

`--ablate language` / `--ablate crop_hashes` instead measures what one feature costs: the raw loop and the
in-process pipeline with it on and off, interleaved in one process (on, off, on, off; best of each), and
prints the throughput ratio on/off and the cost per record (1/on - 1/off).

Usage: .venv/bin/python bench/bench_curate_stages.py [--records 3000] [--ablate language|crop_hashes]
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


# The config lines that switch each ablated feature off.
ABLATE = {
    "language": "basic_filter:\n  language:\n    enabled: false\n",
    "crop_hashes": "near_dedup:\n  crop_scales: []\n",
}


def raw_loop(path: Path, language: bool = True, crop_hashes: bool = True) -> float:
    """records/s of decode + basic filter + hashes in one Python loop (exact/near dedup are negligible)."""
    import pyarrow.parquet as pq

    from canvas.curation.decode import DecodeConfig, decode
    from canvas.curation.filters import BasicFilterConfig, basic_filter
    from canvas.curation.near_dedup import CROP_SCALES
    from canvas.curation.records import RawRecord, Record

    table = pq.read_table(path).to_pylist()
    dcfg, bcfg = DecodeConfig(), BasicFilterConfig()
    bcfg.language.enabled = language
    scales = CROP_SCALES if crop_hashes else ()
    if language:  # load the model (once per process, as once per worker) before the clock starts
        from canvas.curation.language import detector

        detector()
    start = time.perf_counter()
    kept = 0
    for i, row in enumerate(table):
        rec = decode(RawRecord(row["key"], row["caption"], row["image"], f"b#{i}", (0, i)), dcfg, scales)
        kept += isinstance(rec, Record) and basic_filter(rec, bcfg) is None
    elapsed = time.perf_counter() - start
    # py3langid calls ~1% of the random-word captions another language; everything else passes.
    assert kept >= (0.95 if language else 1.0) * len(table), kept
    return len(table) / elapsed


def ablate(feature: str, data: Path, tmp: Path, n: int) -> None:
    """One feature on vs off, interleaved in this process; best rate of two passes each."""
    from canvas.pipelines.curate import run_curation

    (tmp / "off.yaml").write_text(CONFIG + ABLATE[feature])
    rates: dict[tuple[str, bool], list[float]] = {}
    for rep in range(2):
        for on in (True, False):
            flags = {feature: on}
            rates.setdefault(("raw", on), []).append(raw_loop(data, **flags))
            config = tmp / ("c.yaml" if on else "off.yaml")
            report = run_curation([str(data)], tmp / f"out-{rep}-{on}", config_path=config)
            assert report["kept_count"] >= 0.95 * n, report["rejected_by_stage"]
            if rep == 0:
                print(f"{feature} {'on' if on else 'off'}: rejected {report['rejected_by_stage']}")
            rates.setdefault(("pipeline", on), []).append(n / report["timings_s"]["pipeline"])
    for where in ("raw", "pipeline"):
        on, off = max(rates[(where, True)]), max(rates[(where, False)])
        label = "raw curation/ loop (1 core)" if where == "raw" else "DirectRunner in-process"
        print(
            f"{feature} {label}: on {on:.0f} records/s, off {off:.0f} records/s; ratio on/off {on / off:.3f}; "
            f"cost {(1 / on - 1 / off) * 1e6:.0f} us/record (passes: on {[round(r) for r in rates[(where, True)]]}, "
            f"off {[round(r) for r in rates[(where, False)]]})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument(
        "--ablate", choices=sorted(ABLATE), help="measure what this feature costs (see above)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from _curate_data import write_records

    from canvas.pipelines.curate import run_curation

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_records(tmp / "in" / "records.parquet", args.records)
        (tmp / "c.yaml").write_text(CONFIG)
        if args.ablate:
            ablate(args.ablate, data, tmp, args.records)
            return
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
