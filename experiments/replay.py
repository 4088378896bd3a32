r"""Replays finished runs' label loops under other rules, in seconds, without retraining.

  python -m experiments.replay --runs='outputs/bench_refine/seed*/hybrid/*' \
      --decided=1,0.99,0.9 --exact_prior=0.5,0 --shift_test=saved

Each run folder (written by `experiments.run` or `experiments.benchmark` on generated sets)
is played again once per rule, a (decided, exact_prior) pair; the first pair should be the
runs' own (the defaults `DECIDED`, `EXACT_PRIOR`), whose row must repeat the runs. Prints, per
rule, the challenge score summed over the runs, the runs decided wrongly ('+' submitted below
the default score, '-' abstained above it), the estimate's mean absolute error on submitted
runs and the runs not keeping a best head. `--shift_test=compute` runs the shift test again on
every run's set (4-15 s each), for runs made before it existed.
"""

import dataclasses
import glob
import itertools
import os

from absl import app
from absl import flags

from ambig_jax import replay

_RUNS = flags.DEFINE_list("runs", ["outputs/*_*"], "Glob patterns of run folders.")
_DECIDED = flags.DEFINE_list("decided", ["1", "0.99"], "Posterior masses from which queries "
                             "go to random rows.")
_SHIFT_TEST = flags.DEFINE_enum("shift_test", "saved", ["saved", "compute", "off"],
                                "The shift test's result: the run's own (none for runs made "
                                "before it), computed again now on each run's set, or none.")
_EXACT_PRIOR = flags.DEFINE_list("exact_prior", ["0.5"], "Prior weights of the estimate's "
                                 "exact reading of the heads' probabilities.")


def main(argv):
    del argv
    folders = sorted({f for pattern in _RUNS.value for f in glob.glob(pattern)
                      if os.path.isdir(f)})
    runs = [replay.load_run(folder) for folder in folders]
    if not runs:
        raise SystemExit(f"no run folders match {_RUNS.value}")
    if _SHIFT_TEST.value == "off":
        runs = [dataclasses.replace(run, held_out=None) for run in runs]
    elif _SHIFT_TEST.value == "compute":
        tested = []
        for run in runs:
            run, found = replay.with_shift_test(run)
            print(f"{run.run_dir.name} (seed {run.seed}): shift z {found.z:.1f}"
                  + ("" if found.shifted else f", not shifted, held-out "
                     f"{found.held_out.correct}/{found.held_out.rows}"), flush=True)
            tested.append(run)
        runs = tested
    print(f"{len(runs)} runs, shift test {_SHIFT_TEST.value}")
    print("| decided | exact prior | challenge score | wrong decisions | estimate MAE | "
          "not the best head |")
    print("|---|---|---|---|---|---|")
    for decided, exact_prior in itertools.product(map(float, _DECIDED.value),
                                                  map(float, _EXACT_PRIOR.value)):
        s = replay.summarize(runs, [replay.replay(run, decided, exact_prior) for run in runs])
        mae = "—" if s["estimate_mae"] is None else f"{s['estimate_mae']:.3f}"
        print(f"| {decided:g} | {exact_prior:g} | {s['score']:.3f} | "
              f"{' '.join(s['wrong']) or '—'} | {mae} | "
              f"{' '.join(s['not_best_head']) or '—'} |")


if __name__ == "__main__":
    app.run(main)
