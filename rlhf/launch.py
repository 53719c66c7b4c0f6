"""One `Accelerator` for every trainer, started the same way under `accelerate launch` and `torchrun`.

On a machine without a CUDA (or XPU, NPU, ...) device, accelerate joins the processes of a `torchrun
--nproc_per_node N` launch only when told to run on CPU; otherwise each process silently trains alone and
all of them write the same output folder. So there a multi-process launch turns on accelerate's CPU mode
(gloo), and any launch whose processes did not join is a clear error instead of N racing runs.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from canvas.core.errors import CanvasError


def launched_processes() -> int:
    """How many processes the launcher started (torchrun / accelerate set WORLD_SIZE; MPI its own)."""
    for name in ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def create_accelerator(**kwargs: Any) -> Any:
    """`accelerate.Accelerator(**kwargs)` that refuses to run a multi-process launch as separate runs."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import is_hpu_available, is_mlu_available, is_npu_available, is_xpu_available

    AcceleratorState._reset_state()  # a second trainer in one process may ask for another precision
    launched = launched_processes()
    devices = (
        torch.cuda.is_available(),
        is_xpu_available(),
        is_npu_available(),
        is_hpu_available(),
        is_mlu_available(),
    )
    if launched > 1 and not any(devices):
        kwargs.setdefault("cpu", True)  # gloo across CPU processes
    accelerator = Accelerator(**kwargs)
    if accelerator.num_processes != launched:
        raise CanvasError(
            f"{launched} processes were launched but accelerate joined {accelerator.num_processes}: "
            "they would train separately and overwrite each other's files. On CPU launch with "
            "`torchrun --nproc_per_node N -m canvas train ...`; on GPUs `accelerate launch --num_processes N`."
        )
    return accelerator
