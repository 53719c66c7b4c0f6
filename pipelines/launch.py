"""The one Beam launcher of every canvas pipeline (`canvas curate`, `canvas generate`, what comes next).

A pipeline module only builds its transforms; everything around them is here, done one way:

    launcher = BeamLauncher("generate", pipeline_args)      # options checked: one line, before any work
    with launcher.output(output, inputs, overwrite) as tmp:  # checked, locked, committed whole at the end
        pipeline = launcher.pipeline()
        ...build transforms writing into tmp, counts via WriteCounts(f"{tmp}/_stats/...")...
        result = launcher.run(pipeline)                     # runs on the user's runner, waits
        ...read the small stats files, write the report...

- Options: every flag must be a Beam pipeline option, with a valid value, and the runner must exist;
  otherwise `CanvasError` (one line, with a did-you-mean for a misspelt flag). Beam itself only warns
  about unknown flags, so a typo would silently run with the default.
- Runner: the user's `--runner`, else Beam's DirectRunner as it runs a batch job offline (the FnApiRunner,
  in-process or `--direct_running_mode=multi_processing`; `local_batch_runner`). Never forced, so Flink,
  Spark, Dataflow or a portable job server run the same pipeline.
- Output: `canvas.core.outputs` (temp folder beside the output, marker, lock, `--overwrite`, atomic
  commit). Pipelines write through Beam's FileSystems, so the output may be local, gs://, s3:// or hdfs://.
- Memory: while a pipeline runs, this process hands freed heap pages back to the OS every second
  (`returning_freed_memory`): in-process runners otherwise keep every earlier stage's pages.
- Results: workers write small JSON files (counts from combiners), which the driver reads; the driver never
  reads the outputs back. `metrics()` adds the runner's counters where it reports them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import difflib
import io
import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult

from canvas.core.errors import CanvasError
from canvas.core.outputs import commit_output, prepare_output

__all__ = [
    "BeamLauncher",
    "WriteCounts",
    "delete_folder",
    "metrics",
    "pipeline_options",
    "read_json",
    "workers_are_local",
    "workers_per_machine",
    "write_text",
]

DEFAULT_RUNNER = "DirectRunner"


def pipeline_options(pipeline_args: Sequence[str], command: str = "curate") -> tuple[PipelineOptions, str]:
    """Parse the Beam options and look up the runner now: a mistake is one line, before any work.

    Returns the options and the runner's name (the user's `--runner`, else DirectRunner)."""
    from apache_beam.runners import create_runner

    args = list(pipeline_args)
    options = PipelineOptions(args)
    usage = io.StringIO()
    unknown: list[str] = []
    known: list[str] = []

    def find_unknown(parser: argparse.ArgumentParser) -> None:  # called with every options class's flags
        unknown.extend(a for a in parser.parse_known_args(args)[1] if a.startswith("-"))
        known.extend(o for action in parser._actions for o in action.option_strings)

    try:
        with contextlib.redirect_stderr(usage):  # Beam's argparse prints its whole usage, then exits
            options.get_all_options(add_extra_args_fn=find_unknown, retain_unknown_options=True)
    except SystemExit as exc:
        error = (usage.getvalue().strip().splitlines() or ["invalid value"])[-1].split("error: ", 1)[-1]
        raise CanvasError(f"Beam pipeline option: {error}") from exc
    # Beam only logs a warning for a flag no options class declares, so a typo such as
    # --direct_num_worker=2 would run with the default; every runner's own flags are declared here.
    if unknown:
        name = unknown[0].split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise CanvasError(
            f"unknown option {name} (neither canvas {command}'s nor a Beam pipeline option){hint}"
        )
    runner = options.view_as(StandardOptions).runner or DEFAULT_RUNNER
    try:
        create_runner(runner)
    except (ValueError, ImportError, AttributeError) as exc:  # unknown name, module, or class
        raise CanvasError(f"--runner={runner}: {exc}") from exc
    return options, runner


def local_batch_runner(options: PipelineOptions) -> Any:
    """The default runner: what Beam's DirectRunner runs a batch pipeline on when Prism is not at hand, the
    FnApiRunner with the pipeline's options in its provision info (its SDK workers read them there).

    Why not the DirectRunner itself: Beam's (2.77 here) first tries PrismRunner, downloading the prism binary
    from GitHub. Offline that fails at once and it falls back to the FnApiRunner (every figure in
    docs/benchmarks.md), but each try leaves an empty /tmp/beam-temp* folder, and with internet a job would
    fetch an executable mid-run and run on another runner than the one measured and tested. An explicit
    `--runner=DirectRunner` (or `PrismRunner`) still gets Beam's own behaviour."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    info = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(info))


@contextlib.contextmanager
def returning_freed_memory(interval_s: float = 1.0) -> Iterator[None]:
    """While the body runs, hand this process's freed heap pages back to the OS every `interval_s` (glibc's
    `malloc_trim`; a no-op elsewhere).

    Why: the FnApiRunner drops each materialised collection once consumed, but its elements are many small
    chunks, and glibc keeps the pages they freed, so the process's RSS stayed at the high-water mark of
    every earlier stage and the next stage's buffers came on top. Measured on a 300k-record pool
    (`canvas curate`, in-process): peak RSS 3.59 -> 3.04 GiB (MALLOC_ARENA_MAX=2 instead: 3.49); at 1M
    9.34 -> 6.79 GiB (docs/benchmarks.md)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library already loaded in this process
    except (OSError, AttributeError):  # not glibc
        yield
        return
    done = threading.Event()

    def loop() -> None:
        while not done.wait(interval_s):
            trim(0)

    thread = threading.Thread(target=loop, name="malloc-trim", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def workers_are_local(options: PipelineOptions, runner: str) -> bool:
    """Whether the workers run on this machine (the direct runners, or a portable job in LOOPBACK mode)."""
    direct = runner.rsplit(".", 1)[-1] in ("DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")
    return direct or (options.view_as(PortableOptions).environment_type or "").upper() == "LOOPBACK"


def workers_per_machine(options: PipelineOptions, runner: str) -> int:
    """How many SDK worker processes share one machine: `--direct_num_workers` for the multi-processing
    DirectRunner (0 = one per core), else `--sdk_worker_parallelism` (a portable runner's SDK harnesses per
    machine; 0 = the runner's choice, counted as 1). Workers take their share of the cores from it."""
    from apache_beam.options.pipeline_options import DirectOptions

    direct = options.view_as(DirectOptions)
    name = runner.rsplit(".", 1)[-1]
    if name in ("DirectRunner", "SwitchingDirectRunner") and direct.direct_running_mode == "multi_processing":
        return direct.direct_num_workers or os.cpu_count() or 1
    return max(1, int(options.view_as(PortableOptions).sdk_worker_parallelism or 1))


def metrics(result: PipelineResult, namespace: str | None = None) -> dict[str, Any]:
    """Beam counters of the run, where the runner reports them: `{"namespace/name": n}`, or `{"name": n}`
    for one `namespace`."""
    try:
        query = beam.metrics.MetricsFilter().with_namespace(namespace) if namespace else None
        found = result.metrics().query(query)
    except Exception:  # noqa: BLE001 - not every runner reports metrics
        return {}
    out: dict[str, Any] = {}
    for counter in found.get("counters", []):
        key = counter.key.metric
        name = key.name if namespace else f"{key.namespace}/{key.name}"
        out[name] = out.get(name, 0) + (counter.committed or 0)
    return dict(sorted(out.items()))


def write_text(path: str, text: str) -> None:
    """Write `text` to `path` through Beam's FileSystems (local or remote)."""
    with FileSystems.create(path) as handle:
        handle.write(text.encode())


def read_json(path: str) -> Any:
    with FileSystems.open(path) as handle:
        return json.loads(handle.read())


def delete_folder(folder: str) -> None:
    """Delete `folder` and its files, local or on an object store (which has files but no folders)."""
    with contextlib.suppress(Exception):  # BeamIOError when nothing matches
        FileSystems.delete([m.path for m in FileSystems.match([f"{folder}/**"])[0].metadata_list])
    with contextlib.suppress(Exception):  # gone already, or an object store's prefix
        FileSystems.delete([folder])


def _write_counts(counts: dict[str, int], path: str) -> None:
    write_text(path, json.dumps(dict(sorted(counts.items()))))


class WriteCounts(beam.PTransform):
    """{name: PCollection} -> `path`, a JSON object {name: element count} (0 for an empty PCollection),
    written by a worker, so the driver learns the counts without reading any output back."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def expand(self, collections: dict[str, beam.PCollection]) -> beam.PCollection:
        counted = [
            collections[name]
            | f"Count_{name}" >> beam.combiners.Count.Globally()
            | f"Name_{name}" >> beam.Map(lambda n, name=name: (name, n))
            for name in sorted(collections)
        ]
        return (
            counted
            | "Together" >> beam.Flatten()
            | "ToDict" >> beam.combiners.ToDict()
            | "Write" >> beam.Map(_write_counts, path=self.path)
        )


class BeamLauncher:
    """One run of a canvas command's Beam pipeline: checked options, the output folder, run, metrics.

    Args:
        command: the command's name (`curate`, `generate`); error messages and the output marker use it.
        pipeline_args: Beam pipeline options, e.g. ["--runner=FlinkRunner", "--flink_master=host:8081"].

    Raises CanvasError (one line) at once for an unknown or misspelt option, a bad value or runner.
    """

    def __init__(self, command: str, pipeline_args: Sequence[str] = ()) -> None:
        self.command = command
        self.pipeline_args = list(pipeline_args)
        self.options, self.runner = pipeline_options(self.pipeline_args, command)

    @property
    def workers_are_local(self) -> bool:
        return workers_are_local(self.options, self.runner)

    @property
    def workers_per_machine(self) -> int:
        return workers_per_machine(self.options, self.runner)

    @contextlib.contextmanager
    def output(
        self, output: str | Path, inputs: Sequence[str | Path] = (), overwrite: bool = False
    ) -> Iterator[str]:
        """Check and lock `output` (before any work), yield a temp folder to write everything into, and
        make it the output when the body finishes; a failing body leaves the old output as it was."""
        with prepare_output(output, self.command, inputs, overwrite) as tmp:
            yield tmp
            commit_output(tmp, output, self.command)

    def pipeline(self) -> beam.Pipeline:
        if self.options.view_as(StandardOptions).runner is None:
            return beam.Pipeline(runner=local_batch_runner(self.options), options=self.options)
        return beam.Pipeline(options=self.options)

    def run(self, pipeline: beam.Pipeline) -> PipelineResult:
        """Run `pipeline` on the chosen runner and wait for it (a failed run raises). This process (with
        the default runner, the workers too) gives its freed memory back as it goes (`returning_freed_memory`)."""
        with returning_freed_memory():
            result = pipeline.run()
            result.wait_until_finish()
        return result
