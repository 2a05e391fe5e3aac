"""Independent CPU runs in parallel worker processes (one torch thread each).

The regret benchmark, ``oat-bench seeds`` and the multi-seed learning tests all run many small, independent
jobs (one seed of one recipe). :func:`run_in_processes` runs them on ``workers`` spawned processes, each set up
as a single-process learner with ``threads`` intra-op threads, and yields results as they finish. A job's
result depends only on its arguments, never on which worker ran it: every input is derived from them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def setup_process(threads: int) -> None:
    """Make this process a single-process learner with ``threads`` torch threads (the parent or a pool worker)."""
    import torch
    import torch.distributed as tdist

    from oat_agents.learners import init_distributed
    from oat_agents.learners.dist import _LAUNCH_VARS

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Say the thread count in the environment too: libraries that size their own pools read it, not torch's
    # setting. accelerate (under TRL's trainers) otherwise sets torch to one thread per *physical core* in each
    # worker when OMP_NUM_THREADS is unset: 2 workers × 2 spinning OpenMP threads on 2 cores ran the trl_grpo
    # recipe 5× slower than with one thread each.
    for key in _THREAD_VARS:
        os.environ[key] = str(threads)
    if not tdist.is_initialized():
        # A spawned worker inherits the parent's rendezvous port; each process needs its own group.
        for key in _LAUNCH_VARS:
            os.environ.pop(key, None)
    # Few threads: these models are tiny, and extra threads only fight over shared cores.
    torch.set_num_threads(threads)
    init_distributed()


def run_in_processes(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int = 2,
                     threads: int = 1) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Yield ``(job, fn(*job))`` for every job, in the order they finish.

    ``fn`` must be importable by name (a module-level function): workers are *spawned*, not forked, so that
    none inherits the parent's torch/DeepSpeed state or threads. With ``workers == 1`` (or one job) the jobs run
    in this process, one after the other (with ``threads`` torch threads, restored afterwards). An exception in a job is raised here, after the pool is shut down.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(jobs) <= 1:
        import torch

        saved = torch.get_num_threads()
        saved_env = {key: os.environ.get(key) for key in _THREAD_VARS}
        setup_process(threads)
        try:
            for job in jobs:
                yield job, fn(*job)
        finally:  # the caller's process keeps its own thread count and environment
            torch.set_num_threads(saved)
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=setup_process, initargs=(threads,)) as pool:
        futures = {pool.submit(fn, *job): job for job in jobs}
        for future in as_completed(futures):
            yield futures[future], future.result()
