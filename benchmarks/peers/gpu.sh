#!/usr/bin/env bash
# The peers benchmark on a GPU machine, as one prepared command (docs/benchmarks.md, "GPU table").
#
# On a machine with network access, first:   make bench-peers-gpu-wheels
#   (downloads the peers the GPU image lacks -- jaxopt, torchopt and its optree/graphviz, higher,
#   betty-ml -- as Python 3.12 wheels into .whl/, which git ignores)
# On the GPU machine, from the repository root, with .whl/ copied along:
#   bash benchmarks/peers/gpu.sh            # results in $OUT (default /tmp/blojax-gpu)
#
# It expects python3 with a CUDA jax and a CUDA torch, optax, equinox, lineax and optimistix (the GPU
# image has them), installs the wheels into /tmp/site, puts src/ on the path for blojax, and runs
# problems 1-3 (timings) and 4 (memory) with JAX on its GPU backend and the torch peers on
# torch.device("cuda"); tables and JSON land in $OUT.
set -euo pipefail
OUT=${OUT:-/tmp/blojax-gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
else
  echo "no .whl/ here: the peers that are not installed will show as unavailable" >&2
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt" || true
# Two runs, each with its own time cap, so that the timings are kept even if the memory rows (one
# child process per row, each starting CUDA) run out of time.
status=0
timeout "${TIMING_TIMEOUT:-300}" python3 benchmarks/peers/run.py --device cuda --threads 0 \
  --repeats "${REPEATS:-5}" --problems 1 2 3 --json "$OUT/peers-gpu.json" 2>&1 | tee "$OUT/peers-gpu.txt" || status=$?
timeout "${MEMORY_TIMEOUT:-180}" python3 benchmarks/peers/run.py --device cuda --threads 0 \
  --problems 4 --json "$OUT/peers-gpu-memory.json" 2>&1 | tee "$OUT/peers-gpu-memory.txt" || status=$?
exit $status
