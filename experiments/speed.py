r"""Training speed against the number of heads: one vmapped run vs H separate runs.

  python -m experiments.speed --dataset=1 --heads=1,2,4,8 --set steps=300

For each strategy and H, trains H heads in one compiled scan and reports the steady-state
training time (compile separately), images per second per head (labeled + pool rows of
every step), and the ratio of the vmapped run's time to H separate one-head runs
(H x the time of H=1): below 1, stacking heads pays; then the arithmetic: XLA's FLOPs per
step, the rate achieved, and a plain batched matmul of the first dense layer's shape. Runs 300
steps unless `--set steps=...`; every other `Config` field comes from `--config` and `--set` (`experiments.config_flags`).
"""

from absl import app
from absl import flags

from ambig_jax import benchmark
from ambig_jax.datasets import cache
from ambig_jax.datasets import loader
from experiments import config_flags

_DATASET = flags.DEFINE_integer("dataset", 1, "Generated set to train on.")
_HEADS = flags.DEFINE_list("heads", ["1", "2", "4", "8"], "Numbers of heads; the first, if 1, "
                           "is the baseline of the ratios.")
_STRATEGIES = flags.DEFINE_list("strategies", ["erm", "divdis"], "Strategies to time.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Runs per point; the fastest is kept.")


def main(argv):
    del argv
    data_dir = cache.generated_dir(0)
    cache.ensure_generated(data_dir, _DATASET.value, 0)
    dataset = loader.load_dataset(data_dir, _DATASET.value)
    heads = [int(h) for h in _HEADS.value]
    base = config_flags.build("steps=300")
    print(f"set {dataset.name}, input {dataset.input_shape}, {base.steps} steps, "
          f"best of {_REPEATS.value}")
    print("| strategy | H | rows per step | train s | compile s | images/s per head "
          "| vmapped / H separate | the same, compile included | GFLOP per step | GFLOP/s "
          "| plain matmul of the first layer's shape: GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for strategy in _STRATEGIES.value:
        for r in benchmark.time_heads(dataset, base, strategy, heads, _REPEATS.value):
            ratios = ["—" if r[k] is None else f"{r[k]:.2f}"
                      for k in ("vs_separate_runs", "vs_separate_runs_with_compile")]
            flops = ["—" if r[k] is None else f"{r[k]:.3g}"
                     for k in ("gflop_per_step", "gflops_achieved")]
            shape = "x".join(map(str, r["matmul_shape"]))
            print(f"| {strategy} | {r['heads']} | {r['rows_per_step']} | "
                  f"{r['train_seconds']:.2f} | {r['compile_seconds']:.2f} | "
                  f"{r['images_per_second_per_head']:.0f} | {ratios[0]} | {ratios[1]} | "
                  f"{flops[0]} | {flops[1]} | {r['matmul_gflops']:.3g} ({shape}) |",
                  flush=True)


if __name__ == "__main__":
    app.run(main)
