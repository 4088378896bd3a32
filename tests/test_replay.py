"""Replays of the label loop on a real run's saved heads."""

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ambig_jax import challenge
from ambig_jax import replay
from ambig_jax.config import PRESETS, Rule
from ambig_jax.datasets import generator
from tests.conftest import generated

SMOKE = PRESETS["smoke"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    generator.save(generated(0), data_dir)
    out = tmp_path_factory.mktemp("out")
    challenge.run_sets([0], SMOKE, data_dir, out, "local", pictures=False,
                       log=lambda *_: None)
    return out / "00_toy_dataset"


def test_the_runs_own_config_repeats_the_run(toy_run):
    run = replay.load_run(toy_run)
    assert run.record.config == SMOKE  # the rule travels in the record
    again = replay.replay(run).resolution
    assert [row for row, _ in again.queries] == [q.row for q in run.record.queries]
    assert again.chosen_head == run.record.chosen_head
    assert again.estimate == run.record.estimate and again.decision == run.record.decision
    np.testing.assert_allclose(again.posteriors, run.record.posteriors)
    summary = replay.summarize([run], [replay.replay(run)])
    expected = run.record.true_accuracy if again.decision.submit else 0.8
    assert summary["score"] == pytest.approx(expected)


def test_another_rule_asks_other_rows_within_the_budget(toy_run):
    run = replay.load_run(toy_run)
    random_rows = replay.replay(run, SMOKE.replace(rule=Rule(decided=0.0)))
    rows = [row for row, _ in random_rows.resolution.queries]
    assert len(rows) == len(set(rows)) == 5  # every query a random row, none twice
    assert rows != [q.row for q in run.record.queries]
    head_accuracy = (run.probs.argmax(-1) == run.truth[None]).mean(axis=1)
    if random_rows.resolution.chosen_head != run.record.chosen_head:
        assert random_rows.accuracy == head_accuracy[random_rows.resolution.chosen_head]
    assert len(replay.replay(run, SMOKE.override(["budget=2"])).resolution.queries) == 2


def test_summary_counts_wrong_decisions(toy_run):
    run = replay.load_run(toy_run)
    out = replay.replay(run)
    decision = dataclasses.replace(out.resolution.decision,
                                   submit=not out.resolution.decision.submit)
    worst = int(np.argmin(run.record.head_accuracies))
    flipped = dataclasses.replace(out, resolution=dataclasses.replace(
        out.resolution, decision=decision, chosen_head=worst))
    right, wrong = replay.summarize([run], [out]), replay.summarize([run], [flipped])
    assert len(wrong["wrong"]) == 1 - len(right["wrong"])
    assert wrong["not_best_head"] == ["0/seed0"] and right["not_best_head"] == []
    est, truth = out.resolution.estimate, run.record.true_accuracy
    assert right["coverage"] == float(est.low <= truth <= est.high)
    assert right["interval"] == [SMOKE.rule.interval]
    assert set(right["decision_loss_per_seed"]) == {0}
    record = replay.as_record(run, out)  # the run's own rule gives back the run's record
    assert record == dataclasses.replace(run.record, timings=record.timings)


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
    (broken / "report.json").write_text("{")
    with pytest.raises(ValueError, match="report.json"):
        replay.load_run(broken)
    np.testing.assert_array_equal(replay.load_run(toy_run).truth.shape, (500,))


def test_the_shift_test_is_run_again_and_rethresholded(toy_run):
    run = replay.load_run(toy_run)
    tested, found = replay.with_shift_test(run)
    # the run's own test, repeated with its key: the toy target is shifted
    assert found.shifted and found == dataclasses.replace(run.record.shift,
                                                          seconds=found.seconds)
    assert replay.held_out(tested, SMOKE) is None
    # a threshold above the run's z calls it unshifted, but the run trained no held-out member
    lenient = SMOKE.override([f"rule.z_shifted={found.z + 1}"])
    # the toy's feature blocks passed: they show the shift whatever the threshold
    assert replay.held_out(tested, lenient) is None
    without_blocks = dataclasses.replace(run, record=dataclasses.replace(run.record, blocks=None))
    with pytest.raises(ValueError, match="shift_test=compute"):
        replay.replay(without_blocks, lenient)


def test_the_block_test_is_measured_again_for_older_runs(toy_run):
    run = replay.load_run(toy_run)
    saved = run.record.blocks
    assert saved.independent and saved.held_out_correct, saved.describe()  # the toy's two axes
    same, found = replay.with_block_test(run)
    assert same is run and found is None  # measured already: nothing to compute

    def with_blocks(blocks):
        return dataclasses.replace(run, record=dataclasses.replace(run.record, blocks=blocks))

    older = with_blocks(dataclasses.replace(saved, held_out_correct=(), held_out_rows=0))
    assert replay.replay(older).resolution.estimate.source == "target labels"
    measured, found = replay.with_block_test(older)
    # the run's own test, repeated with its key
    assert found.describe() == saved.describe() and measured.record.blocks is found
    np.testing.assert_array_equal(found.block, saved.block)
    # other blocks than the run's heads were trained on are refused
    moved = with_blocks(dataclasses.replace(older.record.blocks, block=~saved.block))
    with pytest.raises(ValueError, match="not the run's"):
        replay.with_block_test(moved)


def test_the_replay_command_starts_from_the_run_or_from_todays_rule(toy_run):
    from experiments import replay as command
    run = replay.load_run(toy_run)
    old = dataclasses.replace(run, record=dataclasses.replace(
        run.record, config=SMOKE.replace(rule=Rule(prior_noise=0.02, check_from=1.0))))
    assert command._config(old, ["rule.margin=0.02"]).rule == Rule(
        prior_noise=0.02, check_from=1.0, margin=0.02)
    assert command._config(old, ["default", "rule.margin=0.02"]).rule == Rule(margin=0.02)
    assert command._config(old, ["default"]) == SMOKE
    outcome = replay.replay(run)
    table = command._per_run_table([run], {"own": [outcome], "again": [outcome]}).splitlines()
    assert len(table) == 3 and table[2].startswith(f"| 00_toy_dataset | {SMOKE.seed} | ")
    assert table[2].count(f"true {outcome.accuracy:.3f}") == 2


def test_draws_ask_other_rows_and_average(toy_run):
    run = replay.load_run(toy_run)
    random_rows = SMOKE.replace(rule=Rule(decided=0.0))  # every row a draw of the loop's rng
    first, again, other = (replay.replay(run, random_rows, draw) for draw in (0, 0, 1))
    assert first.resolution.queries == again.resolution.queries  # a draw is reproducible
    assert first.resolution.queries != other.resolution.queries
    out = replay.replay(run)
    flipped = dataclasses.replace(out, resolution=dataclasses.replace(
        out.resolution, decision=dataclasses.replace(out.resolution.decision,
                                                     submit=not out.resolution.decision.submit)))
    one, other = replay.summarize([run], [out]), replay.summarize([run], [flipped])
    both = replay.summarize([run] * 2, [out, flipped], 2)
    wrong = one["wrong"] or other["wrong"]
    assert both["wrong"] == [f"{wrong[0]} (1/2)"]  # one of the two draws decided wrongly
    assert both["score"] == pytest.approx((one["score"] + other["score"]) / 2)


def test_agreement_strata_count_sure_rows_by_agreeing_heads():
    # 3 heads on 4 rows; head 0 is sure on rows 0-2 and unsure on row 3.
    probs = np.array([[[0.999, 0.001], [0.001, 0.999], [0.995, 0.005], [0.6, 0.4]],
                      [[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.9, 0.1]],
                      [[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.9, 0.1]]])
    truth = np.array([0, 1, 1, 0])
    rows, right = replay.agreement_strata(probs, truth, head=0)
    # row 0: all three agree, right; row 1: heads 0 and 2 agree, right; row 2: 0 and 1, wrong
    np.testing.assert_array_equal(rows, [0, 0, 2, 1])
    np.testing.assert_array_equal(right, [0, 0, 1, 1])
    rows, _ = replay.agreement_strata(probs, truth, head=0, min_confidence=0.5)
    assert rows.sum() == 4


def test_the_strata_command_reads_runs(toy_run):
    root = pathlib.Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "experiments.strata", f"--runs={toy_run}", "--groups=0-1+12,3",
         "--min_confidence=0.5"], cwd=root, env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert "| 3 | — | — | — | — |" in lines  # no run of set 3: no rows
    row = next(line for line in lines if line.startswith("| 0-1+12 |"))  # the toy set's group
    shares = [float(cell.split("(")[1].strip().rstrip(")")) for cell in row.split("|")[2:-1]
              if "(" in cell]
    assert result.stdout.startswith("1 runs;") and abs(sum(shares) - 1.0) < 0.02
