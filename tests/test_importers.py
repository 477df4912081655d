"""Mocap importers: exact round trips on tiny files written here, the real data when present, every bad input."""
from __future__ import annotations

import collections
import datetime
import json
import re

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from motions import amass
from motions.amass import load_amass
from motions.bvh import load_bvh
from motions.deepmimic import load_deepmimic
from motions.detect import detect_format, load_source
from motions.fk import forward_kinematics, global_transforms
from motions.poselib import load_poselib
from motions.quat import (axis_angle_to_quat, quat_conj, quat_from_euler, quat_from_matrix, quat_mul,
                          quat_rotate, quat_slerp, quat_to_matrix)
from motions.source import MotionImportError


def expect_error(fn, path, *fragments):
    """The loader must raise a one-line MotionImportError that starts with the path and says what is wrong."""
    with pytest.raises(MotionImportError) as info:
        fn(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    assert "\n" not in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


def write(path, text):
    path.write_text(text)
    return path


def pos_of(src, frame=0):
    pos, _ = global_transforms(src)
    return {n: pos[frame, i] for i, n in enumerate(src.joint_names)}


# --- quaternions -------------------------------------------------------------------------------------------

def test_quat_helpers_agree_with_scipy():
    rng = np.random.default_rng(0)
    angles = rng.uniform(-180, 180, (5, 3))
    for order in ("ZXY", "XYZ", "YZX", "ZYX"):
        ref = Rotation.from_euler(order, angles, degrees=True).as_matrix()  # upper case = intrinsic
        assert np.allclose(quat_to_matrix(quat_from_euler(angles, order)), ref, atol=1e-12)
    rotvec = rng.normal(size=(5, 3))
    q = axis_angle_to_quat(rotvec)
    assert np.allclose(quat_to_matrix(q), Rotation.from_rotvec(rotvec).as_matrix(), atol=1e-12)
    assert np.allclose(axis_angle_to_quat(np.zeros(3)), [1, 0, 0, 0])
    v = rng.normal(size=(5, 3))
    assert np.allclose(quat_rotate(q, v), np.einsum("nij,nj->ni", quat_to_matrix(q), v), atol=1e-12)
    assert np.allclose(quat_mul(q, quat_conj(q)), [1, 0, 0, 0], atol=1e-12)
    back = quat_from_matrix(quat_to_matrix(q))
    assert np.allclose(np.abs(np.sum(back * q, -1)), 1, atol=1e-12)
    q0, q1 = q[0], q[1]
    assert np.allclose(quat_slerp(q0, q1, 0.0), q0) and np.allclose(np.abs(quat_slerp(q0, q1, 1.0) @ q1), 1)
    half = quat_slerp(q0, q1, 0.5)  # the midpoint is equally far from both ends
    assert np.isclose(abs(half @ q0), abs(half @ q1))


# --- BVH ---------------------------------------------------------------------------------------------------

# Non-standard channel orders on purpose; centimetres, about human size so the unit is inferred.
TINY_BVH_HEADER = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Yrotation Xrotation Zrotation
  JOINT Chest
  {
    OFFSET 0 50 0
    CHANNELS 3 Xrotation Zrotation Yrotation
    End Site
    {
      OFFSET 0 30 0
    }
  }
  JOINT Leg
  {
    OFFSET 10 -45 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {
      OFFSET 0 -45 5
    }
  }
}
MOTION
"""
TINY_BVH_ROWS = [
    "1 100 2   90 0 0   90 0 0   0 0 0",   # root yaw 90; chest Xrotation 90
    "0 100 0   0 0 0    90 90 0  0 0 0",   # chest X=90 then Z=90: R = Rx Rz
    "0 100 0   90 90 0  0 0 0    0 0 0",   # root Y=90 then X=90: R = Ry Rx
]


def tiny_bvh(tmp_path, rows=TINY_BVH_ROWS, frames=None, name="tiny.bvh", frame_time="0.0333333"):
    body = f"Frames: {len(rows) if frames is None else frames}\nFrame Time: {frame_time}\n" + "\n".join(rows) + "\n"
    return write(tmp_path / name, TINY_BVH_HEADER + body)


def zup(x, y, z):
    """A BVH point in cm (Y-up, facing +z) as the importer should give it: (z, x, y) metres."""
    return np.array([z, x, y]) * 0.01


def test_bvh_round_trip_by_hand(tmp_path):
    src = load_bvh(tiny_bvh(tmp_path))
    assert src.joint_names == ["Hips", "Chest", "Chest_end", "Leg", "Leg_end"]
    assert list(src.parents) == [-1, 0, 1, 0, 3]
    assert src.num_frames == 3 and src.fps == 30.0 and src.source_format == "bvh"
    assert np.allclose(np.linalg.norm(src.local_rot, axis=-1), 1)
    assert np.allclose(src.local_rot[:, [2, 4]], [1, 0, 0, 0])  # end sites never rotate
    # Frame 0, worked out on paper in the file's Y-up cm: Ry(90) maps x->-z, z->x; Rx(90) maps y->z.
    p = pos_of(src, 0)
    expected = {"Hips": zup(1, 100, 2), "Chest": zup(1, 150, 2), "Chest_end": zup(31, 150, 2),
                "Leg": zup(1, 55, -8), "Leg_end": zup(6, 10, -8)}
    for name, want in expected.items():
        assert np.allclose(p[name], want, atol=1e-6), name
    # Frame 1: chest "Xrotation Zrotation Yrotation" = (90, 90, 0) -> Rx Rz: the end (0,30,0) goes to (-30,0,0).
    assert np.allclose(pos_of(src, 1)["Chest_end"], zup(-30, 150, 0), atol=1e-6)
    # Frame 2: root "Yrotation Xrotation Zrotation" = (90, 90, 0) -> Ry Rx: chest (0,50,0) goes to (50,0,0).
    assert np.allclose(pos_of(src, 2)["Chest"], zup(50, 100, 0), atol=1e-6)


def test_bvh_units_and_explicit_scale(tmp_path):
    path = tiny_bvh(tmp_path)
    auto = load_bvh(path)
    metres = load_bvh(path, unit_scale=1.0)
    assert np.allclose(metres.root_pos, auto.root_pos * 100)
    assert np.allclose(auto.root_pos[0], [0.02, 0.01, 1.0])


def test_bvh_animated_child_of_static_root_is_folded(tmp_path):
    """Bandai layout: a floor-level ROOT, the moving Hips under it, 6 channels everywhere."""
    text = """HIERARCHY
ROOT joint_Root
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Hips
  {
    OFFSET 7 7 7
    CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
    JOINT Head
    {
      OFFSET 0 999 0
      CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
      End Site
      {
        OFFSET 0 0 0
      }
    }
    JOINT Foot
    {
      OFFSET 0 -90 0
      CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.0333333
0 0 0 0 0 0   0 90 0 0 0 0    0 70 0 0 0 0   0 -90 0 0 0 0
0 0 100 0 0 0   5 92 -3 0 0 0   0 70 0 0 0 0   0 -90 0 0 0 0
"""
    src = load_bvh(write(tmp_path / "bandai_like.bvh", text))
    assert src.joint_names == ["Hips", "Head", "Head_end", "Foot"]
    assert src.labels["folded_root"] == "joint_Root"
    assert np.allclose(src.root_pos, [zup(0, 90, 0), zup(5, 92, 97)])
    assert np.allclose(src.offsets[1], zup(0, 70, 0))  # the per-frame channel value, not the header's 999
    assert np.allclose(pos_of(src, 1)["Head"], zup(5, 162, 97))


def test_bvh_rejects_animated_inner_joint(tmp_path):
    text = TINY_BVH_HEADER.replace("CHANNELS 3 Xrotation Zrotation Yrotation",
                                   "CHANNELS 6 Xposition Yposition Zposition Xrotation Zrotation Yrotation")
    rows = ["0 100 0 0 0 0 0 50 0 0 0 0 0 0 0", "0 100 0 0 0 0 0 60 0 0 0 0 0 0 0"]
    path = write(tmp_path / "moving.bvh", text + "Frames: 2\nFrame Time: 0.01\n" + "\n".join(rows) + "\n")
    expect_error(load_bvh, path, "'Chest' has animated translation")


@pytest.mark.parametrize("case, fragments", [
    ("truncated_row", ["truncated", "has 5 of 12 values"]),
    ("missing_rows", ["truncated", "says 5", "3 frame rows"]),
    ("channel_mismatch", ["frame 1 (line 29)", "expected 12 channel values, got 11"]),
    ("extra_rows", ["4 frame rows", "says 3"]),
    ("nan", ["non-finite value nan in frame 1", "Chest Zrotation"]),
    ("inf", ["non-finite value inf in frame 2", "Hips Yposition"]),
    ("zero_frames", ["zero frames"]),
    ("bad_number", ["frame 0 (line 28)", "unparsable number '9O'"]),
    ("unknown_channel", ["line 18", "unknown channel name 'Wrotation'"]),
    ("no_hierarchy", ["no HIERARCHY"]),
    ("no_motion", ["no MOTION"]),
    ("bad_frame_time", ["Frame Time must be positive"]),
])
def test_bvh_bad_inputs(tmp_path, case, fragments):
    rows = list(TINY_BVH_ROWS)
    header, frames, frame_time = TINY_BVH_HEADER, None, "0.0333333"
    if case == "truncated_row":
        rows[-1] = rows[-1][:14]
    elif case == "missing_rows":
        frames = 5
    elif case == "channel_mismatch":
        rows[1] = rows[1].rsplit(" ", 1)[0]
    elif case == "extra_rows":
        rows.append(rows[0])
        frames = 3
    elif case == "nan":
        rows[1] = rows[1].replace("90 90 0", "90 nan 0")
    elif case == "inf":
        rows[2] = rows[2].replace("0 100 0", "0 inf 0")
    elif case == "zero_frames":
        rows = []
    elif case == "bad_number":
        rows[0] = rows[0].replace("90 0 0   90", "9O 0 0   90")
    elif case == "unknown_channel":
        header = header.replace("Zrotation Yrotation Xrotation", "Zrotation Yrotation Wrotation")
    elif case == "bad_frame_time":
        frame_time = "0"
    path = tiny_bvh(tmp_path, rows, frames, frame_time=frame_time)
    if case == "unknown_channel":
        write(path, path.read_text().replace(TINY_BVH_HEADER, header))
    elif case == "no_hierarchy":
        write(path, path.read_text().replace("HIERARCHY", ""))
    elif case == "no_motion":
        write(path, path.read_text().split("MOTION")[0])
    expect_error(load_bvh, path, *fragments)


@pytest.mark.parametrize("span, problem", [("0:5", "span ends at 5 s but the take lasts 0.07 s"),
                                           ("1:0.5", "needs 0 <= START < END"), ("a:b", "not START:END")])
def test_bad_span_is_a_one_line_error_and_writes_nothing(tmp_path, span, problem):
    from motions.importer import import_clips

    path = tiny_bvh(tmp_path)
    with pytest.raises(MotionImportError) as e:
        import_clips([f"{path}@{span}"], tmp_path / "lib", progress=False)
    assert str(path) in str(e.value) and problem in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "lib").exists()


def test_missing_file_is_an_import_error(tmp_path):
    for loader in (load_bvh, load_deepmimic, load_poselib, load_amass, load_source):
        expect_error(loader, tmp_path / "nope.bvh", "file not found")


# --- DeepMimic ---------------------------------------------------------------------------------------------

def deepmimic_frame(dt, root=(0.0, 0.9, 0.0), root_q=(1, 0, 0, 0), right_knee=0.0):
    ident = [1.0, 0.0, 0.0, 0.0]
    return ([dt, *root, *root_q] + ident + ident + ident + [right_knee] + ident + ident + [0.0]
            + ident + [0.0] + ident + ident + [0.0])


def tiny_deepmimic(tmp_path, frames=None, name="humanoid3d_tiny.txt", **extra):
    if frames is None:
        yaw = [np.cos(np.pi / 4), 0, np.sin(np.pi / 4), 0]  # +90 degrees about DeepMimic's up (y)
        frames = [deepmimic_frame(1 / 30, right_knee=np.pi / 2), deepmimic_frame(1 / 30, root_q=yaw),
                  deepmimic_frame(0.0)]
    return write(tmp_path / name, json.dumps({"Loop": "wrap", "Frames": frames, **extra}))


def test_deepmimic_round_trip_by_hand(tmp_path):
    src = load_deepmimic(tiny_deepmimic(tmp_path))
    assert src.num_frames == 3 and src.fps == 30.0
    assert src.labels == {"name": "tiny", "loop": "wrap"}
    assert len(src.joint_names) == 18 and {"neck_end", "right_elbow_end", "left_ankle_end"} <= set(src.joint_names)
    p = pos_of(src, 0)
    # Y-up (x fwd, z right) -> Z-up (x fwd, y left): (x, y, z) -> (x, -z, y).
    assert np.allclose(p["root"], [0, 0, 0.9])
    assert np.allclose(p["right_hip"], [0, -0.084887, 0.9])
    assert np.allclose(p["right_knee"], [0, -0.084887, 0.9 - 0.421546])
    # knee +90 deg about its local z: the shin (0,-0.40987,0) turns to (+0.40987,0,0), i.e. forward
    assert np.allclose(p["right_ankle"], [0.40987, -0.084887, 0.9 - 0.421546], atol=1e-9)
    assert np.allclose(p["left_ankle"], [0, 0.084887, 0.9 - 0.421546 - 0.40987])
    assert np.allclose(p["neck_end"], [0, 0, 0.9 + 0.236151 + 0.223894 + 0.25])
    # yaw +90 about up turns the right hip from -y to +x
    assert np.allclose(pos_of(src, 1)["right_hip"], [0.084887, 0, 0.9], atol=1e-9)


def test_deepmimic_fps_ignores_the_closing_zero_dt(tmp_path):
    frames = [deepmimic_frame(1 / 120) for _ in range(5)] + [deepmimic_frame(0.0)]
    assert load_deepmimic(tiny_deepmimic(tmp_path, frames)).fps == 120.0


@pytest.mark.parametrize("case, fragments", [
    ("invalid_json", ["invalid JSON"]),
    ("no_frames_key", ["no 'Frames' key"]),
    ("short_frame", ["frame 1: expected 44 values, got 43"]),
    ("nan", ["non-finite value nan in frame 2"]),
    ("inf", ["non-finite value inf in frame 0"]),
    ("zero_frames", ["zero frames"]),
    ("zero_dt", ["frame 1: dt must be positive"]),
    ("negative_dt", ["frame 0: dt must be positive"]),
    ("text_value", ["frame 0: non-numeric value"]),
])
def test_deepmimic_bad_inputs(tmp_path, case, fragments):
    frames = [deepmimic_frame(1 / 30) for _ in range(3)]
    if case == "short_frame":
        frames[1] = frames[1][:-1]
    elif case == "nan":
        frames[2][5] = float("nan")
    elif case == "inf":
        frames[0][2] = float("inf")
    elif case == "zero_frames":
        frames = []
    elif case == "zero_dt":
        frames[1][0] = 0.0
    elif case == "negative_dt":
        frames[0][0] = -0.1
    elif case == "text_value":
        frames[0][3] = "0.5"
    path = tiny_deepmimic(tmp_path, frames)
    if case == "invalid_json":
        write(path, path.read_text()[:-20])
    elif case == "no_frames_key":
        write(path, json.dumps({"Loop": "none", "frames": frames}))
    expect_error(load_deepmimic, path, *fragments)


# --- poselib -----------------------------------------------------------------------------------------------

def xyzw(q_wxyz):
    return np.asarray(q_wxyz)[..., [1, 2, 3, 0]]


def tiny_poselib_dict(num_frames=2, is_local=True, rot=None):
    """pelvis -> torso -> head, with a 90-degree roll of the torso about x in every frame."""
    if rot is None:
        rot = np.tile([1.0, 0, 0, 0], (num_frames, 3, 1))
        rot[:, 1] = [np.cos(np.pi / 4), np.sin(np.pi / 4), 0, 0]
    return collections.OrderedDict(
        rotation={"arr": xyzw(rot).astype(np.float32), "context": {"dtype": "float32"}},
        root_translation={"arr": np.tile([1.0, 2.0, 0.9], (num_frames, 1)).astype(np.float32),
                          "context": {"dtype": "float32"}},
        skeleton_tree={"node_names": ["pelvis", "torso", "head"],
                       "parent_indices": {"arr": np.array([-1, 0, 1]), "context": {"dtype": "int64"}},
                       "local_translation": {"arr": np.array([[0, 0, 1.0], [0, 0, 0.3], [0, 0, 0.2]], np.float32),
                                             "context": {"dtype": "float32"}}},
        is_local=is_local, fps=np.float64(30.0), __name__="SkeletonMotion")


def save_npy(path, obj):
    np.save(path, np.array(obj, dtype=object) if not isinstance(obj, np.ndarray) else obj, allow_pickle=True)
    return path


def test_poselib_round_trip_by_hand(tmp_path):
    src = load_poselib(save_npy(tmp_path / "amp_humanoid_tiny.npy", tiny_poselib_dict()))
    assert src.joint_names == ["pelvis", "torso", "head"] and list(src.parents) == [-1, 0, 1]
    assert src.num_frames == 2 and src.fps == 30.0 and src.labels == {"name": "tiny"}
    # xyzw read correctly: Rx(90) sends the head offset (0,0,0.2) to (0,-0.2,0); wxyz misread would not move it
    assert np.allclose(pos_of(src, 1)["head"], [1, 1.8, 1.2], atol=1e-6)


def test_poselib_global_rotations_are_made_local(tmp_path):
    rot = np.tile([1.0, 0, 0, 0], (2, 3, 1))
    rot[:, 1] = rot[:, 2] = [np.cos(np.pi / 4), np.sin(np.pi / 4), 0, 0]  # head globally rolled with the torso
    src = load_poselib(save_npy(tmp_path / "g.npy", tiny_poselib_dict(rot=rot, is_local=False)))
    assert np.allclose(np.abs(src.local_rot[:, 2, 0]), 1, atol=1e-6)
    assert np.allclose(pos_of(src, 0)["head"], [1, 1.8, 1.2], atol=1e-6)


class MarkerBomb:
    """Unpickling this opens (creates) a marker file: proof that a loader ran code from the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_poselib_refuses_code_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    d = tiny_poselib_dict()
    d["extra"] = MarkerBomb(marker)
    path = save_npy(tmp_path / "bomb.npy", d)
    expect_error(load_poselib, path, "carries a non-array object io.open; refusing to unpickle")
    assert not marker.exists()
    np.load(path, allow_pickle=True).item()["extra"].close()  # the control: a trusting loader does run it
    assert marker.exists()


def test_poselib_refuses_other_objects(tmp_path):
    d = tiny_poselib_dict()
    d["recorded"] = datetime.date(2020, 1, 1)
    expect_error(load_poselib, save_npy(tmp_path / "date.npy", d), "non-array object datetime.date")


@pytest.mark.parametrize("case, fragments", [
    ("wrong_rotation_shape", ["rotation.arr has shape (2, 3, 3)"]),
    ("missing_root", ["missing key 'root_translation.arr'"]),
    ("nan", ["non-finite value in rotation.arr (frame 1)"]),
    ("inf_root", ["non-finite value in root_translation.arr (frame 0)"]),
    ("zero_frames", ["zero frames"]),
    ("plain_array", ["plain float64 array"]),
    ("truncated", ["corrupt pickle payload"]),
    ("missing_fps", ["missing key 'fps'"]),
])
def test_poselib_bad_inputs(tmp_path, case, fragments):
    d = tiny_poselib_dict()
    path = tmp_path / f"{case}.npy"
    if case == "wrong_rotation_shape":
        d["rotation"]["arr"] = d["rotation"]["arr"][..., :3]
    elif case == "missing_root":
        del d["root_translation"]
    elif case == "nan":
        d["rotation"]["arr"][1, 2, 0] = np.nan
    elif case == "inf_root":
        d["root_translation"]["arr"][0, 2] = np.inf
    elif case == "zero_frames":
        d["rotation"]["arr"] = d["rotation"]["arr"][:0]
        d["root_translation"]["arr"] = d["root_translation"]["arr"][:0]
    elif case == "missing_fps":
        del d["fps"]
    if case == "plain_array":
        save_npy(path, np.zeros((4, 3)))
    else:
        save_npy(path, d)
    if case == "truncated":
        path.write_bytes(path.read_bytes()[:-40])
    expect_error(load_poselib, path, *fragments)


# --- AMASS -------------------------------------------------------------------------------------------------

def tiny_amass(tmp_path, width=156, num_frames=3, name="tiny_poses.npz", **override):
    poses = np.zeros((num_frames, width))
    poses[:, 0] = np.pi / 2  # global_orient: +90 about x takes SMPL's Y-up body to AMASS's Z-up world
    poses[1, 3 * 4:3 * 4 + 3] = [np.pi / 2, 0, 0]  # frame 1: left knee flexed about SMPL's x
    arrays = {"poses": poses, "trans": np.tile([0.1, 0.2, 0.9], (num_frames, 1)), "mocap_framerate": np.array(120.0),
              "betas": np.zeros(16), "gender": np.array("neutral")}
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def smpl_world_joints(orient, knee_rotvec, trans):
    """The SMPL forward kinematics written directly on the rest template (no frame re-expression)."""
    rest = np.zeros((24, 3))
    for j in range(24):
        rest[j] = amass.REST_OFFSETS[j] + (rest[amass.PARENTS[j]] if j else amass.PELVIS_REST)
    glob = [None] * 24
    out = np.zeros((24, 3))
    for j in range(24):
        local = Rotation.from_rotvec(orient if j == 0 else (knee_rotvec if j == 4 else np.zeros(3)))
        if j == 0:
            glob[0], out[0] = local, rest[0] + trans
        else:
            p = amass.PARENTS[j]
            glob[j] = glob[p] * local
            out[j] = out[p] + glob[p].apply(rest[j] - rest[p])
    return out


@pytest.mark.parametrize("width", [72, 156])
def test_amass_matches_smpl_kinematics(tmp_path, width):
    src = load_amass(tiny_amass(tmp_path, width))
    assert src.num_frames == 3 and src.fps == 120.0 and len(src.joint_names) == 24
    assert src.labels["gender"] == "neutral" and src.labels["name"] == "tiny_poses"
    pos, _ = global_transforms(src)
    for frame, knee in ((0, np.zeros(3)), (1, np.array([np.pi / 2, 0, 0]))):
        want = smpl_world_joints(np.array([np.pi / 2, 0, 0]), knee, np.array([0.1, 0.2, 0.9]))
        assert np.allclose(pos[frame], want, atol=1e-9)
    head, ankle = src.index("head"), src.index("left_ankle")
    assert pos[0, head, 2] > pos[0, ankle, 2] + 1.0  # Z-up world
    # rest offsets are expressed in Z-up axes: the zero pose stands upright, facing +x (toes ahead of ankles)
    zero = np.zeros_like(src.local_rot[:1])
    zero[..., 0] = 1
    rest, _ = forward_kinematics(src.parents, src.offsets, zero, np.zeros((1, 3)))
    assert rest[0, head, 2] - rest[0, ankle, 2] > 1.2
    assert rest[0, src.index("left_foot"), 0] - rest[0, ankle, 0] > 0.1
    assert rest[0, src.index("left_hip"), 1] > 0.05


@pytest.mark.parametrize("case, fragments", [
    ("bad_poses", ["'poses' has shape (3, 70)"]),
    ("bad_trans", ["'trans' has shape (3, 2)"]),
    ("no_rate", ["missing frame rate"]),
    ("no_poses", ["missing key 'poses'"]),
    ("nan", ["non-finite value in 'poses' at frame 2"]),
    ("inf", ["non-finite value in 'trans' at frame 1"]),
    ("zero_frames", ["zero frames"]),
    ("object_array", ["Object arrays cannot be loaded"]),
    ("not_npz", ["not an .npz archive"]),
])
def test_amass_bad_inputs(tmp_path, case, fragments):
    kw = {}
    if case == "bad_poses":
        kw["poses"] = np.zeros((3, 70))
    elif case == "bad_trans":
        kw["trans"] = np.zeros((3, 2))
    elif case == "no_rate":
        kw["mocap_framerate"] = None
    elif case == "no_poses":
        kw["poses"] = None
    elif case == "nan":
        kw["poses"] = np.zeros((3, 156)); kw["poses"][2, 7] = np.nan
    elif case == "inf":
        kw["trans"] = np.zeros((3, 3)); kw["trans"][1, 0] = np.inf
    elif case == "zero_frames":
        kw["poses"], kw["trans"] = np.zeros((0, 156)), np.zeros((0, 3))
    elif case == "object_array":
        kw["gender"] = np.array({"not": "an array"}, dtype=object)
    path = tiny_amass(tmp_path, **kw)
    if case == "not_npz":
        path = save_npy(tmp_path / "poses.npy", np.zeros((3, 156)))
    expect_error(load_amass, path, *fragments)


# --- detection ---------------------------------------------------------------------------------------------

def test_detect_and_dispatch(tmp_path):
    files = {"bvh": tiny_bvh(tmp_path), "deepmimic": tiny_deepmimic(tmp_path),
             "poselib": save_npy(tmp_path / "p.npy", tiny_poselib_dict()), "amass": tiny_amass(tmp_path)}
    for fmt, path in files.items():
        assert detect_format(path) == fmt
        assert load_source(path).source_format == fmt
    renamed = tmp_path / "clip.dat"  # content wins over the extension
    renamed.write_bytes(files["bvh"].read_bytes())
    assert detect_format(renamed) == "bvh"


def test_unknown_format(tmp_path):
    path = tmp_path / "clip.fbx"
    path.write_bytes(b"Kaydara FBX Binary  \x00\x1a\x00")
    expect_error(load_source, path, "unknown motion format")
    expect_error(lambda p: load_source(p, "c3d"), tiny_bvh(tmp_path), "unknown motion format 'c3d'")


# --- real data ---------------------------------------------------------------------------------------------

def frames_in_header(path):
    return int(re.search(r"^Frames:\s*(\d+)", path.read_text(), re.M).group(1))


def test_real_bandai(shared_data):
    path = shared_data / "bandai" / "data" / "dataset-1_walk_normal_001.bvh"
    src = load_bvh(path)
    assert src.fps == 30.0 and src.num_frames == frames_in_header(path)
    assert src.labels == {"content": "walk", "style": "normal", "take": "001", "folded_root": "joint_Root"}
    assert src.joint_names[0] == "Hips" and len(src.joint_names) == 26
    p = pos_of(src)
    assert 0.85 < p["Hips"][2] < 1.0
    assert p["Head"][2] > p["Hips"][2] > p["Toes_L"][2] and p["Head"][2] > p["Toes_R"][2] + 1.2
    pos, _ = global_transforms(src)
    travel = pos[-1, 0] - pos[0, 0]  # walks forward (+x), left leg on +y: the axes keep handedness
    left = pos[:, src.index("UpperLeg_L")] - pos[:, 0]
    assert travel[0] > 0.5 and np.mean(left[:, 1]) > 0.03


def test_real_bandai_all_clips(shared_data):
    paths = sorted((shared_data / "bandai" / "data").glob("*.bvh"))
    assert len(paths) == 174
    for path in paths:
        src = load_bvh(path)
        assert src.fps == 30.0 and src.labels["content"] and src.labels["style"]
        assert 0.6 < src.root_pos[0, 2] < 1.05, path.name  # hips about 0.9 m, standing at frame 0


def test_real_cmu(shared_data):
    path = shared_data / "cmu" / "02_01.bvh"
    src = load_bvh(path)
    assert src.fps == 120.0 and src.num_frames == frames_in_header(path) - 1
    assert src.labels == {"cmu_clip_id": "02_01", "dropped_tpose_frame": True}
    assert len(src.joint_names) == 38
    raw = [line.split() for line in path.read_text().split("Frame Time:")[1].splitlines()[1:3]]
    x, y, z = (float(v) for v in raw[1][:3])  # our frame 0 is the file's frame 1
    assert np.allclose(src.root_pos[0], np.array([z, x, y]) * 0.056444)
    p = pos_of(src)
    assert 0.85 < p["Hips"][2] < 1.05
    assert p["Head"][2] > p["LeftToeBase"][2] + 1.2
    for name in ("01_14.bvh", "05_06.bvh"):  # 05_06 has CRLF line ends
        other = load_bvh(shared_data / "cmu" / name)
        assert other.fps == 120.0 and other.labels["dropped_tpose_frame"]


def test_real_deepmimic(shared_data):
    folder = shared_data / "deepmimic" / "motions"
    walk = load_deepmimic(folder / "humanoid3d_walk.txt")
    assert walk.fps == 30.0 and walk.num_frames == 39 and walk.labels == {"name": "walk", "loop": "wrap"}
    p = pos_of(walk)
    assert np.isclose(p["root"][2], 0.847532) and p["neck_end"][2] > p["right_ankle_end"][2] + 1.4
    rates = {load_deepmimic(f).fps for f in folder.glob("*.txt")}
    assert rates == {16.0, 24.0, 30.0, 60.0, 120.0}


def test_real_amp(shared_data):
    folder = shared_data / "amp"
    walk = load_poselib(folder / "amp_humanoid_walk.npy")
    assert walk.fps == 60.0 and walk.num_frames == 154 and walk.labels == {"name": "walk"}
    assert walk.joint_names[:15] == ["pelvis", "torso", "head", "right_upper_arm", "right_lower_arm", "right_hand",
                                     "left_upper_arm", "left_lower_arm", "left_hand", "right_thigh", "right_shin",
                                     "right_foot", "left_thigh", "left_shin", "left_foot"]
    for path in sorted(folder.glob("amp_humanoid_*.npy")):
        p = pos_of(load_poselib(path))
        assert 0.7 < p["pelvis"][2] < 1.0, path.name
        assert p["head"][2] > max(p["left_foot"][2], p["right_foot"][2]) + 0.4, path.name
    tpose = load_poselib(folder / "amp_humanoid_tpose.npy")
    assert tpose.num_frames == 1 and np.isclose(tpose.root_pos[0, 2], 0.9)


def test_real_amp_and_deepmimic_backflip_are_the_same_take(shared_data):
    """Two formats, two importers, one take: the joint paths must coincide, which pins axes and joint conventions."""
    amp = load_poselib(shared_data / "amp" / "amp_humanoid_backflip.npy")
    dm = load_deepmimic(shared_data / "deepmimic" / "motions" / "humanoid3d_backflip.txt")
    pairs = {"pelvis": "root", "torso": "chest", "head": "neck", "head_end": "neck_end",
             "right_upper_arm": "right_shoulder", "right_lower_arm": "right_elbow", "right_hand": "right_elbow_end",
             "left_upper_arm": "left_shoulder", "left_lower_arm": "left_elbow", "left_hand": "left_elbow_end",
             "right_thigh": "right_hip", "right_shin": "right_knee", "right_foot": "right_ankle",
             "right_foot_end": "right_ankle_end", "left_thigh": "left_hip", "left_shin": "left_knee",
             "left_foot": "left_ankle", "left_foot_end": "left_ankle_end"}
    assert amp.fps == dm.fps == 16.0 and amp.num_frames == dm.num_frames == 29
    pa, _ = global_transforms(amp)
    pd, _ = global_transforms(dm)
    ia = [amp.index(k) for k in pairs]
    idm = [dm.index(v) for v in pairs.values()]
    assert np.abs(pa[:, ia] - pd[:, idm]).max() < 1e-4


def test_real_files_detected(shared_data):
    for rel, fmt in (("cmu/02_01.bvh", "bvh"), ("deepmimic/motions/humanoid3d_jog.txt", "deepmimic"),
                     ("amp/amp_humanoid_run.npy", "poselib")):
        assert detect_format(shared_data / rel) == fmt
