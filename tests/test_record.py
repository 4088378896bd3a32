"""The run record: its JSON round trip and what it derives."""

import dataclasses
import json

import numpy as np
import pytest

from ambig_jax import disambiguation as dis
from ambig_jax import serialization
from ambig_jax import shift
from ambig_jax.record import RunRecord
from tests.records import fake_record


def test_a_record_survives_json_with_every_type_intact(tmp_path):
    held = dis.HeldOut(correct=440, rows=450, heads=(0, 1))
    record = dataclasses.replace(
        fake_record(2, "hybrid", 13, 0.98, True),
        shift=shift.ShiftTest(balanced_accuracy=0.51, z=0.8, shifted=False, held_out=held,
                              seconds=3.5))
    path = record.write(tmp_path)
    assert path.name == "report.json"
    again = RunRecord.read(tmp_path)
    assert again == record
    assert isinstance(again.shift.held_out, dis.HeldOut) and again.shift.held_out.heads == (0, 1)
    assert isinstance(again.queries[0].row, int) and again.config.hidden == (256, 128)
    assert json.loads(path.read_text())["decision"] == {"submit": True, "reason": "test"}


def test_a_record_from_before_the_decision_rule_of_2026_12_02_still_reads(tmp_path):
    record = fake_record(0, "hybrid", 3, 0.98, True)
    data = record.to_json()
    data["estimate"]["explained"] = False  # the count rule's verdict, no longer a field
    del data["estimate"]["unidentified"]
    del data["config"]["rule"]["check_from"]
    (tmp_path / "report.json").write_text(json.dumps(data))
    again = RunRecord.read(tmp_path)
    assert again.estimate == record.estimate and again.config == record.config
    data["estimate"]["nonsense"] = 1
    (tmp_path / "report.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="report.json.*nonsense"):
        RunRecord.read(tmp_path)


def test_derived_figures():
    submitted = fake_record(0, "hybrid", 6, 0.70, True, points=2)
    assert submitted.score == 0.70 and submitted.labels_used == 5
    assert submitted.head_accuracy == pytest.approx(0.69)
    assert submitted.best_head_accuracy == pytest.approx(0.71)
    assert submitted.decision_loss == pytest.approx(2 * (0.8 - 0.7))
    abstained = fake_record(0, "hybrid", 1, 0.99, False)
    assert abstained.score == 0.8 and abstained.decision_loss == pytest.approx(0.19)


def test_read_names_the_file_and_the_problem(tmp_path):
    with pytest.raises(ValueError, match="report.json: missing"):
        RunRecord.read(tmp_path)
    data = fake_record(0, "erm", 1, 0.9, True).to_json()
    data["estimate"]["accuracy"] = "high"
    (tmp_path / "report.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="report.json.*report.estimate.accuracy"):
        RunRecord.read(tmp_path)


def test_serialization_of_arrays_and_optionals():
    assert serialization.to_json({"a": np.arange(3), "b": np.float32(0.5), 3: (1, 2)}) == {
        "a": [0, 1, 2], "b": 0.5, "3": [1, 2]}
    np.testing.assert_array_equal(serialization.from_json(np.ndarray, [[1, 2]]), [[1, 2]])
    assert serialization.from_json(int | None, None) is None
    assert serialization.from_json(tuple[int, str], [1, "x"]) == (1, "x")
    with pytest.raises(ValueError, match="expected 2 items"):
        serialization.from_json(tuple[int, str], [1])
    with pytest.raises(ValueError, match="expected a number"):
        serialization.from_json(float, True)
