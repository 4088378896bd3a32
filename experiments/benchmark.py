r"""Strategies side by side on generated sets, several seeds, the whole pipeline each time.

  python -m experiments.benchmark --seeds=0,1,2 --dataset=all --strategies=hybrid,divdis,dbat,erm

Seed s generates the data (`cache.generated_dir(s)`; `--embedding` picks the family of sets
23 and 456's embedding) and seeds training and queries; a local oracle answers from the
hidden labels, with a fresh 5-label ledger per (seed, strategy). ERM (independent heads, one
kept by the same 5 labels) is the floor. Every other `Config` field
comes from `--config` and `--set` (`experiments.config_flags`). Writes
`<output_dir>/benchmark.md` and `benchmark.json`, and every run's outputs under
`<output_dir>/seed<s>/<strategy>/`.
"""

import pathlib
import shutil

from absl import app
from absl import flags

from ambig_jax import benchmark
from ambig_jax.config import STRATEGIES
from ambig_jax.datasets import generator
from experiments import config_flags

_SEEDS = config_flags.define_seeds(["0", "1", "2"], "Data and training seeds.")
_DATASET = flags.DEFINE_string("dataset", "all", "Set id, comma list, or 'all' (generatable).")
_STRATEGIES = flags.DEFINE_list("strategies", ["hybrid", "divdis", "dbat", "erm"],
                                f"Strategies, among {STRATEGIES}.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "outputs/benchmark", "Where results go.")
_PICTURES = flags.DEFINE_bool("pictures", False, "Also write every run's figures.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Delete an earlier benchmark in output_dir.")
_TABLES_ONLY = flags.DEFINE_bool("tables_only", False, "Run nothing: rebuild benchmark.md and the "
                                 "summary from the records of output_dir/benchmark.json.")
_JOBS = config_flags.define_jobs(" (seconds are then measured sharing the cores; --jobs=1 "
                                 "for timings)")
_EMBEDDING = flags.DEFINE_enum("embedding", "tanh", generator.EMBEDDINGS,
                                generator.EMBEDDING_HELP)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    output_dir = pathlib.Path(_OUTPUT_DIR.value)
    if _TABLES_ONLY.value:
        rows, extra = benchmark.read_tables(output_dir)
        print(benchmark.write_tables(output_dir, rows, extra))
        return
    ids = config_flags.dataset_ids(_DATASET.value)
    if output_dir.exists() and any(output_dir.iterdir()):
        if not _OVERWRITE.value:
            raise app.UsageError(f"{output_dir} holds an earlier benchmark (its labels would be "
                                 "reused); pass --overwrite to delete it or pick another folder")
        shutil.rmtree(output_dir)
    base = config_flags.build()
    jobs = config_flags.jobs(_JOBS, len(ids))
    rows = benchmark.run([int(s) for s in _SEEDS.value], ids,
                         _STRATEGIES.value, base, output_dir, _PICTURES.value,
                         log=lambda line: print(line, flush=True), embedding=_EMBEDDING.value,
                         jobs=jobs)
    print(benchmark.write_tables(output_dir, rows, {
        "config": base.to_json(), "overrides": config_flags.overrides(), "embedding": _EMBEDDING.value,
        "varied": ["strategy", "seed"], "machine": benchmark.machine(), "jobs": jobs}))


if __name__ == "__main__":
    app.run(main)
