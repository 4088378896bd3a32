r"""Trains the ensemble on generated sets and prints each head's target accuracy and timings.

  python -m experiments.heads --dataset=all --seed=1 --strategies=seqmi,erm

The target labels are read from the generator's hidden folder and used for scoring only.
Every other `Config` field comes from `--config` and `--set` (`experiments.config_flags`),
e.g. `--set num_heads=8 --set pool=unlabeled+target`.
"""

from absl import app
from absl import flags

from ambig_jax import features
from ambig_jax import pipeline
from ambig_jax.datasets import cache
from ambig_jax.datasets import generator
from ambig_jax.datasets import loader
from experiments import config_flags

_DATASET = flags.DEFINE_string("dataset", "all", "Set id, comma list, or 'all' (generatable sets).")
_SEED = flags.DEFINE_integer("seed", 1, "Seed of the generated data and of training.")
_STRATEGIES = flags.DEFINE_list("strategies", ["seqmi", "erm"], "Strategies to compare.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Generated data folder (default: cache).")
_EMBEDDING = flags.DEFINE_enum("embedding", "tanh", generator.EMBEDDINGS,
                                generator.EMBEDDING_HELP)


def main(argv):
    del argv
    data_dir = _DATA_DIR.value or cache.generated_dir(_SEED.value, _EMBEDDING.value)
    ids = config_flags.dataset_ids(_DATASET.value)
    base = config_flags.build(f"seed={_SEED.value}")
    print(f"{'set':>4} {'strategy':8} {'best':>6}  heads' target accuracy            "
          f"{'compile':>7} {'train':>6}")
    for dataset_id in ids:
        cache.ensure_generated(data_dir, dataset_id, _SEED.value, _EMBEDDING.value)
        ds, _ = features.encode(loader.load_dataset(data_dir, dataset_id), base)
        y_target = ds.to_index(generator.load_hidden_labels(data_dir, dataset_id))
        for strategy in _STRATEGIES.value:
            config = base.replace(strategy=strategy)
            ens, _ = pipeline.train_heads(config, ds, pipeline.run_keys(config.seed)[0],
                                          log=lambda _: None)
            acc = (ens.predict_proba(ds.x_target).argmax(-1) == y_target[None]).mean(axis=1)
            heads = " ".join(f"{a:.3f}" for a in acc)
            print(f"{dataset_id:>4} {strategy:8} {acc.max():6.3f}  {heads:34s} "
                  f"{ens.compile_seconds:6.1f}s {ens.train_seconds:5.1f}s", flush=True)


if __name__ == "__main__":
    app.run(main)
