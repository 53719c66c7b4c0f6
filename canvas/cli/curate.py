"""`canvas curate`: curate a pile of image-text pairs (Apache Beam)."""

from __future__ import annotations

import argparse
import json
import logging

from canvas.core.presets.registry import TINY_CLIP_NAME, TINY_PRETRAINED

EPILOG = """\
Any other flag is a Beam pipeline option, e.g. --runner=FlinkRunner, --direct_num_workers=2,
--direct_running_mode=multi_processing. Outputs: OUTPUT/curated/*.parquet, OUTPUT/rejected/*.parquet,
OUTPUT/report.json, OUTPUT/report.html. The default config (every threshold, documented):
curation/default_config.yaml; print it with --print-config."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "curate",
        help="curate a pile of image-text pairs (Apache Beam)",
        description="Decode/validate, DataComp basic filter, exact + pHash near dedup, CLIP embedding "
        "(RunInference) and score filter, NSFW filter, SemDeDup; every removed record is listed with its reason.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--input",
        nargs="+",
        metavar="PATH_OR_GLOB",
        help="Parquet (key, caption, image|jpg) or WebDataset .tar",
    )
    parser.add_argument(
        "--output",
        metavar="DIR",
        help="output folder, written atomically; an existing one must be empty or a previous curate output",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an --output folder that is not a previous curate output (never one holding an input)",
    )
    parser.add_argument("--config", metavar="FILE.yaml", help="curation config (any subset of the default)")
    parser.add_argument(
        "--clip-model", default=TINY_CLIP_NAME, help=f"open_clip model name (default {TINY_CLIP_NAME})"
    )
    parser.add_argument(
        "--clip-pretrained",
        default=TINY_PRETRAINED,
        help=f"open_clip pretrained tag or weights path (default {TINY_PRETRAINED}; none = random weights, for benchmarks)",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the documented default config and exit"
    )
    parser.set_defaults(func=_curate, accepts_extra_args=True)


class _DropBeamImportNoise(logging.Filter):
    """Beam logs an irrelevant GCP-client warning on import; keep user errors to one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def _curate(args: argparse.Namespace) -> int:
    from canvas.core.errors import CanvasError

    logging.getLogger().addFilter(_DropBeamImportNoise())
    if args.print_config:
        from canvas.curation.config import DEFAULT_CONFIG_PATH

        print(DEFAULT_CONFIG_PATH.read_text(), end="")
        return 0
    if not args.input or not args.output:
        raise CanvasError("canvas curate needs --input PATH... and --output DIR")
    from canvas.pipelines.curate import run_curation

    report = run_curation(
        args.input,
        args.output,
        config_path=args.config,
        clip_model=args.clip_model,
        clip_pretrained=args.clip_pretrained,
        pipeline_args=list(args.extra_args),
        overwrite=args.overwrite,
    )
    summary = {k: report[k] for k in ("input_count", "kept_count", "rejected_count")}
    summary["rejected_by_stage"] = {k: v for k, v in report["rejected_by_stage"].items() if v}
    print(json.dumps(summary))
    print(f"wrote {args.output}/curated, rejected, report.json, report.html")
    return 0
