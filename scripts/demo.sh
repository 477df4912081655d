#!/usr/bin/env bash
# Sets up, imports the DeepMimic clips from ../shared/data into a motion library and renders the walk,
# headless, to demo.mp4. (Until the default text-conditioned policy ships, the demo plays a reference clip.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
DATA=${PADL_SHARED_DATA:-../shared/data}
[ -f libs/deepmimic/manifest.json ] || .venv/bin/motions import "$DATA"/deepmimic/motions/*.txt --out libs/deepmimic
.venv/bin/motions render libs/deepmimic deepmimic_walk --caption -o demo.mp4
