r"""Supervised ceilings: what the backbone reaches on generated sets when told the truth.

  python -m experiments.ceiling --dataset=all --seed=1

For each set, one ERM member with the default configuration learns the true labels of half
of the target set (then also of every unlabeled row) and is scored on the other half. No
solver has these labels: the table separates the backbone's share of a set's error from the
method's. The labels come from the generator's hidden folder. The backbone and training come
from `--config` and `--set` (`experiments.config_flags`), e.g. `--set backbone=conv`.
"""

from absl import app
from absl import flags

from ambig_jax import benchmark
from ambig_jax.datasets import cache
from ambig_jax.datasets import generator
from ambig_jax.datasets import loader
from experiments import config_flags

_DATASET = flags.DEFINE_string("dataset", "all", "Set id, comma list, or 'all' (generatable sets).")
_SEED = flags.DEFINE_integer("seed", 1, "Seed of the generated data and of training.")
_EMBEDDING = flags.DEFINE_enum("embedding", "tanh", generator.EMBEDDINGS,
                                generator.EMBEDDING_HELP)


def main(argv):
    del argv
    ids = config_flags.dataset_ids(_DATASET.value)
    data_dir = cache.generated_dir(_SEED.value, _EMBEDDING.value)
    config = config_flags.build(f"seed={_SEED.value}")
    print(f"seed {_SEED.value}, backbone {config.backbone}, {config.steps} steps")
    print("| set | test rows | half of the target: rows, accuracy "
          "| + every unlabeled row: rows, accuracy |")
    print("|---|---|---|---|")
    for dataset_id in ids:
        cache.ensure_generated(data_dir, dataset_id, _SEED.value, _EMBEDDING.value)
        dataset = loader.load_dataset(data_dir, dataset_id)
        truth = {split: dataset.to_index(generator.load_hidden_split_labels(
            data_dir, dataset_id, split)) for split in ("target", "unlabeled")}
        r = benchmark.supervised_ceilings(config, dataset, truth["target"], truth["unlabeled"],
                                          seed=_SEED.value)
        rows = r["train_rows"]
        print(f"| {dataset.name} | {r['test_rows']} | {rows['half_target']}: "
              f"{r['half_target']:.3f} | {rows['with_unlabeled']}: {r['with_unlabeled']:.3f} |",
              flush=True)


if __name__ == "__main__":
    app.run(main)
