"""SuperPADL window metrics on hand-made trajectories whose answers are known."""
import numpy as np
import pytest

from superpadl import metrics as SM


def _walk(T=100, B=5, seed=0):
    """A root walking and turning, with bodies at fixed-ish offsets plus some noise; yaw varies over time."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 30.0
    root = np.stack([np.cos(t), 0.5 * t, 0.9 + 0.05 * np.sin(3 * t)], axis=-1)
    pos = root[:, None, :] + np.concatenate([np.zeros((T, 1, 3)), rng.normal(scale=0.3, size=(T, B - 1, 3))], 1)
    yaw = 0.3 + 0.7 * t
    return pos, yaw


def _rot_z(theta):
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _windows(M, window=4, B=3, spacing=10.0):
    """M distinct windows, each far (>= spacing m) from the others."""
    base = np.random.default_rng(1).normal(scale=0.1, size=(window, B, 3))
    return np.stack([base + np.array([spacing * m, 0.0, 0.0]) for m in range(M)])


def test_window_features_invariant_to_place_and_facing():
    pos, yaw = _walk()
    moved = pos @ _rot_z(np.pi / 2).T + np.array([5.0, -3.0, 0.0])
    f0 = SM.window_features(pos, yaw)
    f1 = SM.window_features(moved, yaw + np.pi / 2)
    np.testing.assert_allclose(f1, f0, atol=1e-6)
    # the features are not trivially invariant: a wrong yaw gives different features
    assert not np.allclose(SM.window_features(moved, yaw), f0, atol=1e-3)


def test_window_features_frame_and_counts():
    pos, yaw = _walk()
    f = SM.window_features(pos, yaw, window=30, stride=5)
    assert f.shape == (15, 30, pos.shape[1], 3)
    # each window starts at its own root's x, y = 0, z absolute
    np.testing.assert_allclose(f[:, 0, 0, :2], 0.0, atol=1e-12)
    np.testing.assert_allclose(f[:, 0, 0, 2], pos[::5][:15, 0, 2], atol=1e-12)
    short = SM.window_features(pos[:10], yaw[:10], window=30, stride=5)
    assert short.shape == (1, 30, pos.shape[1], 3)
    np.testing.assert_allclose(short[0, 10:], np.repeat(short[0, 9:10], 20, axis=0), atol=1e-12)


def test_window_distances_zero_and_z_shift():
    w = _windows(3)
    d = SM.window_distances(w, w)
    np.testing.assert_allclose(np.diag(d), 0.0, atol=1e-12)
    shifted = w + np.array([0.0, 0.0, 0.1])
    np.testing.assert_allclose(np.diag(SM.window_distances(w, shifted)), 0.1, atol=1e-9)
    assert d.shape == (3, 3) and np.all(d[~np.eye(3, dtype=bool)] >= 9.0)


def test_window_distances_chunking_matches_direct(monkeypatch):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(7, 4, 3, 3)), rng.normal(size=(5, 4, 3, 3))
    direct = np.linalg.norm(a[:, None] - b[None], axis=-1).mean(axis=(-1, -2))
    monkeypatch.setattr(SM, "_CHUNK_ELEMS", 1)  # one row of `a` per chunk
    np.testing.assert_allclose(SM.window_distances(a, b), direct, atol=1e-12)


def test_precision_recall_extra_far_window():
    ref = _windows(4)
    gen = np.concatenate([ref, ref[:1] + np.array([0.0, 100.0, 0.0])])  # one generated window far from all refs
    eps = np.array([0.01, 1000.0])
    p, r = SM.precision_recall(gen, ref, eps)
    np.testing.assert_allclose(p, [4 / 5, 1.0])
    np.testing.assert_allclose(r, [1.0, 1.0])


def test_precision_recall_all_far():
    ref = _windows(3)
    gen = ref + np.array([0.0, 0.0, 50.0])
    p, r = SM.precision_recall(gen, ref, np.array([1.0]))
    np.testing.assert_array_equal(p, [0.0])
    np.testing.assert_array_equal(r, [0.0])


def test_precision_recall_threshold_is_inclusive():
    ref = np.zeros((2, 4, 3, 3))
    gen = ref + np.array([0.0, 0.0, 0.25])  # every distance is exactly 0.25 (exact in binary floating point)
    p, r = SM.precision_recall(gen, ref, np.array([0.125, 0.25]))
    np.testing.assert_array_equal(p, [0.0, 1.0])
    np.testing.assert_array_equal(r, [0.0, 1.0])


def test_precision_recall_differ_when_gen_collapses():
    ref = _windows(4)
    gen = ref[:1].repeat(3, axis=0)  # mode collapse: every generated window is the first reference window
    p, r = SM.precision_recall(gen, ref, np.array([0.01]))
    np.testing.assert_allclose(p, [1.0])
    np.testing.assert_allclose(r, [0.25])


def test_auc_constant_and_ramp():
    eps = np.linspace(0.1, 0.5, 9)
    assert SM.auc(np.ones_like(eps), eps) == pytest.approx(1.0)
    assert SM.auc((eps - eps[0]) / (eps[-1] - eps[0]), eps) == pytest.approx(0.5)
    assert SM.auc(np.zeros_like(eps), eps) == pytest.approx(0.0)


def test_retrieval_top1_perfect_and_worst():
    C = 6
    perfect = 1.0 - np.eye(C)
    assert SM.retrieval_top1(perfect, np.random.default_rng(0)) == 1.0
    worst = np.eye(C) + 1.0  # own distance 2, every distractor 1
    assert SM.retrieval_top1(worst, np.random.default_rng(0)) == 0.0
    ties = np.zeros((C, C))  # ties are misses
    assert SM.retrieval_top1(ties, np.random.default_rng(0)) == 0.0


def test_retrieval_top1_partial_is_seeded():
    # row 0 is beaten only by clip 1: with 3 distractors drawn from 5, P(clip 1 drawn) = 3/5
    C = 6
    dist = 1.0 - np.eye(C) * 0.5
    dist[0, 1] = 0.1
    s1 = SM.retrieval_top1(dist, np.random.default_rng(3), trials=200)
    s2 = SM.retrieval_top1(dist, np.random.default_rng(3), trials=200)
    assert s1 == s2
    assert (C - 1) / C < s1 < 1.0


def test_retrieval_top1_too_few_clips():
    with pytest.raises(ValueError, match="at least 4 clips"):
        SM.retrieval_top1(np.zeros((3, 3)), np.random.default_rng(0), candidates=4)


def test_motion_distance():
    w = _windows(3)
    assert SM.motion_distance(w, w) == 0.0
    assert SM.motion_distance(w + np.array([0.0, 0.0, 0.1]), w) == pytest.approx(0.1, abs=1e-9)
