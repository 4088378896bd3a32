"""The pictures of a run are written, non-empty, as PNG files that report.html shows."""

import json

import numpy as np
import pytest

from ambig_jax import challenge
from ambig_jax import plots
from ambig_jax.config import PRESETS
from ambig_jax.datasets import catalog
from ambig_jax.datasets import generator
from tests.conftest import generated

PNG = b"\x89PNG\r\n\x1a\n"
SMOKE = PRESETS["smoke"]


@pytest.mark.slow  # the fast tier's pipeline smoke test draws the toy set's pictures
@pytest.mark.parametrize("dataset_id", [0, 1, 23])  # points, images, 99-d vectors
def test_run_writes_every_figure_and_the_html(dataset_id, tmp_path):
    data_dir = tmp_path / "data"
    generator.save(generated(dataset_id), data_dir)
    challenge.run_sets([dataset_id], SMOKE.replace(num_heads=3, steps=30), data_dir,
                       tmp_path / "out", "local", log=lambda *_: None)
    run_dir = tmp_path / "out" / catalog.CATALOG[dataset_id].name
    page = (run_dir / "report.html").read_text()
    for name in plots.FIGURES:
        png = run_dir / f"{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 2000, name
        assert f'src="{name}.png"' in page
    report = json.loads((run_dir / "report.json").read_text())
    assert ("SUBMIT" if report["decision"]["submit"] else "ABSTAIN") in page
    shift = report["shift"]
    assert f"(z {shift['z']:.1f} at {shift['steps']} steps)" in page  # the shift test's line
    heads = np.load(run_dir / "heads.npz")
    assert heads["occlusion"].shape[:2] == heads["gradient"].shape[:2] == (3, 2)
    assert not list(run_dir.glob(".*"))  # no temporary file left behind


@pytest.mark.slow
def test_no_pictures_when_asked(tmp_path):
    data_dir = tmp_path / "data"
    generator.save(generated(0), data_dir)
    challenge.run_sets([0], SMOKE.replace(num_heads=2, steps=30), data_dir, tmp_path / "out",
                       "local", pictures=False, log=lambda *_: None)
    run_dir = tmp_path / "out" / "00_toy_dataset"
    assert list(run_dir.glob("*.csv"))
    assert not list(run_dir.glob("*.png")) and not (run_dir / "report.html").exists()


def test_as_picture_handles_every_layout():
    assert plots._as_picture(np.zeros((1, 28, 56))).shape == (28, 56)
    assert plots._as_picture(np.arange(3 * 4 * 5.0).reshape(3, 4, 5)).shape == (4, 5, 3)
    assert plots._as_picture(np.zeros(99)).shape == (1, 99)
