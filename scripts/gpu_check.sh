#!/usr/bin/env bash
# The GPU check, in one go on a lent GPU machine (bench/bench_gpu.py says what it measures): run from
# the repository root with OUT set, the wheels and tarballs that machine lacks in .whl/ (ray without
# its Java, RLlib, Tune, Train and Serve parts, PyAV, open_clip, ftfy, keybert, jsonschema and
# theirs), built here, where pip reaches PyPI, by scripts/gpu_wheels.sh (54 MiB; its header says
# what goes in and why). About 7 minutes: the install, then bench_gpu.py in BUDGET seconds (440).
#
#   scripts/gpu_check.sh [bench_gpu.py options]       # on the GPU machine: writes $OUT/bench_gpu.json
#   scripts/gpu_check.sh --smoke                      # on any CPU machine, tiny sizes (tests/test_gpu_check.py)
#
# The run tool's call, after scripts/gpu_wheels.sh here:
#   run(command="OUT=$OUT scripts/gpu_check.sh", carry=[".whl"], timeout_s=540)
# With the shared NVDEC probe first (/work/shared/probes/nvdec: `../shared` does not travel, so copy
# it into the ignored .probe/ here: `mkdir -p .probe && cp -r /work/shared/probes/nvdec .probe/`);
# it runs --quick after the install, at most PROBE_S seconds (150), and writes $OUT/nvdec_probe.json
# and nvdec_probe.log; give the bench that much less:
#   run(command="OUT=$OUT BUDGET=330 scripts/gpu_check.sh", carry=[".whl", ".probe"], timeout_s=590)
# (.whl, .probe and the tracked files together: about 59 of the 64 MiB a call may carry.)
#
# It never fails silently: a failed install stops it, and a failed section (recorded in
# bench_gpu.json's "errors") makes the exit status 1.
set -u -o pipefail
cd "$(dirname "$0")/.."
smoke=0
for a in "$@"; do [ "$a" = --smoke ] && smoke=1; done
if [ "$smoke" = 1 ]; then
  : "${OUT:=$(mktemp -d /tmp/gpu-check-smoke.XXXXXX)}"
  PYTHON=${PYTHON:-.venv/bin/python}
  export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_ENABLE_UV_RUN_RUNTIME_ENV=0
  work=${WORK:-$OUT/work}
else
  : "${OUT:?set OUT to the folder for the results}"
  PYTHON=${PYTHON:-python3}
  t0=$(date +%s)
  ls .whl/*.whl >/dev/null 2>&1 || { echo "gpu_check: no wheels in .whl/ (build them where pip reaches PyPI: scripts/gpu_wheels.sh)" >&2; exit 2; }
  mkdir -p /tmp/site
  for t in .whl/*.tar.xz; do [ -e "$t" ] || continue; tar -xJf "$t" -C /tmp/site || { echo "gpu_check: cannot unpack $t" >&2; exit 2; }; done
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_check: the wheel install failed" >&2; exit 2; }
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_ENABLE_UV_RUN_RUNTIME_ENV=0
  echo "installed in $(( $(date +%s) - t0 )) s"
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "gpu_check: nvidia-smi failed (see $OUT/nvidia-smi.txt)" >&2
  work=${WORK:-/tmp/vidclust-bench-gpu}
  if [ -f .probe/nvdec/nvdec_probe.py ]; then  # the shared NVDEC probe, when copied in (see above)
    mkdir -p "$OUT" /tmp/nvdec-probe/site  # its own site: the bench never sees PyNvVideoCodec
    tar -xJf .probe/nvdec/pynvvideocodec-2.2.4-slim.tar.xz -C /tmp/nvdec-probe/site 2>/dev/null \
      || echo "gpu_check: no PyNvVideoCodec for the probe (its tarball did not unpack)" >&2
    OUT=/tmp/nvdec-probe PYTHONPATH=/tmp/nvdec-probe/site:$PYTHONPATH timeout "${PROBE_S:-150}" \
      "$PYTHON" .probe/nvdec/nvdec_probe.py --quick > "$OUT/nvdec_probe.log" 2>&1
    echo "gpu_check: NVDEC probe exit status $? ($OUT/nvdec_probe.log)"
    cp /tmp/nvdec-probe/nvdec_probe.json "$OUT/" 2>/dev/null || echo "gpu_check: the NVDEC probe wrote no nvdec_probe.json" >&2
  fi
fi
mkdir -p "$OUT"
"$PYTHON" bench/bench_gpu.py --out "$OUT" --work "$work" --budget-s "${BUDGET:-440}" "$@" 2>&1 | tee "$OUT/bench_gpu.log"
status=$?
echo "gpu_check: exit status $status; results in $OUT/bench_gpu.json"
exit $status
