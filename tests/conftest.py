"""Test-session fixtures: an isolated CANVAS_HOME with the tiny presets built once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import numpy as np

# Two xdist workers share 2 cores: OpenMP threads that spin while waiting (libgomp's default) steal the
# other worker's core; measured under load, a DRaFT step took ~100 s with 2 spinning threads vs ~17 s
# with 1. Set before torch loads; subprocesses inherit it. Scheduling only: results are unchanged.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# One thread per test process (torch, OpenBLAS; set before either loads, so numpy is imported lazily here):
# float sums then split the same way on any machine, whatever its core count, so a learning test's outcome
# does not depend on the CPU count of the machine it runs on; and the two workers fill two cores without
# oversubscription (make test 858 s -> 812 s on 2 cores, 2026-12-04). Builds that fix their own thread
# count (the tiny-photo preset) are unchanged.
os.environ.setdefault("OMP_NUM_THREADS", "1")


# tryfirst: xdist's worker plugin reads the xdist_group markers in its own pytest_collection_modifyitems (it
# appends "@group" to each node id, which is what loadgroup schedules by); registered after this conftest, it
# ran first and saw no markers, so every test was its own work unit (the quick demo ran on both workers).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test` runs two workers with `--dist loadgroup`), a test file's tests run on
    one worker, so a module fixture (the quick demo, a curate run) is built once, not once per worker
    (measured: the quick demo ran twice, ~200 s each); every Label Studio test goes to one worker, so the
    session starts one server."""
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        group = "labelstudio" if path.startswith("tests/labeling/") else path
        item.add_marker(pytest.mark.xdist_group(group))
    # Longest first, so no long file starts last and runs alone at the end: the DDPO learning test (minutes),
    # then every file holding a `slow` test; a file's own order is kept.
    slow = {i.nodeid.split("::", 1)[0] for i in items if i.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return 0 if path.endswith("test_ddpo_learning.py") else 1 if path in slow else 2

    items.sort(key=rank)


@pytest.fixture(scope="session", autouse=True)
def tests_grouped_by_xdist(request: pytest.FixtureRequest) -> None:
    """On an xdist worker under `--dist loadgroup`, every test must carry its group in its node id (xdist's
    own collection hook adds it); if not, grouping broke silently (pytest 9.2 with xdist 3.8 did) and module
    fixtures such as the quick demo run once per worker: every test errors with this message instead."""
    if not (os.environ.get("PYTEST_XDIST_WORKER") and request.config.getvalue("loadgroup")):
        return
    items = request.session.items
    lost = [i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        pytest.fail(
            f"--dist loadgroup does not group tests with this pytest/pytest-xdist pair ({lost[0]} has no "
            "@group suffix); see the pytest pin in pyproject.toml",
            pytrace=False,
        )


@pytest.fixture(scope="session", autouse=True)
def canvas_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test sees a fresh CANVAS_HOME, so the build-on-first-use path is exercised, not a user's cache.

    One exception, for time: pipeline presets that the user's CANVAS_HOME holds under the current build key
    (`make setup` builds them there; `canvas.core.presets.build_key`) are copied in, not built again
    (`tiny-photo` took ~250 s of a 2-core `make test`). Their weights are the ones a build here would give;
    anything stale or unstamped is built here as before. `CANVAS_TEST_FRESH_PRESETS=1` builds everything.

    xdist workers share one (beside their own temp roots): presets build once under the build lock
    instead of once per worker."""
    from canvas.core.paths import DEFAULT_HOME
    from canvas.core.presets.loading import copy_current_presets

    if os.environ.get("PYTEST_XDIST_WORKER"):
        home = tmp_path_factory.getbasetemp().parent / "canvas_home"
        home.mkdir(exist_ok=True)
    else:
        home = tmp_path_factory.mktemp("canvas_home")
    old = os.environ.get("CANVAS_HOME")
    if os.environ.get("CANVAS_TEST_FRESH_PRESETS") != "1":
        copy_current_presets(Path(old or DEFAULT_HOME).expanduser(), home)
    os.environ["CANVAS_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("CANVAS_HOME", None)
    else:
        os.environ["CANVAS_HOME"] = old


@pytest.fixture(scope="session")
def tiny_presets(canvas_home: Path) -> dict[str, Path]:
    """Build the tiny preset once per session; returns {'clip': weights file, 'sd15': folder}."""
    from canvas.core.presets.loading import init_preset

    # xdist workers share canvas_home: one builds under the build lock, the others find it built.
    return init_preset("tiny", rebuild=False)


@pytest.fixture(scope="session")
def sample_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in sample set written once per session (and its truth manifest beside it)."""
    from canvas.core.sample_data import write_sample

    path = tmp_path_factory.mktemp("sample") / "sample.parquet"
    write_sample(path)
    return path


def _redness(images: np.ndarray) -> float:
    """Mean of R - (G + B) / 2 over images (..., 3) in [0, 1]: 0 for grey, about 0.6 for a saturated red."""
    return float((images[..., 0] - (images[..., 1] + images[..., 2]) / 2).mean())


@pytest.fixture(scope="session")
def redness() -> Callable[[np.ndarray], float]:
    """How red images are (colour tests of the VAE and of fine-tuning share one measure)."""
    return _redness


def _canvas_in_two_processes(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """`canvas ARGS` as two CPU processes under torchrun, one torch thread each; fails the test on a
    non-zero exit with the end of stderr."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, "-m", "canvas", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="session")
def canvas_in_two_processes() -> Callable[..., subprocess.CompletedProcess]:
    """Run a `canvas` command as a two-process (gloo) launch, as several GPUs would run it."""
    return _canvas_in_two_processes
