"""`canvas curate`: curate a pile of image-text pairs (Apache Beam)."""

from __future__ import annotations

import argparse
import dataclasses
import json

from canvas.core.config_parser import add_config_arguments, config_from_args
from canvas.pipelines.curate_config import CurateConfig

EPILOG = """\
Any other flag is a Beam pipeline option, e.g. --runner=FlinkRunner, --direct_num_workers=2,
--direct_running_mode=multi_processing. Outputs: OUTPUT/curated/*.parquet, OUTPUT/rejected/*.parquet,
OUTPUT/report.json, OUTPUT/report.html. --config FILE.yaml holds the stage sections of
curation/default_config.yaml (every threshold, documented; print it with --print-config) and, at its top
level, any of the flags above (input, output, clip_model, ...); flags override the file."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "curate",
        help="curate a pile of image-text pairs (Apache Beam)",
        description="Decode/validate, DataComp basic filter, exact + pHash near dedup, CLIP embedding "
        "(RunInference) and score filter, NSFW filter, SemDeDup; every removed record is listed with its reason.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser, CurateConfig)
    parser.add_argument(
        "--print-config", action="store_true", help="print the documented default config and exit"
    )
    parser.set_defaults(func=_curate, accepts_extra_args=True)


def _curate(args: argparse.Namespace) -> int:
    if args.print_config:
        from canvas.curation.config import DEFAULT_CONFIG_PATH

        print(DEFAULT_CONFIG_PATH.read_text(), end="")
        return 0
    from canvas.curation.config import CurationConfig
    from canvas.pipelines.curate import run_curation

    stage_sections = tuple(f.name for f in dataclasses.fields(CurationConfig))
    c = config_from_args(CurateConfig, args, sections=stage_sections)
    report = run_curation(
        c.input,
        c.output,
        config_path=args.config,
        clip_model=c.clip_model,
        clip_pretrained=c.clip_pretrained,
        pipeline_args=list(args.extra_args),
        overwrite=c.overwrite,
    )
    summary = {k: report[k] for k in ("input_count", "kept_count", "rejected_count")}
    summary["rejected_by_stage"] = {k: v for k, v in report["rejected_by_stage"].items() if v}
    print(json.dumps(summary))
    print(f"wrote {c.output}/curated, rejected, report.json, report.html")
    return 0
