"""The launcher hands freed heap pages back to the OS while a pipeline runs (glibc's malloc_trim)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import gc, sys, time, psutil
    from canvas.pipelines.launch import returning_freed_memory

    def rss():
        return psutil.Process().memory_info().rss / 2**20

    # many small chunks with a few survivors among them, as a consumed Beam buffer leaves the heap
    with returning_freed_memory(interval_s=0.05) if sys.argv[1] == "on" else open("/dev/null"):
        keep, drop = [], []
        for i in range(200_000):
            (keep if i % 64 == 0 else drop).append(bytes(1200) + i.to_bytes(4, "little"))
        full = rss()
        drop.clear()
        gc.collect()
        time.sleep(0.5)
        print(full, rss())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_memory_goes_back_to_the_os_while_a_pipeline_runs() -> None:
    def measure(mode: str) -> tuple[float, float]:
        out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
        full, after = map(float, out.stdout.split())
        return full, after

    full, after = measure("on")
    assert full > 200 and after < full - 150, (full, after)  # ~235 MiB of chunks, ~4 MiB survive
    full, after = measure("off")  # without it glibc keeps the pages
    assert after > full - 50, (full, after)
