#!/usr/bin/env bash
# Create .venv and install vidclust with its test tools. Safe to run again: it skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.vidclust-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch and torchvision pinned together: a CPU-only torch 2.13 breaks PyPI's torchvision (which
# open_clip, timm and transformers import) and an unpinned torch pulls other CUDA builds.
if [ "$(uname -m)" = "aarch64" ]; then TORCH="torch==2.9.1 torchvision==0.24.1"; else TORCH="torch==2.14.1 torchvision==0.29.1"; fi
"$VENV/bin/python" -m pip install -q $TORCH
"$VENV/bin/python" -m pip install -q -e ".[test]"
touch "$stamp"
echo "vidclust installed in $VENV"
