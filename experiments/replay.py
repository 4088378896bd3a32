r"""Replays finished runs' label loops under other rules, in seconds, without retraining.

  python -m experiments.replay --runs='outputs/bench/seed*/hybrid/*' \
      --rule='rule.decided=0.99' --rule='rule.exact_prior=0 rule.interval=0.8'

Each run folder (written by `experiments.run` or `experiments.benchmark` on generated sets) is
played again under its own config (the first row, which repeats the runs; a rule field that did
not exist when a run was made takes today's default), then once per `--rule`: space-separated
`field=value` overrides of each run's own config, typed as everywhere else (`Config.override`).
Only what the label loop reads may change: `rule.*`, `budget` and `shift_test`. A rule whose
first word is `default` starts from today's default rule instead of the run's (`--rule=default`,
`--rule='default rule.margin=0.02'`). Prints, per rule, the decisions' calibration
(`benchmark.calibration`): the challenge score summed over the runs, the points lost to
decisions per seed, the runs decided wrongly ('+' submitted below the default score, '-'
abstained above it), the estimate's mean absolute error on submitted runs, how often its
interval covers the true accuracy, and the runs not keeping a best head.
`--draws=N` plays every run N times, the label loop's random rows drawn anew each time
after the first: the figures are means over the draws and each wrong decision is listed with
the share of draws that made it (one draw of a set no head explains can fall either way).
`--per_run` also prints, per run, each rule's estimate, interval and decision (first draw) beside
the true accuracy. `--shift_test=compute` runs the shift test again on every run's set (4-15 s
each), for runs made without it; `--blocks=compute` the feature blocks' test (5-20 s on the
sets where it passes), for runs made before it measured its blocks on held-out labeled rows.
"""

from absl import app
from absl import flags

from ambig_jax import benchmark
from ambig_jax import replay
from ambig_jax.config import Config
from ambig_jax.config import Rule

_RUNS = flags.DEFINE_list("runs", ["outputs/*_*"], "Glob patterns of run folders.")
_RULE = flags.DEFINE_multi_string("rule", [], "A rule to replay under: space-separated "
                                  "overrides of each run's config, e.g. 'rule.decided=0.99'.")
_DRAWS = flags.DEFINE_integer("draws", 1, "Replays of each run: the first draws the label loop's "
                              "random rows as the run did, each further one another sequence; "
                              "rates of wrong decisions over the draws say more than one.")
_SHIFT_TEST = flags.DEFINE_enum("shift_test", "saved", ["saved", "compute"],
                                "The shift test's result: the run's own, or computed again now "
                                "on each run's set.")
_PER_RUN = flags.DEFINE_bool("per_run", False, "Also print each run's estimate, interval and "
                             "decision under each rule (first draw), beside the true accuracy.")
_BLOCKS = flags.DEFINE_enum("blocks", "saved", ["saved", "compute"],
                            "The feature blocks' test: the run's own, or computed again now.")
REPLAYABLE = ("rule.", "budget=", "shift_test=")
TODAY = "default"  # a rule's first word: start from today's default rule, not the run's


def _config(run, rule: list[str]) -> Config:
    """The run's config with `rule` applied (after today's default rule if it starts so)."""
    config = run.record.config
    if rule[:1] == [TODAY]:
        config, rule = config.replace(rule=Rule()), rule[1:]
    return config.override(rule)


def main(argv):
    del argv
    rules = [text.split() for text in _RULE.value]
    for assignment in (a for rule in rules for a in rule if a != TODAY):
        if not assignment.startswith(REPLAYABLE):
            raise app.UsageError(f"{assignment!r}: a replay reuses the saved heads; only "
                                 "rule.*, budget and shift_test can change")
    runs = replay.load_runs(_RUNS.value)
    if _SHIFT_TEST.value == "compute":
        runs = _computed_again(runs, replay.with_shift_test)
    if _BLOCKS.value == "compute":
        runs = _computed_again(runs, replay.with_block_test)
    print(f"{len(runs)} runs, shift test {_SHIFT_TEST.value}, blocks {_BLOCKS.value}, "
          f"{_DRAWS.value} draw(s) each")
    calibrations, first_draws = {}, {}
    for rule in [[]] + rules:
        try:
            outcomes = [replay.replay(run, _config(run, rule), draw)
                        for draw in range(_DRAWS.value) for run in runs]
        except ValueError as e:
            raise app.UsageError(str(e)) from None
        name = " ".join(rule) or "the runs' own rule"
        calibrations[name] = replay.summarize(runs * _DRAWS.value, outcomes, _DRAWS.value)
        first_draws[name] = outcomes[:len(runs)]
    if _PER_RUN.value:
        print(_per_run_table(runs, first_draws))
    print(benchmark.calibration_table(calibrations))


def _computed_again(runs, with_test):
    """`runs` with a test computed again by `with_test` (run -> (run, test or None)), each
    test printed as it comes."""
    tested = []
    for run in runs:
        try:
            run, found = with_test(run)
        except ValueError as e:
            raise app.UsageError(str(e)) from None
        if found is not None:
            print(f"{run.run_dir.name} (seed {run.record.config.seed}): {found.describe()}",
                  flush=True)
        tested.append(run)
    return tested


def _per_run_table(runs, first_draws: dict) -> str:
    """Markdown: one row per run, one column per rule: estimate [interval], decision, and the
    true accuracy credited (the rule may keep another head)."""
    lines = ["| set | seed | " + " | ".join(first_draws) + " |",
             "|---|---|" + "---|" * len(first_draws)]
    for i, run in enumerate(runs):
        cells = []
        for outcomes in first_draws.values():
            found, estimate = outcomes[i].resolution, outcomes[i].resolution.estimate
            cells.append(f"{estimate.accuracy:.3f} [{estimate.low:.3f}, {estimate.high:.3f}] "
                         f"{'submit' if found.decision.submit else 'abstain'}, true "
                         f"{outcomes[i].accuracy:.3f}")
        lines.append(f"| {run.record.dataset.name} | {run.record.config.seed} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    app.run(main)
