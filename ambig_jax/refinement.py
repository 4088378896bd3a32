"""Self-training of the kept hypothesis on the target set. Shapes: N target rows, C classes.

Once the labels have picked a head, its errors are mostly rows where it was unsure: near its
boundary, or where a trace of the rejected feature tipped it. A fresh student that learns the
head's confident target predictions only (plus the revealed labels) never sees those rows, so
it labels them from the feature the head follows rather than copying its slips (the cut is made
within the classes of the head's rival, `rival`, so that the rows kept hold the rival's classes
in the target's proportions). The target set is the right place for this: there the two
features are independent, so the confident rows teach the kept feature and nothing else; the
labeled rows, where the features agree, would teach both (adding them cost accuracy:
docs/refinement.md). Where the shift test finds no shift, the labeled rows are drawn like the
target and teach its labelling, rare rows included (13's backdoored rows, which the target
holds too few of to teach): the student learns them as well. So it does where the kept head
follows one block of inputs (`blocks.kept_block`): its student sees only that block, whose
inputs are drawn alike on both sides, so on the labeled rows it can learn the block's feature
alone, and if that feature is the label they are labeled rows of it (docs/refinement.md).
"""

import dataclasses
import time

import jax
import numpy as np

from ambig_jax import losses
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
    with_complement: bool = False  # it learned together with the complement's student
    rival: int | None = None  # the head within whose classes its rows were cut (`rival`)


def confident_rows(probs: np.ndarray, drop: float, strata: np.ndarray | None = None
                   ) -> np.ndarray:
    """[N] bool: per predicted class, the rows whose confidence is at least that class's
    `drop` quantile, so every class keeps its share (a global cut would strip the class the
    head is least sure of). With `strata`, the cut is made within each (class, stratum) cell,
    so every cell keeps its share too.

    Args:
      probs: [N, C] one head's probabilities.
      drop: share of each predicted class (or cell) to leave out, in [0, 1).
      strata: [N] int, a second grouping of the rows (the rival head's classes, `rival`), or
        None.
    """
    predicted, confidence = probs.argmax(-1), probs.max(-1)
    cells = predicted if strata is None else np.unique(np.stack([predicted, strata]), axis=1,
                                                       return_inverse=True)[1].reshape(-1)
    keep = np.zeros(len(probs), bool)
    for c in np.unique(cells):
        rows = cells == c
        keep[rows] = confidence[rows] >= np.quantile(confidence[rows], drop)
    return keep


def rival(classes: np.ndarray, head: int, num_classes: int) -> int | None:
    """The head least dependent on `head` on the target rows: the other head whose classes
    share the least mutual information with its classes (`losses.mutual_information_matrix`
    of one-hot predictions). None without another head.

    Why it matters to the student. On the target the label's feature and the rival feature
    are independent, but a head that leans a little on the rival is least sure where the two
    disagree, so a cut by confidence alone leaves out more of those rows, and on the rows it
    keeps the rival's class foretells the label: the student learns a trace of the rival
    feature (04 seed 3: every one of its 21 errors on a row where the grey half disagrees
    with the digit). Cut within the cells of the rival head's classes, the kept rows are as
    independent of its feature as the target is (docs/refinement.md).

    Args:
      classes: [H, N] every head's classes on the target rows.
      head: the kept head.
      num_classes: C.
    """
    if len(classes) < 2:
        return None
    one_hot = np.eye(num_classes, dtype=np.float32)[classes]
    information = np.array(losses.mutual_information_matrix(one_hot[head:head + 1], one_hot)[0])
    information[head] = np.inf
    return int(np.argmin(information))


def taught_rows(head_probs: np.ndarray, drop: float, revealed: dict[int, int] | None = None,
                strata: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What a student of a head learns on the target: ([N] its labels, [N] bool the rows it
    learns), the head's classes on its confident rows (`confident_rows`, cut within `strata`
    where given), and the `revealed` labels (target row -> class index), which override the
    head."""
    labels = head_probs.argmax(-1).astype(np.int32)
    taught = confident_rows(head_probs, drop, strata)
    for row, label in (revealed or {}).items():
        labels[row], taught[row] = label, True
    return labels, taught


def train_student(config: Config, dataset: Dataset, head_probs: np.ndarray, key: jax.Array,
                  revealed: dict[int, int] | None = None, with_labeled: bool = False,
                  mask: np.ndarray | None = None, desc: str = "refinement",
                  strata: np.ndarray | None = None) -> tuple[training.TrainedEnsemble, np.ndarray]:
    """One plain (ERM) student of a head: trained, with the run's backbone and schedule, on the
    head's confident target rows and the `revealed` labels (`taught_rows`).

    Args: as `refine`'s; `desc` names the training in the progress bar.

    Returns:
      (the student, [N] bool the target rows it learned).
    """
    labels, taught = taught_rows(head_probs, config.refine_drop, revealed, strata)
    x, y = dataset.x_target[taught], labels[taught]
    if with_labeled:
        x, y = np.concatenate([dataset.x_labeled, x]), np.concatenate([dataset.y_labeled, y])
    student = training.train_member(config, dataset, x, y, key,
                                    desc=f"[{dataset.name}] {desc}",
                                    masks=None if mask is None else mask[None])
    return student, taught


def with_anchor_student(config: Config, dataset: Dataset, ensemble: training.TrainedEnsemble,
                        key: jax.Array, with_labeled: bool = False) -> training.TrainedEnsemble:
    """`ensemble` whose ERM anchor (head 0) is its student (`Config.anchor_student`): a plain
    member trained on the anchor's confident target rows (`train_student`), before any label.

    The anchor learned the labeled rows, where the features agree, so it follows the one it
    finds simplest and leans a little on the other (08: the digit, with a trace of the noise
    level beside it). On the target the features are independent, and its confident rows
    teach the feature it follows alone; the rows it slips on are left out. The other heads
    were trained against the anchor and are not retrained.

    Args:
      config: the run's configuration (backbone, steps, refine_drop).
      dataset: the (encoded) data set.
      ensemble: the heads, head 0 an ERM anchor (`training.has_anchor`).
      key: PRNG key of the student.
      with_labeled: also teach the labeled rows (a target drawn like them, as `refine`).

    Returns:
      The ensemble with `anchor_student` set; its timings include the student's.
    """
    anchor = ensemble.predict_proba(dataset.x_target)[0]
    student, _ = train_student(config, dataset, anchor, key, with_labeled=with_labeled,
                               desc="anchor's student")
    return _with_student(ensemble, "anchor_student", student)


def _with_student(ensemble: training.TrainedEnsemble, field: str,
                  student: training.TrainedEnsemble) -> training.TrainedEnsemble:
    """`ensemble` with `student` as its `field` (`anchor_student`, `pair_students`); its timings
    include the student's."""
    return dataclasses.replace(
        ensemble, **{field: student},
        compile_seconds=ensemble.compile_seconds + student.compile_seconds,
        train_seconds=ensemble.train_seconds + student.train_seconds)


def with_pair_students(config: Config, dataset: Dataset, ensemble: training.TrainedEnsemble,
                       key: jax.Array) -> training.TrainedEnsemble:
    """`ensemble` whose joint pair, whose heads see one block each, stands for its two students
    (`Config.block_students`): trained together on every input (`train_students`), each on its
    pair head's confident target rows and both on the labeled rows, before any label.

    Why. Where the blocks leak (`blocks.BlockTest.leaky`), each block holds part of the other's
    feature, and a head that sees one block misses it (456, `pca` family, seed 8: the label's
    block head 0.921, the backbone told the truth 0.946). A student that sees every input has
    it. The labeled rows fit both features; the diversity term between the two students keeps
    them apart on the target, where the features are independent (docs/head-search.md).

    Args:
      config: the run's configuration (backbone, steps, refine_drop, diversity_weight).
      dataset: the (encoded) data set.
      ensemble: the heads, the joint pair's seeing one block each (`training.joint_pair`).
      key: PRNG key of the students.

    Returns:
      The ensemble with `pair_students` set; its timings include the students'.
    """
    pair = list(training.joint_pair(config))
    teachers = ensemble.predict_proba(dataset.x_target)[pair]
    students, _ = train_students(config, dataset, teachers, key, with_labeled=True,
                                 desc="the block pair's students")
    return _with_student(ensemble, "pair_students", students)


def train_students(config: Config, dataset: Dataset, teachers: np.ndarray, key: jax.Array,
                   revealed: dict[int, int] | None = None, with_labeled: bool = False,
                   desc: str = "students", strata: np.ndarray | None = None
                   ) -> tuple[training.TrainedEnsemble, np.ndarray]:
    """One plain student per teacher, trained together as one ensemble: each learns its
    teacher's confident target rows (`taught_rows`), and the diversity term (mutual
    information, `config.diversity_weight`) keeps the students' classes independent on the
    target rows, where the features the teachers read are independent (456's pure composites
    and their refinement, `pairwise`).

    Why together. A teacher that reads one feature but slips to the other's class on some
    rows teaches those slips, and a student alone learns them back (456: the left digit's
    student says the right digit's class on 5-15% of the rows whose digits differ, where a
    member told the truth says it on 2-7%). Such slips make the two students agree more often
    than independent features do, which the diversity term forbids; where a teacher is right
    it costs little (docs/head-search.md).

    Args:
      config: the run's configuration (backbone, steps, refine_drop, diversity_weight).
      dataset: the data set; its unlabeled rows only shape the input standardisation.
      teachers: [K, N, C] each teacher's probabilities on the target rows.
      key: PRNG key of the students.
      revealed: target row -> class index, labels that override the first teacher.
      with_labeled: also teach every student the labeled rows with their labels.
      desc: names the training in the progress bar.
      strata: [N] int, cells within which the first teacher's confident rows are cut
        (`confident_rows`), or None.

    Returns:
      (a K-head ensemble, head k the student of teacher k; [N] bool the target rows the first
      one learned).
    """
    labels, taught = zip(*[taught_rows(t, config.refine_drop, revealed, strata) if k == 0
                           else taught_rows(t, config.refine_drop)
                           for k, t in enumerate(teachers)])
    # [N, K]: each student's label of a row, -1 where it does not learn the row
    labels = np.where(np.stack(taught), np.stack(labels), -1).T
    rows = np.any(taught, axis=0)
    x, y = dataset.x_target[rows], labels[rows]
    if with_labeled:
        x = np.concatenate([dataset.x_labeled, x])
        y = np.concatenate([np.repeat(dataset.y_labeled[:, None], len(teachers), axis=1), y])
    # plain members (no label smoothing, no prior term) but for the diversity term, which
    # sees the target rows, where the features are independent
    student_config = config.replace(strategy="divdis", num_heads=len(teachers), pool="target",
                                    label_smoothing=0.0, prior_weight=0.0)
    students = training.train(student_config,
                              dataclasses.replace(dataset, x_labeled=x, y_labeled=y), key,
                              desc=f"[{dataset.name}] {desc}")
    return students, taught[0]


def refine(config: Config, dataset: Dataset, head_probs: np.ndarray, revealed: dict[int, int],
           key: jax.Array, with_labeled: bool = False, mask: np.ndarray | None = None,
           complement: np.ndarray | None = None, strata: np.ndarray | None = None
           ) -> Refinement:
    """Trains one plain (ERM) student on the head's confident target rows and the revealed
    labels, with the run's backbone and schedule (`train_student`), and predicts the whole
    target set; where the head has a `complement`, the student is trained together with the
    complement's (`train_students`).

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
      complement: [N, C] the probabilities of the head that reads the other feature, where the
        heads come in such pairs (456's pure composites' students, `pairwise`), or None. Their
        students learned together; a plain student of one learns back part of the slips they
        were kept from (docs/head-search.md), so its refinement learns together with the
        other again.
      strata: [N] int, the rival head's classes (`rival`): the head's confident rows are cut
        within each cell of (its class, the rival's class), or None (per class only).

    Raises:
      ValueError: both a `mask` and a `complement`.
    """
    start = time.perf_counter()
    if complement is None:
        student, taught = train_student(config, dataset, head_probs, key, revealed, with_labeled,
                                        mask, strata=strata)
    elif mask is not None:
        raise ValueError("a refinement learns with a complement or within one block, not both")
    else:
        student, taught = train_students(config, dataset, np.stack([head_probs, complement]),
                                         key, revealed, with_labeled, desc="refinement",
                                         strata=strata)
    probs = student.predict_proba(dataset.x_target)[0]
    predictions = probs.argmax(-1)
    return Refinement(probs=probs, predictions=predictions, taught=taught,
                      changed=int(np.sum(predictions != head_probs.argmax(-1))),
                      labeled_rows=len(dataset.y_labeled) if with_labeled else 0,
                      seconds=time.perf_counter() - start,
                      with_complement=complement is not None)
