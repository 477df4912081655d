"""The training profile's accounting (benchmarks/training_profile.py), on a fake clock: exclusive nested timers,
absorbing categories, the window after the warm-up and evaluations charged at their steady rate."""
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import training_profile as TP  # noqa: E402


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(TP, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))

    def spend(seconds):
        now[0] += seconds

    return spend


def test_nested_timers_are_exclusive_and_absorbing_ones_keep_their_callees(clock):
    prof = TP.Profile(warmup=1)
    physics = prof.wrap(lambda: clock(3.0), TP.PHYSICS)
    step = prof.wrap(lambda: (clock(1.0), physics()), TP.GLUE)
    evaluate = prof.wrap(lambda: (step(), step(), clock(2.0)), TP.EVAL, absorb=True)

    def iteration():
        step(), step()
        clock(0.5)  # the loop's own work

    iterate = prof.wrap(iteration, TP.REST, opens=True, marker=True)
    iterate()  # warm-up: not counted
    evaluate()
    assert prof.t0 is None
    for _ in range(4):
        iterate()
    evaluate()  # 10 s, however many steps it takes inside
    prof.stop()
    r = prof.result(4, samples_per_iteration=100, raw_physics=1000.0, substeps=4, order=[TP.PHYSICS, TP.GLUE, TP.EVAL],
                    eval_every=2)
    ms = r["ms_per_iteration"]
    assert ms[TP.PHYSICS] == pytest.approx(6000.0) and ms[TP.GLUE] == pytest.approx(2000.0)
    assert r["evaluations"] == 1 and r["evaluation_s"] == pytest.approx(10.0)
    assert ms[TP.EVAL] == pytest.approx(5000.0)  # one 10 s evaluation per 2 iterations
    assert ms[TP.REST] == pytest.approx(500.0)
    assert r["wall_s"] == pytest.approx(4 * 8.5 + 20.0)
    assert r["samples_per_s"] == pytest.approx(400 / r["wall_s"])
    assert r["physics_at_raw_ms"] == pytest.approx(400.0)


def test_patch_restores_and_lists_what_the_code_no_longer_has(clock):
    owner = types.ModuleType("trainer")
    owner.f = original = lambda: 1
    prof = TP.Profile(warmup=0)
    prof.patch(owner, "f", TP.POLICY)
    prof.patch(owner, "gone", TP.POLICY)
    assert owner.f is not original and owner.f() == 1
    assert prof.missing == ["trainer.gone"]
    prof.restore()
    assert owner.f is original


def test_a_window_that_never_opened_is_an_error(clock):
    prof = TP.Profile(warmup=3)
    prof.wrap(lambda: None, TP.REST, opens=True, marker=True)()
    prof.stop()
    with pytest.raises(RuntimeError, match="never opened"):
        prof.result(1, 1, 1.0, 4, [], 1)
