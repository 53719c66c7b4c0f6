"""Several SDK workers on one machine each take their share of its cores (torch, OpenMP, BLAS), not all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from canvas.core import threads as worker_threads_module
from canvas.core.presets.registry import TINY_CLIP_NAME, TINY_PRETRAINED
from canvas.core.threads import worker_threads
from canvas.pipelines.curate_models import ClipModelHandler
from canvas.pipelines.launch import BeamLauncher


@pytest.fixture
def restore_torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], 1),
        (["--direct_running_mode=multi_processing", "--direct_num_workers=2"], 2),
        (["--direct_running_mode=multi_threading", "--direct_num_workers=4"], 1),  # one process
        (["--runner=PortableRunner", "--sdk_worker_parallelism=3"], 3),
    ],
)
def test_launcher_counts_the_worker_processes_sharing_a_machine(args: list[str], expected: int) -> None:
    assert BeamLauncher("curate", args).workers_per_machine == expected


def test_each_worker_takes_its_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_threads_module, "machine_cores", lambda: 8)
    assert worker_threads(0, 1) == 0  # one worker: the libraries' default (all cores)
    assert worker_threads(0, 2) == 4
    assert worker_threads(0, 16) == 1  # never fewer than one
    assert worker_threads(3, 2) == 3  # the user's --threads wins


def test_clip_worker_of_a_multiprocess_run_uses_its_share(
    monkeypatch: pytest.MonkeyPatch, restore_torch_threads: None
) -> None:
    from canvas.core.presets.clip import resolve_clip

    resolve_clip(TINY_CLIP_NAME, TINY_PRETRAINED)
    monkeypatch.setattr(worker_threads_module, "machine_cores", lambda: 4)
    torch.set_num_threads(4)
    ClipModelHandler(TINY_CLIP_NAME, TINY_PRETRAINED, threads=0, workers_per_machine=2).load_model()
    assert torch.get_num_threads() == 2
    ClipModelHandler(TINY_CLIP_NAME, TINY_PRETRAINED, threads=0, workers_per_machine=1).load_model()
    assert torch.get_num_threads() == 2  # one worker: left as it was (torch's default)
