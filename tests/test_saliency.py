"""Saliency maps: shapes, counts, and that occlusion finds the feature each head follows."""

import jax
import numpy as np
import pytest

from ambig_jax import refinement
from ambig_jax import saliency
from ambig_jax import training
from ambig_jax.config import Config
from ambig_jax.datasets import catalog
from ambig_jax.datasets import loader
from tests.conftest import generated


def _tiny_images(rng):
    x = rng.normal(size=(40, 1, 8, 12)).astype(np.float32)
    y = (x[:, 0, :, :6].mean(axis=(1, 2)) > 0).astype(int)
    return loader.from_arrays(catalog.CATALOG[1], x, y, x[:20], x[20:])


@pytest.mark.slow
def test_maps_have_one_picture_per_head_and_class():
    ds = _tiny_images(np.random.default_rng(0))
    ens = training.train(Config(num_heads=3, steps=20), ds)
    grad, counts = saliency.gradient_saliency(ens, ds.x_target, batch_size=7)
    occ, occ_counts = saliency.occlusion_saliency(ens, ds.x_target, patch=4)
    assert grad.shape == occ.shape == (3, 2, 1, 8, 12)
    np.testing.assert_array_equal(counts, occ_counts)
    np.testing.assert_array_equal(counts.sum(axis=1), [20, 20, 20])
    assert np.all(grad >= 0) and np.isfinite(occ).all()
    # each 4x4 patch holds one value
    assert len(np.unique(occ[0, int(np.argmax(counts[0]))][0, :4, :4])) == 1


@pytest.mark.slow
def test_a_pair_averaged_over_starts_gets_the_mean_of_their_maps():
    ds = _tiny_images(np.random.default_rng(0))
    ens = training.train(Config(num_heads=3, steps=20), ds)
    replicated = training.replicate_pair(ens, ds, jax.random.key(4), 2, (1, 2))
    first, _ = saliency.gradient_saliency(ens, ds.x_target)
    both, counts = saliency.gradient_saliency(replicated, ds.x_target)
    predicted = replicated.predict_proba(ds.x_target).argmax(-1)
    np.testing.assert_array_equal(counts[:, 1], predicted.sum(axis=1))
    (replica,), (swap,) = replicated.replicas, replicated.swapped
    second = saliency.gradient_saliency(replica, ds.x_target)[0][::-1 if swap else 1]
    np.testing.assert_allclose(both[0], first[0])  # the anchor is one start
    np.testing.assert_allclose(both[1:], (first[1:] + second) / 2, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_heads_replaced_by_their_students_get_the_students_maps():
    ds = _tiny_images(np.random.default_rng(0))
    config = Config(num_heads=3, steps=20)
    ens = training.train(config, ds)
    with_student = refinement.with_anchor_student(config, ds, ens, jax.random.key(5))
    first, _ = saliency.gradient_saliency(ens, ds.x_target)
    maps, counts = saliency.gradient_saliency(with_student, ds.x_target)
    student, student_counts = saliency.gradient_saliency(with_student.anchor_student,
                                                         ds.x_target)
    np.testing.assert_allclose(maps[0], student[0])
    np.testing.assert_array_equal(counts[0], student_counts[0])
    np.testing.assert_allclose(maps[1:], first[1:])
    # the joint pair (heads 1 and 2) standing for its students (`Config.block_students`)
    both = refinement.with_pair_students(config, ds, with_student, jax.random.key(6))
    maps, counts = saliency.gradient_saliency(both, ds.x_target)
    pair, pair_counts = saliency.gradient_saliency(both.pair_students, ds.x_target)
    np.testing.assert_allclose(maps[1:], pair)
    np.testing.assert_array_equal(counts[1:], pair_counts)
    np.testing.assert_allclose(maps[0], student[0])


@pytest.mark.slow
def test_gradients_match_finite_differences():
    ds = _tiny_images(np.random.default_rng(1))
    ens = training.train(Config(num_heads=2, steps=5), ds)
    x = ens.standardizer(ds.x_target[:2])
    grads = np.asarray(saliency.input_gradients(ens.module, ens.params, x))  # [H, B, C, *S]
    assert grads.shape == (2, 2, 2, 1, 8, 12)
    delta = np.zeros_like(x)
    delta[1, 0, 3, 5] = 1e-3

    def log_probs(inputs):
        return np.log(np.asarray(ens.predict_proba(inputs * ens.standardizer.scale
                                                   + ens.standardizer.mean), np.float64))

    numeric = (log_probs(x + delta) - log_probs(x - delta))[:, 1] / 2e-3  # [H, C]
    np.testing.assert_allclose(grads[:, 1, :, 0, 3, 5], numeric, rtol=0.02, atol=2e-4)


@pytest.mark.slow
def test_occlusion_points_at_the_feature_each_toy_head_follows():
    g = generated(0)
    ds = loader.from_arrays(g.info, g.x["labeled"], g.y["labeled"], g.x["unlabeled"],
                            g.x["target"])
    ens = training.train(Config(strategy="divdis", num_heads=2, steps=1500), ds)
    target = ens.predict_proba(ds.x_target).argmax(-1)
    x1_rule = (g.x["target"][:, 0] < 0).astype(int)
    follows_x1 = int(np.argmax((target == x1_rule[None]).mean(axis=1)))
    maps, _ = saliency.occlusion_saliency(ens, ds.x_target)  # [2, C, 2]
    per_feature = maps.mean(axis=1)  # [H, 2]
    assert per_feature[follows_x1, 0] > 3 * per_feature[follows_x1, 1]
    assert per_feature[1 - follows_x1, 1] > 3 * per_feature[1 - follows_x1, 0]
