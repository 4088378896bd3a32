"""Side-by-side numbers: strategies x data sets x seeds through the whole pipeline, tables of
them, and the training time against the number of heads.

A row is the `RunRecord` of one (seed, strategy, data set) run of the whole pipeline
(`challenge.run_sets`) on a generated set, whose hidden labels score it. The challenge score of
a (strategy, seed) is the sum over sets of points x (true accuracy if submitted, else the set's
default score). The aggregation (`challenge_scores`, `summary`, `markdown`) is pure; `run`,
`time_heads`, `supervised_ceilings` and `write_tables` train and write.
"""

import json
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from ambig_jax import challenge
from ambig_jax import features
from ambig_jax import outputs
from ambig_jax import record
from ambig_jax import training
from ambig_jax.config import Config
from ambig_jax.datasets import cache
from ambig_jax.datasets.loader import Dataset
from ambig_jax.record import RunRecord


def sample(row: RunRecord) -> tuple[int, str]:
    """(seed, embedding family) of the generated sets a run solved: one family's sets of a seed
    are one sample of the challenge (`cache.embedding_of`)."""
    return row.config.seed, cache.embedding_of(row.dataset.path)


_KEYS = {"strategy": lambda r: r.config.strategy, "seed": lambda r: r.config.seed,
         "sample": sample, "dataset": lambda r: r.dataset.id}


def _group(rows: list[RunRecord], *keys: str) -> dict[tuple, list[RunRecord]]:
    groups: dict[tuple, list[RunRecord]] = {}
    for row in rows:
        groups.setdefault(tuple(_KEYS[k](row) for k in keys), []).append(row)
    return groups


def scored(rows: list[RunRecord]) -> list[RunRecord]:
    """`rows`, checked to be runs (not `challenge.Failure`s) that carry true accuracies (runs
    on generated sets)."""
    for row in rows:
        if isinstance(row, challenge.Failure):
            raise RuntimeError(f"{row.name}: the run failed ({row.error})")
        if row.true_accuracy is None:
            raise ValueError(f"{row.dataset.name}: the benchmark needs the hidden labels to "
                             "score a run")
    return rows


def challenge_scores(rows: list[RunRecord]) -> dict[str, dict[int, float]]:
    """strategy -> seed -> the challenge score (sum of points x score over its sets)."""
    scores: dict[str, dict[int, float]] = {}
    for (strategy, seed), group in sorted(_group(scored(rows), "strategy", "seed").items()):
        scores.setdefault(strategy, {})[seed] = float(
            sum(r.dataset.points * r.score for r in group))
    return scores


def _sample_name(seed: int, embedding: str) -> int | str:
    """A sample's name: its seed, followed by `-<family>` for another family than tanh."""
    return seed if embedding == "tanh" else f"{seed}-{embedding}"


def tag(row: RunRecord) -> str:
    """`<set id>/seed<seed>` (`seed<seed>-<family>` for sets 23 and 456 of another embedding
    family than tanh), how a run is named in lists."""
    return f"{row.dataset.id}/seed{_sample_name(*sample(row))}"


def calibration(rows: list[RunRecord]) -> dict:
    """How well the runs decided and estimated, over `rows` (runs of a benchmark, or replayed
    runs): the challenge score summed over them; the points lost to decisions per sample (a
    seed and an embedding family, `sample`; the key `decision_loss_per_seed`) and their mean;
    the runs decided wrongly ('+' submitted below the set's default, '-' abstained above it);
    the estimate's mean absolute error on submitted runs; how often the estimate's interval (of
    mass `rule.interval`) covers the true accuracy, over all runs; and the runs whose kept head
    is more than half a point below the best head. Runs are named as `tag` does, after
    `<strategy>:` when `rows` mix strategies.
    """
    rows = scored(rows)
    mixed = len({r.config.strategy for r in rows}) > 1
    name = (lambda r: f"{r.config.strategy}:{tag(r)}") if mixed else tag
    per_sample = {_sample_name(*key): float(sum(r.decision_loss for r in group))
                  for (key,), group in sorted(_group(rows, "sample").items())}
    submitted = [r for r in rows if r.submitted]
    covered = [r.estimate.low <= r.true_accuracy <= r.estimate.high for r in rows]
    return {
        "score": float(sum(r.dataset.points * r.score for r in rows)),
        "decision_loss_per_seed": per_sample,
        "decision_loss_mean": float(np.mean(list(per_sample.values()))),
        "wrong": [name(r) + ("+" if r.submitted else "-") for r in rows
                  if r.submitted != (r.true_accuracy > r.dataset.default_score)],
        "estimate_mae": (float(np.mean([abs(r.estimate.accuracy - r.true_accuracy)
                                        for r in submitted])) if submitted else None),
        "interval": sorted({r.config.rule.interval for r in rows}),
        "coverage": float(np.mean(covered)),
        "not_best_head": [name(r) for r in rows
                          if r.head_accuracy < r.best_head_accuracy - 0.005],
    }


def summary(rows: list[RunRecord]) -> dict:
    """Per strategy: score per seed and its mean, the points at stake, the decisions'
    `calibration`, the largest labels count, mean times."""
    result = {}
    scores = challenge_scores(rows)
    for (strategy,), group in sorted(_group(rows, "strategy").items()):
        seeds = scores[strategy]
        result[strategy] = {
            "score_per_seed": seeds,
            "score_mean": float(np.mean(list(seeds.values()))),
            "points": float(sum(r.dataset.points for r in group) / len(seeds)),
            **calibration(group),
            "max_labels": max(r.labels_used for r in group),
            "compile_seconds_mean": float(np.mean([r.timings.compile for r in group])),
            "train_seconds_mean": float(np.mean([r.timings.train for r in group])),
            "total_seconds_mean": float(np.mean([r.timings.set for r in group])),
        }
    return result


def markdown(rows: list[RunRecord]) -> str:
    """Two tables: accuracy per set and strategy (mean over seeds, with the best head's and
    the decisions), then the score and timings per strategy."""
    strategies = sorted({r.config.strategy for r in rows})
    seeds = sorted({r.config.seed for r in rows})
    cells = _group(scored(rows), "dataset", "strategy")
    names = {r.dataset.id: r.dataset.name for r in rows}
    lines = [f"Target accuracy of the predictions written, mean over seeds "
             f"{', '.join(map(str, seeds))} (the chosen head's before refinement in square "
             "brackets, the best head's in round ones; S/A = submitted/abstained per seed)", "",
             "| set | " + " | ".join(strategies) + " |",
             "|---|" + "---|" * len(strategies)]
    for dataset_id in sorted(names):
        row = [names[dataset_id]]
        for strategy in strategies:
            group = sorted(cells.get((dataset_id, strategy), []), key=lambda r: r.config.seed)
            if not group:
                row.append("—")
                continue
            decisions = "".join("S" if r.submitted else "A" for r in group)
            chosen = f"[{np.mean([r.head_accuracy for r in group]):.3f}] "
            row.append(f"{np.mean([r.true_accuracy for r in group]):.3f} {chosen}"
                       f"({np.mean([r.best_head_accuracy for r in group]):.3f}) {decisions}")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| strategy | challenge score, mean (per seed) | of points | lost to decisions | "
              "estimate MAE (submitted) | max labels | train s / set | compile s / set | "
              "total s / set |", "|---|---|---|---|---|---|---|---|---|"]
    summaries = summary(rows)
    for strategy, s in summaries.items():
        per_seed = ", ".join(f"{v:.3f}" for _, v in sorted(s["score_per_seed"].items()))
        mae = "—" if s["estimate_mae"] is None else f"{s['estimate_mae']:.3f}"
        lines.append(f"| {strategy} | {s['score_mean']:.3f} ({per_seed}) | {s['points']:g} | "
                     f"{s['decision_loss_mean']:.3f} | {mae} | {s['max_labels']} | "
                     f"{s['train_seconds_mean']:.1f} | {s['compile_seconds_mean']:.1f} | "
                     f"{s['total_seconds_mean']:.1f} |")
    lines += ["", calibration_table({**summaries, "all runs": calibration(rows)})]
    return "\n".join(lines)


def calibration_table(calibrations: dict[str, dict]) -> str:
    """Markdown: one row of `calibration` figures per name (a strategy, a rule, all runs)."""
    lines = ["| runs | challenge score (sum) | points lost to decisions per seed (mean) | "
             "wrong decisions | estimate MAE (submitted) | interval covers the truth | "
             "not the best head |", "|---|---|---|---|---|---|---|"]
    for name, c in calibrations.items():
        per_seed = ", ".join(f"{v:.3f}" for v in c["decision_loss_per_seed"].values())
        mae = "—" if c["estimate_mae"] is None else f"{c['estimate_mae']:.3f}"
        mass = "/".join(f"{m:.0%}" for m in c["interval"])
        lines.append(f"| {name} | {c['score']:.3f} | {per_seed} ({c['decision_loss_mean']:.3f}) | "
                     f"{' '.join(c['wrong']) or '—'} | {mae} | {c['coverage']:.0%} of "
                     f"runs ({mass} interval) | {' '.join(c['not_best_head']) or '—'} |")
    return "\n".join(lines)


def run(seeds, ids, strategies, base: Config, output_dir, pictures=False, log=print,
        embedding: str = "tanh", jobs: int = 1) -> list[RunRecord]:
    """Every (seed, strategy) over the generated sets `ids`; one record per run, `jobs` sets
    at once (`challenge.run_sets`: then the sets' seconds are measured sharing the cores).

    Seed s generates the data (`cache.generated_dir(s, embedding)`, `embedding` the family of
    sets 23 and 456's embedding) and seeds training and queries; a
    local oracle answers from the hidden labels, with a fresh ledger per (seed, strategy) under
    `<output_dir>/seed<s>/<strategy>/`.
    """
    rows = []
    for seed in seeds:
        data_dir = cache.generated_dir(seed, embedding)
        for dataset_id in ids:
            cache.ensure_generated(data_dir, dataset_id, seed, embedding)
        for strategy in strategies:
            log(f"== seed {seed}, strategy {strategy} ==")
            config = base.replace(strategy=strategy, seed=seed)
            run_dir = pathlib.Path(output_dir) / f"seed{seed}" / strategy
            rows += scored(challenge.run_sets(ids, config, data_dir, run_dir,
                                              pictures=pictures, log=log, jobs=jobs))
    return rows


def machine() -> dict:
    """Where the numbers were measured."""
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), **record.versions()}


def write_tables(output_dir, rows: list[RunRecord], extra: dict) -> str:
    """benchmark.md and benchmark.json (records, summary and `extra`); returns the Markdown."""
    output_dir = pathlib.Path(output_dir)
    table = markdown(rows)
    outputs.write_atomic(output_dir / "benchmark.md", table + "\n")
    outputs.write_json(output_dir / "benchmark.json", {
        **extra, "records": [r.to_json() for r in rows], "summary": summary(rows)})
    return table


def read_tables(output_dir) -> tuple[list[RunRecord], dict]:
    """The records and the `extra` entries of `write_tables`' benchmark.json."""
    saved = json.loads((pathlib.Path(output_dir) / "benchmark.json").read_text())
    rows = [RunRecord.from_json(r) for r in saved.pop("records")]
    saved.pop("summary", None)
    return rows, saved


def time_heads(dataset, base: Config, strategy: str, heads: list[int],
               repeats: int) -> list[dict]:
    """Training time against H under `base` (steps, batches, backbone): one row per H with
    best-of-`repeats` train and compile seconds,
    rows read per step and images per second per head (labeled rows, plus pool rows when some
    head has a diversity edge: ERM, and divdis with one head, skip the pool batch), and, when
    heads[0] is 1, the ratio of the vmapped run to H separate one-head runs, without and with
    compilation (H separate runs would also compile H times). The ratio is None where the
    one-head run reads fewer rows per step (divdis: one head has no pair) and so is no
    baseline. Each row also gives the arithmetic: XLA's FLOPs per step and per run of
    `config.steps` steps, the rate achieved, and the rate of a plain batched matmul of the
    first dense layer's shape
    ([H, rows, inputs] x [H, inputs, width], `matmul_rate`), what the step's largest
    product could reach on this machine."""
    rows = []
    for num_heads in heads:
        config = base.replace(strategy=strategy, num_heads=num_heads)
        runs = [training.train(config, dataset) for _ in range(repeats)]
        train = min(r.train_seconds for r in runs)
        pool = config.batch_pool if training.uses_pool(config) else 0
        flops = runs[0].flops_per_step
        kernel = _first_dense_kernel(runs[0].params)  # [H, inputs, width]
        shape = (num_heads, config.batch_labeled + pool) + kernel.shape[1:]
        rows.append({"strategy": strategy, "heads": num_heads, "train_seconds": train,
                     "compile_seconds": runs[0].compile_seconds,  # later runs reuse it
                     "rows_per_step": config.batch_labeled + pool,
                     "images_per_second_per_head":
                         config.steps * (config.batch_labeled + pool) / train,
                     "gflop_per_step": None if flops is None else flops / 1e9,
                     "tflop_per_run": None if flops is None else flops * config.steps / 1e12,
                     "gflops_achieved": None if flops is None else
                         flops * config.steps / train / 1e9,
                     "matmul_shape": shape, "matmul_gflops": matmul_rate(*shape)})
    base = rows[0] if heads[0] == 1 else None
    for row in rows:
        comparable = base is not None and base["rows_per_step"] == row["rows_per_step"]
        row["vs_separate_runs"] = (None if not comparable else
                                   row["train_seconds"] / (row["heads"] * base["train_seconds"]))
        row["vs_separate_runs_with_compile"] = (
            None if not comparable else (row["train_seconds"] + row["compile_seconds"])
            / (row["heads"] * (base["train_seconds"] + base["compile_seconds"])))
    return rows


def _first_dense_kernel(params):
    """The first [H, inputs, width] weight matrix of the stacked members (a dense layer's)."""
    return next(leaf for leaf in jax.tree.leaves(params) if leaf.ndim == 3)


def matmul_rate(heads: int, rows: int, inputs: int, width: int, repeats: int = 20) -> float:
    """GFLOP/s of a plain jitted batched matmul [heads, rows, inputs] x [heads, inputs, width]
    in float32 (best of `repeats`, after a warm-up): the rate the step's largest product
    could reach here."""
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (heads, rows, inputs), jnp.float32)
    b = jax.random.normal(key_b, (heads, inputs, width), jnp.float32)
    product = jax.jit(lambda a, b: jnp.einsum("hri,hiw->hrw", a, b))
    product(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * heads * rows * inputs * width / best / 1e9


def supervised_ceilings(config: Config, dataset: Dataset, y_target: np.ndarray,
                        y_unlabeled: np.ndarray | None = None, seed: int = 0,
                        both_halves: bool = False) -> dict:
    """What the run's backbone reaches when it is simply told the truth: one ERM member
    trained on the true labels of a random half of the target set (and, when `y_unlabeled`
    is given, of every unlabeled row too), scored on the other half. A solver never has
    these labels; the figures say how much of a set's error is the backbone's, not the
    method's.

    One split scores about half the target's rows once, so on a small target its own
    sampling spread is about a point (08: ~600 rows). `both_halves` also trains a second
    member on the other half and scores the first: every target row is then scored once, by
    a member that did not learn it, as a head's accuracy is, with half the spread.

    Args:
      config: the run's configuration (trunk, backbone, steps, ...); trained as one ERM
        member.
      dataset: the data set; its labeled rows are not used.
      y_target: [N] true class indices of the target rows.
      y_unlabeled: [M] true class indices of the unlabeled rows, or None.
      seed: seed of the split into halves.
      both_halves: also score each half by a member trained on the other one.

    Returns:
      {"half_target": accuracy, "with_unlabeled": accuracy or None, "both_halves": accuracy
       over every target row or None, "both_halves_se": its binomial standard error or None,
       "train_rows": {...}, "test_rows": int}.
    """
    dataset, _ = features.encode(dataset, config)  # the run's trunk, for colour images
    order = np.random.default_rng(seed).permutation(len(y_target))
    train_rows, test_rows = order[:len(order) // 2], order[len(order) // 2:]

    def score(name, xs, ys, rows):
        member = training.train_member(config, dataset, np.concatenate(xs), np.concatenate(ys),
                                       desc=f"[{dataset.name}] ceiling ({name})")
        return member.predict_proba(dataset.x_target[rows])[0].argmax(-1) == y_target[rows]

    sources = {"half_target": ([dataset.x_target[train_rows]], [y_target[train_rows]])}
    if y_unlabeled is not None:
        sources["with_unlabeled"] = (sources["half_target"][0] + [dataset.x_unlabeled],
                                     sources["half_target"][1] + [y_unlabeled])
    result = {"with_unlabeled": None, "both_halves": None, "both_halves_se": None,
              "train_rows": {}, "test_rows": len(test_rows)}
    right = {}
    for name, (xs, ys) in sources.items():
        right[name] = score(name, xs, ys, test_rows)
        result[name] = float(right[name].mean())
        result["train_rows"][name] = sum(len(y) for y in ys)
    if both_halves:
        other = score("other half", [dataset.x_target[test_rows]], [y_target[test_rows]],
                      train_rows)
        p = float(np.concatenate([right["half_target"], other]).mean())
        result["both_halves"] = p
        result["both_halves_se"] = float(np.sqrt(p * (1 - p) / len(y_target)))
    return result
