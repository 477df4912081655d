#!/usr/bin/env bash
# Sets up, imports the mocap clips the default model tracks (../shared/data, or PADL_SHARED_DATA) and renders
# the default prompt script, headless, to demo.mp4.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
DATA=${PADL_SHARED_DATA:-../shared/data}
if [ ! -f libs/default/manifest.json ]; then
  mapfile -t SOURCES < <(grep -v '^#' models/default/sources.txt | sed "s#^#$DATA/#")
  .venv/bin/motions import "${SOURCES[@]}" --out libs/default --quiet
fi
.venv/bin/superpadl render --script prompts/demo.txt -o demo.mp4
