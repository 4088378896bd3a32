"""Replays of the label loop on a finished run's saved heads, under another rule.

A run leaves every head's target probabilities (`heads.npz`) and its record (`report.json`,
with the config and its `Rule`). With the set's hidden labels (generated sets), the label loop
(`disambiguation.resolve`, the one the pipeline runs) can be played again in milliseconds under
`run.config.replace(rule=...)`, without retraining: under the run's own config it repeats the
run, so any difference is the rule's alone. The refinement is not replayed: the accuracy
credited is the run's written one when the same head is kept, else the newly kept head's own.

Shapes: H heads, N target rows, C classes.
"""

import collections
import dataclasses
import glob
import os
import pathlib

import numpy as np

from ambig_jax import benchmark
from ambig_jax import blocks
from ambig_jax import disambiguation
from ambig_jax import features
from ambig_jax import pipeline
from ambig_jax import shift
from ambig_jax.config import Config
from ambig_jax.datasets import generator
from ambig_jax.datasets import loader
from ambig_jax.record import Query, RunRecord


@dataclasses.dataclass(frozen=True)
class SavedRun:
    """What a replay needs from a run folder."""
    run_dir: pathlib.Path
    record: RunRecord
    probs: np.ndarray  # [H, N, C] the heads' calibrated target probabilities
    truth: np.ndarray  # [N] class indices, from the generator's hidden labels

    @property
    def data_root(self) -> pathlib.Path:
        """The generated sets' folder (public/ and hidden/) the run read."""
        return pathlib.Path(self.record.dataset.path).parent.parent  # <root>/public/<id>_<name>


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one rule makes of a saved run."""
    config: Config  # the config replayed under
    resolution: disambiguation.Resolution
    accuracy: float  # credited: the run's written accuracy if it kept this head, else the head's


def load_run(run_dir) -> SavedRun:
    """Reads a run folder written by `challenge.run_sets` on a generated set.

    Raises:
      ValueError: naming the file when the folder lacks a record, the heads or hidden labels.
    """
    run_dir = pathlib.Path(run_dir)
    if not (run_dir / "heads.npz").is_file():
        raise ValueError(f"{run_dir / 'heads.npz'}: missing; replay needs a finished run folder")
    run = RunRecord.read(run_dir)
    info = run.dataset
    labels_path = (None if info.path is None else
                   generator.hidden_labels_path(pathlib.Path(info.path).parent.parent, info.id))
    if labels_path is None or not labels_path.is_file() or run.true_accuracy is None:
        raise ValueError(f"{labels_path or info.name}: no hidden labels for {run_dir.name}; "
                         "replay answers queries from them, so it needs a generated set")
    index = {label: i for i, label in enumerate(info.classes)}
    truth = np.array([index[int(v)] for v in generator.load_hidden_labels(
        labels_path.parent.parent, info.id)])
    with np.load(run_dir / "heads.npz") as heads:
        probs = heads["head_probs"]
    return SavedRun(run_dir=run_dir, record=run, probs=probs, truth=truth)


def load_runs(patterns: list[str]) -> list[SavedRun]:
    """Every run folder matching the glob `patterns`, each read once, in path order.

    Raises:
      SystemExit: when no folder matches (the entry points' message).
    """
    folders = sorted({f for pattern in patterns for f in glob.glob(pattern) if os.path.isdir(f)})
    if not folders:
        raise SystemExit(f"no run folders match {patterns}")
    return [load_run(folder) for folder in folders]


def _encoded_dataset(run: SavedRun):
    """The run's set read again from its data folder, encoded as the pipeline encodes it."""
    dataset = loader.load_dataset(run.data_root, run.record.dataset.id)
    return features.encode(dataset, run.record.config)[0]


def with_shift_test(run: SavedRun) -> tuple[SavedRun, shift.ShiftTest]:
    """`run` with the shift test its pipeline runs now, on the set read again from the run's
    data folder with the run's key (for runs made without the test)."""
    config = run.record.config
    found = shift.detect_shift(config, _encoded_dataset(run), pipeline.shift_key(config.seed))
    return dataclasses.replace(run, record=dataclasses.replace(run.record, shift=found)), found


def with_block_test(run: SavedRun) -> tuple[SavedRun, blocks.BlockTest | None]:
    """`run` with the feature blocks' test its pipeline runs now, with the run's key, where the
    run used blocks that it did not measure on held-out labeled rows (runs made before that);
    the found test is None where nothing was computed. The heads are the saved ones, so blocks
    that differ from the run's raise.

    Raises:
      ValueError: naming the run folder, when the blocks found now are not the run's.
    """
    config, saved = run.record.config, run.record.blocks
    if saved is None or not saved.independent or saved.held_out_correct:
        return run, None  # no blocks used, or measured already
    found = blocks.test_blocks(config, _encoded_dataset(run), pipeline.blocks_key(
        pipeline.run_keys(config.seed)[0]))
    if not (found.independent and np.array_equal(saved.block, found.block)):
        raise ValueError(f"{run.run_dir}: the blocks found now are not the run's; its heads "
                         "were trained on others")
    return dataclasses.replace(run, record=dataclasses.replace(run.record, blocks=found)), found


def held_out(run: SavedRun, config: Config) -> disambiguation.HeldOut | None:
    """The shift test's stand-in under `config`'s threshold, from the run's saved test (None
    where the saved feature blocks passed: they show a shift, `blocks.shows_shift`).

    Raises:
      ValueError: when `config` calls the target unshifted but the run never trained the
        held-out member (its own threshold called it shifted).
    """
    found = run.record.shift
    if (found is None or not config.shift_test or found.z > config.rule.z_shifted
            or blocks.shows_shift(run.record.blocks)):
        return None
    if found.held_out is None:
        raise ValueError(f"{run.run_dir}: rule.z_shifted={config.rule.z_shifted:g} calls the "
                         f"target unshifted (z {found.z:.1f}) but the run trained no held-out "
                         "member; replay with --shift_test=compute")
    return found.held_out


def replay(run: SavedRun, config: Config | None = None, draw: int = 0) -> Outcome:
    """Plays the label loop again on `run`'s heads, answering from its hidden labels.

    Args:
      run: a loaded run.
      config: the run's config with another rule (`run.record.config.replace(rule=...)`);
        None replays under the run's own. Only the rule, the budget and the shift test's use
        matter: the heads are the saved ones.
      draw: 0 draws the loop's random rows as the run did; another value, another sequence
        (the loop's randomness alone: the same heads and labels, other rows asked).
    """
    config = run.record.config if config is None else config
    rng = (np.random.default_rng([config.seed, draw]) if draw
           else pipeline.run_keys(config.seed)[1])
    resolution = disambiguation.resolve(
        run.probs, lambda row: int(run.truth[row]), config.budget, rng,
        run.record.dataset.default_score, config.rule, held_out=held_out(run, config),
        feature_held_out=blocks.feature_held_out(run.record.blocks, config))
    head = resolution.chosen_head
    return Outcome(config=config, resolution=resolution,
                   accuracy=(run.record.true_accuracy if head == run.record.chosen_head
                             else run.record.head_accuracies[head]))


def as_record(run: SavedRun, outcome: Outcome) -> RunRecord:
    """The run's record as the replayed rule would have written it (the credited accuracy as
    the written one), for the benchmark's aggregations."""
    resolution, classes = outcome.resolution, run.record.dataset.classes
    return dataclasses.replace(
        run.record, config=outcome.config,
        queries=tuple(Query(row=int(row), label=classes[i]) for row, i in resolution.queries),
        posteriors=tuple(tuple(float(w) for w in p) for p in resolution.posteriors),
        chosen_head=resolution.chosen_head, estimate=resolution.estimate,
        decision=resolution.decision, true_accuracy=outcome.accuracy)


def summarize(runs: list[SavedRun], outcomes: list[Outcome], draws: int = 1) -> dict:
    """`benchmark.calibration` of the replayed runs: the challenge score, points lost to
    decisions per seed, wrong decisions, the estimate's error and interval coverage, and the
    runs not keeping a best head.

    With `draws` > 1, `runs` and `outcomes` hold every run `draws` times (`replay`'s `draw`):
    the score and the points lost are means over the draws, and each run decided wrongly or
    not keeping a best head is listed once, with the share of draws that did so.
    """
    summary = benchmark.calibration([as_record(r, o) for r, o in zip(runs, outcomes)])
    if draws == 1:
        return summary
    summary["score"] /= draws
    summary["decision_loss_per_seed"] = {seed: loss / draws for seed, loss
                                         in summary["decision_loss_per_seed"].items()}
    summary["decision_loss_mean"] /= draws
    for key in ("wrong", "not_best_head"):
        counts = collections.Counter(summary[key])
        summary[key] = [f"{name} ({count}/{draws})" for name, count in sorted(counts.items())]
    return summary


def agreement_strata(probs: np.ndarray, truth: np.ndarray, head: int,
                     min_confidence: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """How often head `head` is right where it is sure, by how many heads predict its class.

    Returns:
      (rows [H + 1], right [H + 1]): among the target rows where the head's probability of its
      class is at least `min_confidence`, how many have k heads (itself included) predicting
      that class, and how many of those it gets right. A check label lands on such rows; the
      share right is the chance that it passes.
    """
    predictions = probs.argmax(-1)  # [H, N]
    mine = predictions[head]
    sure = probs[head].max(-1) >= min_confidence
    agreeing = (predictions == mine[None]).sum(axis=0)[sure]
    num_heads = probs.shape[0]
    rows = np.bincount(agreeing, minlength=num_heads + 1)
    right = np.bincount(agreeing, weights=(mine == truth)[sure], minlength=num_heads + 1)
    return rows, right.astype(int)
