"""Benchmark aggregation on hand-made rows, one tiny real benchmark run, the H timing."""

import dataclasses
import json

import numpy as np
import pytest

from ambig_jax import benchmark
from ambig_jax.config import Config
from ambig_jax.datasets import catalog
from ambig_jax.datasets import loader
from tests.records import fake_record

ROWS = [fake_record(0, "divdis", 1, 0.99, True, 0.95),
        fake_record(0, "divdis", 6, 0.70, False, points=2),
        fake_record(1, "divdis", 1, 0.97, True, 0.99),
        fake_record(1, "divdis", 6, 0.60, True, 0.65, 2),
        fake_record(0, "erm", 1, 0.75, False), fake_record(0, "erm", 6, 0.90, True, 0.9, 2)]


def test_challenge_score_uses_defaults_for_abstentions():
    scores = benchmark.challenge_scores(ROWS)
    assert scores["divdis"][0] == 0.99 + 2 * 0.8
    assert scores["divdis"][1] == 0.97 + 2 * 0.60
    assert scores["erm"] == {0: 0.8 + 2 * 0.90}


def test_summary_and_markdown():
    s = benchmark.summary(ROWS)
    assert s["divdis"]["points"] == 3
    np.testing.assert_allclose(s["divdis"]["score_mean"], (2.59 + 2.17) / 2)
    np.testing.assert_allclose(s["divdis"]["estimate_mae"], (0.04 + 0.02 + 0.05) / 3)
    np.testing.assert_allclose(s["erm"]["decision_loss_mean"], 0.0)  # abstained at 0.75 < 0.8
    table = benchmark.markdown(ROWS)
    assert "| 01_set | 0.980 [0.970] (0.990) SS | 0.750 [0.740] (0.760) A |" in table
    assert "| 06_set | 0.650 [0.640] (0.660) AS | 0.900 [0.890] (0.910) S |" in table
    # seed 1 submitted set 6 at 0.60 < 0.80 on 2 points: 0.4 lost, 0.2 per seed
    assert "| divdis | 2.380 (2.590, 2.170) | 3 | 0.200 | 0.037 | 5 |" in table
    assert "| divdis | 4.760 | 0.000, 0.400 (0.200) | 6/seed1+ | 0.037 |" in table
    assert "| all runs | 7.360 | 0.000, 0.400 (0.200) | divdis:6/seed1+ |" in table  # erm: none


def test_calibration_of_decisions_and_estimates():
    c = benchmark.calibration(ROWS[:4])  # divdis
    assert c["decision_loss_per_seed"] == {0: 0.0, 1: pytest.approx(0.4)}
    assert c["wrong"] == ["6/seed1+"] and c["interval"] == [0.8]
    # intervals: [0.90, 1.00] holds 0.99, [0.85, 0.95] misses 0.70, [0.94, 1.00] holds 0.97
    assert c["coverage"] in (0.5, 0.75)  # the last, [0.60, 0.70] at 0.60, sits on its edge
    missed = fake_record(2, "divdis", 1, 0.50, False, estimated=0.9)
    assert benchmark.calibration([missed])["wrong"] == []  # abstained below the default
    assert benchmark.calibration([missed])["coverage"] == 0.0
    kept_worse = dataclasses.replace(ROWS[0], head_accuracies=(0.90, 0.99))
    assert benchmark.calibration([kept_worse])["not_best_head"] == ["1/seed0"]


def test_runs_of_one_seed_and_other_embedding_families_are_other_samples():
    def of_family(row, folder):
        return dataclasses.replace(row, dataset=dataclasses.replace(
            row.dataset, path=f"/cache/generated/{folder}/public/{row.dataset.name}"))
    rows = [of_family(ROWS[3], "seed1"), of_family(ROWS[3], "seed1-relu"),
            of_family(ROWS[2], "seed1-conv")]
    c = benchmark.calibration(rows)
    assert c["wrong"] == ["6/seed1+", "6/seed1-relu+"]
    assert c["decision_loss_per_seed"] == {1: pytest.approx(0.4), "1-relu": pytest.approx(0.4),
                                           "1-conv": 0.0}
    assert c["decision_loss_mean"] == pytest.approx(0.8 / 3)


@pytest.mark.slow
def test_tiny_benchmark_runs_the_pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("AMBIG_JAX_CACHE", str(tmp_path / "cache"))
    rows = benchmark.run([0, 1], [0], ["divdis", "erm"], Config(num_heads=2, steps=100),
                              tmp_path / "bench", log=lambda *_: None)
    assert [(r.config.seed, r.config.strategy) for r in rows] == [
        (0, "divdis"), (0, "erm"), (1, "divdis"), (1, "erm")]
    assert all(r.labels_used <= 5 and r.head_accuracy <= r.best_head_accuracy + 1e-9
               for r in rows)
    assert all(0 <= r.true_accuracy <= 1 and r.timings.train > 0 for r in rows)
    run_dir = tmp_path / "bench" / "seed1" / "erm" / "00_toy_dataset"
    assert (run_dir / ("submission.csv" if rows[-1].submitted else "predictions.csv")).is_file()
    assert set(benchmark.challenge_scores(rows)) == {"divdis", "erm"}


def test_tables_round_trip_through_json(tmp_path):
    table = benchmark.write_tables(tmp_path, ROWS, {"machine": {"cpus": 2}})
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert saved["machine"] == {"cpus": 2} and "divdis" in saved["summary"]
    assert (tmp_path / "benchmark.md").read_text() == table + "\n"
    rows, extra = benchmark.read_tables(tmp_path)
    assert rows == ROWS and extra == {"machine": {"cpus": 2}}


def test_rows_without_hidden_labels_are_refused():
    unscored = dataclasses.replace(ROWS[0], true_accuracy=None)
    with pytest.raises(ValueError, match="hidden labels"):
        benchmark.challenge_scores([unscored])


@pytest.mark.slow
def test_time_heads_reports_ratios_against_one_head():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 10)).astype(np.float32)
    ds = loader.from_arrays(catalog.CATALOG[0], x, (x[:, 0] > 0).astype(int), x[:32], x[32:])
    five = Config(steps=5)
    rows = benchmark.time_heads(ds, five, "divdis", [1, 2], repeats=1)
    assert [r["heads"] for r in rows] == [1, 2]
    assert [r["rows_per_step"] for r in rows] == [128, 128 + 256]  # one divdis head: no pair
    for r in rows:
        assert r["train_seconds"] > 0 and r["compile_seconds"] > 0
        np.testing.assert_allclose(r["images_per_second_per_head"],
                                   5 * r["rows_per_step"] / r["train_seconds"])
    assert rows[0]["vs_separate_runs"] == 1.0 and rows[0]["vs_separate_runs_with_compile"] == 1.0
    assert rows[1]["vs_separate_runs"] is None  # the one-head run skipped the pool: no baseline
    erm = benchmark.time_heads(ds, five, "erm", [1, 2], repeats=1)
    np.testing.assert_allclose(erm[1]["vs_separate_runs"],
                               erm[1]["train_seconds"] / (2 * erm[0]["train_seconds"]))
    assert benchmark.time_heads(ds, five, "erm", [2], repeats=1)[0]["vs_separate_runs"] is None
    # the arithmetic: MLP 10 -> 256 -> 128 -> 2 per head, forward and backward on the rows
    weights = 10 * 256 + 256 * 128 + 128 * 2
    for r, heads in zip(erm, (1, 2)):
        assert r["matmul_shape"] == (heads, 128, 10, 256) and r["matmul_gflops"] > 0
        expected = 6 * weights * 128 * heads  # ~2 FLOPs per weight and row, 3 passes
        assert 0.5 * expected < r["gflop_per_step"] * 1e9 < 2 * expected
        np.testing.assert_allclose(r["gflops_achieved"],
                                   r["gflop_per_step"] * 5 / r["train_seconds"])


@pytest.mark.slow
def test_supervised_ceilings_learn_the_given_truth_and_score_the_other_half():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    ds = loader.from_arrays(catalog.CATALOG[0], x[:40], y[:40], x[40:100], x[100:])
    y_target, y_unlabeled = ds.to_index(y[100:]), ds.to_index(y[40:100])
    config = Config(steps=200)
    told = benchmark.supervised_ceilings(config, ds, y_target, y_unlabeled)
    assert told["train_rows"] == {"half_target": 100, "with_unlabeled": 160}
    assert told["test_rows"] == 100
    assert told["half_target"] >= 0.9 and told["with_unlabeled"] >= 0.9
    # lies about the unlabeled rows are learnt too: the second figure must use them
    lied = benchmark.supervised_ceilings(config.replace(steps=600), ds, y_target,
                                         1 - y_unlabeled)
    assert lied["half_target"] >= 0.9 and lied["with_unlabeled"] < 0.8
    assert told["both_halves"] is None
    assert benchmark.supervised_ceilings(config, ds, y_target)["with_unlabeled"] is None
    # both halves: every one of the 200 target rows scored once, by the member of the other half
    crossed = benchmark.supervised_ceilings(config, ds, y_target, seed=0, both_halves=True)
    assert crossed["half_target"] == told["half_target"]  # the first member is the one split's
    right = crossed["both_halves"] * 200
    assert crossed["both_halves"] >= 0.9 and right == pytest.approx(round(right), abs=1e-6)
    p = crossed["both_halves"]
    assert crossed["both_halves_se"] == pytest.approx(np.sqrt(p * (1 - p) / 200))
