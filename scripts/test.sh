#!/usr/bin/env bash
# Sets up and runs the default test suite (slow tests excluded; run them with: .venv/bin/pytest -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
export XLA_FLAGS=${XLA_FLAGS:---xla_cpu_enable_concurrency_optimized_scheduler=false}
exec .venv/bin/python -m pytest -m "not slow" -q "$@"
