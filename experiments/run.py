r"""Plays the challenge: python -m experiments.run --dataset=23

With no --data_dir, the sets are generated from the bundled MNIST into a cache folder and a
local oracle answers from their hidden labels. Outputs go to
`<output_dir>/<id>_<name>/{submission.csv, report.json, config.json, heads.npz, report.html,
*.png}`; revealed labels are kept in `<output_dir>/labels.sqlite`, so a rerun never asks for a
label twice. Several sets run at once, one per CPU core (`--jobs`). Any `Config` field can be
set: `--set seed=1 --set strategy=divdis`, `--config=smoke` for a run of seconds
(`experiments.config_flags`).
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax

from ambig_jax import challenge
from ambig_jax import oracle
from ambig_jax.datasets import loader
from experiments import config_flags

_DATASET = flags.DEFINE_string("dataset", "23", "Set id, comma list, or 'all'.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder of challenge-format sets "
                                "(default: generated into a cache).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "outputs", "Where results are written.")
_ORACLE = flags.DEFINE_enum("oracle", "local", ["local", "http"], "Who answers label queries.")
_ORACLE_URL = flags.DEFINE_string("oracle_url", None, "Reveal API base URL (--oracle=http); "
                                  "credentials from HACKATHON_USERNAME/HACKATHON_PASSWORD.")
_PICTURES = flags.DEFINE_bool("pictures", True, "Write the PNG figures and report.html.")
_JOBS = config_flags.define_jobs()
_FORCE = flags.DEFINE_bool("force", False, "Replace (or, when the run abstains, remove) a "
                           "submission.csv that holds an earlier run's other predictions.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.info("devices: %s", jax.devices())
    config = config_flags.build()
    logging.info("config: %s", config)
    if os.path.exists(_OUTPUT_DIR.value) and not os.path.isdir(_OUTPUT_DIR.value):
        raise app.UsageError(f"--output_dir={_OUTPUT_DIR.value} is a file, not a folder")
    try:
        challenge.check_oracle_choice(_ORACLE.value, _ORACLE_URL.value)
    except oracle.OracleError as e:
        raise app.UsageError(str(e)) from None
    if _DATASET.value == "all" and _DATA_DIR.value:
        ids = loader.available_ids(_DATA_DIR.value)
    else:
        ids = config_flags.dataset_ids(_DATASET.value, generated=_DATA_DIR.value is None)
    jobs = config_flags.jobs(_JOBS, len(ids))
    results = challenge.run_sets(ids, config, _DATA_DIR.value, _OUTPUT_DIR.value,
                                 _ORACLE.value, _ORACLE_URL.value, _FORCE.value,
                                 _PICTURES.value, jobs=jobs)
    if len(results) > 1:
        print(challenge.score_table(results))
    failed = [r for r in results if isinstance(r, challenge.Failure)]
    if failed:
        raise SystemExit(f"{len(failed)} of {len(results)} sets failed: "
                         + "; ".join(f"{f.name}: {f.error}" for f in failed))


if __name__ == "__main__":
    app.run(main)
