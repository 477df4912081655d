"""Metrics on hand-made trajectories whose answers are known in closed form."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from padl import metrics as M

T, B = 10, 4


def _ref(seed=0):
    return np.random.default_rng(seed).normal(size=(T, B, 3))


def test_identical_trajectories_give_zero_and_success():
    ref = _ref()
    np.testing.assert_array_equal(M.body_pos_error(ref, ref.copy()), np.zeros(T))
    assert M.g_mpjpe_mm(ref, ref) == 0.0
    assert M.l_mpjpe_mm(ref, ref) == 0.0
    assert M.root_pos_error_mm(ref[:, 0], ref[:, 0]) == 0.0
    assert bool(M.success(ref, ref, False))
    m = M.episode_metrics(ref, ref, np.zeros(T, bool))
    assert m == {"success": True, "g_mpjpe_mm": 0.0, "l_mpjpe_mm": 0.0, "root_error_mm": 0.0,
                 "max_body_error_m": 0.0, "frames": T}


def test_constant_offset_is_global_drift_only():
    ref = _ref()
    sim = ref + np.array([0.1, 0.0, 0.0])
    np.testing.assert_allclose(M.body_pos_error(sim, ref), 0.1, rtol=1e-12)
    assert M.g_mpjpe_mm(sim, ref) == pytest.approx(100.0, abs=1e-9)
    assert M.l_mpjpe_mm(sim, ref) == pytest.approx(0.0, abs=1e-9)
    assert M.root_pos_error_mm(sim[:, 0], ref[:, 0]) == pytest.approx(100.0, abs=1e-9)
    m = M.episode_metrics(sim, ref, False)
    assert m["success"] is True
    assert m["g_mpjpe_mm"] == pytest.approx(100.0, abs=1e-9)
    assert m["l_mpjpe_mm"] == pytest.approx(0.0, abs=1e-9)
    assert m["root_error_mm"] == pytest.approx(100.0, abs=1e-9)
    assert m["max_body_error_m"] == pytest.approx(0.1, abs=1e-12)


def test_one_body_of_four_displaced():
    ref = _ref()
    sim = ref.copy()
    sim[:, 2] += np.array([0.0, 0.4, 0.0])  # a non-root body
    assert M.g_mpjpe_mm(sim, ref) == pytest.approx(100.0, abs=1e-9)  # 400 mm / 4 bodies
    assert M.l_mpjpe_mm(sim, ref) == pytest.approx(100.0, abs=1e-9)  # root untouched, so same locally
    assert M.root_pos_error_mm(sim[:, 0], ref[:, 0]) == 0.0
    # Displacing the root instead moves every other body in the root frame: L-MPJPE = 3 * 400 / 4.
    sim_root = ref.copy()
    sim_root[:, 0] += np.array([0.0, 0.4, 0.0])
    assert M.g_mpjpe_mm(sim_root, ref) == pytest.approx(100.0, abs=1e-9)
    assert M.l_mpjpe_mm(sim_root, ref) == pytest.approx(300.0, abs=1e-9)
    assert M.l_mpjpe_mm(sim_root, ref, root_index=1) == pytest.approx(100.0, abs=1e-9)


def test_error_ramp_crossing_threshold_fails_even_if_it_recovers():
    ref = _ref()
    # Per-frame offset rises past 0.5 m at frame 5 (0.6 m) and falls back to 0.1 m by the end.
    offs = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.4, 0.3, 0.2, 0.1])
    sim = ref + offs[:, None, None] * np.array([0.0, 0.0, 1.0])
    err = M.body_pos_error(sim, ref)
    np.testing.assert_allclose(err, offs, atol=1e-12)
    assert err[-1] < 0.5
    assert not bool(M.success(sim, ref, False))
    m = M.episode_metrics(sim, ref, False)
    assert m["success"] is False
    assert m["max_body_error_m"] == pytest.approx(0.6, abs=1e-12)
    # Exactly at the threshold still counts as tracked (<=); a looser threshold passes the same clip.
    flat = np.zeros((T, B, 3))  # exact arithmetic: the error is exactly 0.5
    assert bool(M.success(flat + np.array([0.0, 0.0, 0.5]), flat, False))
    assert not bool(M.success(flat + np.array([0.0, 0.0, 0.5 + 1e-9]), flat, False))
    assert bool(M.success(sim, ref, False, threshold=0.7))


def test_fall_flag_fails():
    ref = _ref()
    fell = np.zeros(T, bool)
    fell[7] = True
    assert not bool(M.success(ref, ref, fell))
    assert not bool(M.success(ref, ref, True))
    assert M.episode_metrics(ref, ref, fell)["success"] is False
    assert bool(M.success(ref, ref, np.zeros(T, bool)))


def test_summarize_hand_written():
    per_clip = {
        "walk": [
            {"success": True, "g_mpjpe_mm": 10.0, "l_mpjpe_mm": 5.0, "root_error_mm": 8.0,
             "max_body_error_m": 0.1, "frames": 100},
            {"success": False, "g_mpjpe_mm": 30.0, "l_mpjpe_mm": 15.0, "root_error_mm": 20.0,
             "max_body_error_m": 0.7, "frames": 50},
        ],
        "run": [
            {"success": True, "g_mpjpe_mm": 40.0, "l_mpjpe_mm": 20.0, "root_error_mm": 30.0,
             "max_body_error_m": 0.3, "frames": 60},
        ],
    }
    s = M.summarize(per_clip)
    assert set(s) == {"walk", "run", "mean"}
    assert s["walk"]["success"] == pytest.approx(0.5)
    assert s["walk"]["g_mpjpe_mm"] == pytest.approx(20.0)
    assert s["walk"]["l_mpjpe_mm"] == pytest.approx(10.0)
    assert s["walk"]["root_error_mm"] == pytest.approx(14.0)
    assert s["walk"]["max_body_error_m"] == pytest.approx(0.4)
    assert s["walk"]["frames"] == pytest.approx(75.0)
    assert s["run"]["success"] == pytest.approx(1.0)
    assert s["run"]["g_mpjpe_mm"] == pytest.approx(40.0)
    # Overall mean is over clips (each clip weighs the same), not over episodes.
    assert s["mean"]["success"] == pytest.approx(0.75)
    assert s["mean"]["g_mpjpe_mm"] == pytest.approx(30.0)
    assert s["mean"]["l_mpjpe_mm"] == pytest.approx(15.0)
    assert s["mean"]["root_error_mm"] == pytest.approx(22.0)
    with pytest.raises(ValueError):
        M.summarize({"mean": per_clip["run"]})


def test_summarize_of_episode_metrics_round_trip():
    ref = _ref()
    eps = [M.episode_metrics(ref, ref, False), M.episode_metrics(ref + np.array([0.1, 0, 0]), ref, True)]
    s = M.summarize({"clip": eps})
    assert s["clip"]["success"] == pytest.approx(0.5)
    assert s["clip"]["g_mpjpe_mm"] == pytest.approx(50.0)
    assert s["mean"] == s["clip"]


def test_jnp_arrays_and_jit():
    ref = _ref()
    sim = ref + np.array([0.1, 0.0, 0.0])
    jref, jsim = jnp.asarray(ref), jnp.asarray(sim)
    err = M.body_pos_error(jsim, jref)
    assert isinstance(err, jax.Array) and err.shape == (T,)
    np.testing.assert_allclose(np.asarray(err), 0.1, atol=1e-5)
    assert float(M.g_mpjpe_mm(jsim, jref)) == pytest.approx(100.0, abs=1e-3)
    assert float(M.l_mpjpe_mm(jsim, jref)) == pytest.approx(0.0, abs=1e-3)
    assert float(M.root_pos_error_mm(jsim[:, 0], jref[:, 0])) == pytest.approx(100.0, abs=1e-3)
    assert bool(M.success(jsim, jref, jnp.zeros(T, bool)))
    assert not bool(M.success(jsim, jref, jnp.asarray(True)))
    jitted = jax.jit(lambda s, r, f: (M.g_mpjpe_mm(s, r), M.l_mpjpe_mm(s, r), M.success(s, r, f)))
    g, l, ok = jitted(jsim, jref, jnp.zeros(T, bool))
    assert float(g) == pytest.approx(100.0, abs=1e-3)
    assert float(l) == pytest.approx(0.0, abs=1e-3)
    assert bool(ok)
    m = M.episode_metrics(jsim, jref, jnp.zeros(T, bool))
    assert m["success"] is True and m["frames"] == T
    assert m["g_mpjpe_mm"] == pytest.approx(100.0, abs=1e-3)


def test_shape_mismatch_raises():
    ref = _ref()
    with pytest.raises(ValueError):
        M.g_mpjpe_mm(ref[:, :3], ref)
