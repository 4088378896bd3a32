"""Is the target set drawn like the labeled rows? A two-fold labeled-vs-target classifier.

The method's premise is a shift: features that agree on the labeled rows disagree on the target.
Where there is none (a target split i.i.d. from the labeled rows, as in sets 12 and 13), the
labeled data already say which hypothesis is right, ERM's, and held-out labeled rows are a fair
sample of the target: hundreds of labels where the oracle gives five, and five asked where the
heads disagree, which is where the right head's rare errors sit (on 13, the backdoored rows).

The test: one ERM member learns to tell labeled rows (class 0) from target rows (class 1) on one
half of each, and is scored on the other half, then the halves swap. Without a shift its
balanced accuracy is 1/2 up to sampling noise; the target is called shifted above
1/2 + `Rule.z_shifted` standard deviations of that noise. The weakest shifts are those of a
digit against a noise level (08) or against a second digit inside an embedding (23); the
docs/method.md gives the z-scores measured on every set.

Shapes: N_l labeled rows, N_t target rows.
"""

import dataclasses
import time

import jax
import numpy as np

from ambig_jax import training
from ambig_jax.config import Config
from ambig_jax.datasets.loader import Dataset
from ambig_jax.disambiguation import HeldOut


@dataclasses.dataclass(frozen=True)
class ShiftTest:
    """What the test found."""
    balanced_accuracy: float  # of the labeled-vs-target classifier on held-out rows
    z: float  # its distance from 1/2 in standard deviations of the no-shift noise
    shifted: bool
    held_out: HeldOut | None  # the ERM anchor's held-out accuracy; None when shifted
    seconds: float

    def describe(self) -> str:
        """One line for logs and reports."""
        line = (f"labeled-vs-target balanced accuracy {self.balanced_accuracy:.3f} "
                f"(z {self.z:.1f}): ")
        if self.shifted:
            return line + "shifted"
        return line + (f"not shifted; an ERM member got {self.held_out.correct} of "
                       f"{self.held_out.rows} held-out labeled rows right")


def _fit_predict(config: Config, dataset: Dataset, x, y, x_eval, key, classes=None):
    """[len(x_eval)] classes predicted by one ERM member trained on (x, y)."""
    member = training.train_member(config, dataset, x, y, key, classes,
                                   desc=f"[{dataset.name}] shift test")
    return member.predict_proba(x_eval)[0].argmax(-1)


def detect_shift(config: Config, dataset: Dataset, key: jax.Array) -> ShiftTest:
    """Runs the test; when the target is not shifted, also trains the ERM anchor's stand-in on
    half the labeled rows and counts its hits on the other half.

    Args:
      config: the run's configuration (backbone, steps, schedule, `rule.z_shifted`); the
        members are plain ERM.
      dataset: the data set (its target labels are never read).
      key: PRNG key of the folds and the members.
    """
    start = time.perf_counter()
    fold_key, *member_keys = jax.random.split(key, 4)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(fold_key)))
    x_l, x_t = dataset.x_labeled, dataset.x_target
    fold_l, fold_t = rng.permutation(len(x_l)) % 2, rng.permutation(len(x_t)) % 2
    hits_l = hits_t = 0
    for fold, member_key in zip((0, 1), member_keys):
        train_l, train_t = fold_l != fold, fold_t != fold
        x = np.concatenate([x_l[train_l], x_t[train_t]])
        y = np.concatenate([np.zeros(train_l.sum()), np.ones(train_t.sum())])
        predicted = _fit_predict(config.replace(steps=config.shift_steps), dataset, x, y,
                                 np.concatenate([x_l[~train_l], x_t[~train_t]]), member_key,
                                 classes=np.arange(2))
        hits_l += int(np.sum(predicted[:np.sum(~train_l)] == 0))
        hits_t += int(np.sum(predicted[np.sum(~train_l):] == 1))
    balanced = 0.5 * (hits_l / len(x_l) + hits_t / len(x_t))
    z = (balanced - 0.5) / (0.5 * np.sqrt(0.25 / len(x_l) + 0.25 / len(x_t)))
    shifted = bool(z > config.rule.z_shifted)
    held_out = None
    if not shifted:
        half = fold_l == 0
        predicted = _fit_predict(config, dataset, x_l[half], dataset.y_labeled[half],
                                 x_l[~half], member_keys[2])
        anchors = tuple(int(h) for h in np.flatnonzero(~training.pushed_heads(config)))
        held_out = HeldOut(correct=int(np.sum(predicted == dataset.y_labeled[~half])),
                           rows=int(np.sum(~half)), heads=anchors)
    return ShiftTest(balanced_accuracy=float(balanced), z=float(z), shifted=shifted,
                     held_out=held_out, seconds=time.perf_counter() - start)
