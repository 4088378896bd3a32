"""The image encoders (`features`): the frozen random convolutional trunk for colour images,
pixels and local-pattern extremes for the others."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ambig_jax import features
from ambig_jax import training
from ambig_jax.config import PRESETS, Config
from ambig_jax.datasets import catalog
from ambig_jax.datasets import loader
from ambig_jax.datasets import vehicle_animal
from tests.conftest import generated


def colour_set(seed=0, sizes=(200, 300, 300)):
    x, y, _ = vehicle_animal.generate(np.random.default_rng(seed), sizes, mix_rate=0.5)
    return loader.from_arrays(catalog.CATALOG[888], x["labeled"], y["labeled"],
                              x["unlabeled"], x["target"]), y


@pytest.mark.parametrize("shape,trunk,expected", [
    ((3, 32, 64), "auto", True), ((3, 16, 16), "auto", True), ((3, 32, 64), "none", False),
    ((1, 28, 56), "auto", False), ((99,), "auto", False), ((2,), "auto", False)])
def test_which_inputs_go_through_the_trunk(shape, trunk, expected):
    assert features.uses_trunk(shape, Config(trunk=trunk)) == expected


def test_trunk_choice_is_checked():
    with pytest.raises(ValueError, match="trunk must be one of"):
        Config(trunk="resnet")


def test_blur_is_the_depthwise_gaussian_convolution():
    x = jax.random.normal(jax.random.key(0), (2, 12, 20, 3))
    taps = np.exp(-0.5 * ((np.arange(features.BLUR_TAPS) - features.BLUR_TAPS // 2)
                          / features.BLUR_SIGMA) ** 2)
    kernel = np.outer(taps, taps) / np.outer(taps, taps).sum()
    reference = jax.lax.conv_general_dilated(
        x, jnp.asarray(np.tile(kernel[:, :, None, None], (1, 1, 1, 3)), jnp.float32), (1, 1),
        "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=3)
    np.testing.assert_allclose(features._blur(x), reference, atol=1e-5)


def test_grid_keeps_which_half_a_pattern_is_in():
    x = np.zeros((2, 4, 8, 1), np.float32)
    x[0, 1, 2, 0] = 1.0  # top row, left half
    x[1, 3, 6, 0] = 1.0  # bottom row, right half
    cells = np.asarray(features._grid_max(jnp.asarray(x), 2))  # 2 x 4 cells
    assert cells.shape == (2, 8)
    np.testing.assert_array_equal(np.flatnonzero(cells[0]), [1])
    np.testing.assert_array_equal(np.flatnonzero(cells[1]), [7])


def mnist_like(rows=4):
    return loader.from_arrays(catalog.CATALOG[1], np.zeros((rows, 1, 28, 56), np.float32),
                              np.arange(rows) % 2, np.zeros((rows, 1, 28, 56), np.float32),
                              np.zeros((rows, 1, 28, 56), np.float32))


@pytest.mark.parametrize("shape,config,expected", [
    ((1, 28, 56), Config(), True), ((3, 32, 64), Config(trunk="none"), True),
    ((3, 32, 64), Config(), False), ((1, 28, 56), Config(local_patterns=0), False),
    ((1, 28, 56), Config(backbone="conv"), False), ((99,), Config(), False),
    ((1, 2, 2), Config(), False)])
def test_which_inputs_gain_local_patterns(shape, config, expected):
    assert features.uses_patterns(shape, config) == expected


def test_encode_leaves_vectors_alone_and_pixels_when_asked():
    vectors = loader.from_arrays(catalog.CATALOG[0], np.zeros((4, 2), np.float32),
                                 np.array([0, 1, 0, 1]), np.zeros((4, 2), np.float32),
                                 np.zeros((4, 2), np.float32))
    assert features.encode(vectors, Config()) == (vectors, None)
    images = mnist_like()
    assert features.encode(images, Config(local_patterns=0)) == (images, None)


def test_patterns_see_a_rare_patch_anywhere_and_ignore_a_shared_noise_level():
    rng = np.random.default_rng(0)
    x = rng.random((60, 1, 28, 56), dtype=np.float32) * 0.05
    x[:30] += rng.normal(0.0, 0.15, (30, 1, 28, 56)).astype(np.float32)  # half the rows: noisy
    x[40, :, 3:6, 4:7] += 2.0  # the same bright patch at two far-apart places
    x[41, :, 20:23, 45:48] += 2.0
    ds = dataclasses.replace(mnist_like(60), x_labeled=x, y_labeled=np.arange(60) % 2,
                             x_unlabeled=x, x_target=x)
    encoded, encoder = features.encode(ds, Config(local_patterns=8))
    assert isinstance(encoder, features.PixelsAndPatterns)
    assert encoded.input_shape == (28 * 56 + 2 * 8,)
    np.testing.assert_array_equal(encoded.x_target[:, :28 * 56], x.reshape(60, -1))
    excess = encoded.x_target[:, 28 * 56:]
    assert np.all(excess[:30] == 0.0)  # a noise level half the rows share is no trigger
    assert np.mean(excess[42:] > 0) < 0.05
    # a filter whose weights sum to more than 0 answers the patch, and alike wherever it is
    sums = np.asarray(encoder.filters).sum(axis=(0, 1, 2))
    brighter = np.flatnonzero(sums > 0.5)
    assert np.all(excess[40:42, np.argmax(sums)] > 1.0) and np.sum(excess[40, brighter] > 0) >= 3
    np.testing.assert_allclose(excess[40, brighter], excess[41, brighter], rtol=0.2)
    np.testing.assert_allclose(encoder(x[38:42]), encoded.x_target[38:42], rtol=1e-5)
    maps = np.arange(2 * encoded.input_shape[0], dtype=np.float32).reshape(2, -1)
    np.testing.assert_array_equal(encoder.image_maps(maps), maps[:, :28 * 56].reshape(2, 1, 28, 56))


@pytest.mark.slow
def test_local_patterns_learn_set_13s_backdoor():
    """What the patterns are for: an ERM member on set 13's labeled rows gets the target's
    backdoored rows (a +2 3x3 patch at a random place, relabeled) right with them, and misses
    most of them on the pixels alone, which must learn the patch at every place."""
    g = generated(13, seed=1)
    ds = loader.from_arrays(g.info, g.x["labeled"], g.y["labeled"], g.x["unlabeled"],
                            g.x["target"])
    backdoor, truth = g.meta["target"]["backdoor"], ds.to_index(g.y["target"])
    right = {}
    for patterns in (16, 0):
        config = Config(local_patterns=patterns)
        data, _ = features.encode(ds, config)
        member = training.train_member(config, data, data.x_labeled, data.y_labeled)
        predicted = member.predict_proba(data.x_target)[0].argmax(-1)
        right[patterns] = np.mean(predicted[backdoor] == truth[backdoor])
    assert right[16] >= 0.9 and right[0] <= 0.7, right


def test_encode_is_the_seeds_frozen_trunk():
    ds, _ = colour_set()
    encoded, encoder = features.encode(ds, Config())
    cells = 2 * 4  # 2 rows of square cells on a 32x64 image
    assert encoded.input_shape == (cells * features.WIDTHS[-1],)
    assert encoded.x_target.dtype == np.float32 and len(encoded.x_target) == 300
    np.testing.assert_array_equal(encoded.y_labeled, ds.y_labeled)
    np.testing.assert_allclose(encoder(ds.x_target[:7]), encoded.x_target[:7], rtol=1e-5,
                               atol=1e-5)  # alone or in a chunk: the same features
    again, _ = features.encode(ds, Config())
    np.testing.assert_array_equal(again.x_target, encoded.x_target)
    other, _ = features.encode(ds, Config(seed=1))
    assert not np.allclose(other.x_target, encoded.x_target)


@pytest.mark.slow
def test_heads_on_trunk_features_beat_raw_pixels():
    """What the trunk is for: with the same few rows, a member on its features reads the
    label's digit better than one on the raw pixels (the ceiling's comparison, in small)."""
    ds, y = colour_set(sizes=(1500, 10, 1500))
    config = PRESETS["smoke"]
    encoded, _ = features.encode(ds, config)
    truth = encoded.to_index(y["target"])
    accuracy = {}
    for name, data in (("trunk", encoded), ("raw", ds)):
        # the target's labels, learnt from 1000 of its rows, scored on the other 500
        member = training.train_member(config, data, data.x_target[:1000], truth[:1000])
        predicted = member.predict_proba(data.x_target[1000:])[0].argmax(-1)
        accuracy[name] = np.mean(predicted == truth[1000:])
    assert accuracy["trunk"] > accuracy["raw"] + 0.05, accuracy


def test_on_images_predicts_from_raw_images():
    ds, _ = colour_set(sizes=(60, 10, 40))
    encoded, encoder = features.encode(ds, PRESETS["smoke"])
    ensemble = training.train(PRESETS["smoke"].replace(steps=5), encoded)
    np.testing.assert_allclose(features.OnImages(ensemble, encoder).predict_proba(ds.x_target),
                               ensemble.predict_proba(encoded.x_target), atol=1e-5)
