"""`experiments.gap`: the best head against the supervised ceiling, per family."""

import os
import pathlib
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_gap_runs_each_family_on_the_embedded_sets_only(tmp_path):
    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu", AMBIG_JAX_CACHE=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "experiments.gap", "--dataset=0,23", "--seeds=0",
         "--embeddings=tanh,conv", "--config=smoke", "--noprogress"],
        cwd=root, env=env, capture_output=True, text=True, check=True)
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in result.stdout.splitlines() if line.startswith("| ")]
    runs = [r for r in rows if len(r) == 8 and r[2] == "0"]
    assert [(r[0], r[1]) for r in runs] == [("-", "0"), ("tanh", "23"), ("conv", "23")]
    for _, _, _, best, student, one_split, both, gap in runs:
        ceiling, se = (float(v) for v in both.split("±"))
        assert 0.0 <= float(best) <= 1.0 and 0.0 <= float(student) <= 1.0
        assert 0.4 <= float(one_split) <= 1.0
        assert 0.4 <= ceiling <= 1.0 and 0.0 <= se <= 0.1
        assert float(gap) == pytest.approx(ceiling - float(best), abs=2e-3)
    summary = [r for r in rows if len(r) == 9 and r[2] == "1"]
    assert len(summary) == 3 and all(c.endswith("of 1") for r in summary for c in r[6:])
    assert (tmp_path / "generated" / "seed0-conv" / "hidden" / "23.npy").is_file()
