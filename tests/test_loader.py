import pathlib
import pickle

import numpy as np
import pytest

from ambig_jax.datasets import loader


def write_set(root: pathlib.Path, name="01_mnist_cc", n=8, shape=(1, 4, 8), labels=(0, 1), **override):
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "X_labeled.npy": rng.random((n,) + shape),
        "y_labeled.npy": np.array(labels * (n // len(labels)), dtype=np.int64),
        "X_unlabeled.npy": rng.random((2 * n,) + shape),
        "X_val.npy": rng.random((n,) + shape),
    }
    arrays.update(override)
    for file, array in arrays.items():
        if array is not None:
            np.save(folder / file, array)
    return folder


def test_roundtrip_and_label_mapping(tmp_path):
    write_set(tmp_path, "456_mnist_embed", n=6, shape=(99,), labels=(4, 5, 6))
    ds = loader.load_dataset(tmp_path, 456)
    assert ds.id == 456 and ds.num_classes == 3 and ds.input_shape == (99,)
    assert ds.x_labeled.dtype == np.float32
    np.testing.assert_array_equal(ds.y_labeled, [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(ds.to_original(ds.y_labeled), [4, 5, 6, 4, 5, 6])
    np.testing.assert_array_equal(ds.to_index([6, 4]), [2, 0])
    assert ds.info.points == 3 and ds.info.default_score == 0.8
    with pytest.raises(loader.DatasetError, match="not among its classes"):
        ds.to_index([7])


def test_column_labels_and_public_subfolder(tmp_path):
    write_set(tmp_path / "public", **{"y_labeled.npy": np.array([[0], [2]] * 4)})
    ds = loader.load_dataset(tmp_path, 1)
    np.testing.assert_array_equal(ds.classes, [0, 2])
    assert ds.y_labeled.shape == (8,)
    assert loader.available_ids(tmp_path) == [1]


def test_any_layout_is_kept(tmp_path):
    write_set(tmp_path, "888_vehicle_animal", shape=(3, 32, 64))
    ds = loader.load_dataset(tmp_path, 888)
    assert ds.input_shape == (3, 32, 64) and ds.info.default_score == 0.5


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("column", (False, True))
def test_original_888_layout(tmp_path, dtype, column):
    """The organisers' 888 folder: colour images [N, 3, 32, 64] in float32 or float64, labels
    (N,) or (N, 1); the loader keeps the layout and the set's own default score."""
    rng = np.random.default_rng(1)
    labels = np.array([0, 1] * 5, np.int64)
    write_set(tmp_path, "888_vehicle_animal", n=10, shape=(3, 32, 64), **{
        "X_labeled.npy": rng.random((10, 3, 32, 64)).astype(dtype),
        "X_unlabeled.npy": rng.random((14, 3, 32, 64)).astype(dtype),
        "X_val.npy": rng.random((12, 3, 32, 64)).astype(dtype),
        "y_labeled.npy": labels[:, None] if column else labels})
    ds = loader.load_dataset(tmp_path, 888)
    assert ds.input_shape == (3, 32, 64) and ds.x_target.shape == (12, 3, 32, 64)
    assert ds.x_labeled.dtype == ds.x_unlabeled.dtype == ds.x_target.dtype == np.float32
    np.testing.assert_array_equal(ds.to_original(ds.y_labeled), labels)
    assert ds.info.default_score == 0.5 and ds.info.points == 8


def test_missing_folder(tmp_path):
    with pytest.raises(loader.DatasetError, match="no folder for data set 5"):
        loader.load_dataset(tmp_path, 5)


def test_missing_file(tmp_path):
    write_set(tmp_path, **{"X_val.npy": None})
    with pytest.raises(loader.DatasetError, match=r"X_val.npy: missing file"):
        loader.load_dataset(tmp_path, 1)


def test_pickled_file_is_refused(tmp_path):
    folder = write_set(tmp_path)
    np.save(folder / "X_unlabeled.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(loader.DatasetError, match=r"X_unlabeled.npy: holds pickled"):
        loader.load_dataset(tmp_path, 1)


def test_raw_pickle_is_refused(tmp_path):
    folder = write_set(tmp_path)
    (folder / "X_labeled.npy").write_bytes(pickle.dumps(np.zeros(3)))
    with pytest.raises(loader.DatasetError, match=r"X_labeled.npy: (holds pickled|not a valid)"):
        loader.load_dataset(tmp_path, 1)


def test_corrupt_file(tmp_path):
    folder = write_set(tmp_path)
    data = (folder / "X_val.npy").read_bytes()
    (folder / "X_val.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(loader.DatasetError, match=r"X_val.npy: not a valid .npy"):
        loader.load_dataset(tmp_path, 1)


def test_nan_values(tmp_path):
    x = np.zeros((16, 1, 4, 8))
    x[3, 0, 0, 0] = np.nan
    x[5, 0, 1, 1] = np.inf
    write_set(tmp_path, **{"X_unlabeled.npy": x})
    with pytest.raises(loader.DatasetError, match=r"X_unlabeled.npy: 2 rows hold NaN"):
        loader.load_dataset(tmp_path, 1)


def test_mismatched_lengths(tmp_path):
    write_set(tmp_path, **{"y_labeled.npy": np.array([0, 1, 0])})
    with pytest.raises(loader.DatasetError, match=r"y_labeled.npy: 3 labels for 8 rows"):
        loader.load_dataset(tmp_path, 1)


def test_single_class(tmp_path):
    write_set(tmp_path, **{"y_labeled.npy": np.ones(8, dtype=np.int64)})
    with pytest.raises(loader.DatasetError, match=r"1 class\(es\)"):
        loader.load_dataset(tmp_path, 1)


def test_non_integer_labels(tmp_path):
    write_set(tmp_path, **{"y_labeled.npy": np.array([0.5, 1.0] * 4)})
    with pytest.raises(loader.DatasetError, match="not integers"):
        loader.load_dataset(tmp_path, 1)


def test_integral_float_labels_are_accepted(tmp_path):
    write_set(tmp_path, **{"y_labeled.npy": np.array([0.0, 1.0] * 4)})
    assert loader.load_dataset(tmp_path, 1).y_labeled.dtype == np.int32


def test_shapes_differ_between_splits(tmp_path):
    write_set(tmp_path, **{"X_val.npy": np.zeros((8, 1, 4, 9))})
    with pytest.raises(loader.DatasetError, match="differ in shape"):
        loader.load_dataset(tmp_path, 1)


@pytest.mark.parametrize("file", ["X_unlabeled.npy", "X_val.npy"])
def test_empty_split(tmp_path, file):
    write_set(tmp_path, **{file: np.zeros((0, 1, 4, 8))})
    with pytest.raises(loader.DatasetError, match=f"{file}: no rows"):
        loader.load_dataset(tmp_path, 1)


def test_string_array_is_refused(tmp_path):
    write_set(tmp_path, **{"X_labeled.npy": np.array([["a"]] * 8)})
    with pytest.raises(loader.DatasetError, match="not numeric"):
        loader.load_dataset(tmp_path, 1)


def test_ambiguous_folders(tmp_path):
    write_set(tmp_path, "01_mnist_cc")
    write_set(tmp_path, "1_mnist_cc")
    with pytest.raises(loader.DatasetError, match="several folders"):
        loader.load_dataset(tmp_path, 1)


def test_values_beyond_float32_are_refused(tmp_path):
    x = np.zeros((8, 1, 4, 8))
    x[2, 0, 0, 0] = 1e39  # finite in float64, inf once cast to float32
    write_set(tmp_path, **{"X_val.npy": x})
    with pytest.raises(loader.DatasetError, match=r"X_val.npy: 1 rows hold values beyond float32"):
        loader.load_dataset(tmp_path, 1)


@pytest.mark.parametrize("labels", [np.array([0.0, 1e20] * 4),
                                    np.array([0, 2**63 + 1] * 4, dtype=np.uint64)])
def test_huge_labels_are_refused(tmp_path, labels):
    write_set(tmp_path, **{"y_labeled.npy": labels})
    with pytest.raises(loader.DatasetError, match=r"y_labeled.npy: labels reach"):
        loader.load_dataset(tmp_path, 1)


def test_a_header_claiming_terabytes_is_refused_before_allocating(tmp_path):
    folder = write_set(tmp_path)
    header = {"descr": "<f8", "fortran_order": False, "shape": (2**40, 2)}  # 16 TB
    with open(folder / "X_unlabeled.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 64)
    assert (folder / "X_unlabeled.npy").stat().st_size < 256
    with pytest.raises(loader.DatasetError, match=r"X_unlabeled.npy: not a valid .npy file: "
                                                  r"its header describes"):
        loader.load_dataset(tmp_path, 1)
