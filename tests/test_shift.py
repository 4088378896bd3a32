"""The shift test on the toy set (shifted: on its labeled rows x2 > 0 exactly when x1 < 0) and on
an i.i.d. split of those labeled rows (not shifted), with real training; and the held-out
estimate it hands the label loop."""

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
    assert est.low < 0.98 < est.high and est.high - est.low < 0.03
    assert est.label_errors == 1 and decision.submit and "held-out" in decision.reason
    # Labels that favour a pushed head do not override the held-out rows: the anchor stays.
    head, _, _ = dis.conclude(probs, np.array([0.1, 0.9]), revealed, 0.8, held_out=held)
    assert head == 0
    # Without the test (a shifted target), or without an ERM head, the labels speak.
    for none in (None, dis.HeldOut(correct=490, rows=500, heads=())):
        head, plain, _ = dis.conclude(probs, np.array([0.1, 0.9]), revealed, 0.8, held_out=none)
        assert head == 1 and plain.source == "target labels"
        assert plain == dis.estimate_accuracy(probs, np.array([0.1, 0.9]), probs[1], revealed)
