#!/usr/bin/env bash
# The one command for a lent GPU machine: train the wide-pose network with the one-GPU recipe,
# after measuring the training loss's speed there. Prepared and dry-run on the CPU
# (docs/decisions.md, "The next lease"); on the GPU machine it has not run yet.
#
#   here, first:   .venv/bin/python -m training.lease_kit      # builds .whl/ (7.9 MB)
#   device `run`:  command "bash training/gpu_lease.sh", carry [".whl"], timeout_s 600
#   back here:     bodyshape ship <files_at>/r                 # then refit the correction,
#                  calibrate the intervals and evaluate (README, "Pipeline")
#
# Environment (defaults for the lease): PY=python3, DEVICE=cuda, DEADLINE=420 (seconds for train-gpu,
# Anny's build included), POSE=wide, SILHOUETTES=coverage (the canvases the page serves, read at random
# sub-pixel phases in training; bits for 0/1 bodies); extra arguments go to `bodyshape train-gpu`. A CPU dry
# run: PY=.venv/bin/python OUT=/tmp/lease DEVICE=cpu DEADLINE=200 bash training/gpu_lease.sh
#   --first-data-s 40 --single-s 15 --fused-s 40 --val-size 100
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/lease_out}
SITE=${SITE:-/tmp/site}
DEVICE=${DEVICE:-cuda}
DEADLINE=${DEADLINE:-420}
POSE=${POSE:-wide}
SILHOUETTES=${SILHOUETTES:-coverage}
PHASE=--no-random-phase; [ "$SILHOUETTES" = coverage ] && PHASE=--random-phase
PY=${PY:-python3}  # the GPU machine's python3 holds its PyTorch
mkdir -p "$OUT/r/weights"
started=$(date +%s)

$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 1
export PYTHONPATH="$SITE:$PWD" TQDM_DISABLE=1 PYTHONUNBUFFERED=1
# One Anny cache for the bench and the recipe: the first builds it (about 70 s), the second loads it.
export ANNY_CACHE_DIR=${ANNY_CACHE_DIR:-/tmp/anny_cache}
$PY -m training.lease_kit --unpack "$SITE" || exit 1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; $PY -c "import torch; print('torch', torch.__version__)"; nproc; } > "$OUT/machine.txt"

timeout 150 $PY -m training.body_model_bench --device "$DEVICE" --skip-refit 2>&1 | tee "$OUT/body_model_bench.txt"

timeout $((DEADLINE + 30)) $PY -m bodyshape.cli train-gpu --work /tmp/r --device "$DEVICE" --pose "$POSE" \
  --silhouettes "$SILHOUETTES" "$PHASE" --deadline-s "$DEADLINE" "$@" 2>&1 | tee "$OUT/train.log"
rc=$?
cp /tmp/r/weights/* "$OUT/r/weights/" 2>/dev/null; cp /tmp/r/recipe.json "$OUT/r/" 2>/dev/null
echo "gpu_lease: train-gpu exit $rc, $(( $(date +%s) - started )) s in all; back: $(ls "$OUT/r" "$OUT/r/weights" | tr '\n' ' ')" | tee -a "$OUT/train.log"
exit $rc
