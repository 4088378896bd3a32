r"""Generates the challenge's data sets offline from the bundled MNIST copy.

  python -m experiments.make_datasets --out_dir=/tmp/d --seed=0 --dataset=all

writes `OUT_DIR/public/<id>_<name>/{X_labeled,y_labeled,X_unlabeled,X_val}.npy` and the
hidden target labels `OUT_DIR/hidden/<id>.npy` (with the generator's bookkeeping beside).
"""

import time

from absl import app
from absl import flags
from absl import logging

from ambig_jax.datasets import cache
from ambig_jax.datasets import generator

_OUT_DIR = flags.DEFINE_string("out_dir", None, "Folder to write public/ and hidden/ into.",
                               required=True)
_SEED = flags.DEFINE_integer("seed", 0, "Generator seed; other seeds give other samples.")
_DATASET = flags.DEFINE_string("dataset", "all", "A set id (e.g. 23), a comma list, or 'all'.")
_MNIST_DIR = flags.DEFINE_string("mnist_dir", None, "Another folder of the four MNIST files.")
_EMBEDDING = flags.DEFINE_enum("embedding", "tanh", generator.EMBEDDINGS,
                                generator.EMBEDDING_HELP)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    start = time.perf_counter()
    try:
        ids = cache.parse_ids(_DATASET.value)
    except ValueError as e:
        raise app.UsageError(str(e))
    for dataset_id in ids:
        t0 = time.perf_counter()
        try:
            generated = generator.generate(dataset_id, _SEED.value, _MNIST_DIR.value,
                                           _EMBEDDING.value)
        except generator.GeneratorError as e:
            raise app.UsageError(str(e))
        generator.save(generated, _OUT_DIR.value)
        labeled, unlabeled, target = generated.sizes()
        print(f"{generated.info.name:40s} labeled {labeled:5d}  unlabeled {unlabeled:5d}  "
              f"target {target:5d}  input {generated.x['labeled'].shape[1:]}  "
              f"{time.perf_counter() - t0:.1f}s", flush=True)
    logging.info("done in %.1fs", time.perf_counter() - start)
    print(f"total {time.perf_counter() - start:.1f}s -> {_OUT_DIR.value}")


if __name__ == "__main__":
    app.run(main)
