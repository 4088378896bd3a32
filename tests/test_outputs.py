import json

import numpy as np
import pytest

from ambig_jax import outputs


def test_csv_roundtrip_without_header_or_index(tmp_path):
    labels = np.array([4, 6, 5, 4])
    path = outputs.write_predictions(tmp_path, labels, submit=True)
    assert path.read_text() == "4\n6\n5\n4\n"
    np.testing.assert_array_equal(outputs.parse_submission(path.read_text(), 4, [4, 5, 6]), labels)


@pytest.mark.parametrize("text,message", [("0,1\n", "line 1"), ("id\n0\n", "line 1"),
                                          ("0\n\n1\n", "line 2")])
def test_parse_rejects_other_formats(text, message):
    with pytest.raises(outputs.OutputError, match=message):
        outputs.parse_submission(text)


def test_parse_checks_rows_and_classes():
    with pytest.raises(outputs.OutputError, match="3 labels for 4"):
        outputs.parse_submission("0\n1\n1\n", num_rows=4)
    with pytest.raises(outputs.OutputError, match=r"\[3\]"):
        outputs.parse_submission("0\n3\n", classes=[0, 1])


def test_a_different_submission_is_never_replaced_without_force(tmp_path):
    outputs.write_predictions(tmp_path, np.array([0, 1]), submit=True)
    outputs.write_predictions(tmp_path, np.array([0, 1]), submit=True)  # the same: fine
    with pytest.raises(outputs.OutputError, match="submission.csv: holds the predictions"):
        outputs.write_predictions(tmp_path, np.array([1, 1]), submit=True)
    assert (tmp_path / "submission.csv").read_text() == "0\n1\n"
    outputs.write_predictions(tmp_path, np.array([1, 1]), submit=True, force=True)
    assert (tmp_path / "submission.csv").read_text() == "1\n1\n"


def test_an_abstained_run_writes_no_submission(tmp_path):
    path = outputs.write_predictions(tmp_path, np.array([0, 1]), submit=False)
    assert path.name == "predictions.csv" and not (tmp_path / "submission.csv").exists()
    # an earlier run's submission is not left behind silently, nor deleted unasked
    outputs.write_predictions(tmp_path / "b", np.array([0, 0]), submit=True)
    with pytest.raises(outputs.OutputError, match="abstains"):
        outputs.write_predictions(tmp_path / "b", np.array([1, 0]), submit=False)
    assert (tmp_path / "b" / "submission.csv").read_text() == "0\n0\n"
    outputs.write_predictions(tmp_path / "b", np.array([1, 0]), submit=False, force=True)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["predictions.csv"]
    # a later run that submits replaces the abstained one's predictions
    outputs.write_predictions(tmp_path / "b", np.array([1, 0]), submit=True)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["submission.csv"]


def test_json_is_atomic_and_converts_numpy(tmp_path):
    path = outputs.write_json(tmp_path / "report.json",
                              {"acc": np.float32(0.5), "ids": np.arange(3), 1: (np.int64(2),)})
    assert json.loads(path.read_text()) == {"acc": 0.5, "ids": [0, 1, 2], "1": [2]}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary left


def test_non_integer_predictions_are_refused(tmp_path):
    with pytest.raises(outputs.OutputError, match="integer"):
        outputs.write_predictions(tmp_path, np.array([0.5, 1.0]), submit=True)


def test_arrays_are_written_atomically_without_pickle(tmp_path):
    path = outputs.write_arrays(tmp_path / "heads.npz", probs=np.ones((2, 3)))
    with np.load(path, allow_pickle=False) as data:
        np.testing.assert_array_equal(data["probs"], np.ones((2, 3)))
    assert [p.name for p in tmp_path.iterdir()] == ["heads.npz"]
