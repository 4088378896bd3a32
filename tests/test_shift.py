"""The shift test on the toy set (shifted: on its labeled rows x2 > 0 exactly when x1 < 0) and on
an i.i.d. split of those labeled rows (not shifted), with real training; and the held-out
estimate it hands the label loop."""

import dataclasses
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from ambig_jax import disambiguation as dis
from ambig_jax import shift
from ambig_jax.config import Config
from ambig_jax.datasets import loader
from tests.conftest import generated

CONFIG = Config(steps=400)


@pytest.fixture(scope="module")
def toy():
    g = generated(0)
    return g, loader.from_arrays(g.info, g.x["labeled"], g.y["labeled"], g.x["unlabeled"],
                                 g.x["target"])


@pytest.mark.slow
def test_a_mixed_target_is_shifted(toy):
    _, ds = toy
    found = shift.detect_shift(CONFIG, ds, jax.random.key(0))
    # the labeled rows fill two quadrants, the target all four: about 3/4 is reachable
    assert found.shifted and found.balanced_accuracy > 0.65 and found.z > CONFIG.rule.z_shifted
    assert found.held_out is None and found.seconds > 0


@pytest.mark.slow
def test_a_target_split_like_the_labeled_rows_is_not(toy):
    g, _ = toy
    x, y = g.x["labeled"], g.y["labeled"]
    ds = loader.from_arrays(g.info, x[:300], y[:300], g.x["unlabeled"], x[300:])
    found = shift.detect_shift(CONFIG, ds, jax.random.key(0))
    assert not found.shifted and abs(found.balanced_accuracy - 0.5) < 0.1
    held = found.held_out
    assert held.rows == 150 and held.correct >= 0.95 * held.rows  # x1 < 0 is easy to learn
    assert held.heads == (0,)  # hybrid: head 0 is the plain ERM anchor
    again = shift.detect_shift(CONFIG, ds, jax.random.key(0))
    assert again.held_out == held and again.z == found.z  # deterministic given the key


def test_conclude_estimates_a_kept_erm_head_from_the_held_out_rows():
    truth = np.array([0, 1] * 10)
    probs = np.stack([np.eye(2)[truth], np.eye(2)[1 - truth]]) * 0.98 + 0.01
    revealed = {0: 1, 1: 1, 2: 0, 3: 1, 4: 0}  # one of five labels contradicts head 0
    held = dis.HeldOut(correct=490, rows=500, heads=(0,))
    posterior = np.array([0.9, 0.1])
    head, est, decision = dis.conclude(probs, posterior, revealed, 0.8, held_out=held)
    assert head == 0 and est.source == "held-out labeled rows"
    assert est.accuracy == pytest.approx(491 / 502, abs=1e-3)  # Beta(491, 11) mean
    # what 20 target rows realise at that rate: a multiple of 1/20, often all 20
    assert est.low in (0.9, 0.95) and est.high == 1.0
    assert est.label_errors == 1 and decision.submit and "held-out" in decision.reason
    # Labels that favour a pushed head do not override the held-out rows: the anchor stays.
    head, _, _ = dis.conclude(probs, np.array([0.1, 0.9]), revealed, 0.8, held_out=held)
    assert head == 0
    # Without the test (a shifted target), or without an ERM head, the labels speak.
    for none in (None, dis.HeldOut(correct=490, rows=500, heads=())):
        head, plain, _ = dis.conclude(probs, np.array([0.1, 0.9]), revealed, 0.8, held_out=none)
        assert head == 1 and plain.source == "target labels"
        assert plain == dis.estimate_accuracy(probs, np.array([0.1, 0.9]), probs[1], revealed)


def test_the_classifier_trains_shift_steps_and_the_anchor_stand_in_steps(toy, monkeypatch):
    """The labeled-vs-target classifier trains `shift_steps` (a subtle shift needs them), scored
    a quarter of the way and at the end; the member that stands in for the ERM anchor trains
    like the anchor, `steps`."""
    g, _ = toy
    x, y = g.x["labeled"], g.y["labeled"]
    ds = loader.from_arrays(g.info, x[:300], y[:300], g.x["unlabeled"], x[300:])
    staged, steps = [], []
    train_in_stages, train_member = shift.training.train_in_stages, shift.training.train_member
    monkeypatch.setattr(shift.training, "train_in_stages",
                        lambda config, *a, **k: staged.append((config.steps, a[2]))
                        or train_in_stages(config, *a, **k))
    monkeypatch.setattr(shift.training, "train_member",
                        lambda config, *a, **k: steps.append(config.steps)
                        or train_member(config, *a, **k))
    found = shift.detect_shift(Config(steps=20, shift_steps=40), ds, jax.random.key(0))
    assert not found.shifted and found.steps == 40 and steps == [20]
    # chunk_length(40) = 1: a quarter is 10 steps; then the anchor stand-in (through `train`)
    assert staged == [(40, (10, 40))] * 2 + [(20, (20,))]
    assert "at 40 steps" in found.describe()
    with pytest.raises(ValueError, match="shift_steps must be >= 1"):
        Config(shift_steps=0)


@pytest.mark.slow
def test_a_plain_shift_is_called_at_the_first_look(toy, monkeypatch):
    """On the toy set the members see the shift long before `shift_steps`: the test stops at
    the first look (a whole number of 8-step chunks near a quarter of 400), with the figures
    that members trained that long give."""
    _, ds = toy
    config = Config(steps=20, shift_steps=400, hidden=(32,))
    found = shift.detect_shift(config, ds, jax.random.key(0))
    assert found.shifted and found.steps == 96 and found.held_out is None
    monkeypatch.setattr(shift, "LOOKS", ())  # one look, at the end
    alone = shift.detect_shift(config.replace(shift_steps=96), ds, jax.random.key(0))
    assert alone == dataclasses.replace(found, seconds=alone.seconds)


@pytest.mark.slow
def test_the_shift_command_prints_each_call(tmp_path):
    """`experiments.shift` on the toy set, generated into a private cache."""
    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu", AMBIG_JAX_CACHE=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "experiments.shift", "--seeds=0", "--dataset=0",
         "--config=smoke", "--set", "shift_steps=200", "--noprogress"],
        cwd=root, env=env, capture_output=True, text=True, check=True)
    row = next(line for line in result.stdout.splitlines() if "00_toy_dataset" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "0" and cells[4] == "yes" and float(cells[3]) > 3.0  # the toy is shifted
