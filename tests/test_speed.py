"""The speed command end to end on the toy set: one table row per set, strategy and H."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_speed_reports_the_arithmetic_per_set(tmp_path):
    env = dict(os.environ, AMBIG_JAX_CACHE=str(tmp_path), JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-m", "experiments.speed", "--dataset=0", "--heads=1,2",
         "--strategies=erm", "--config=smoke", "--set", "steps=20", "--repeats=1",
         "--noprogress"], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines()
            if line.startswith("| 00_")]
    assert [(r[2].strip(), r[3].strip()) for r in rows] == [("erm", "1"), ("erm", "2")]
    for row in rows:
        gflop_per_step, tflop_per_run = float(row[10]), float(row[11])
        assert gflop_per_step > 0
        assert abs(tflop_per_run - 20 * gflop_per_step / 1e3) <= 0.01 * tflop_per_run
    assert (tmp_path / "xla").is_dir()  # the compilation cache is on by default
