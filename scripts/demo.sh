#!/usr/bin/env bash
# Sets up and renders the default prompt script with the shipped policy (models/default), headless, to demo.mp4.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
.venv/bin/superpadl render --script prompts/demo.txt -o demo.mp4
