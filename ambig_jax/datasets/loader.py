"""Reads a data set in the challenge's folder format.

A data folder holds one folder per set, `<id>_<name>/`, with `X_labeled.npy`,
`y_labeled.npy`, `X_unlabeled.npy` and `X_val.npy` (the target set). Arrays are
read with `allow_pickle=False`; every problem is reported with the file it is in.
"""

import dataclasses
import pathlib
import re

import numpy as np

from ambig_jax.datasets import catalog

FILES = ("X_labeled.npy", "y_labeled.npy", "X_unlabeled.npy", "X_val.npy")
MAX_LABEL = 2**31 - 1
_FOLDER_RE = re.compile(r"^(\d+)_")


class DatasetError(ValueError):
    """A data set that cannot be used as it is; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One challenge data set in memory.

    Attributes:
      info: the catalogue entry (id, name, points, default score).
      x_labeled: float32 [N_l, *S] inputs; S is (2,), (D,), (C, H, W) ... as in the files.
      y_labeled: int32 [N_l] class indices in 0..C-1 (see `classes`).
      x_unlabeled: float32 [N_u, *S].
      x_target: float32 [N_t, *S], the rows of `X_val.npy` to predict.
      classes: int64 [C] original label values; index i stands for `classes[i]`.
      path: the folder read, or None for a set built in memory.
    """
    info: catalog.DatasetInfo
    x_labeled: np.ndarray
    y_labeled: np.ndarray
    x_unlabeled: np.ndarray
    x_target: np.ndarray
    classes: np.ndarray
    path: pathlib.Path | None = None

    @property
    def id(self) -> int:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_labeled.shape[1:])

    def to_original(self, indices) -> np.ndarray:
        """Class indices [N] -> original label values [N] (int64)."""
        return self.classes[np.asarray(indices)]

    def to_index(self, values) -> np.ndarray:
        """Original label values [N] -> class indices [N]; raises on a value not in `classes`."""
        values = np.asarray(values)
        unknown = np.setdiff1d(values, self.classes)
        if unknown.size:
            raise DatasetError(
                f"set {self.id}: labels {unknown.tolist()} are not among its classes "
                f"{self.classes.tolist()}")
        return np.searchsorted(self.classes, values).astype(np.int32)


def find_folder(data_dir, dataset_id: int) -> pathlib.Path:
    """The folder `<id>_<name>` of a set in `data_dir` (or in `data_dir/public`)."""
    root = pathlib.Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: data folder does not exist")
    if (root / "public").is_dir() and not any(_FOLDER_RE.match(p.name) for p in root.iterdir()):
        root = root / "public"
    matches = sorted(p for p in root.iterdir()
                     if p.is_dir() and (m := _FOLDER_RE.match(p.name)) and int(m[1]) == dataset_id)
    if not matches:
        raise DatasetError(f"{root}: no folder for data set {dataset_id} (expected '<id>_<name>/')")
    if len(matches) > 1:
        raise DatasetError(f"{root}: several folders for data set {dataset_id}: "
                           f"{[p.name for p in matches]}")
    return matches[0]


def available_ids(data_dir) -> list[int]:
    """Ids of the sets in `data_dir` whose folder holds all four files."""
    root = pathlib.Path(data_dir)
    if (root / "public").is_dir():
        root = root / "public"
    if not root.is_dir():
        return []
    return sorted(int(m[1]) for p in root.iterdir()
                  if (m := _FOLDER_RE.match(p.name)) and all((p / f).is_file() for f in FILES))


def _check_declared_size(path: pathlib.Path) -> None:
    """Refuses an .npy file whose header describes more data than the file holds, before
    anything that size is allocated (a 192-byte file can claim terabytes)."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
        except ValueError:
            return  # not an .npy file: np.load says what it is
        readers = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            return
        try:
            shape, _, dtype = readers[version](f)
        except ValueError as e:
            raise DatasetError(f"{path}: not a valid .npy file ({e})") from None
        if dtype.hasobject:
            return  # pickled objects: np.load refuses them with its own message
        declared = dtype.itemsize
        for size in shape:
            declared *= int(size)  # Python integers: no overflow
        held = path.stat().st_size - f.tell()
    if declared > held:
        raise DatasetError(f"{path}: not a valid .npy file: its header describes {shape} of "
                           f"{dtype} ({declared:,} bytes) but the file holds {held:,} bytes; "
                           "it is truncated or corrupt")


def _read_array(path: pathlib.Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"{path}: missing file")
    _check_declared_size(path)
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DatasetError(f"{path}: holds pickled Python objects, which are never loaded; "
                               "save a plain numeric array instead") from e
        raise DatasetError(f"{path}: not a valid .npy file ({e})") from e
    except (OSError, EOFError) as e:
        raise DatasetError(f"{path}: not a valid .npy file ({e})") from e
    if not isinstance(array, np.ndarray):
        raise DatasetError(f"{path}: holds an archive, not one array")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DatasetError(f"{path}: dtype {array.dtype} is not numeric")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise DatasetError(f"{path}: complex values are not supported")
    return array


def _read_inputs(path: pathlib.Path) -> np.ndarray:
    x = _read_array(path)
    if x.ndim < 2:
        raise DatasetError(f"{path}: shape {x.shape}; expected one row per sample, [N, ...]")
    if x.shape[0] == 0:
        raise DatasetError(f"{path}: no rows")
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x).reshape(len(x), -1).all(axis=1)))
        raise DatasetError(f"{path}: {bad} rows hold NaN or infinite values")
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32, copy=False)
    if not np.isfinite(x32).all():
        bad = int(np.count_nonzero(~np.isfinite(x32).reshape(len(x), -1).all(axis=1)))
        raise DatasetError(f"{path}: {bad} rows hold values beyond float32's range "
                           f"(|x| > {np.finfo(np.float32).max:.3g}), which the model cannot use")
    return x32


def _read_labels(path: pathlib.Path) -> np.ndarray:
    y = _read_array(path)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(f"{path}: shape {y.shape}; expected (N,) or (N, 1)")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        if not np.isfinite(y).all() or not np.all(y == np.round(y)):
            raise DatasetError(f"{path}: labels are not integers (dtype {y.dtype})")
    # labels are class values such as 0-9; far beyond that is a corrupt file, and past 2**53
    # a float no longer holds an exact integer (past 2**63, int64 wraps to a negative value)
    if y.size and (np.max(y) > MAX_LABEL or np.min(y) < -MAX_LABEL):
        raise DatasetError(f"{path}: labels reach {np.max(np.abs(y.astype(np.float64))):.3g}; "
                           f"labels must be integers within +-{MAX_LABEL}")
    return np.round(y).astype(np.int64) if y.dtype.kind == "f" else y.astype(np.int64)


def from_arrays(info: catalog.DatasetInfo, x_labeled, y_labeled, x_unlabeled, x_target,
                path: pathlib.Path | None = None) -> Dataset:
    """Checks raw arrays (labels as original values) and builds a `Dataset`."""
    where = lambda f: (path / f) if path else f  # noqa: E731
    if len(x_labeled) != len(y_labeled):
        raise DatasetError(f"{where('y_labeled.npy')}: {len(y_labeled)} labels for "
                           f"{len(x_labeled)} rows of X_labeled.npy")
    shapes = {"X_labeled.npy": x_labeled.shape[1:], "X_unlabeled.npy": x_unlabeled.shape[1:],
              "X_val.npy": x_target.shape[1:]}
    if len(set(shapes.values())) > 1:
        raise DatasetError(f"{path or info.name}: inputs differ in shape between splits: "
                           + ", ".join(f"{k} rows {v}" for k, v in shapes.items()))
    classes = np.unique(y_labeled).astype(np.int64)
    if len(classes) < 2:
        raise DatasetError(f"{where('y_labeled.npy')}: {len(classes)} class(es) "
                           f"{classes.tolist()}; at least 2 are needed")
    return Dataset(info, x_labeled, np.searchsorted(classes, y_labeled).astype(np.int32),
                   x_unlabeled, x_target, classes, path)


def load_dataset(data_dir, dataset_id: int) -> Dataset:
    """Loads set `dataset_id` from a data folder in the challenge's format."""
    folder = find_folder(data_dir, dataset_id)
    info = catalog.info_for(dataset_id, folder.name)
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        hint = " (set 999 ships a zip of face images, which this project cannot use)" \
            if dataset_id == 999 else ""
        raise DatasetError(f"{folder / missing[0]}: missing file{hint}")
    return from_arrays(
        info,
        x_labeled=_read_inputs(folder / "X_labeled.npy"),
        y_labeled=_read_labels(folder / "y_labeled.npy"),
        x_unlabeled=_read_inputs(folder / "X_unlabeled.npy"),
        x_target=_read_inputs(folder / "X_val.npy"),
        path=folder)
