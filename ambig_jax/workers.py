"""Independent jobs (a set's run, a gap measure) in worker processes, several at once.

A job keeps one core busy for much of its time (the label loop, the numpy between trainings,
small programs), so on a CPU a second job fills the other core: `--dataset=all` takes 0.76 of
the time of one set at a time on this project's 2-core machines (docs/speed.md, "Two sets at
once"). Workers are spawned, not forked (a forked JAX runtime can deadlock); they use the
caller's compilation cache and draw no progress bars, and what they `log` reaches the caller's
log as it is written, through one queue.
"""

import concurrent.futures
import contextlib
import multiprocessing
import os
import threading

import jax

from ambig_jax import progress
from ambig_jax import training

MEMORY_PER_JOB = 6 * 2**30  # bytes a job's process may need: 888's run peaks at 4.3 GB


def default_jobs(num_jobs: int, cores: int | None = None, memory: int | None = None,
                 backend: str | None = None) -> int:
    """How many jobs to run at once by default: one per CPU core this process may use, at most
    one per `MEMORY_PER_JOB` bytes of the machine's memory, and one on a GPU or TPU (the
    processes would share its memory). Unknown figures are read from this machine."""
    backend = jax.default_backend() if backend is None else backend
    if backend != "cpu":
        return 1
    if cores is None:
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count() or 1)
    if memory is None:
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # not a POSIX system: cores decide
            memory = cores * MEMORY_PER_JOB
    return max(1, min(num_jobs, cores, memory // MEMORY_PER_JOB))


@contextlib.contextmanager
def pool(jobs: int, log=print):
    """A `concurrent.futures.ProcessPoolExecutor` of `jobs` spawned workers, whose `log`
    lines go to the caller's `log` (from a relay thread) until the block ends. Submit
    module-level functions with picklable arguments."""
    context = multiprocessing.get_context("spawn")
    lines = context.Queue()
    relay = threading.Thread(target=lambda: [log(line) for line in iter(lines.get, None)],
                             daemon=True)
    relay.start()
    try:
        with concurrent.futures.ProcessPoolExecutor(
                jobs, mp_context=context, initializer=_start_worker,
                initargs=(lines, jax.config.jax_compilation_cache_dir)) as executor:
            yield executor
    finally:
        lines.put(None)
        relay.join()


_sink = print  # where `log` writes: the caller's queue in a worker (`_start_worker`)


def log(line: str) -> None:
    """A job's log: in a worker process, a line of the caller's log; elsewhere, printed."""
    _sink(line)


def _start_worker(lines, compilation_cache_dir: str | None) -> None:
    """A worker's setup: its log lines go to the caller's queue, no progress bars (several
    processes cannot share a terminal line), the caller's compilation cache."""
    global _sink
    _sink = lines.put
    progress.set_enabled(False)
    if compilation_cache_dir:
        training.use_compilation_cache(compilation_cache_dir)
