r"""The shift test alone, on generated sets: is each target drawn like its labeled rows?

  python -m experiments.shift --seeds=0,1,2 --dataset=all
  python -m experiments.shift --seeds=0,1,2 --dataset=888 --set shift_steps=400

Prints, per seed and set, the labeled-vs-target classifier's balanced accuracy on held-out
rows, its z-score and the call (`shift.detect_shift`, with each run's own key). Sets 12 and 13
have no shift; every other set has one. The backbone, trunk and `shift_steps` come from
`--config` and `--set` (`experiments.config_flags`).
"""

from absl import app
from absl import flags

from ambig_jax import features
from ambig_jax import pipeline
from ambig_jax import shift
from ambig_jax.datasets import cache
from ambig_jax.datasets import loader
from experiments import config_flags

_SEEDS = config_flags.define_seeds(["0"], "Data and training seeds.")
_DATASET = flags.DEFINE_string("dataset", "all", "Set id, comma list, or 'all' (generatable sets).")


def main(argv):
    del argv
    ids = config_flags.dataset_ids(_DATASET.value)
    print("| seed | set | balanced accuracy | z | shifted | seconds |")
    print("|---|---|---|---|---|---|")
    for seed in map(int, _SEEDS.value):
        config = config_flags.build(f"seed={seed}")
        for dataset_id in ids:
            cache.ensure_generated(cache.generated_dir(seed), dataset_id, seed)
            dataset = loader.load_dataset(cache.generated_dir(seed), dataset_id)
            dataset, _ = features.encode(dataset, config)
            found = shift.detect_shift(config, dataset, pipeline.shift_key(seed))
            print(f"| {seed} | {dataset.name} | {found.balanced_accuracy:.3f} | {found.z:.1f} | "
                  f"{'yes' if found.shifted else 'no'} | {found.seconds:.1f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
