"""One data set end to end: encode images -> test whether the target is shifted -> test whether
two blocks of features explain the labels apart -> train heads -> ask at most `budget` labels
-> keep a head -> refine it on the target set (and the labeled rows, when the target is not
shifted or the student sees the one block the kept head follows) -> estimate and decide.

The oracle is the only side effect inside `solve`; writing files is left to the caller.
"""

import dataclasses
import time

import jax
import numpy as np

from ambig_jax import blocks as blocks_lib
from ambig_jax import disambiguation
from ambig_jax import features
from ambig_jax import pairwise
from ambig_jax import refinement as refinement_lib
from ambig_jax import shift as shift_lib
from ambig_jax import training
from ambig_jax.config import Config
from ambig_jax.datasets.loader import Dataset
from ambig_jax.record import Timings


@dataclasses.dataclass
class Solution:
    """What a run decided for one data set."""
    dataset: Dataset  # as read (raw images, for figures)
    encoder: features.ImageEncoder | None  # raw images -> the rows the heads saw; None: as they are
    config: Config
    predictions: np.ndarray  # [N] original label values (the student's with `refinement`)
    head_probs: np.ndarray  # [H, N, C] calibrated probabilities of every head on the target
    resolution: disambiguation.Resolution  # the labels, the kept head, estimate and decision
    timings: Timings
    ensemble: training.TrainedEnsemble | pairwise.PairwiseHeads  # the heads (saliency maps)
    refinement: refinement_lib.Refinement | None  # None when config.refine is off
    shift: shift_lib.ShiftTest | None  # None when config.shift_test is off
    blocks: blocks_lib.BlockTest | None = None  # None when the test does not apply


def run_keys(seed: int) -> tuple[jax.Array, np.random.Generator]:
    """The run's training key and the generator of its label loop's random rows."""
    train_key, query_key = jax.random.split(jax.random.key(seed))
    return train_key, training.numpy_rng(query_key)


def blocks_key(train_key: jax.Array) -> jax.Array:
    """The key of the feature blocks' test, from the heads' training key."""
    return jax.random.fold_in(train_key, 3)


def pairwise_key(train_key: jax.Array) -> jax.Array:
    """The key of the pairwise composites' router and pairs, from the heads' training key."""
    return jax.random.fold_in(train_key, 4)


def replicas_key(train_key: jax.Array) -> jax.Array:
    """The key of the joint pair's further starts, from the heads' training key."""
    return jax.random.fold_in(train_key, 5)


def anchor_key(train_key: jax.Array) -> jax.Array:
    """The key of the ERM anchor's student (`Config.anchor_student`), from the heads' key."""
    return jax.random.fold_in(train_key, 6)


def pair_students_key(train_key: jax.Array) -> jax.Array:
    """The key of the joint pair's students where the blocks leak (`Config.block_students`),
    from the heads' key."""
    return jax.random.fold_in(train_key, 7)


def shift_key(seed: int) -> jax.Array:
    """The key of the run's shift test."""
    return jax.random.fold_in(run_keys(seed)[0], 2)


def train_heads(config: Config, dataset: Dataset, key: jax.Array, log=print,
                shifted: bool = True
                ) -> tuple[training.TrainedEnsemble | pairwise.PairwiseHeads,
                           blocks_lib.BlockTest | None]:
    """The heads of a run on an (encoded) data set: the feature blocks' test where it applies
    (`blocks`), then the ensemble, its ERM anchor replaced by its student
    (`config.anchor_student`), its joint pair on one block each if the blocks passed (held
    to its block's target class balance with `config.block_balance`; where the blocks leak,
    standing for its students, which see every input, `config.block_students`); if
    they did not, the joint pair averaged over `config.pair_replicates` starts
    (`training.replicate_pair`) and, with more than two classes, the pairwise composites after
    the ensemble's heads (`pairwise`). Where the target is not `shifted` (the shift test), the
    ERM anchor is kept whatever the labels say (`disambiguation.conclude`): the pair's further
    starts and the composites could not be kept, and are not trained."""
    blocks = None
    if blocks_lib.applies(config, dataset):
        blocks = blocks_lib.test_blocks(config, dataset, blocks_key(key))
        log(f"[{dataset.name}] feature blocks: {blocks.describe()} ({blocks.seconds:.1f}s)")
    masks = None if blocks is None else blocks.head_masks(config)
    priors = (blocks.head_priors(config, dataset)
              if blocks is not None and config.block_balance else None)
    log(f"[{dataset.name}] training {config.num_heads} heads ({config.strategy}, "
        f"{config.steps} steps) on {len(dataset.y_labeled)} labeled, "
        f"{len(dataset.x_target)} target rows")
    ensemble = training.train(config, dataset, key, desc=f"[{dataset.name}] heads", masks=masks,
                              priors=priors)
    if config.anchor_student and training.has_anchor(config):
        unshifted = not shifted and not blocks_lib.shows_shift(blocks)
        anchor = ensemble.predict_proba(dataset.x_target)[0].argmax(-1)
        ensemble = refinement_lib.with_anchor_student(config, dataset, ensemble,
                                                      anchor_key(key), with_labeled=unshifted)
        student = ensemble.anchor_student
        changed = int(np.sum(student.predict_proba(dataset.x_target)[0].argmax(-1) != anchor))
        log(f"[{dataset.name}] the ERM anchor is its student, trained on its confident target "
            f"rows{' and the labeled rows' if unshifted else ''}: {changed} of "
            f"{len(anchor)} target predictions changed "
            f"({student.train_seconds + student.compile_seconds:.1f}s)")
    if config.block_students and masks is not None and blocks.leaky:
        ensemble = refinement_lib.with_pair_students(config, dataset, ensemble,
                                                     pair_students_key(key))
        students = ensemble.pair_students
        log(f"[{dataset.name}] the blocks leak: the joint pair's heads are their students, "
            f"which see every input ({students.train_seconds + students.compile_seconds:.1f}s)")
    pair = training.joint_pair(config)
    # the heads that see every input may mix the two features; where they can be kept (a
    # shifted target), further starts and composites are trained against that
    may_mix = masks is None and shifted
    if may_mix and pair is not None and config.pair_replicates > 1:
        ensemble = training.replicate_pair(ensemble, dataset, replicas_key(key),
                                           config.pair_replicates, pair,
                                           desc=f"[{dataset.name}] joint pair")
        log(f"[{dataset.name}] joint pair (heads {pair[0]} and {pair[1]}) trained from "
            f"{config.pair_replicates} starts; averaged: starts "
            f"{', '.join(str(r + 1) for r in ensemble.averaged)}; starts in the other order: "
            f"{sum(ensemble.swapped)} of {config.pair_replicates - 1}")
    if may_mix and pairwise.applies(config, dataset):
        log(f"[{dataset.name}] training a router and {pairwise.PAIR_HEADS} heads for each pair "
            f"of {dataset.num_classes} classes ({config.steps} steps)")
        try:
            ensemble = pairwise.train_pairs(config, dataset, pairwise_key(key), ensemble)
            log(f"[{dataset.name}] pairs routed: {ensemble.describe()}; heads {config.num_heads}-"
                f"{config.num_heads + ensemble.num_composites - 1} are "
                f"{ensemble.kept_description}")
        except pairwise.EmptyPair as empty:
            log(f"[{dataset.name}] no composite heads: {empty}")
    return ensemble, blocks


def anchor_held_out(shift: shift_lib.ShiftTest | None, blocks: blocks_lib.BlockTest | None):
    """The ERM anchor's held-out stand-in where the target is drawn like the labeled rows (the
    shift test found no shift and the feature blocks show none), else None."""
    if shift is None or blocks_lib.shows_shift(blocks):
        return None
    return shift.held_out


def refine_head(config: Config, dataset: Dataset,
                ensemble: training.TrainedEnsemble | pairwise.PairwiseHeads, probs: np.ndarray,
                head: int, revealed: dict[int, int], train_key: jax.Array,
                unshifted: bool) -> refinement_lib.Refinement:
    """The refinement's student of head `head` (`refinement.refine`), as a run writes it.

    Args:
      config: the run's configuration.
      dataset: the (encoded) data set.
      ensemble: the heads (the masks its students may follow, `blocks`; a kept student's
        complement, `pairwise` and the block pair's students).
      probs: [H, N, C] every head's calibrated probabilities on the target rows.
      head: the kept head.
      revealed: target row -> class index, the labels asked.
      train_key: the heads' training key (the student's is folded from it).
      unshifted: the target is drawn like the labeled rows (`anchor_held_out` is not None).
    """
    classes = probs.argmax(-1)
    mask = blocks_lib.kept_block(ensemble.student_masks, classes, head, dataset.num_classes)
    followed = head
    if ensemble.pair_students is not None:  # a head that follows one of them learns with the other
        followed = blocks_lib.followed_head(classes, head, training.joint_pair(config),
                                            dataset.num_classes)
    complement = None if followed is None else ensemble.complement(followed)
    rival = (refinement_lib.rival(classes, head, dataset.num_classes)
             if config.refine_by_rival else None)
    # the labeled rows are a fair sample of the kept hypothesis on an unshifted target, and
    # for a student that sees one block (whose feature is then the label there); a block
    # pair's students learned them together, each beside the other, and so does a refinement
    # that learns with one of them
    pair_complement = ensemble.pair_students is not None and complement is not None
    refined = refinement_lib.refine(config, dataset, probs[head], revealed,
                                    jax.random.fold_in(train_key, 1),
                                    with_labeled=unshifted or mask is not None or pair_complement,
                                    mask=mask,
                                    complement=None if complement is None else probs[complement],
                                    strata=None if rival is None else classes[rival])
    return dataclasses.replace(refined, rival=rival)


def solve(dataset: Dataset, config: Config, oracle, log=print) -> Solution:
    """Trains the heads, spends the label budget where it teaches most, keeps the best head.

    Args:
      dataset: the data set (its target labels are never read).
      config: the run's hyper-parameters; `config.budget` labels at most.
      oracle: `oracle.Oracle` for this data set; labels it already holds are used first.
      log: progress printer.
    """
    start = time.perf_counter()
    train_key, rng = run_keys(config.seed)
    raw, (dataset, encoder) = dataset, features.encode(dataset, config)
    encode_seconds = time.perf_counter() - start
    if encoder is not None:
        log(f"[{dataset.name}] encoded the images as {encoder.description}: "
            f"{dataset.input_shape[0]} features a row ({encode_seconds:.1f}s)")
    shift = None
    if config.shift_test:
        shift = shift_lib.detect_shift(config, dataset, shift_key(config.seed))
        log(f"[{dataset.name}] shift test: {shift.describe()} ({shift.seconds:.1f}s)")
    ensemble, blocks = train_heads(config, dataset, train_key, log,
                                   shifted=shift is None or shift.shifted)
    probs = ensemble.calibrated_proba(dataset.x_target)
    # the ERM anchor's held-out stand-in, where the target is drawn like the labeled rows
    held_out = anchor_held_out(shift, blocks)
    if shift is not None and shift.held_out is not None and blocks_lib.shows_shift(blocks):
        log(f"[{dataset.name}] the feature blocks show a shift that the shift test missed: the "
            "target is shifted")
    log(f"[{dataset.name}] trained in {ensemble.train_seconds:.1f}s "
        f"(+{ensemble.compile_seconds:.1f}s compile)")

    known = oracle.resume_pending()  # labels from an earlier (crashed) run come first
    known = {row: int(dataset.to_index([label])[0]) for row, label in known.items()
             if 0 <= row < probs.shape[1]}
    if known:
        log(f"[{dataset.name}] reusing {len(known)} labels from the ledger")
    if oracle.spent() > len(known):
        log(f"[{dataset.name}] {oracle.spent() - len(known)} datums the server may have counted "
            "got no usable answer; they count against the budget")

    def ask(row: int) -> int | None:
        if oracle.remaining() == 0:
            return None
        return int(dataset.to_index([oracle.reveal(row)])[0])  # in the ledger before it is used

    def on_label(count: int, row: int, label: int, posterior: np.ndarray):
        log(f"[{dataset.name}] label {count}: row {row} is {dataset.classes[label]}; head "
            "posterior " + " ".join(f"{w:.2f}" for w in posterior))

    # The estimate and the decision are the chosen head's: the heads' probabilities describe
    # the head's own predictions; the student's agree with them more than the truth does.
    resolution = disambiguation.resolve(
        probs, ask, config.budget, rng, dataset.info.default_score, config.rule, known,
        held_out=held_out, on_label=on_label,
        feature_held_out=blocks_lib.feature_held_out(blocks, config))
    head = resolution.chosen_head
    predicted, refined = probs[head].argmax(-1), None
    if config.refine:
        refined = refine_head(config, dataset, ensemble, probs, head,
                              dict(resolution.queries), train_key, unshifted=held_out is not None)
        predicted = refined.predictions
        cut = "" if refined.rival is None else f" (cut within head {refined.rival}'s classes)"
        log(f"[{dataset.name}] refined head {head}"
            f"{' together with its complement' if refined.with_complement else ''} on "
            f"{int(refined.taught.sum())} confident target rows{cut}"
            f"{' and the labeled rows' if refined.labeled_rows else ''} in "
            f"{refined.seconds:.1f}s: {refined.changed} predictions changed")
    timings = Timings(compile=ensemble.compile_seconds, train=ensemble.train_seconds,
                      shift=0.0 if shift is None else shift.seconds,
                      refine=0.0 if refined is None else refined.seconds,
                      solve=time.perf_counter() - start, encode=encode_seconds,
                      blocks=0.0 if blocks is None else blocks.seconds)
    return Solution(dataset=raw, encoder=encoder, config=config,
                    predictions=dataset.to_original(predicted),
                    head_probs=probs, resolution=resolution, timings=timings,
                    ensemble=ensemble, refinement=refined, shift=shift, blocks=blocks)
