#!/usr/bin/env bash
# Installs the jax build that fits this machine (CPU, CUDA GPU or TPU, Colab included),
# then runs an ambig_jax entry point with the given flags.
#
#   bash launch.sh                               # python -m experiments.run --dataset=all
#   bash launch.sh experiments.run --dataset=23 --oracle=local
#   ACCEL=cuda bash launch.sh experiments.benchmark --seeds=0,1,2
#   bash launch.sh --install                     # install only (the Colab notebook does this)
#
# ACCEL=cpu|cuda|tpu forces a build; by default it is detected (nvidia-smi, TPU devices).
set -euo pipefail
cd "$(dirname "$0")"

accel="${ACCEL:-}"
if [[ -z "$accel" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    accel=cuda
  elif [[ -e /dev/accel0 || -n "${TPU_NAME:-}" || -n "${COLAB_TPU_ADDR:-}" ]]; then
    accel=tpu
  else
    accel=cpu
  fi
fi

python3 -m pip install -q -r requirements.txt
jax_version="$(python3 -c 'import jax; print(jax.__version__)')"
case "$accel" in
  cuda) python3 -m pip install -q "jax[cuda12]==${jax_version}" ;;
  tpu)  python3 -m pip install -q "jax[tpu]==${jax_version}" ;;
  cpu)  ;;
  *) echo "launch.sh: ACCEL must be cpu, cuda or tpu, got '$accel'" >&2; exit 2 ;;
esac
python3 -c 'import jax; print("jax", jax.__version__, "devices:", jax.devices())'
if [[ "${1:-}" == "--install" ]]; then exit 0; fi

module="${1:-experiments.run}"
if [[ $# -gt 0 ]]; then shift; fi
if [[ "$module" == "experiments.run" && $# -eq 0 ]]; then set -- --dataset=all; fi
exec python3 -m "$module" "$@"
