#!/usr/bin/env bash
# Set up, write the example corpus (short captioned clips of three topics) and run every stage.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/vidclust example examples/demo
.venv/bin/vidclust run examples/demo/manifest.csv out/demo --config cluster_configs/example.yaml "$@"
