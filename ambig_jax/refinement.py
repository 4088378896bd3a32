"""Self-training of the kept hypothesis on the target set. Shapes: N target rows, C classes.

Once the labels have picked a head, its errors are mostly rows where it was unsure: near its
boundary, or where a trace of the rejected feature tipped it. A fresh student that learns the
head's confident target predictions only (plus the revealed labels) never sees those rows, so
it labels them from the feature the head follows rather than copying its slips. The target
set is the right place for this: there the two features are independent, so the confident
rows teach the kept feature and nothing else; the labeled rows, where the features agree,
would teach both (adding them cost accuracy: docs/refinement.md). Where the shift test finds
no shift, the labeled rows are drawn like the target and teach its labelling, rare rows
included (13's backdoored rows, which the target holds too few of to teach): the student
learns them as well. So it does where the kept head follows one block of inputs
(`blocks.kept_block`): its student sees only that block, whose inputs are drawn alike on both
sides, so on the labeled rows it can learn the block's feature alone, and if that feature is
the label they are labeled rows of it (docs/refinement.md).
"""

import dataclasses
import time

import jax
import numpy as np

from ambig_jax import training
from ambig_jax.config import Config
from ambig_jax.datasets.loader import Dataset


@dataclasses.dataclass(frozen=True)
class Refinement:
    """The student's view of the target set."""
    probs: np.ndarray  # [N, C] the student's probabilities
    predictions: np.ndarray  # [N] class indices
    taught: np.ndarray  # [N] bool: rows the student was trained on
    changed: int  # rows where the student's class differs from the head's
    labeled_rows: int  # labeled rows it was also trained on (`with_labeled`), else 0
    seconds: float  # training and prediction, compile included


def confident_rows(probs: np.ndarray, drop: float) -> np.ndarray:
    """[N] bool: per predicted class, the rows whose confidence is at least that class's
    `drop` quantile, so every class keeps its share (a global cut would strip the class the
    head is least sure of).

    Args:
      probs: [N, C] one head's probabilities.
      drop: share of each predicted class to leave out, in [0, 1).
    """
    predicted, confidence = probs.argmax(-1), probs.max(-1)
    keep = np.zeros(len(probs), bool)
    for c in np.unique(predicted):
        rows = predicted == c
        keep[rows] = confidence[rows] >= np.quantile(confidence[rows], drop)
    return keep


def train_student(config: Config, dataset: Dataset, head_probs: np.ndarray, key: jax.Array,
                  revealed: dict[int, int] | None = None, with_labeled: bool = False,
                  mask: np.ndarray | None = None, desc: str = "refinement"
                  ) -> tuple[training.TrainedEnsemble, np.ndarray]:
    """One plain (ERM) student of a head: trained, with the run's backbone and schedule, on the
    head's confident target rows (`confident_rows`) and the `revealed` labels, which override
    the head (the refinement's, and 456's pure composites' students in `pairwise`).

    Args: as `refine`'s; `desc` names the training in the progress bar.

    Returns:
      (the student, [N] bool the target rows it learned).
    """
    labels = head_probs.argmax(-1).astype(np.int32)
    taught = confident_rows(head_probs, config.refine_drop)
    for row, label in (revealed or {}).items():
        labels[row], taught[row] = label, True
    x, y = dataset.x_target[taught], labels[taught]
    if with_labeled:
        x, y = np.concatenate([dataset.x_labeled, x]), np.concatenate([dataset.y_labeled, y])
    student = training.train_member(config, dataset, x, y, key,
                                    desc=f"[{dataset.name}] {desc}",
                                    masks=None if mask is None else mask[None])
    return student, taught


def refine(config: Config, dataset: Dataset, head_probs: np.ndarray, revealed: dict[int, int],
           key: jax.Array, with_labeled: bool = False,
           mask: np.ndarray | None = None) -> Refinement:
    """Trains one plain (ERM) student on the head's confident target rows and the revealed
    labels, with the run's backbone and schedule (`train_student`), and predicts the whole
    target set.

    Args:
      config: the run's configuration (steps, backbone, refine_drop, ...).
      dataset: the data set; its unlabeled rows only shape the input standardisation.
      head_probs: [N, C] the chosen head's probabilities on the target rows.
      revealed: target row -> class index, labels from the oracle (they override the head).
      key: PRNG key of the student.
      with_labeled: also teach the labeled rows with their labels (for a target drawn like
        them, where the shift test found no shift, or a student that sees one block).
      mask: [*S] the input mask of the block the kept head follows (`blocks.kept_block`): the
        student sees that block alone, so that it cannot mix in the other block's feature.
        None: every input.
    """
    start = time.perf_counter()
    student, taught = train_student(config, dataset, head_probs, key, revealed, with_labeled,
                                    mask)
    probs = student.predict_proba(dataset.x_target)[0]
    predictions = probs.argmax(-1)
    return Refinement(probs=probs, predictions=predictions, taught=taught,
                      changed=int(np.sum(predictions != head_probs.argmax(-1))),
                      labeled_rows=len(dataset.y_labeled) if with_labeled else 0,
                      seconds=time.perf_counter() - start)
