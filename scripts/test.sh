#!/usr/bin/env bash
# Sets up and runs the default test suite (slow tests excluded; run them with: .venv/bin/pytest -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The viewer tests need an X server; install Xvfb when missing and possible (root + apt), else they skip.
if ! command -v Xvfb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  { apt-get install -y -q xvfb || { apt-get update -q && apt-get install -y -q xvfb; }; } >/dev/null 2>&1 || true
fi
export MUJOCO_GL=${MUJOCO_GL:-egl}
export XLA_FLAGS=${XLA_FLAGS:---xla_cpu_enable_concurrency_optimized_scheduler=false}
# Two workers, one test file each at a time (module fixtures are built once); they share the persistent JAX
# compilation cache, so a program compiled by one is loaded by the other. PYTEST_WORKERS=0 runs in one process.
exec .venv/bin/python -m pytest -m "not slow" -q --durations=25 -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
