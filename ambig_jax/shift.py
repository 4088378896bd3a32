"""Is the target set drawn like the labeled rows? A two-fold labeled-vs-target classifier.

The method's premise is a shift: features that agree on the labeled rows disagree on the target.
Where there is none (a target split i.i.d. from the labeled rows, as in sets 12 and 13), the
labeled data already say which hypothesis is right, ERM's, and held-out labeled rows are a fair
sample of the target: hundreds of labels where the oracle gives five, and five asked where the
heads disagree, which is where the right head's rare errors sit (on 13, the backdoored rows).

The test: one ERM member learns to tell labeled rows (class 0) from target rows (class 1) on one
half of each, and is scored on the other half, then the halves swap. Without a shift its
balanced accuracy is 1/2 up to sampling noise; the target is called shifted above
1/2 + `Rule.z_shifted` standard deviations of that noise. The members are scored twice: a
quarter of the way through their `shift_steps` (`LOOKS`), where every shift but 888 seed 0's
is already plain (z 5.5-23.6 on seeds 0-2; seed 0 gives 5.4-21.6 at the end), and, if it is not
called shifted there, at the end. Two looks at most double the chance of calling an unshifted
target shifted (one in 370 at z 3). The weakest shifts are those of a digit against a noise
level (08) or against a second digit inside an embedding (23); the docs/method.md gives the
z-scores measured on every set.

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

LOOKS = (0.25,)  # fractions of `shift_steps` where the members are scored before the end


@dataclasses.dataclass(frozen=True)
class ShiftTest:
    """What the test found."""
    balanced_accuracy: float  # of the labeled-vs-target classifier on held-out rows
    z: float  # its distance from 1/2 in standard deviations of the no-shift noise
    shifted: bool
    held_out: HeldOut | None  # the ERM anchor's held-out accuracy; None when shifted
    seconds: float
    steps: int = 0  # the members' training steps when they were scored (0: not recorded)

    def describe(self) -> str:
        """One line for logs and reports."""
        line = (f"labeled-vs-target balanced accuracy {self.balanced_accuracy:.3f} "
                f"(z {self.z:.1f}{f' at {self.steps} steps' if self.steps else ''}): ")
        if self.shifted:
            return line + "shifted"
        return line + (f"not shifted; an ERM member got {self.held_out.correct} of "
                       f"{self.held_out.rows} held-out labeled rows right")


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
    rng = training.numpy_rng(fold_key)
    x_l, x_t = dataset.x_labeled, dataset.x_target
    fold_l, fold_t = rng.permutation(len(x_l)) % 2, rng.permutation(len(x_t)) % 2
    stages = training.stages_of(config.shift_steps, LOOKS)
    members, scored = [], []  # per fold: its member's stages; its held-out rows, labeled first
    for fold, member_key in zip((0, 1), member_keys):
        train_l, train_t = fold_l != fold, fold_t != fold
        x = np.concatenate([x_l[train_l], x_t[train_t]])
        y = np.concatenate([np.zeros(train_l.sum()), np.ones(train_t.sum())])
        member_config, rows = training.as_member(config.replace(steps=config.shift_steps),
                                                 dataset, x, y, classes=np.arange(2))
        members.append(training.train_in_stages(member_config, rows, member_key, stages,
                                                desc=f"[{dataset.name}] shift test"))
        scored.append((np.concatenate([x_l[~train_l], x_t[~train_t]]), int(np.sum(~train_l))))
    for steps in stages:
        hits_l = hits_t = 0
        for member, (x_eval, num_labeled) in zip(members, scored):
            predicted = next(member).predict_proba(x_eval)[0].argmax(-1)
            hits_l += int(np.sum(predicted[:num_labeled] == 0))
            hits_t += int(np.sum(predicted[num_labeled:] == 1))
        balanced = 0.5 * (hits_l / len(x_l) + hits_t / len(x_t))
        z = (balanced - 0.5) / (0.5 * np.sqrt(0.25 / len(x_l) + 0.25 / len(x_t)))
        shifted = bool(z > config.rule.z_shifted)
        if shifted:
            break
    held_out = None
    if not shifted:
        half = fold_l == 0
        anchor = training.train_member(config, dataset, x_l[half], dataset.y_labeled[half],
                                       member_keys[2], desc=f"[{dataset.name}] shift test")
        predicted = anchor.predict_proba(x_l[~half])[0].argmax(-1)
        anchors = tuple(int(h) for h in np.flatnonzero(~training.pushed_heads(config)))
        held_out = HeldOut(correct=int(np.sum(predicted == dataset.y_labeled[~half])),
                           rows=int(np.sum(~half)), heads=anchors)
    return ShiftTest(balanced_accuracy=float(balanced), z=float(z), shifted=shifted,
                     held_out=held_out, seconds=time.perf_counter() - start, steps=steps)
