"""Replays of the label loop on a finished run's saved heads, under another rule.

A run leaves every head's target probabilities (`heads.npz`) and its report. With the set's
hidden labels (generated sets), the loop queries -> posterior -> kept head -> estimate ->
decision can be played again in milliseconds under another rule, without retraining. Under
the run's own rule it repeats the run exactly (a test checks this), so any difference is the
rule's alone. The refinement is not replayed: the accuracy credited is the run's written one
when the same head is kept, else the newly kept head's own.

Shapes: H heads, N target rows, C classes.
"""

import dataclasses
import json
import pathlib

import numpy as np

from ambig_jax import disambiguation
from ambig_jax import pipeline
from ambig_jax import shift
from ambig_jax.config import Config
from ambig_jax.datasets import generator
from ambig_jax.datasets import loader


@dataclasses.dataclass(frozen=True)
class SavedRun:
    """What a replay needs from a run folder."""
    run_dir: pathlib.Path
    data_root: pathlib.Path  # the generated sets' folder (public/ and hidden/)
    config: Config
    dataset_id: int
    seed: int
    budget: int
    points: float
    default_score: float
    probs: np.ndarray  # [H, N, C] the heads' calibrated target probabilities
    truth: np.ndarray  # [N] class indices, from the generator's hidden labels
    queries: list[int]  # target rows the run asked, in order
    chosen_head: int
    written_accuracy: float  # of the predictions the run wrote
    held_out: disambiguation.HeldOut | None  # the run's shift test, when it found no shift


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one rule makes of a saved run."""
    queries: list[int]
    chosen_head: int
    estimate: disambiguation.Estimate
    decision: disambiguation.Decision
    accuracy: float  # credited: the run's written accuracy if it kept this head, else the head's
    best_head: bool  # the kept head is within 0.5 point of the best head


def load_run(run_dir) -> SavedRun:
    """Reads a run folder written by `challenge.run_sets` on a generated set.

    Raises:
      ValueError: naming the file when the folder lacks a report, the heads or hidden labels.
    """
    run_dir = pathlib.Path(run_dir)
    for name in ("report.json", "heads.npz"):
        if not (run_dir / name).is_file():
            raise ValueError(f"{run_dir / name}: missing; replay needs a finished run folder")
    report = json.loads((run_dir / "report.json").read_text())
    info = report["dataset"]
    data_root = pathlib.Path(info["path"]).parent.parent  # <root>/public/<id>_<name>
    labels_path = generator.hidden_labels_path(data_root, info["id"])
    if not labels_path.is_file() or report.get("true_accuracy") is None:
        raise ValueError(f"{labels_path}: no hidden labels for {run_dir.name}; replay answers "
                         "queries from them, so it needs a generated set")
    index = {label: i for i, label in enumerate(info["classes"])}
    truth = np.array([index[v] for v in generator.load_hidden_labels(data_root, info["id"])])
    with np.load(run_dir / "heads.npz") as heads:
        probs = heads["head_probs"]
    held_out = (report.get("shift") or {}).get("held_out")
    config = Config(**{**report["config"], "hidden": tuple(report["config"]["hidden"])})
    return SavedRun(run_dir=run_dir, data_root=data_root, config=config,
                    dataset_id=info["id"], seed=report["config"]["seed"],
                    budget=report["config"]["budget"], points=info["points"],
                    default_score=info["default_score"], probs=probs, truth=truth,
                    queries=[q["row"] for q in report["queries"]],
                    chosen_head=report["chosen_head"],
                    written_accuracy=report["true_accuracy"],
                    held_out=None if held_out is None else disambiguation.HeldOut(
                        correct=held_out["correct"], rows=held_out["rows"],
                        heads=tuple(held_out["heads"])))


def with_shift_test(run: SavedRun) -> tuple[SavedRun, shift.ShiftTest]:
    """`run` with the shift test that its pipeline runs now, on the set read again from the
    run's data folder with the run's key (for runs made before the test existed)."""
    dataset = loader.load_dataset(run.data_root, run.dataset_id)
    found = shift.detect_shift(run.config, dataset, pipeline.shift_key(run.seed))
    return dataclasses.replace(run, held_out=found.held_out), found


def replay(run: SavedRun, decided: float = disambiguation.DECIDED,
           exact_prior: float = disambiguation.EXACT_PRIOR) -> Outcome:
    """Plays the label loop again on `run`'s heads, answering from its hidden labels.

    Args:
      run: a loaded run.
      decided: posterior mass on one head from which queries go to random rows.
      exact_prior: prior weight of the estimate's "exact" reading of the heads' probabilities.
    """
    probs = run.probs
    _, rng = pipeline.run_keys(run.seed)
    revealed: dict[int, int] = {}
    posterior = disambiguation.head_posterior(probs, revealed)
    while len(revealed) < min(run.budget, probs.shape[1]):
        row = disambiguation.select_query(probs, posterior, revealed, rng, decided=decided)
        revealed[row] = int(run.truth[row])
        posterior = disambiguation.head_posterior(probs, revealed)
    head, estimate, decision = disambiguation.conclude(probs, posterior, revealed,
                                                       run.default_score, exact_prior,
                                                       run.held_out)
    head_accuracy = (probs.argmax(-1) == run.truth[None]).mean(axis=1)
    return Outcome(queries=list(revealed), chosen_head=head, estimate=estimate,
                   decision=decision,
                   accuracy=(run.written_accuracy if head == run.chosen_head
                             else float(head_accuracy[head])),
                   best_head=bool(head_accuracy[head] >= head_accuracy.max() - 0.005))


def summarize(runs: list[SavedRun], outcomes: list[Outcome]) -> dict:
    """Challenge score (sum of points x credited accuracy if submitted, else default), the
    runs decided wrongly ('+' submitted below the default, '-' abstained above it), the mean
    absolute error of the estimate on submitted runs, and the runs not keeping a best head."""
    score, errors, wrong, not_best = 0.0, [], [], []
    for run, out in zip(runs, outcomes):
        submit = out.decision.submit
        score += run.points * (out.accuracy if submit else run.default_score)
        tag = f"{run.dataset_id}/seed{run.seed}"
        if submit != (out.accuracy > run.default_score):
            wrong.append(tag + ("+" if submit else "-"))
        if submit:
            errors.append(abs(out.estimate.accuracy - out.accuracy))
        if not out.best_head:
            not_best.append(tag)
    return {"score": score, "wrong": wrong, "not_best_head": not_best,
            "estimate_mae": float(np.mean(errors)) if errors else None}
