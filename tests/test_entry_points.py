"""The entry points as a user meets them: bad flags stop before any work, with a message."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_entry_point(tmp_path, *args):
    env = dict(os.environ, JAX_PLATFORMS="cpu", AMBIG_JAX_CACHE=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_set_that_cannot_be_generated_stops_the_run_before_any_set_is_built(tmp_path):
    result = run_entry_point(tmp_path, "experiments.run", "--dataset=0,99",
                             f"--output_dir={tmp_path / 'out'}", "--noprogress")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "set 99 cannot be generated offline" in result.stderr
    assert not (tmp_path / "cache" / "generated").exists()
    assert not (tmp_path / "out").exists()


def test_a_benchmark_with_an_unreadable_set_list_keeps_the_earlier_results(tmp_path):
    earlier = tmp_path / "bench" / "benchmark.json"
    earlier.parent.mkdir()
    earlier.write_text("{}")
    result = run_entry_point(tmp_path, "experiments.benchmark", "--dataset=1;2",
                             f"--output_dir={earlier.parent}", "--overwrite")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "comma-separated ids, got '1;2'" in result.stderr
    assert earlier.read_text() == "{}"


def test_flags_a_run_cannot_use_are_refused_with_what_is_wrong(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    refused = {
        ("experiments.gap", "--seeds=0,x"): "--seeds takes comma-separated integers",
        ("experiments.run", "--dataset=0", "--oracle=http"): "--oracle=http needs --oracle_url",
        ("experiments.run", "--dataset=0", f"--output_dir={a_file}"): "is a file, not a folder",
    }
    for args, message in refused.items():
        result = run_entry_point(tmp_path, *args)
        assert result.returncode == 1, args
        assert message in result.stderr and "Traceback" not in result.stderr, args
    assert not (tmp_path / "cache" / "generated").exists()
