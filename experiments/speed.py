r"""Training speed against the number of heads: one vmapped run vs H separate runs.

  python -m experiments.speed --dataset=1 --heads=1,2,4,8
  python -m experiments.speed --dataset=all --heads=6 --strategies=hybrid --repeats=1

For each set, strategy and H, trains H heads in one compiled scan and reports the steady-state
training time (compile separately), images per second per head (labeled + pool rows of
every step), and the ratio of the vmapped run's time to H separate one-head runs
(H x the time of H=1): below 1, stacking heads pays; then the arithmetic: XLA's FLOPs per
step and per training run (steps x FLOPs per step), the rate achieved, and a plain batched
matmul of the first dense layer's shape. Every `Config` field (steps included) comes from
`--config` and `--set` (`experiments.config_flags`).
"""

from absl import app
from absl import flags

from ambig_jax import benchmark
from ambig_jax import features
from ambig_jax.datasets import cache
from ambig_jax.datasets import loader
from experiments import config_flags

_DATASET = flags.DEFINE_string("dataset", "1", "Generated set(s) to train on: an id, a comma "
                               "list, or 'all'.")
_HEADS = flags.DEFINE_list("heads", ["1", "2", "4", "8"], "Numbers of heads; the first, if 1, "
                           "is the baseline of the ratios.")
_STRATEGIES = flags.DEFINE_list("strategies", ["erm", "divdis"], "Strategies to time.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Runs per point; the fastest is kept.")


def main(argv):
    del argv
    ids = config_flags.dataset_ids(_DATASET.value)
    data_dir = cache.generated_dir(0)
    heads = [int(h) for h in _HEADS.value]
    base = config_flags.build()
    print(f"{base.steps} steps, best of {_REPEATS.value}")
    print("| set | input | strategy | H | rows per step | train s | compile s "
          "| images/s per head | vmapped / H separate | the same, compile included "
          "| GFLOP per step | TFLOP per run | GFLOP/s "
          "| plain matmul of the first layer's shape: GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for dataset_id in ids:
        cache.ensure_generated(data_dir, dataset_id, 0)
        raw = loader.load_dataset(data_dir, dataset_id)
        dataset, _ = features.encode(raw, base)  # heads on trunk features (colour images)
        shape_text = "x".join(map(str, raw.input_shape))
        if dataset is not raw:
            shape_text += f" -> {dataset.input_shape[0]} trunk features"
        for strategy in _STRATEGIES.value:
            for r in benchmark.time_heads(dataset, base, strategy, heads, _REPEATS.value):
                ratios = ["—" if r[k] is None else f"{r[k]:.2f}"
                          for k in ("vs_separate_runs", "vs_separate_runs_with_compile")]
                flops = ["—" if r[k] is None else f"{r[k]:.3g}"
                         for k in ("gflop_per_step", "tflop_per_run", "gflops_achieved")]
                shape = "x".join(map(str, r["matmul_shape"]))
                print(f"| {dataset.name} | {shape_text} | {strategy} | {r['heads']} | "
                      f"{r['rows_per_step']} | {r['train_seconds']:.2f} | "
                      f"{r['compile_seconds']:.2f} | {r['images_per_second_per_head']:.0f} | "
                      f"{ratios[0]} | {ratios[1]} | {flops[0]} | {flops[1]} | {flops[2]} | "
                      f"{r['matmul_gflops']:.3g} ({shape}) |", flush=True)


if __name__ == "__main__":
    app.run(main)
