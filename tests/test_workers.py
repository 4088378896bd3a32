"""`workers`: jobs in spawned worker processes, their log lines relayed to the caller."""

import os

import pytest

from ambig_jax import workers


def _square_and_log(x: int) -> tuple[int, int]:
    """A job: logs a line through `workers.log`, returns x squared and its process id."""
    workers.log(f"job {x}")
    if x < 0:
        raise ValueError(f"negative {x}")
    return x * x, os.getpid()


def test_default_jobs_one_per_core_as_memory_allows():
    gib = 2**30
    assert workers.default_jobs(14, cores=2, memory=24 * gib, backend="cpu") == 2
    assert workers.default_jobs(14, cores=16, memory=16 * gib, backend="cpu") == 2
    assert workers.default_jobs(14, cores=8, memory=4 * gib, backend="cpu") == 1
    assert workers.default_jobs(1, cores=8, memory=64 * gib, backend="cpu") == 1
    assert workers.default_jobs(14, cores=8, memory=64 * gib, backend="gpu") == 1
    assert 1 <= workers.default_jobs(3) <= 3


def test_pool_runs_jobs_in_other_processes_and_relays_their_log():
    logged = []
    with workers.pool(2, logged.append) as pool:
        futures = [pool.submit(_square_and_log, x) for x in (3, -1, 4)]
        assert futures[0].result()[0] == 9 and futures[2].result()[0] == 16
        with pytest.raises(ValueError, match="negative -1"):  # a job's error reaches the caller
            futures[1].result()
        pids = {f.result()[1] for f in (futures[0], futures[2])}
    assert os.getpid() not in pids
    assert sorted(logged) == ["job -1", "job 3", "job 4"]  # every line, once the pool is shut


def test_log_prints_outside_a_worker(capsys):
    workers.log("a line")
    assert capsys.readouterr().out == "a line\n"
