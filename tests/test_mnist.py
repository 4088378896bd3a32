import gzip
import shutil

import numpy as np
import pytest

from ambig_jax.datasets import mnist


def test_bundled_train_split():
    images, labels = mnist.load_mnist("train")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,)
    np.testing.assert_array_equal(np.bincount(labels)[:3], [5923, 6742, 5958])


def test_bundled_test_split():
    images, labels = mnist.load_mnist("test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)


def test_parse_idx_roundtrip():
    header = bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    array = mnist.parse_idx(header + bytes(range(6)))
    np.testing.assert_array_equal(array, np.arange(6, dtype=np.uint8).reshape(2, 3))


@pytest.mark.parametrize("raw", [b"\x01\x02\x03\x04", bytes([0, 0, 0x08, 1]) + (5).to_bytes(4, "big")])
def test_parse_idx_rejects_bad_bytes(raw):
    with pytest.raises(mnist.MnistError):
        mnist.parse_idx(raw)


def _copy_bundle(tmp_path):
    for name, _ in mnist._FILES.values():
        shutil.copy(mnist.BUNDLED_DIR / name, tmp_path / name)


def test_other_folder_through_environment(tmp_path, monkeypatch):
    _copy_bundle(tmp_path)
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path))
    assert mnist.resolve_dir() == tmp_path
    assert mnist.load_mnist("test")[0].shape == (10000, 28, 28)


def test_checksum_mismatch_is_reported(tmp_path):
    _copy_bundle(tmp_path)
    name = mnist._FILES["test_labels"][0]
    raw = bytearray(gzip.decompress((tmp_path / name).read_bytes()))
    raw[-1] ^= 1
    (tmp_path / name).write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(mnist.MnistError, match="checksum"):
        mnist.load_mnist("test", tmp_path)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(mnist.MnistError, match="missing MNIST file"):
        mnist.load_mnist("train", tmp_path)
