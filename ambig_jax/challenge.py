"""Playing the challenge on several data sets: solve each, write its outputs, sum the score.

Sets are independent, so `run_sets` solves several at once, each in its own worker process
(`workers.py`; `jobs`, by default one per CPU core as memory allows): on this project's 2-core
machines `--dataset=all` takes 0.76 of the time of one set at a time, with the same outputs
(docs/speed.md, "Two sets at once"). Each set's log lines reach the caller's `log` as they are
written, so the sets' lines interleave, each with its set's name.
"""

import dataclasses
import pathlib
import time

import numpy as np

from ambig_jax import features
from ambig_jax import oracle as oracle_lib
from ambig_jax import outputs
from ambig_jax import pipeline
from ambig_jax import plots
from ambig_jax import record
from ambig_jax import saliency
from ambig_jax import training
from ambig_jax import workers
from ambig_jax.config import Config
from ambig_jax.datasets import cache
from ambig_jax.datasets import catalog
from ambig_jax.datasets import generator
from ambig_jax.datasets import loader
from ambig_jax.record import RunRecord

DEFAULT_DATA_SEED = 0  # sets generated when no data folder is given


def hidden_labels(data_dir, dataset_id: int) -> np.ndarray | None:
    """A generated set's target labels, or None for a folder without them."""
    path = generator.hidden_labels_path(data_dir, dataset_id)
    return generator.load_hidden_labels(data_dir, dataset_id) if path.is_file() else None


@dataclasses.dataclass(frozen=True)
class Failure:
    """A set that could not be solved; it scores its default, as an abstention would."""
    dataset_id: int
    name: str
    points: float
    default_score: float
    error: str

    @classmethod
    def of(cls, dataset_id: int, error: Exception) -> "Failure":
        try:
            info = catalog.info_for(dataset_id)
            name, points, default = info.name, info.points, info.default_score
        except Exception:  # noqa: BLE001: an id the catalogue does not know
            name, points, default = str(dataset_id), 0.0, 0.0
        return cls(dataset_id, name, points, default, f"{type(error).__name__}: {error}")


def check_oracle_choice(kind: str, url: str | None) -> None:
    """Raises on an oracle that no set could use (checked once, before any set runs)."""
    if kind not in ("local", "http"):
        raise ValueError(f"oracle must be 'local' or 'http', got {kind!r}")
    if kind == "http" and not url:
        raise oracle_lib.OracleError("--oracle=http needs --oracle_url")


def make_oracle(kind: str, dataset_id: int, data_dir, output_dir, classes, budget: int,
                url: str | None = None, truth: np.ndarray | None = None,
                num_rows: int | None = None) -> oracle_lib.Oracle:
    """The oracle for one set; the local one answers from `truth` (the hidden labels)."""
    check_oracle_choice(kind, url)
    ledger = oracle_lib.Ledger(pathlib.Path(output_dir) / "labels.sqlite")
    if kind == "local":
        if truth is None:
            raise oracle_lib.OracleError(
                f"{data_dir}: no hidden/{dataset_id}.npy, so the local oracle cannot answer; "
                "use --oracle=http with --oracle_url, or a generated data folder")
        source = oracle_lib.LocalSource({dataset_id: truth})
    else:
        source = oracle_lib.HttpSource(url)
    return oracle_lib.Oracle(source, ledger, dataset_id, classes=classes, budget=budget,
                             num_rows=num_rows)


def run_sets(ids, config: Config, data_dir=None, output_dir="outputs", oracle_kind="local",
             oracle_url=None, force=False, pictures=True, log=print,
             jobs: int = 1) -> list[RunRecord | Failure]:
    """Solves each set and writes its outputs (`run_set`); a set that fails is logged and
    returned as a `Failure`, and the others still run. With `jobs` > 1, that many sets at
    once, each in a worker process (progress bars off there), largest first; the results
    come back in the order of `ids`, and are the same as one set at a time."""
    check_oracle_choice(oracle_kind, oracle_url)
    if data_dir is None:
        data_dir = cache.generated_dir(DEFAULT_DATA_SEED)
        for dataset_id in ids:
            cache.ensure_generated(data_dir, dataset_id, DEFAULT_DATA_SEED)
        log(f"data: generated sets (seed {DEFAULT_DATA_SEED}) in {data_dir}")
    args = (config, data_dir, output_dir, oracle_kind, oracle_url, force, pictures)
    jobs = min(jobs, len(ids))
    if jobs <= 1:
        return [_run_or_fail(dataset_id, *args, log=log) for dataset_id in ids]
    results = {}
    with workers.pool(jobs, log) as pool:
        largest_first = sorted(set(ids), key=lambda i: _bytes_on_disk(data_dir, i),
                               reverse=True)  # a set named twice runs once
        futures = {i: pool.submit(_run_or_fail, i, *args) for i in largest_first}
        for dataset_id in futures:
            try:
                results[dataset_id] = futures[dataset_id].result()
            except Exception as e:  # noqa: BLE001: a worker that died (out of memory, say)
                results[dataset_id] = _failed(dataset_id, e, log)
    return [results[dataset_id] for dataset_id in ids]


def _run_or_fail(dataset_id: int, config: Config, data_dir, output_dir, oracle_kind, oracle_url,
                 force, pictures, log=None) -> RunRecord | Failure:
    """`run_set`, or the `Failure` it raised (logged): one failing set must not stop the
    others. In a worker process, `log` is the queue to the caller's."""
    log = workers.log if log is None else log
    try:
        return run_set(dataset_id, config, data_dir, output_dir, oracle_kind, oracle_url,
                       force, pictures, log)
    except Exception as e:  # noqa: BLE001
        return _failed(dataset_id, e, log)


def _failed(dataset_id: int, error: Exception, log) -> Failure:
    failure = Failure.of(dataset_id, error)
    log(f"[{failure.name}] FAILED: {failure.error}")
    return failure


def _bytes_on_disk(data_dir, dataset_id: int) -> int:
    """The size of a set's files: the order `run_sets` starts sets in (a missing set: 0)."""
    try:
        folder = loader.find_folder(data_dir, dataset_id)
    except (loader.DatasetError, OSError):  # its run will say what is wrong
        return 0
    return sum(path.stat().st_size for path in pathlib.Path(folder).rglob("*") if path.is_file())


def saliency_maps(solution: pipeline.Solution, x: np.ndarray) -> dict[str, np.ndarray]:
    """What each head looks at on raw target rows x: "occlusion" maps; "gradient" maps where
    the heads are one network that sees the pixels (over the pixels alone, not the encoder's other
    features; none over trunk features); "counts", the rows each map averages."""
    encoder, ensemble = solution.encoder, solution.ensemble
    if encoder is None:
        occlusion, counts = saliency.occlusion_saliency(ensemble, x)
    else:
        occlusion, counts = saliency.occlusion_saliency(
            features.OnImages(ensemble, encoder), x, patch=encoder.occlusion_patch)
    maps = {"occlusion": occlusion, "counts": counts}
    if not isinstance(ensemble, training.TrainedEnsemble):
        return maps  # composite heads (`pairwise`) have no one network to differentiate
    if encoder is None:
        maps["gradient"], _ = saliency.gradient_saliency(ensemble, x)
    elif encoder.keeps_pixels:
        rows = encoder(x[:saliency.GRADIENT_ROWS])
        maps["gradient"] = encoder.image_maps(saliency.gradient_saliency(ensemble, rows)[0])
    return maps


def run_set(dataset_id: int, config: Config, data_dir, output_dir="outputs",
            oracle_kind="local", oracle_url=None, force=False, pictures=True,
            log=print) -> RunRecord:
    """Solves one set and writes `<output_dir>/<id>_<name>/`: report.json (the `RunRecord`),
    config.json, heads.npz (every head's target probabilities, the refinement student's, the
    posteriors and the saliency maps, for analyses), with `pictures` the PNG figures and
    report.html (`plots`), and last the predictions: `submission.csv` if the run submits,
    else `predictions.csv` (`outputs.write_predictions`)."""
    start = time.perf_counter()
    ds = loader.load_dataset(data_dir, dataset_id)
    run_dir = pathlib.Path(output_dir) / ds.name
    truth = hidden_labels(data_dir, dataset_id) if oracle_kind == "local" else None
    oracle = make_oracle(oracle_kind, dataset_id, data_dir, output_dir, ds.classes,
                         config.budget, oracle_url, truth, num_rows=len(ds.x_target))
    solution = pipeline.solve(ds, config, oracle, log)
    run = record.from_solution(solution, truth, oracle_kind)
    outputs.write_json(run_dir / "config.json", config.to_json())
    maps = {}
    if pictures:
        maps.update(saliency_maps(solution, ds.x_target))
    if solution.refinement is not None:
        maps["student_probs"] = solution.refinement.probs
    outputs.write_arrays(run_dir / "heads.npz", head_probs=solution.head_probs,
                         posteriors=np.stack(solution.resolution.posteriors), **maps)
    if pictures:
        plots.write_report(run_dir, solution, run, maps)
    run = dataclasses.replace(run, timings=dataclasses.replace(
        run.timings, set=time.perf_counter() - start))
    run.write(run_dir)
    written = outputs.write_predictions(run_dir, solution.predictions, run.submitted, force)
    truth_text = "" if run.true_accuracy is None else f", true accuracy {run.true_accuracy:.3f}"
    log(f"[{ds.name}] labels used {run.labels_used}, head {run.chosen_head}, "
        f"estimated accuracy {run.estimate.accuracy:.3f}, "
        f"{'SUBMIT' if run.submitted else 'ABSTAIN'}{truth_text} -> {written.name} "
        f"({run.timings.set:.0f}s): {run.decision.reason}")
    return run


def score_table(results: list[RunRecord | Failure]) -> str:
    """Markdown table of the runs with the total challenge score (points x score); a failed
    set counts its default score, as an abstention."""
    lines = ["| set | labels | head | estimated | decision | true | score x points |",
             "|---|---|---|---|---|---|---|"]
    total, known = 0.0, True
    for r in results:
        if isinstance(r, Failure):
            total += r.default_score * r.points
            error = r.error.replace("|", "/").replace("\n", " ")[:160]
            lines.append(f"| {r.name} | | | | failed: {error} | — | "
                         f"{r.default_score:.3f} x {r.points:g} |")
            continue
        score, points = r.score, r.dataset.points
        known &= score is not None
        total += (score or 0.0) * points
        true = "—" if r.true_accuracy is None else f"{r.true_accuracy:.3f}"
        shown = "—" if score is None else f"{score:.3f} x {points:g}"
        lines.append(f"| {r.dataset.name} | {r.labels_used} | {r.chosen_head} | "
                     f"{r.estimate.accuracy:.3f} | {'submit' if r.submitted else 'abstain'} | "
                     f"{true} | {shown} |")
    lines.append(f"| total | | | | | | {total:.3f}{'' if known else ' (partial)'} "
                 f"of {sum(_points(r) for r in results):g} |")
    return "\n".join(lines)


def _points(result: RunRecord | Failure) -> float:
    return result.points if isinstance(result, Failure) else result.dataset.points
