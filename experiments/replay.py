r"""Replays finished runs' label loops under other rules, in seconds, without retraining.

  python -m experiments.replay --runs='outputs/bench_refine/seed*/hybrid/*' \
      --decided=0.99,0.9,0.8

Each run folder (written by `experiments.run` or `experiments.benchmark` on generated sets)
is played again once per rule; the first rule should be the runs' own (the default
`DECIDED`), whose row must repeat the runs. Prints, per rule, the challenge score summed over
the runs, the runs decided wrongly ('+' submitted below the default score, '-' abstained above
it), the estimate's mean absolute error on submitted runs and the runs not keeping a best head.
"""

import glob
import os

from absl import app
from absl import flags

from ambig_jax import replay

_RUNS = flags.DEFINE_list("runs", ["outputs/*_*"], "Glob patterns of run folders.")
_DECIDED = flags.DEFINE_list("decided", ["0.99", "0.9"], "Posterior masses from which queries "
                             "go to random rows, one rule each.")


def main(argv):
    del argv
    folders = sorted({f for pattern in _RUNS.value for f in glob.glob(pattern)
                      if os.path.isdir(f)})
    runs = [replay.load_run(folder) for folder in folders]
    if not runs:
        raise SystemExit(f"no run folders match {_RUNS.value}")
    print(f"{len(runs)} runs")
    print("| decided | challenge score | wrong decisions | estimate MAE | not the best head |")
    print("|---|---|---|---|---|")
    for decided in (float(d) for d in _DECIDED.value):
        s = replay.summarize(runs, [replay.replay(run, decided=decided) for run in runs])
        mae = "—" if s["estimate_mae"] is None else f"{s['estimate_mae']:.3f}"
        print(f"| {decided:g} | {s['score']:.3f} | {' '.join(s['wrong']) or '—'} | {mae} | "
              f"{' '.join(s['not_best_head']) or '—'} |")


if __name__ == "__main__":
    app.run(main)
