#!/usr/bin/env bash
# Install lightning-wm (editable) with everything it and its tests need. Safe to re-run.
#
# torch: an installed torch (CPU or CUDA) is kept. Without one, torch==2.13.0 is installed;
# on this project's machines pip resolves that to a local CPU build. Elsewhere, to avoid a
# CUDA download on a machine without a GPU, set TORCH_INDEX_URL to PyTorch's CPU wheel index.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

if ! "$python" -c "import torch" >/dev/null 2>&1; then
  "$python" -m pip install --prefer-binary ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0"
fi
# --prefer-binary: otherwise an old matplotlib sdist (via nuscenes-devkit) is picked and fails to build.
"$python" -m pip install --prefer-binary -q -e ".[test]"
# The UI tests drive Debian's chromium-headless-shell (no browser download); best effort, they skip without it.
if ! command -v chromium-headless-shell >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get install -y -q chromium-headless-shell >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium-headless-shell >/dev/null 2>&1; } \
    || echo "install.sh: chromium-headless-shell not installed; the browser tests will be skipped" >&2
fi
# pyenv only sees new console scripts (lwm) after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
