import numpy as np
import pytest

from ambig_jax.datasets import cache
from ambig_jax.datasets import catalog
from ambig_jax.datasets import generator
from ambig_jax.datasets import loader
from ambig_jax.datasets import vehicle_animal

# Two-class sets whose target rows are decorrelated: spurious == label on about half of them.
SHIFTED = (1, 2, 3, 4, 5, 6, 7, 8, 23)
INPUT_SHAPES = {0: (2,), 6: (1, 28, 28), 7: (1, 28, 28), 8: (1, 28, 28), 23: (99,), 456: (99,)}


def _binomial_band(n, p, z=5.0):
    half = z * np.sqrt(p * (1 - p) / n)
    return p - half, p + half


@pytest.mark.parametrize("dataset_id", [i for i in catalog.GENERATABLE_IDS if i != 888])
def test_shapes_dtypes_and_labels(gen, dataset_id):
    g = gen(dataset_id)
    info = catalog.CATALOG[dataset_id]
    if info.sizes is not None:
        assert g.sizes() == info.sizes
    for split in generator.SPLITS:
        x, y = g.x[split], g.y[split]
        assert x.dtype == np.float64 and y.dtype == np.int64
        assert x.shape == (len(y),) + INPUT_SHAPES.get(dataset_id, (1, 28, 56))
        assert set(np.unique(y)) == set(info.classes), split
        assert np.isfinite(x).all()
        assert g.meta[split]["spurious"].shape == y.shape


def test_original_sizes():
    expected = {1: (1267, 3798, 1267), 2: (1188, 3564, 1188), 12: (889, 3809, 381),
                13: (900, 3861, 387), 23: (1209, 3625, 1209), 456: (1718, 5153, 1718)}
    for dataset_id, sizes in expected.items():
        assert catalog.CATALOG[dataset_id].sizes == sizes


def test_size_rule_matches_recipe():
    info = catalog.CATALOG[3]
    assert generator.split_sizes(info, 6000, no_shift=False) == (1200, 3600, 1200)
    assert generator.split_sizes(info, 6000, no_shift=True) == (840, 3600, 360)


def test_deterministic_per_seed():
    a, b, c = generator.generate(2, 5), generator.generate(2, 5), generator.generate(2, 6)
    for split in generator.SPLITS:
        np.testing.assert_array_equal(a.x[split], b.x[split])
        np.testing.assert_array_equal(a.y[split], b.y[split])
    assert not np.array_equal(a.x["target"], c.x["target"])


@pytest.mark.parametrize("dataset_id", (0,) + SHIFTED + (456,))
def test_spurious_feature_correlated_on_labeled_decorrelated_on_target(gen, dataset_id):
    g = gen(dataset_id)
    spurious, y = g.meta["labeled"]["spurious"], g.y["labeled"]
    np.testing.assert_array_equal(spurious, y)
    agree = np.mean(g.meta["target"]["spurious"] == g.y["target"])
    lo, hi = _binomial_band(len(g.y["target"]), 1 / len(g.info.classes))
    assert lo < agree < hi


@pytest.mark.parametrize("dataset_id,mix_rate", [(1, 0.5), (5, 0.03), (12, 0.0)])
def test_unlabeled_mix_rate(gen, dataset_id, mix_rate):
    g = gen(dataset_id)
    cross = np.mean(g.meta["unlabeled"]["spurious"] != g.y["unlabeled"])
    lo, hi = _binomial_band(len(g.y["unlabeled"]), mix_rate / 2)  # half the mixed rows cross
    assert lo <= cross <= hi


def test_no_shift_sets_keep_the_correlation_on_target(gen):
    for dataset_id in (12, 13):
        g = gen(dataset_id)
        clean = ~g.meta["target"].get("backdoor", np.zeros(len(g.y["target"]), bool))
        np.testing.assert_array_equal(g.meta["target"]["spurious"][clean], g.y["target"][clean])


def test_backdoor_rows(gen):
    g = gen(13)
    rows = np.concatenate([g.meta[s]["backdoor"] for s in ("labeled", "target")])
    labels = np.concatenate([g.y[s] for s in ("labeled", "target")])
    x = np.concatenate([g.x[s] for s in ("labeled", "target")])
    lo, hi = _binomial_band(len(rows), generator.BACKDOOR_RATE)
    assert lo < rows.mean() < hi
    assert np.all(labels[rows] == 1)
    assert np.all(x[rows].max(axis=(1, 2, 3)) > 2.0)
    assert np.all(x[~rows].max(axis=(1, 2, 3)) < 1.5)


def test_constant_exemplar_is_the_spurious_half(gen):
    g = gen(2)
    for split in generator.SPLITS:
        right, spurious = g.x[split][:, 0, :, 28:], g.meta[split]["spurious"]
        for c in g.info.classes:
            halves = right[spurious == c]
            assert np.abs(halves - halves.mean(axis=0)).max() < 0.2  # one image plus noise
    assert not np.allclose(g.x["target"][:, 0, :, :28].std(axis=0), 0.02, atol=0.05)


@pytest.mark.parametrize("dataset_id", (4, 5))
def test_uniform_grey_encodes_the_spurious_class(gen, dataset_id):
    g = gen(dataset_id)
    for split in generator.SPLITS:
        x, m = g.x[split][:, 0], g.meta[split]
        swapped = m.get("swapped", np.zeros(len(x), bool))
        grey = np.where(swapped[:, None, None], x[:, :, :28], x[:, :, 28:])
        np.testing.assert_array_equal(grey.min(axis=(1, 2)), grey.max(axis=(1, 2)))
        np.testing.assert_allclose(grey[:, 0, 0], m["spurious"] * 0.5 - 2.0)
        if dataset_id == 4:
            lo, hi = _binomial_band(len(x), 0.5)
            assert lo < swapped.mean() < hi
        else:
            assert "swapped" not in m


def test_random_row_swaps_the_sides(gen):
    g = gen(3)
    swapped = g.meta["target"]["swapped"]
    lo, hi = _binomial_band(len(swapped), 0.5)
    assert lo < swapped.mean() < hi


def test_noise_level_encodes_the_second_class(gen):
    g = gen(8)
    corner = g.x["labeled"][:, 0, :4, :4].reshape(len(g.y["labeled"]), -1)  # background pixels
    std = corner.std(axis=1)
    for c in g.info.classes:
        expected = np.hypot(0.1 * (1 + c), generator.DIGIT_NOISE_STD)
        assert abs(np.median(std[g.meta["labeled"]["spurious"] == c]) - expected) < 0.1 * expected


def test_sums_add_the_digits(gen):
    g6, g7 = gen(6), gen(7)
    assert g6.x["labeled"].max() > 1.2  # overlapping strokes exceed one digit's range
    assert g7.meta["target"]["spurious_all"].shape == (len(g7.y["target"]), 2)


def test_saved_folder_loads_back(tmp_path, gen):
    g = gen(23)
    generator.save(g, tmp_path)
    ds = loader.load_dataset(tmp_path / "public", 23)
    np.testing.assert_array_equal(ds.to_original(ds.y_labeled), g.y["labeled"])
    np.testing.assert_allclose(ds.x_target, g.x["target"].astype(np.float32))
    np.testing.assert_array_equal(generator.load_hidden_labels(tmp_path, 23), g.y["target"])
    meta = np.load(tmp_path / "hidden" / "23_meta.npz")
    np.testing.assert_array_equal(meta["target/spurious"], g.meta["target"]["spurious"])
    for split in generator.SPLITS:
        np.testing.assert_array_equal(generator.load_hidden_split_labels(tmp_path, 23, split),
                                      g.y[split])
    with pytest.raises(generator.GeneratorError, match="unknown split"):
        generator.load_hidden_split_labels(tmp_path, 23, "val")
    with pytest.raises(generator.GeneratorError, match="24_meta.npz"):
        generator.load_hidden_split_labels(tmp_path, 24, "target")


@pytest.mark.parametrize("dataset_id", (999, 42))
def test_sets_without_offline_data_are_refused(dataset_id):
    with pytest.raises(generator.GeneratorError, match="cannot be generated offline"):
        generator.generate(dataset_id, 0)


def test_dataset_flag_names_generatable_sets_or_is_refused_with_the_ones_that_are():
    assert cache.parse_ids("all") == list(catalog.GENERATABLE_IDS)
    assert cache.parse_ids("1, 23,") == [1, 23]
    assert cache.parse_ids("999", generated=False) == [999]  # an original folder may hold it
    with pytest.raises(ValueError, match="comma-separated ids, got 'abc'"):
        cache.parse_ids("abc")
    with pytest.raises(ValueError, match="names no set"):
        cache.parse_ids(" , ")
    with pytest.raises(ValueError, match=r"set 99, 999 cannot be generated offline \(these "
                                         r"can: 0, 1, .*--data_dir\)"):
        cache.parse_ids("23,99,999")


def small_vehicle_animal(seed=0, sizes=(200, 400, 400)):
    return vehicle_animal.generate(np.random.default_rng(seed), sizes, mix_rate=0.5)


def test_vehicle_animal_stand_in_structure():
    x, y, meta = small_vehicle_animal()
    for split, n in zip(generator.SPLITS, (200, 400, 400)):
        assert x[split].shape == (n, 3, 32, 64) and x[split].dtype == np.float32
        assert y[split].dtype == np.int64 and set(np.unique(y[split])) == {0, 1}
        assert np.isfinite(x[split]).all() and -0.2 < x[split].min() and x[split].max() < 1.2
    np.testing.assert_array_equal(meta["labeled"]["spurious"], y["labeled"])
    for split, p in (("unlabeled", 0.75), ("target", 0.5)):  # mix rate 0.5, then all mixed
        lo, hi = _binomial_band(len(y[split]), p)
        assert lo < np.mean(meta[split]["spurious"] == y[split]) < hi
    halves = {int(small_vehicle_animal(seed, (8, 8, 8))[2]["target"]["label_half"][0])
              for seed in range(8)}
    assert halves == {0, 1}  # the seed decides which half is the label


def test_vehicle_animal_digit_sits_anywhere_on_a_texture():
    x, _, _ = small_vehicle_animal()
    left = x["target"][:, :, :, :32]
    ink = np.abs(left - np.median(left, axis=(2, 3), keepdims=True)).sum(axis=1)  # [N, 32, 32]
    rows = (ink > 0.6).any(axis=2)  # [N, 32] rows the digit reaches
    first = rows.argmax(axis=1)
    assert first.min() <= 2 and first.max() >= 10  # placed at many heights
    background = left[:, :, :4, :4].reshape(len(left), -1).std(axis=1)
    assert np.median(background) > 0.03  # a texture, not flat grey plus noise


def test_vehicle_animal_is_deterministic_per_seed():
    a, b, c = small_vehicle_animal(3), small_vehicle_animal(3), small_vehicle_animal(4)
    np.testing.assert_array_equal(a[0]["target"], b[0]["target"])
    assert not np.array_equal(a[0]["target"], c[0]["target"])


@pytest.mark.slow
def test_vehicle_animal_at_full_size():
    g = generator.generate(888, 0)  # not the session's cache: 1.2 GB
    assert g.sizes() == (10_000, 20_000, 20_000) == catalog.CATALOG[888].sizes
    assert all(g.x[s].dtype == np.float32 for s in generator.SPLITS)
    assert g.x["target"].nbytes == 20_000 * 24_576  # the original's 24,576 bytes per row


def _linear_readout(x, y):
    """Accuracy on the second half of a least-squares readout of binary y fitted on the first."""
    x = np.c_[(x - x.mean(0)) / (x.std(0) + 1e-6), np.ones(len(x))]
    half = len(x) // 2
    w = np.linalg.lstsq(x[:half], y[:half] - 0.5, rcond=None)[0]
    return np.mean((x[half:] @ w > 0) == (y[half:] == 1))


@pytest.mark.parametrize("embedding,dim,dtype", [
    ("tanh", generator.EMBED_DIM, np.float64), ("relu", 2 * generator.EMBED_DIM, np.float32),
    ("conv", 128, np.float32), ("trained", 64, np.float32), ("pca", 50, np.float32)])
def test_embedding_families_embed_the_same_pairs(gen, embedding, dim, dtype):
    g, default = generator.generate(23, 0, embedding=embedding), gen(23)
    for split in generator.SPLITS:
        assert g.x[split].shape == (len(default.y[split]), dim) and g.x[split].dtype == dtype
        assert np.isfinite(g.x[split]).all()
        np.testing.assert_array_equal(g.y[split], default.y[split])
        np.testing.assert_array_equal(g.meta[split]["spurious"], default.meta[split]["spurious"])
    if embedding != "tanh":
        assert g.x["target"].shape != default.x["target"].shape
    # both digits of the pair survive the embedding: each is linearly readable on the target
    classes = np.asarray(g.info.classes)
    label = np.searchsorted(classes, g.y["target"])
    spurious = np.searchsorted(classes, g.meta["target"]["spurious"])
    assert _linear_readout(g.x["target"], label) > 0.8
    assert _linear_readout(g.x["target"], spurious) > 0.8


def test_embedding_family_changes_only_the_embedded_sets(gen):
    g = generator.generate(2, 0, embedding="relu")
    np.testing.assert_array_equal(g.x["target"], gen(2).x["target"])
    with pytest.raises(generator.GeneratorError, match="unknown embedding 'sigmoid'"):
        generator.generate(23, 0, embedding="sigmoid")
    assert cache.generated_dir(3).name == "seed3"
    assert cache.generated_dir(3, "conv").name == "seed3-conv"
    for embedding in generator.EMBEDDINGS:  # the family is read back from the folder's name
        assert cache.embedding_of(cache.generated_dir(3, embedding) / "public" / "x") == embedding
    assert cache.embedding_of("data/public/23_mnist_embed") == "tanh"
    assert cache.embedding_of(None) == "tanh"
