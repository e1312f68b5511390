"""Run jobs in this process (one worker) or in a pool of spawned processes, with a progress bar.

Shared by the dataset generator and ``bodyshape fit-correction``: each job writes its own file
under a temporary name, so the order in which they finish does not matter and a killed run
resumes by redoing only the missing ones. Spawned, not forked: torch and warp are not fork-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def run_jobs(run: Callable[[Any], Any], jobs: Sequence[Any], workers: int, init: Callable[..., None],
             initargs: tuple = (), bar=None) -> None:  # fmt: skip
    """``run(job)`` for every job, after ``init(*initargs)`` once per process; ``bar`` (tqdm)
    advances by one per finished job. ``run`` and ``init`` must be module-level functions."""
    if workers == 1:
        init(*initargs)
        for job in jobs:
            run(job)
            if bar is not None:
                bar.update()
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers, initializer=init, initargs=initargs) as pool:
        for _ in pool.imap_unordered(run, jobs):
            if bar is not None:
                bar.update()
