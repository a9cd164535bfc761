#!/usr/bin/env bash
# Set up and run the tests. The report test renders the page in Debian's headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium could not be installed: the report's browser test will be skipped"
fi
# torchcodec (a decode backend) loads the system's FFmpeg libraries; without them its tests skip
if ! .venv/bin/python -c "import torchcodec.decoders" >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libavcodec59 libavformat59 \
     libavutil57 libswscale6 libswresample4 libavfilter8 libavdevice59 >/dev/null 2>&1) \
    || echo "FFmpeg libraries could not be installed: torchcodec's tests will be skipped"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
