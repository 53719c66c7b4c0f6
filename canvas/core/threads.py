"""How many threads one worker process gives torch, OpenMP and BLAS.

Several SDK worker processes often share one machine (the multi-processing DirectRunner, a Flink
TaskManager or Spark executor running several SDK harnesses). Each library's default is "all cores", so
N busy workers run N x cores threads that preempt each other; measured on 2 cores, two processes with
default threads ran the tiny models many times slower than with one thread each. So a worker that was
told how many workers share its machine takes only its share of the cores.
"""

from __future__ import annotations

import os

__all__ = ["machine_cores", "set_worker_threads", "worker_threads"]


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_threads(threads: int, workers_per_machine: int) -> int:
    """The thread count a worker uses: `threads` when the user set one (> 0); else its share of the cores
    when several workers share the machine; else 0 (= the libraries' own default, all cores)."""
    if threads > 0:
        return threads
    if workers_per_machine > 1:
        return max(1, machine_cores() // workers_per_machine)
    return 0


def set_worker_threads(threads: int) -> None:
    """Give torch's intra-op pool and every OpenMP/BLAS pool loaded in this process `threads` threads
    (0: leave the defaults). Called once per worker process, where it loads its model."""
    if threads <= 0:
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)  # numpy's BLAS, faiss's OpenMP: the same share
