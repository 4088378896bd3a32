"""Playing the challenge on several data sets: solve each, write its outputs, sum the score."""

import dataclasses
import importlib.metadata
import pathlib
import platform
import time

import jax
import numpy as np

from ambig_jax import oracle as oracle_lib
from ambig_jax import outputs
from ambig_jax import pipeline
from ambig_jax import plots
from ambig_jax import saliency
from ambig_jax.config import Config
from ambig_jax.datasets import cache
from ambig_jax.datasets import generator
from ambig_jax.datasets import loader

DEFAULT_DATA_SEED = 0  # sets generated when no data folder is given


@dataclasses.dataclass
class SetResult:
    dataset_id: int
    name: str
    points: float
    default_score: float
    labels_used: int
    chosen_head: int
    estimated: float
    submitted: bool
    reason: str
    true_accuracy: float | None  # of the predictions written, when the hidden labels are known
    head_accuracy: float | None  # the chosen head's (before refinement), likewise
    best_head_accuracy: float | None  # the best head's, when the hidden labels are known
    seconds: float  # the whole set: training, labels, pictures, files
    train_seconds: float
    compile_seconds: float

    @property
    def score(self) -> float | None:
        """The challenge score of this set: accuracy if submitted, else the default."""
        if not self.submitted:
            return self.default_score
        return self.true_accuracy


def versions() -> dict[str, str]:
    names = ("jax", "jaxlib", "flax", "optax", "numpy", "chex")
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    found["python"] = platform.python_version()
    found["devices"] = [str(d) for d in jax.devices()]
    return found


def hidden_labels(data_dir, dataset_id: int) -> np.ndarray | None:
    """A generated set's target labels, or None for a folder without them."""
    path = generator.hidden_labels_path(data_dir, dataset_id)
    return generator.load_hidden_labels(data_dir, dataset_id) if path.is_file() else None


def report(solution: pipeline.Solution, truth: np.ndarray | None, oracle_name: str) -> dict:
    """The report.json of a run (no credentials, no arrays beyond small summaries)."""
    ds = solution.dataset
    head_acc = None
    if truth is not None:
        y = ds.to_index(truth)
        head_acc = (solution.head_probs.argmax(-1) == y[None]).mean(axis=1)
    est = solution.estimate
    return {
        "dataset": {"id": ds.id, "name": ds.name, "classes": ds.classes, "points": ds.info.points,
                    "default_score": ds.info.default_score, "path": str(ds.path),
                    "sizes": {"labeled": len(ds.y_labeled), "unlabeled": len(ds.x_unlabeled),
                              "target": len(ds.x_target)}},
        "strategy": solution.config.strategy,
        "oracle": oracle_name,
        "queries": [{"row": r, "label": l} for r, l in solution.queries],
        "posteriors": solution.posteriors,
        "chosen_head": solution.chosen_head,
        "refinement": None if solution.refinement is None else {
            "taught_rows": int(solution.refinement.taught.sum()),
            "changed_predictions": solution.refinement.changed},
        "estimate": dataclasses.asdict(est),
        "shift": None if solution.shift is None else dataclasses.asdict(solution.shift),
        "decision": {"submit": solution.decision.submit, "reason": solution.decision.reason},
        "agreement_matrix": solution.agreement_matrix(),
        "true_accuracy": None if truth is None else float(np.mean(solution.predictions == truth)),
        "head_true_accuracy": head_acc,
        "timings": solution.timings,
        "versions": versions(),
        "config": dataclasses.asdict(solution.config),
    }


def make_oracle(kind: str, dataset_id: int, data_dir, output_dir, classes, budget: int,
                url: str | None = None, truth: np.ndarray | None = None) -> oracle_lib.Oracle:
    """The oracle for one set; the local one answers from `truth` (the hidden labels)."""
    ledger = oracle_lib.Ledger(pathlib.Path(output_dir) / "labels.sqlite")
    if kind == "local":
        if truth is None:
            raise oracle_lib.OracleError(
                f"{data_dir}: no hidden/{dataset_id}.npy, so the local oracle cannot answer; "
                "use --oracle=http with --oracle_url, or a generated data folder")
        source = oracle_lib.LocalSource({dataset_id: truth})
    elif kind == "http":
        if not url:
            raise oracle_lib.OracleError("--oracle=http needs --oracle_url")
        source = oracle_lib.HttpSource(url)
    else:
        raise ValueError(f"oracle must be 'local' or 'http', got {kind!r}")
    return oracle_lib.Oracle(source, ledger, dataset_id, classes=classes, budget=budget)


def run_sets(ids, config: Config, data_dir=None, output_dir="outputs", oracle_kind="local",
             oracle_url=None, force=False, pictures=True, log=print) -> list[SetResult]:
    """Solves each set, writes `<output_dir>/<id>_<name>/{submission.csv, report.json,
    config.json, heads.npz}` (heads.npz: every head's target probabilities, the refinement
    student's, the posteriors and the saliency maps, for analyses), and with `pictures` the
    PNG figures and report.html (`plots`); prints one summary line per set and returns the
    results."""
    if data_dir is None:
        data_dir = cache.generated_dir(DEFAULT_DATA_SEED)
        for dataset_id in ids:
            cache.ensure_generated(data_dir, dataset_id, DEFAULT_DATA_SEED)
        log(f"data: generated sets (seed {DEFAULT_DATA_SEED}) in {data_dir}")
    results = []
    for dataset_id in ids:
        start = time.perf_counter()
        ds = loader.load_dataset(data_dir, dataset_id)
        run_dir = pathlib.Path(output_dir) / ds.name
        if outputs.is_submitted(run_dir) and not force:
            raise outputs.OutputError(f"{run_dir}: already submitted; pass --force to redo it")
        truth = hidden_labels(data_dir, dataset_id) if oracle_kind == "local" else None
        oracle = make_oracle(oracle_kind, dataset_id, data_dir, output_dir, ds.classes,
                             config.budget, oracle_url, truth)
        solution = pipeline.solve(ds, config, oracle, log)
        run_report = report(solution, truth, oracle_kind)
        outputs.write_submission(run_dir, solution.predictions, force=force)
        outputs.write_json(run_dir / "config.json", dataclasses.asdict(config))
        outputs.write_json(run_dir / "report.json", run_report)
        maps = {}
        if pictures:
            maps["gradient"], maps["counts"] = saliency.gradient_saliency(
                solution.ensemble, ds.x_target)
            maps["occlusion"], _ = saliency.occlusion_saliency(solution.ensemble, ds.x_target)
        if solution.refinement is not None:
            maps["student_probs"] = solution.refinement.probs
        outputs.write_arrays(run_dir / "heads.npz", head_probs=solution.head_probs,
                             posteriors=np.stack(solution.posteriors), **maps)
        if pictures:
            plots.write_report(run_dir, solution, run_report, maps)
        true_acc = run_report["true_accuracy"]
        head_acc = run_report["head_true_accuracy"]
        result = SetResult(
            dataset_id=ds.id, name=ds.name, points=ds.info.points,
            default_score=ds.info.default_score, labels_used=len(solution.queries),
            chosen_head=solution.chosen_head, estimated=solution.estimate.accuracy,
            submitted=solution.decision.submit, reason=solution.decision.reason,
            true_accuracy=true_acc,
            head_accuracy=None if head_acc is None else float(head_acc[solution.chosen_head]),
            best_head_accuracy=None if head_acc is None else float(np.max(head_acc)),
            seconds=time.perf_counter() - start,
            train_seconds=solution.timings["train_seconds"],
            compile_seconds=solution.timings["compile_seconds"])
        results.append(result)
        truth_text = "" if true_acc is None else f", true accuracy {true_acc:.3f}"
        log(f"[{ds.name}] labels used {result.labels_used}, head {result.chosen_head}, "
            f"estimated accuracy {result.estimated:.3f}, "
            f"{'SUBMIT' if result.submitted else 'ABSTAIN'}{truth_text} "
            f"({result.seconds:.0f}s): {result.reason}")
    return results


def score_table(results: list[SetResult]) -> str:
    """Markdown table of the results with the total challenge score (points x score)."""
    lines = ["| set | labels | head | estimated | decision | true | score x points |",
             "|---|---|---|---|---|---|---|"]
    total, known = 0.0, True
    for r in results:
        score = r.score
        known &= score is not None
        total += (score or 0.0) * r.points
        true = "—" if r.true_accuracy is None else f"{r.true_accuracy:.3f}"
        shown = "—" if score is None else f"{score:.3f} x {r.points:g}"
        lines.append(f"| {r.name} | {r.labels_used} | {r.chosen_head} | {r.estimated:.3f} | "
                     f"{'submit' if r.submitted else 'abstain'} | {true} | {shown} |")
    lines.append(f"| total | | | | | | {total:.3f}{'' if known else ' (partial)'} "
                 f"of {sum(r.points for r in results):g} |")
    return "\n".join(lines)
