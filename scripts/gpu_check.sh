#!/usr/bin/env bash
# The GPU proof, in one go on a lent GPU machine (see bench/bench_gpu.py): run from the repository
# root with OUT set, the wheels and tarballs that machine lacks in .whl/ (ray without its Java and
# RLlib parts, PyAV, open_clip, ftfy, keybert, jsonschema and theirs; see bench/results/README).
set -u
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder for the results}"
t0=$(date +%s)
mkdir -p /tmp/site
for t in .whl/*.tar.xz; do tar -xJf "$t" -C /tmp/site || exit 1; done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_ENABLE_UV_RUN_RUNTIME_ENV=0
echo "installed in $(( $(date +%s) - t0 )) s"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 bench/bench_gpu.py --out "$OUT" --budget-s "${BUDGET:-440}" "$@" 2>&1 | tee "$OUT/bench_gpu.log"
