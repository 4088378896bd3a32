r"""Trains the ensemble on generated sets and prints each head's target accuracy and timings.

  python -m experiments.heads --dataset=all --seed=1 --strategies=seqmi,erm

The target labels are read from the generator's hidden folder and used for scoring only.
"""

import time

from absl import app
from absl import flags
import numpy as np

from ambig_jax.config import Config
from ambig_jax import training
from ambig_jax.datasets import cache
from ambig_jax.datasets import generator
from ambig_jax.datasets import loader

_DATASET = flags.DEFINE_string("dataset", "all", "Set id, comma list, or 'all' (generatable sets).")
_SEED = flags.DEFINE_integer("seed", 1, "Seed of the generated data and of training.")
_STRATEGIES = flags.DEFINE_list("strategies", ["seqmi", "erm"], "Strategies to compare.")
_NUM_HEADS = flags.DEFINE_integer("num_heads", None, "Heads (default: the config's).")
_STEPS = flags.DEFINE_integer("steps", None, "Training steps (default: the config's).")
_POOL = flags.DEFINE_string("pool", None, "Diversity pool (default: the config's).")
_BACKBONE = flags.DEFINE_string("backbone", None, "mlp or conv (default: the config's).")
_SMOOTHING = flags.DEFINE_float("label_smoothing", None, "Smoothing of pushed heads "
                                 "(default: the config's).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Generated data folder (default: cache).")


def main(argv):
    del argv
    data_dir = _DATA_DIR.value or cache.generated_dir(_SEED.value)
    ids = cache.parse_ids(_DATASET.value)
    overrides = {k: v for k, v in dict(num_heads=_NUM_HEADS.value, steps=_STEPS.value,
                                       pool=_POOL.value, backbone=_BACKBONE.value,
                                       label_smoothing=_SMOOTHING.value).items()
                 if v is not None}
    print(f"{'set':>4} {'strategy':8} {'best':>6}  heads' target accuracy            "
          f"{'compile':>7} {'train':>6}")
    for dataset_id in ids:
        cache.ensure_generated(data_dir, dataset_id, _SEED.value)
        ds = loader.load_dataset(data_dir, dataset_id)
        y_target = ds.to_index(generator.load_hidden_labels(data_dir, dataset_id))
        for strategy in _STRATEGIES.value:
            config = Config(strategy=strategy, seed=_SEED.value, **overrides)
            ens = training.train(config, ds)
            acc = (ens.predict_proba(ds.x_target).argmax(-1) == y_target[None]).mean(axis=1)
            heads = " ".join(f"{a:.3f}" for a in acc)
            print(f"{dataset_id:>4} {strategy:8} {acc.max():6.3f}  {heads:34s} "
                  f"{ens.compile_seconds:6.1f}s {ens.train_seconds:5.1f}s", flush=True)


if __name__ == "__main__":
    app.run(main)
