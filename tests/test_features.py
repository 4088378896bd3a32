"""The frozen random convolutional trunk for colour images (`features`)."""

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


def test_encode_leaves_other_inputs_alone():
    ds = loader.from_arrays(catalog.CATALOG[1], np.zeros((4, 1, 28, 56), np.float32),
                            np.array([0, 1, 0, 1]), np.zeros((4, 1, 28, 56), np.float32),
                            np.zeros((4, 1, 28, 56), np.float32))
    assert features.encode(ds, Config()) == (ds, None)


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
