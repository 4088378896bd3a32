r"""Where a check label can tell a set no head explains: the kept head's accuracy on the target
rows where it is sure, by how many heads predict its class.

  python -m experiments.strata --runs='outputs/benchmark/seed*/hybrid/[0-9]*' --groups=1-5+12+13,6+7

Each run folder (a finished run on a generated set) gives the head it kept and
`replay.agreement_strata`; the rows are summed over the runs of each group of sets (`--groups`:
'+'-joined set ids, '-' for a range; every set of the runs alone if empty). A cell is the share right and, in brackets, the share of the group's
sure rows with that many heads agreeing (docs/decision-rules.md reads them).
"""

import numpy as np
from absl import app
from absl import flags

from ambig_jax import replay

_RUNS = flags.DEFINE_list("runs", ["outputs/*_*"], "Glob patterns of run folders.")
_GROUPS = flags.DEFINE_list("groups", [], "Groups of set ids, e.g. 1-5+12+13,6+7.")
_MIN_CONFIDENCE = flags.DEFINE_float("min_confidence", 0.99, "A row counts where the kept head's "
                                     "probability of its class is at least this.")


def parse_group(text: str) -> set[int]:
    """'1-5+12' -> {1, 2, 3, 4, 5, 12}."""
    ids = set()
    for part in text.split("+"):
        low, _, high = part.partition("-")
        ids.update(range(int(low), int(high or low) + 1))
    return ids


def main(argv):
    del argv
    runs = replay.load_runs(_RUNS.value)
    groups = ({text: parse_group(text) for text in _GROUPS.value} or
              {str(i): {i} for i in sorted({run.record.dataset.id for run in runs})})
    num_heads = max(run.probs.shape[0] for run in runs)
    totals = {name: np.zeros((2, num_heads + 1)) for name in groups}
    for run in runs:
        rows, right = replay.agreement_strata(run.probs, run.truth, run.record.chosen_head,
                                              _MIN_CONFIDENCE.value)
        for name, ids in groups.items():
            if run.record.dataset.id in ids:
                totals[name][:, :len(rows)] += [rows, right]
    print(f"{len(runs)} runs; kept head sure at >= {_MIN_CONFIDENCE.value}: share right (share "
          "of the sure rows) by the number k of heads predicting its class")
    print("| sets | " + " | ".join(f"k = {k}" for k in range(1, num_heads + 1)) + " |")
    print("|---|" + "---|" * num_heads)
    for name, (rows, right) in totals.items():
        cells = [f"{right[k] / rows[k]:.2f} ({rows[k] / max(rows.sum(), 1):.2f})" if rows[k]
                 else "—" for k in range(1, num_heads + 1)]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    app.run(main)
