"""Refinement: the confident-row cut on hand-made probabilities, and a student that repairs a
teacher's unsure slips on the toy set (real training, target labels for scoring only)."""

import jax
import numpy as np
import pytest

from ambig_jax import pipeline
from ambig_jax import refinement
from ambig_jax import training
from ambig_jax.config import Config
from ambig_jax.datasets import loader
from tests.conftest import generated


def test_confident_rows_cut_each_predicted_class_separately():
    # class 0 is predicted with confidences 0.9..0.6, class 1 with 0.99..0.96
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4],
                      [0.01, 0.99], [0.02, 0.98], [0.03, 0.97], [0.04, 0.96]])
    keep = refinement.confident_rows(probs, 0.5)
    np.testing.assert_array_equal(keep, [True, True, False, False, True, True, False, False])
    assert refinement.confident_rows(probs, 0.0).all()
    # each class loses its own least confident quarter (a global cut would take two of class 0)
    np.testing.assert_array_equal(refinement.confident_rows(probs, 0.25),
                                  [True, True, True, False, True, True, True, False])


def test_the_cut_within_the_rivals_classes_keeps_every_cells_share():
    # a head that leans on its rival: sure where the rival agrees with it, unsure where not
    sure, unsure = [0.99, 0.98, 0.97, 0.96], [0.7, 0.68, 0.66, 0.64]
    probs = np.array([[p, 1 - p] for p in sure + unsure] + [[1 - p, p] for p in sure + unsure])
    rival = np.array([0] * 4 + [1] * 4 + [1] * 4 + [0] * 4)
    # per class alone, the cut takes every row where the rival disagrees: on the rows kept,
    # the rival's class foretells the head's
    plain = refinement.confident_rows(probs, 0.5)
    assert not plain[rival != probs.argmax(-1)].any()
    cells = refinement.confident_rows(probs, 0.5, strata=rival)
    np.testing.assert_array_equal(cells, [True, True, False, False] * 4)
    labels, taught = refinement.taught_rows(probs, 0.5, {5: 1}, strata=rival)
    np.testing.assert_array_equal(taught, cells | (np.arange(16) == 5))
    assert labels[5] == 1 and labels[4] == 0


def test_the_rival_is_the_head_least_dependent_on_the_kept_one():
    rng = np.random.default_rng(0)
    kept = rng.integers(0, 2, 400)
    independent = rng.integers(0, 2, 400)
    leaning = np.where(rng.random(400) < 0.3, kept, independent)
    classes = np.stack([leaning, kept, kept, independent])
    assert refinement.rival(classes, 1, 2) == 3
    assert refinement.rival(classes, 3, 2) == 1  # the one that leans is not independent of it
    assert refinement.rival(classes[:1], 0, 2) is None


@pytest.fixture(scope="module")
def toy():
    g = generated(0)
    ds = loader.from_arrays(g.info, g.x["labeled"], g.y["labeled"], g.x["unlabeled"],
                            g.x["target"])
    return ds, ds.to_index(g.y["target"])


@pytest.mark.slow
def test_student_repairs_the_unsure_slips_of_a_teacher(toy):
    ds, truth = toy
    rng = np.random.default_rng(0)
    flipped = rng.random(len(truth)) < 0.08  # the teacher's slips, each made without confidence
    teacher = np.where(flipped, 1 - truth, truth)
    confidence = np.where(flipped, 0.55, rng.uniform(0.8, 1.0, len(truth)))
    probs = np.stack([np.where(teacher == 0, confidence, 1 - confidence),
                      np.where(teacher == 1, confidence, 1 - confidence)], axis=-1)
    revealed = {int(np.flatnonzero(flipped)[0]): int(truth[flipped][0])}
    result = refinement.refine(Config(steps=600), ds, probs, revealed, jax.random.key(0))

    assert (teacher == truth).mean() < 0.93
    assert (result.predictions == truth).mean() >= 0.97
    assert result.taught[flipped].sum() == len(revealed)  # slips left out, the label kept
    assert all(result.taught[row] for row in revealed)
    assert result.changed == int(np.sum(result.predictions != teacher))
    assert result.probs.shape == probs.shape and result.seconds > 0


def test_an_unshifted_target_teaches_the_labeled_rows_too(toy, monkeypatch):
    ds, _ = toy
    taught = []
    train_member = training.train_member

    def spy(config, dataset, x, y, *args, **kwargs):
        taught.append((x, y))
        return train_member(config.replace(steps=2), dataset, x, y, *args, **kwargs)

    monkeypatch.setattr(training, "train_member", spy)
    probs = np.tile([[0.9, 0.1]], (len(ds.x_target), 1))
    probs[::2] = [0.2, 0.8]
    for with_labeled in (False, True):
        result = refinement.refine(Config(), ds, probs, {3: 0}, jax.random.key(0),
                                   with_labeled=with_labeled)
        x, y = taught[-1]
        assert result.labeled_rows == (len(ds.y_labeled) if with_labeled else 0)
        rows = ds.x_target[result.taught]
        labels = np.where(np.arange(len(probs)) % 2 == 0, 1, 0)[result.taught]
        labels[np.flatnonzero(result.taught) == 3] = 0
        if with_labeled:
            np.testing.assert_array_equal(x, np.concatenate([ds.x_labeled, rows]))
            np.testing.assert_array_equal(y, np.concatenate([ds.y_labeled, labels]))
        else:
            np.testing.assert_array_equal(x, rows)
            np.testing.assert_array_equal(y, labels)


def test_the_student_sees_only_what_the_kept_head_saw(toy):
    # a teacher that follows the toy's second coordinate, x2 > 0 (class 0 where x2 > 0)
    ds, _ = toy
    teacher = (ds.x_target[:, 1] <= 0).astype(int)
    probs = np.eye(2)[teacher] * 0.9 + 0.05
    agreement = {}
    for name, mask in (("every input", None), ("x1 only", np.array([1.0, 0.0], np.float32))):
        result = refinement.refine(Config(steps=200), ds, probs, {}, jax.random.key(0),
                                   mask=mask)
        agreement[name] = float(np.mean(result.predictions == teacher))
    assert agreement["every input"] > 0.95, agreement
    assert agreement["x1 only"] < 0.65, agreement  # x2 is hidden; x1 is independent of it


def test_the_anchor_is_its_student_before_the_labels(toy, monkeypatch):
    ds, _ = toy
    config = Config(num_heads=4, steps=100, hidden=(16,), batch_pool=128, pair_replicates=1)
    key, lines = jax.random.key(1), []
    plain, _ = pipeline.train_heads(config.replace(anchor_student=False), ds, key,
                                    log=lambda _: None)
    ensemble, _ = pipeline.train_heads(config, ds, key, log=lines.append)
    assert plain.anchor_student is None and ensemble.anchor_student is not None
    before, probs = plain.predict_proba(ds.x_target), ensemble.predict_proba(ds.x_target)
    np.testing.assert_array_equal(probs[1:], before[1:])  # the pushed heads as trained
    np.testing.assert_array_equal(probs[0], ensemble.anchor_student.predict_proba(ds.x_target)[0])
    assert np.mean(probs[0].argmax(-1) == before[0].argmax(-1)) > 0.9  # it follows its teacher
    replaced = refinement.with_anchor_student(config, ds, plain, jax.random.key(2))
    assert replaced.train_seconds == pytest.approx(
        plain.train_seconds + replaced.anchor_student.train_seconds)
    assert any("the ERM anchor is its student" in line for line in lines)
    # no anchor, no student
    divdis, _ = pipeline.train_heads(config.replace(strategy="divdis"), ds, key,
                                     log=lambda _: None)
    assert divdis.anchor_student is None

    taught = []
    train_student = refinement.train_student

    def spy(*args, with_labeled=False, **kwargs):
        taught.append(with_labeled)
        return train_student(*args, with_labeled=with_labeled, **kwargs)

    monkeypatch.setattr(refinement, "train_student", spy)
    for shifted in (True, False):  # a target drawn like the labeled rows teaches them too
        pipeline.train_heads(config.replace(steps=2, feature_blocks=False), ds, key,
                             log=lambda _: None, shifted=shifted)
    assert taught == [False, True]


def test_config_checks_refinement_and_schedule():
    with pytest.raises(ValueError, match="refine_drop"):
        Config(refine_drop=1.0)
    with pytest.raises(ValueError, match="schedule"):
        Config(schedule="linear")
