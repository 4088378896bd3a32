"""Replays of the label loop on a real run's saved heads."""

import json
import shutil

import numpy as np
import pytest

from ambig_jax import challenge
from ambig_jax import replay
from ambig_jax.config import Config
from ambig_jax.datasets import generator
from tests.conftest import generated


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    generator.save(generated(0), data_dir)
    out = tmp_path_factory.mktemp("out")
    challenge.run_sets([0], Config(num_heads=4, steps=300), data_dir, out, "local",
                       pictures=False, log=lambda *_: None)
    return out / "00_toy_dataset"


def test_the_runs_own_rule_repeats_the_run(toy_run):
    run = replay.load_run(toy_run)
    report = json.loads((toy_run / "report.json").read_text())
    again = replay.replay(run)
    assert again.queries == [q["row"] for q in report["queries"]] == run.queries
    assert again.chosen_head == report["chosen_head"]
    assert again.estimate.accuracy == pytest.approx(report["estimate"]["accuracy"])
    assert again.decision.submit == report["decision"]["submit"]
    assert again.accuracy == report["true_accuracy"]  # same head: the written accuracy
    summary = replay.summarize([run], [again])
    expected = report["true_accuracy"] if again.decision.submit else 0.8
    assert summary["score"] == pytest.approx(expected)


def test_another_rule_asks_other_rows_within_the_budget(toy_run):
    run = replay.load_run(toy_run)
    random_rows = replay.replay(run, decided=0.0)  # every query is a random row
    assert len(random_rows.queries) == len(set(random_rows.queries)) == 5
    assert random_rows.queries != run.queries
    head_accuracy = (run.probs.argmax(-1) == run.truth[None]).mean(axis=1)
    if random_rows.chosen_head != run.chosen_head:
        assert random_rows.accuracy == head_accuracy[random_rows.chosen_head]


def test_summary_counts_wrong_decisions(toy_run):
    run = replay.load_run(toy_run)
    out = replay.replay(run)
    flipped = replay.Outcome(queries=out.queries, chosen_head=out.chosen_head,
                             estimate=out.estimate, decision=out.decision.__class__(
                                 not out.decision.submit, "flipped"),
                             accuracy=out.accuracy, best_head=False)
    right, wrong = replay.summarize([run], [out]), replay.summarize([run], [flipped])
    assert len(wrong["wrong"]) == 1 - len(right["wrong"])
    assert wrong["not_best_head"] == ["0/seed0"]


def test_load_run_names_what_is_missing(toy_run, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(toy_run, broken)
    (broken / "heads.npz").unlink()
    with pytest.raises(ValueError, match="heads.npz"):
        replay.load_run(broken)
    shutil.copy(toy_run / "heads.npz", broken / "heads.npz")
    report = json.loads((broken / "report.json").read_text())
    report["dataset"]["path"] = str(tmp_path / "public" / "00_toy_dataset")
    (broken / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="no hidden labels"):
        replay.load_run(broken)
    np.testing.assert_array_equal(replay.load_run(toy_run).truth.shape, (500,))


def test_the_shift_test_is_run_again_on_the_runs_set(toy_run):
    run = replay.load_run(toy_run)
    report = json.loads((toy_run / "report.json").read_text())
    assert run.config.num_heads == 4 and run.config.steps == 300
    tested, found = replay.with_shift_test(run)
    # the run's own test, repeated with its key: the toy target is shifted
    assert found.shifted and found.z == pytest.approx(report["shift"]["z"])
    assert tested.held_out is None and report["shift"]["held_out"] is None
