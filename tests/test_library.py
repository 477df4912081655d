"""Retargeting, library format, MotionLibrary queries and the `motions` CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import imageio.v2 as imageio
import mujoco
import numpy as np
import pytest

from characters.character import Character
from motions.clip import LibraryWriter, velocities
from motions.importer import import_clips
from motions.library import MotionLibrary
from motions.quality import foot_metrics

CHAR = Character()


def synthetic_library(path, loop=False, frames=31):
    """A library with one clip: the rest pose walking forward at 1 m/s and turning 90 degrees about z."""
    t = np.arange(frames) / 30.0
    qpos = np.tile(CHAR.rest_qpos(), (frames, 1))
    qpos[:, 0] = t
    yaw = np.deg2rad(90) * t / t[-1]
    qpos[:, 3], qpos[:, 6] = np.cos(yaw / 2), np.sin(yaw / 2)
    qpos[:, 7 + CHAR.joint_names.index("right_elbow")] = np.linspace(0, 1.5, frames)
    w = LibraryWriter(path, CHAR, {})
    entry = dict(id="synthetic", captions=["a person glides"], source_file="-", source_format="synthetic", licence="-",
                 labels={}, loop=loop, num_frames=frames, duration_s=t[-1], joint_map="-", scale=1.0,
                 qa=dict.fromkeys(["key_body_error_mean_cm", "key_body_error_max_cm", "penetration_cm", "skate_speed_cm_s",
                                   "max_stance_slide_cm", "joint_limit_deg"], 0.0),
                 flagged=False, flag_reasons=[])
    w.add(entry, qpos, 30.0, velocities(CHAR, qpos, 30.0))
    w.commit()
    return qpos


def test_library_interpolates_and_runs_forward_kinematics(tmp_path):
    qpos = synthetic_library(tmp_path / "lib")
    lib = MotionLibrary(tmp_path / "lib")
    # exact at frames
    ref = lib.sample(np.zeros(3, np.int32), np.array([0.0, 10 / 30, 1.0]))
    np.testing.assert_allclose(ref.qpos[:, :3], qpos[[0, 10, 30], :3], atol=1e-6)
    # halfway between frames: lerp of positions, slerp of the root (yaw halfway)
    mid = lib.sample(np.zeros(1, np.int32), np.array([0.5 / 30]))
    np.testing.assert_allclose(mid.qpos[0, 0], 0.5 / 30, atol=1e-6)
    yaw = 2 * np.arctan2(float(mid.qpos[0, 6]), float(mid.qpos[0, 3]))
    np.testing.assert_allclose(yaw, np.deg2rad(90) * 0.5 / 30, atol=1e-5)
    # velocities: 1 m/s forward
    np.testing.assert_allclose(ref.qvel[1, 0], 1.0, atol=1e-4)
    # non-looping clips hold the last frame
    end = lib.sample(np.zeros(1, np.int32), np.array([5.0]))
    np.testing.assert_allclose(end.qpos[0, :3], qpos[-1, :3], atol=1e-6)
    # ... still: the 1 m/s of its frames stops past the end
    last = lib.sample(np.zeros(1, np.int32), np.array([(len(qpos) - 1) / 30]))
    np.testing.assert_allclose(last.qvel[0, 0], 1.0, atol=1e-4)
    assert not np.asarray(end.qvel).any() and not np.asarray(end.body_vel).any() and not np.asarray(end.body_angvel).any()
    # body positions equal MuJoCo's forward kinematics of the returned qpos (<= 1 mm)
    d = mujoco.MjData(CHAR.model)
    for q, pos in zip(np.asarray(ref.qpos, np.float64), np.asarray(ref.body_pos)):
        d.qpos[:] = q / np.r_[1, 1, 1, [np.linalg.norm(q[3:7])] * 4, np.ones(28)]
        mujoco.mj_kinematics(CHAR.model, d)
        assert np.abs(d.xpos[1:] - pos).max() < 1e-3


def test_looping_clip_advances_the_root_each_cycle(tmp_path):
    qpos = synthetic_library(tmp_path / "lib", loop=True)
    lib = MotionLibrary(tmp_path / "lib")
    ref = lib.sample(np.zeros(1, np.int32), np.array([1.0 + 5 / 30]))
    # one full cycle (1 m) plus five frames
    np.testing.assert_allclose(ref.qpos[0, 0], qpos[-1, 0] + qpos[5, 0], atol=1e-5)


def test_library_sample_is_jittable(tmp_path):
    import jax

    from motions.library import sample_reference

    synthetic_library(tmp_path / "lib")
    lib = MotionLibrary(tmp_path / "lib")
    f = jax.jit(lambda data, c, t: sample_reference(data, lib.skeleton, c, t).body_pos)
    out = f(lib.data, np.zeros(4, np.int32), np.linspace(0, 1, 4).astype(np.float32))
    assert out.shape == (4, 15, 3) and np.isfinite(np.asarray(out)).all()


@pytest.mark.parametrize("name", ["deepmimic/motions/humanoid3d_walk.txt", "amp/amp_humanoid_walk.npy"])
def test_real_walk_retargets_cleanly(shared_data, tmp_path, name):
    entries = import_clips([shared_data / name], tmp_path / "lib", progress=False)
    e = entries[0]
    assert not e["flagged"], e["flag_reasons"]
    assert e["captions"] and "walk" in " ".join(e["captions"])
    lib = MotionLibrary(tmp_path / "lib")
    n = int(lib.durations[0] * 30) + 1
    ref = lib.sample(np.zeros(n, np.int32), np.arange(n) / 30)
    qpos = np.asarray(ref.qpos, np.float64)
    # forward kinematics of the character reproduces the library's body positions
    d = mujoco.MjData(CHAR.model)
    for q, pos in zip(qpos, np.asarray(ref.body_pos)):
        d.qpos[:] = q
        d.qpos[3:7] /= np.linalg.norm(q[3:7])
        mujoco.mj_kinematics(CHAR.model, d)
        assert np.abs(d.xpos[1:] - pos).max() < 1e-3
    feet = foot_metrics(CHAR, qpos, 30.0)
    assert feet["penetration_cm"] <= 2.0
    assert feet["max_stance_slide_cm"] <= 5.0
    # the character walks: the root travels at least a metre
    assert np.linalg.norm(qpos[-1, :2] - qpos[0, :2]) > 1.0


def test_import_writes_manifest_with_qa_and_captions(shared_data, tmp_path):
    srcs = [shared_data / "bandai/data/dataset-1_walk_tired_001.bvh", shared_data / "cmu/02_01.bvh"]
    import_clips(srcs, tmp_path / "lib", progress=False)
    m = json.loads((tmp_path / "lib/manifest.json").read_text())
    ids = {e["id"]: e for e in m["clips"]}
    assert set(ids) == {"bandai_walk_tired_001", "cmu_02_01"}
    assert "CC BY-NC" in ids["bandai_walk_tired_001"]["licence"]
    assert any("tired" in c for c in ids["bandai_walk_tired_001"]["captions"])
    for e in m["clips"]:
        assert len(e["captions"]) >= 3
        assert set(e["qa"]) >= {"key_body_error_mean_cm", "key_body_error_max_cm", "penetration_cm",
                                "skate_speed_cm_s", "max_stance_slide_cm", "joint_limit_deg"}
        assert e["qa"]["key_body_error_mean_cm"] < 10
        with np.load(tmp_path / "lib" / e["file"]) as z:
            assert float(z["fps"]) == 30.0
            assert z["qpos"].shape == (e["num_frames"], 35)


def test_import_cuts_a_span_out_of_a_take(shared_data, tmp_path):
    """FILE@START:END imports those seconds alone, as a clip of its own (named by its span) next to the whole."""
    src = shared_data / "bandai/data/dataset-1_walk_tired_001.bvh"
    import_clips([src, f"{src}@0.5:1.5"], tmp_path / "lib", progress=False)
    ids = {e["id"]: e for e in json.loads((tmp_path / "lib/manifest.json").read_text())["clips"]}
    cut = ids["bandai_walk_tired_001_0.5-1.5s"]
    assert cut["num_frames"] == 31 and cut["duration_s"] == pytest.approx(1.0)
    assert cut["labels"]["span_s"] == [0.5, 1.5] and cut["source_file"] == str(src)
    assert cut["captions"] == ids["bandai_walk_tired_001"]["captions"] and cut["loop"] is False
    whole, part = (np.load(tmp_path / "lib" / ids[i]["file"])["qpos"] for i in ("bandai_walk_tired_001", cut["id"]))
    assert np.abs(part[:, :3] - whole[15:46, :3]).max() < 0.01  # the same frames, root within a centimetre


def test_importing_a_source_again_replaces_its_clip(shared_data, tmp_path):
    """Re-running an import leaves the library as it was; another file of the same name still gets a clip of its
    own, and so does another span of the same take."""
    src = shared_data / "bandai/data/dataset-1_walk_tired_001.bvh"
    twin = tmp_path / "other" / src.name
    twin.parent.mkdir()
    twin.write_bytes(src.read_bytes())
    import_clips([src, f"{src}@0.5:1.5"], tmp_path / "lib", progress=False)
    first = (tmp_path / "lib/manifest.json").read_text()
    import_clips([f"{src}@0.5:1.5", src], tmp_path / "lib", progress=False)
    assert (tmp_path / "lib/manifest.json").read_text() == first
    import_clips([twin, f"{src}@0.5:1.6"], tmp_path / "lib", progress=False)
    ids = sorted(e["id"] for e in json.loads((tmp_path / "lib/manifest.json").read_text())["clips"])
    assert ids == ["bandai_walk_tired_001", "bandai_walk_tired_001_0.5-1.5s", "bandai_walk_tired_001_0.5-1.6s",
                   "bandai_walk_tired_001_2"]
    again = (tmp_path / "lib/manifest.json").read_text()
    import_clips([twin], tmp_path / "lib", progress=False)  # the twin keeps its _2
    assert (tmp_path / "lib/manifest.json").read_text() == again


def test_a_span_cut_from_a_takes_rest_is_captioned_as_standing(shared_data, tmp_path):
    """A take's labels name its skill; the second of rest before it shows standing, and is captioned so."""
    from motions.captions import STANDING_CAPTIONS

    src = shared_data / "bandai/data/dataset-1_dance-short_normal_001.bvh"
    import_clips([f"{src}@0:2", f"{src}@9.5:11"], tmp_path / "lib", progress=False)
    caps = {e["id"]: e["captions"] for e in json.loads((tmp_path / "lib/manifest.json").read_text())["clips"]}
    assert caps["bandai_dance-short_normal_001_0-2s"] == list(STANDING_CAPTIONS)
    assert "dance" in caps["bandai_dance-short_normal_001_9.5-11s"][1]


def run_cli(*args, cwd=None):
    env = dict(os.environ, MUJOCO_GL="egl")
    return subprocess.run([sys.executable, "-m", "motions.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


BAD_FILES = {
    "truncated.bvh": "HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation\n"
                     "  End Site\n  {\n    OFFSET 0 10 0\n  }\n}\nMOTION\nFrames: 3\nFrame Time: 0.0333\n0 90 0 0 0 0\n",
    "nan.bvh": "HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation\n"
               "  End Site\n  {\n    OFFSET 0 10 0\n  }\n}\nMOTION\nFrames: 2\nFrame Time: 0.0333\n0 90 0 0 0 0\n0 nan 0 0 0 0\n",
    "nomap.bvh": "HIERARCHY\nROOT Foo\n{\n  OFFSET 0 0 0\n  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation\n"
                 "  JOINT Bar\n  {\n    OFFSET 0 10 0\n    CHANNELS 3 Zrotation Xrotation Yrotation\n    End Site\n    {\n      OFFSET 0 10 0\n    }\n  }\n}\n"
                 "MOTION\nFrames: 2\nFrame Time: 0.0333\n0 90 0 0 0 0 0 0 0\n0 90 0 0 0 0 0 0 0\n",
    "zero.json": json.dumps({"Loop": "none", "Frames": []}),
}


@pytest.mark.parametrize("bad", sorted(BAD_FILES))
def test_bad_input_fails_whole_import_and_leaves_nothing(tmp_path, bad):
    good = tmp_path / "good.bvh"
    good.write_text(BAD_FILES["nomap.bvh"].replace("Foo", "Hips"))  # parses; fails only if retargeted
    path = tmp_path / bad
    path.write_text(BAD_FILES[bad])
    out = tmp_path / "lib"
    r = run_cli("import", path, "--out", out, "--quiet")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], r.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".lib")], "temporary folder left behind"


def test_failed_import_keeps_the_previous_library(tmp_path):
    synthetic_library(tmp_path / "lib")
    before = (tmp_path / "lib/manifest.json").read_text()
    bad = tmp_path / "nan.bvh"
    bad.write_text(BAD_FILES["nan.bvh"])
    r = run_cli("import", bad, "--out", tmp_path / "lib", "--quiet")
    assert r.returncode != 0
    assert (tmp_path / "lib/manifest.json").read_text() == before


def test_info_and_render(tmp_path):
    synthetic_library(tmp_path / "lib")
    r = run_cli("info", tmp_path / "lib", "--captions")
    assert r.returncode == 0 and "synthetic" in r.stdout and "a person glides" in r.stdout
    out = tmp_path / "clip.mp4"
    r = run_cli("render", tmp_path / "lib", "synthetic", "-o", out, "--width", "160", "--height", "120", "--quiet")
    assert r.returncode == 0, r.stderr
    frames = imageio.mimread(out)
    assert len(frames) == 31
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 0.5  # the arm bends, the body turns
    r = run_cli("render", tmp_path / "lib", "nope", "-o", tmp_path / "x.mp4")
    assert r.returncode != 0 and "nope" in r.stderr and not (tmp_path / "x.mp4").exists()


def test_info_speeds_finds_rest_and_motion(tmp_path):
    """`motions info --speeds`: a take standing still for 1 s, then gliding at 1 m/s with one elbow bending at
    1.5 rad/s (1/28 of that per joint on average), reads as rest, then motion, window by window."""
    from motions.quality import at_rest, speed_profile

    t = np.arange(60) / 30.0
    qpos = np.tile(CHAR.rest_qpos(), (60, 1))
    moving = t >= 1.0
    qpos[:, 0] = np.where(moving, t - 1.0, 0.0)
    qpos[:, 7 + CHAR.joint_names.index("right_elbow")] = np.where(moving, 1.5 * (t - 1.0), 0.0)
    rows = speed_profile(qpos, velocities(CHAR, qpos, 30.0)["qvel"], 30.0, every_s=0.5)
    np.testing.assert_allclose(rows[:, 0], [0.0, 0.5, 1.0, 1.5], atol=1e-9)
    assert rows[0, 2] == 0.0 and rows[0, 3] == 0.0 and rows[0, 4] == 0.0
    np.testing.assert_allclose(rows[3, 2:], [1.0, 1.5 / 28, 0.7333], atol=2e-3)  # frames 45-59: mean 22/30 m away
    qvel = velocities(CHAR, qpos, 30.0)["qvel"]
    assert at_rest(qpos[:30], qvel[:30], 30.0) and not at_rest(qpos, qvel, 30.0)
    synthetic_library(tmp_path / "lib")
    r = run_cli("info", tmp_path / "lib", "--speeds", "synthetic", "--every", "0.5")
    assert r.returncode == 0, r.stderr
    table = [line.split() for line in r.stdout.splitlines()[-3:]]
    assert [float(row[0]) for row in table] == [0.0, 0.5, 1.0] and all(float(row[2]) == 1.0 for row in table)
    r = run_cli("info", tmp_path / "lib", "--speeds", "nope")
    assert r.returncode != 0 and "nope" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_library_rejects_foreign_folder(tmp_path):
    (tmp_path / "manifest.json").write_text('{"format": "something-else"}')
    r = run_cli("info", tmp_path)
    assert r.returncode != 0 and "manifest.json" in r.stderr and len(r.stderr.strip().splitlines()) == 1
