"""The MNIST copy shipped with the package, read from its canonical IDX files.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges (CC BY-SA 3.0).
The four gzip files live next to this module; `AMBIG_JAX_MNIST_DIR` (environment) or the
`mnist_dir` argument points at another folder holding the same four files.
"""

import functools
import gzip
import hashlib
import os
import pathlib

import numpy as np

BUNDLED_DIR = pathlib.Path(__file__).parent / "mnist"
ENV_VAR = "AMBIG_JAX_MNIST_DIR"

# MD5 of the *uncompressed* canonical files.
_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "6bbc9ace898e44ae57da46a324031adb"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "a25bea736e30d166cdddb491f175f624"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "2646ac647ad5339dbf082846283269ea"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "27ae3e4e09519cfbb04c329615203637"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class MnistError(ValueError):
    """A missing, corrupt or unexpected MNIST file."""


def parse_idx(raw: bytes, path: str = "<bytes>") -> np.ndarray:
    """Parses the bytes of one IDX file into an array of its declared shape and dtype."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise MnistError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MnistError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise MnistError(f"{path}: {len(raw)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _read(folder: pathlib.Path, key: str, verify: bool) -> np.ndarray:
    name, md5 = _FILES[key]
    path = folder / name
    if not path.is_file():
        raise MnistError(
            f"{path}: missing MNIST file; set {ENV_VAR} or --mnist_dir to a folder holding "
            f"{', '.join(n for n, _ in _FILES.values())}")
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as e:
        raise MnistError(f"{path}: not a readable gzip file ({e})") from e
    if verify and hashlib.md5(raw).hexdigest() != md5:
        raise MnistError(f"{path}: checksum mismatch, expected MD5 {md5} of the uncompressed file")
    return parse_idx(raw, str(path))


def resolve_dir(mnist_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The folder to read: the argument, else $AMBIG_JAX_MNIST_DIR, else the bundled copy."""
    return pathlib.Path(mnist_dir or os.environ.get(ENV_VAR) or BUNDLED_DIR)


@functools.lru_cache(maxsize=4)
def _load_cached(folder: pathlib.Path, split: str, verify: bool):
    images = _read(folder, f"{split}_images", verify)
    labels = _read(folder, f"{split}_labels", verify)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise MnistError(f"{folder}: {split} images {images.shape} do not match labels {labels.shape}")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_mnist(split: str = "train", mnist_dir=None, verify: bool = True):
    """Loads one MNIST split.

    Args:
      split: "train" (60000 digits) or "test" (10000).
      mnist_dir: folder of the four IDX gzip files; defaults to `resolve_dir()`.
      verify: check the MD5 of each uncompressed file.

    Returns:
      `(images uint8 [N, 28, 28], labels uint8 [N])`, read-only.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _load_cached(resolve_dir(mnist_dir), split, verify)
