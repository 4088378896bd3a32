"""The speed experiment's rows: one per H, ratios against the one-head baseline."""

import numpy as np

from ambig_jax.datasets import catalog
from ambig_jax.datasets import loader
from experiments import speed


def test_time_runs_reports_ratios_against_one_head():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 10)).astype(np.float32)
    ds = loader.from_arrays(catalog.CATALOG[0], x, (x[:, 0] > 0).astype(int), x[:32], x[32:])
    rows = speed.time_runs(ds, "divdis", [1, 2], steps=5, repeats=1)
    assert [r["heads"] for r in rows] == [1, 2]
    assert rows[0]["vs_separate_runs"] == 1.0 and rows[0]["vs_separate_runs_with_compile"] == 1.0
    for r in rows:
        assert r["train_seconds"] > 0 and r["compile_seconds"] > 0
        np.testing.assert_allclose(r["images_per_second_per_head"],
                                   5 * (128 + 256) / r["train_seconds"])
    np.testing.assert_allclose(rows[1]["vs_separate_runs"],
                               rows[1]["train_seconds"] / (2 * rows[0]["train_seconds"]))
    assert speed.time_runs(ds, "erm", [2], steps=5, repeats=1)[0]["vs_separate_runs"] is None
