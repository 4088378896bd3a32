"""Entry points: `python -m experiments.<name>`, each an absl program over `ambig_jax`.

absl prints Python's INFO records, and jax, probing every platform on first use, logs one where
libtpu is absent ("Unable to initialize backend 'tpu': INTERNAL: ..."). It is no error on a CPU
or GPU machine, so that logger is kept to warnings; `experiments.run` logs the devices used.
"""

import logging

logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
