"""The record of one run on one data set: what `challenge` writes as report.json and what the
replay, the benchmark and the report page read back, as one typed dataclass.

Shapes: H heads, K labels.
"""

import dataclasses
import importlib.metadata
import json
import pathlib
import platform

import jax
import numpy as np

from ambig_jax import outputs
from ambig_jax import serialization
from ambig_jax.blocks import BlockTest
from ambig_jax.config import Config
from ambig_jax.disambiguation import Decision, Estimate
from ambig_jax.shift import ShiftTest

REPORT = "report.json"


@dataclasses.dataclass(frozen=True)
class SetInfo:
    """The data set a run solved."""
    id: int
    name: str
    classes: tuple[int, ...]  # original label values
    points: float
    default_score: float  # what abstaining scores
    path: str | None  # the folder read
    labeled: int
    unlabeled: int
    target: int


@dataclasses.dataclass(frozen=True)
class Query:
    row: int  # target row
    label: int  # its revealed label, as an original value


@dataclasses.dataclass(frozen=True)
class Timings:
    """Seconds spent; `solve` covers the trunk's encoding (`encode`, colour images only), the
    feature blocks' test (`blocks`), training, the shift test, the labels and the refinement,
    `set` the whole set with its saliency maps, pictures and files."""
    compile: float
    train: float
    shift: float
    refine: float
    solve: float
    set: float = 0.0
    encode: float = 0.0
    blocks: float = 0.0


@dataclasses.dataclass(frozen=True)
class RefinementSummary:
    taught_rows: int  # target rows the student learnt from
    changed_predictions: int  # rows where the student's class differs from the kept head's
    labeled_rows: int = 0  # labeled rows it learnt too (unshifted target; it sees one block)
    with_complement: bool = False  # learnt together with the complement's student (`pairwise`)
    rival: int | None = None  # its rows were cut within this head's classes (`refinement.rival`)


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One run on one data set (report.json)."""
    dataset: SetInfo
    config: Config
    oracle: str  # "local" or "http"
    queries: tuple[Query, ...]  # in the order asked (labels from the ledger first)
    posteriors: tuple[tuple[float, ...], ...]  # [K + 1, H]: before any label, then after each
    chosen_head: int
    estimate: Estimate  # of the kept head (the refinement's predictions are not re-estimated)
    decision: Decision
    shift: ShiftTest | None  # None when config.shift_test is off
    refinement: RefinementSummary | None  # None when config.refine is off
    agreement: tuple[tuple[float, ...], ...]  # [H, H] share of target rows two heads agree on
    true_accuracy: float | None  # of the predictions written, when the hidden labels are known
    head_accuracies: tuple[float, ...] | None  # [H] every head's, likewise
    timings: Timings
    versions: dict[str, object]
    blocks: BlockTest | None = None  # None when the test did not run (`blocks.applies`)

    @property
    def labels_used(self) -> int:
        return len(self.queries)

    @property
    def submitted(self) -> bool:
        return self.decision.submit

    @property
    def score(self) -> float | None:
        """This set's challenge score: the true accuracy if submitted, else the default."""
        return self.true_accuracy if self.submitted else self.dataset.default_score

    @property
    def head_accuracy(self) -> float | None:
        """The kept head's accuracy, before refinement."""
        return None if self.head_accuracies is None else self.head_accuracies[self.chosen_head]

    @property
    def best_head_accuracy(self) -> float | None:
        return None if self.head_accuracies is None else max(self.head_accuracies)

    @property
    def decision_loss(self) -> float:
        """Points lost to the submit/abstain decision: what knowing the true accuracy would
        have scored (the larger of it and the default) minus the score."""
        if self.true_accuracy is None:
            raise ValueError(f"{self.dataset.name}: no hidden labels, so no decision loss")
        best = max(self.true_accuracy, self.dataset.default_score)
        return self.dataset.points * (best - self.score)

    def to_json(self) -> dict:
        return serialization.to_json(self)

    @classmethod
    def from_json(cls, data: dict) -> "RunRecord":
        estimate = data.get("estimate")
        if isinstance(estimate, dict) and "explained" in estimate:
            # Records before 2026-12-02's decision rule carried a count rule's verdict.
            data = {**data, "estimate": {k: v for k, v in estimate.items() if k != "explained"}}
        return serialization.from_json(cls, data, "report")

    def write(self, run_dir) -> pathlib.Path:
        return outputs.write_json(pathlib.Path(run_dir) / REPORT, self.to_json())

    @classmethod
    def read(cls, run_dir) -> "RunRecord":
        """The record of a run folder; raises ValueError naming the file on any problem."""
        path = pathlib.Path(run_dir) / REPORT
        if not path.is_file():
            raise ValueError(f"{path}: missing; expected a finished run folder")
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: not a run record of this version ({e})") from None


def versions() -> dict[str, object]:
    """The libraries, Python and devices a run used."""
    found: dict[str, object] = {}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "chex"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    found["python"] = platform.python_version()
    found["devices"] = [str(d) for d in jax.devices()]
    return found


def from_solution(solution, truth: np.ndarray | None, oracle: str) -> RunRecord:
    """The record of a `pipeline.Solution`; `truth` [N] original labels of the target, if
    known, scores the written predictions and every head."""
    ds, resolution = solution.dataset, solution.resolution
    predictions = solution.head_probs.argmax(-1)  # [H, N]
    head_accuracies = true_accuracy = None
    if truth is not None:
        y = ds.to_index(truth)
        head_accuracies = tuple(float(a) for a in (predictions == y[None]).mean(axis=1))
        true_accuracy = float(np.mean(solution.predictions == truth))
    refined = solution.refinement
    agreement = (predictions[:, None] == predictions[None]).mean(axis=-1)
    return RunRecord(
        dataset=SetInfo(id=ds.id, name=ds.name, classes=tuple(int(c) for c in ds.classes),
                        points=ds.info.points, default_score=ds.info.default_score,
                        path=None if ds.path is None else str(ds.path),
                        labeled=len(ds.y_labeled), unlabeled=len(ds.x_unlabeled),
                        target=len(ds.x_target)),
        config=solution.config, oracle=oracle,
        queries=tuple(Query(row=int(r), label=int(ds.classes[i]))
                      for r, i in resolution.queries),
        posteriors=tuple(tuple(float(w) for w in p) for p in resolution.posteriors),
        chosen_head=resolution.chosen_head, estimate=resolution.estimate,
        decision=resolution.decision, shift=solution.shift,
        refinement=None if refined is None else RefinementSummary(
            taught_rows=int(refined.taught.sum()), changed_predictions=refined.changed,
            labeled_rows=refined.labeled_rows, with_complement=refined.with_complement,
            rival=refined.rival),
        agreement=tuple(tuple(float(a) for a in row) for row in agreement),
        true_accuracy=true_accuracy, head_accuracies=head_accuracies,
        timings=solution.timings, versions=versions(), blocks=solution.blocks)
