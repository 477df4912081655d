import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")
# Many tests (and the CLI subprocesses they start) compile the same environment and networks: a persistent
# compilation cache, shared by the subprocesses through the environment, compiles each once per checkout.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

# A test run started in the background by a shell without job control (`cmd &` in a script) inherits SIGINT ignored,
# and so would the commands the interrupt tests start and then send Ctrl-C: give them what a terminal gives.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SHARED_DATA = Path(os.environ.get("PADL_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The real mocap folder; tests that need it skip with a reason when it is absent (a fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real mocap not found at {SHARED_DATA} (set PADL_SHARED_DATA)")
    return SHARED_DATA
