"""Fault injection: the whole pipeline asks a real leaderboard that refuses, redirects, answers
garbage, answers about another datum, or dies between counting a datum and answering. The run
fails with a clear error (or finishes without that label); a rerun against the healed server
finishes the set, and the server never grants this user more than 5 labels."""

import re
import sqlite3

import pytest

from ambig_jax import challenge
from ambig_jax import oracle
from ambig_jax.config import PRESETS
from ambig_jax.record import RunRecord
from tests import servers

SMOKE = PRESETS["smoke"]


def granted(board, username="alice", dataset_id=0) -> int:
    with sqlite3.connect(board.state_path) as db:
        return db.execute("SELECT COUNT(*) FROM reveals WHERE username=? AND dataset=?",
                          (username, dataset_id)).fetchone()[0]


@pytest.mark.parametrize("fault,error,counted", [
    ("refuse", r"OracleRefused: .*refused \(HTTP 403\)", 0),
    ("redirect", r"OracleRefused: .*redirects \(HTTP 307\)", 0),
    ("garbage", r"OracleError: .*malformed answer", 1),
    ("other_datum", r"OracleRefused: .*answered for data set 0 datum", 1),
    pytest.param("die", r"OracleUnavailable: .*connection failed", 1,  # 3.5 s of retries
                 marks=pytest.mark.slow)])
def test_a_rerun_after_a_fault_finishes_the_set_within_the_budget(
        toy_dir, tmp_path, monkeypatch, fault, error, counted):
    monkeypatch.setenv(oracle.USERNAME_ENV, "alice")
    monkeypatch.setenv(oracle.PASSWORD_ENV, servers.USERS["alice"])
    out = tmp_path / "out"
    with servers.faulty_leaderboard(toy_dir, tmp_path / "state.sqlite") as (url, board, faults):
        faults["name"] = fault
        first, = challenge.run_sets([0], SMOKE, toy_dir, out, "http", url, pictures=False,
                                    log=lambda *_: None)
        assert isinstance(first, challenge.Failure) and re.search(error, first.error), first
        assert granted(board) == counted  # what the server counted before failing
        faults["name"] = None  # the server heals
        again, = challenge.run_sets([0], SMOKE, toy_dir, out, "http", url, pictures=False,
                                    log=lambda *_: None)
        assert isinstance(again, RunRecord), again
        assert 4 <= again.labels_used <= 5 and granted(board) <= 5
        assert (out / "00_toy_dataset" / "report.json").is_file()
