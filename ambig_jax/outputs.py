"""Run outputs: the submission CSV, report.json, config.json. Every write is atomic.

The challenge's CSV has no header and no index column: one predicted label per line, in
target-set order, using the original label values. Only a run that decides to submit writes
`submission.csv`; one that abstains writes the same format as `predictions.csv`, a name no one
uploads by mistake. A `submission.csv` that holds other predictions is never replaced or
removed unless forced.
"""

import contextlib
import json
import os
import pathlib
import tempfile

import numpy as np

from ambig_jax import serialization

class OutputError(RuntimeError):
    """An output that must not be written, or a file that is not a valid submission."""


@contextlib.contextmanager
def replacing(path: pathlib.Path):
    """Yields a temporary path beside `path`; on success it replaces `path` in one rename (for
    writers that need a file name, like matplotlib's `savefig`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename (never half-written)."""
    with replacing(pathlib.Path(path)) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def format_submission(labels) -> str:
    """Labels [N] (original values) -> the challenge's CSV text."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise OutputError(f"a submission is a 1-D array of integer labels, got {labels.dtype} "
                          f"{labels.shape}")
    return "".join(f"{int(v)}\n" for v in labels)


def parse_submission(text: str, num_rows: int | None = None, classes=None,
                     where: str = "submission") -> np.ndarray:
    """The challenge's CSV text -> int64 labels [N]; raises OutputError naming the line."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    labels = []
    for number, line in enumerate(lines, start=1):
        try:
            labels.append(int(line.strip()))
        except ValueError:
            raise OutputError(f"{where}: line {number} is {line[:40]!r}, not one integer label "
                              "(no header, no index column)") from None
    if num_rows is not None and len(labels) != num_rows:
        raise OutputError(f"{where}: {len(labels)} labels for {num_rows} target rows")
    labels = np.asarray(labels, dtype=np.int64)
    if classes is not None:
        unknown = sorted(set(labels.tolist()) - {int(c) for c in classes})
        if unknown:
            raise OutputError(f"{where}: labels {unknown[:5]} are not among the classes "
                              f"{sorted(int(c) for c in classes)}")
    return labels


SUBMISSION, PREDICTIONS = "submission.csv", "predictions.csv"


def write_predictions(run_dir, labels, submit: bool, force: bool = False) -> pathlib.Path:
    """Writes a run's predictions: `submission.csv` when it submits, else `predictions.csv`.

    Raises:
      OutputError: naming the file, when `submission.csv` already holds other predictions
        (a run that submits would replace it, one that abstains would leave it for upload)
        and `force` is off; nothing is written then.
    """
    run_dir = pathlib.Path(run_dir)
    text = format_submission(labels)
    existing = run_dir / SUBMISSION
    if existing.is_file() and existing.read_text() != text:
        if not force:
            what = ("this run's would replace them" if submit else
                    f"this run abstains (its predictions go to {PREDICTIONS}), so it would "
                    "be left there to upload")
            raise OutputError(f"{existing}: holds the predictions of an earlier run; {what}. "
                              "Move it away or pass --force")
        if not submit:
            existing.unlink()
    path = run_dir / (SUBMISSION if submit else PREDICTIONS)
    write_atomic(path, text)
    if submit:
        (run_dir / PREDICTIONS).unlink(missing_ok=True)
    return path


def write_json(path, payload: dict) -> pathlib.Path:
    """Writes a JSON document (numpy values converted) atomically."""
    path = pathlib.Path(path)
    write_atomic(path, json.dumps(serialization.to_json(payload), indent=2, sort_keys=True) + "\n")
    return path


def write_arrays(path, **arrays) -> pathlib.Path:
    """Writes numpy arrays to an .npz file atomically (no pickled objects)."""
    path = pathlib.Path(path)
    with replacing(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return path
