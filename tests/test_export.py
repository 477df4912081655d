"""Motion export and honest matching: `superpadl render --save` with the shipped policy writes npz, BVH and glb that
hold the same motion (the BVH re-imported by `motions import`, read by bvhio, and the glb's node animation all
reproduce the npz body positions), the timeline and captions say what each prompt was matched to, a prompt with no
known skill gets one warning line; `superpadl skills`; SimLoop's bounded history; the viewer's label and save key."""
import shutil
import subprocess
import sys
from types import SimpleNamespace

import mujoco
import numpy as np
import pytest

import superpadl.cli as cli
from characters.character import Character
from rendering.export import Recording, save
from superpadl.host import SimLoop
from superpadl.runtime import KNOWN_SIMILARITY

CHARACTER = Character()
PROMPT = "wave goodbye for 1.5s; then do a backflip for 1.5s"
FRAMES = 90  # 3 s at the 30 Hz control rate
TO_Y_UP = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], np.float64)  # Z-up (x forward) -> Y-up (z forward)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One render of the shipped policy with every export format (about 30 s on 2 cores)."""
    out = tmp_path_factory.mktemp("export")
    paths = {ext: out / f"motion.{ext}" for ext in ("npz", "bvh", "glb")}
    cmd = [sys.executable, "-m", "superpadl.cli", "render", "--prompt", PROMPT, "-o", str(out / "motion.mp4"),
           "--width", "64", "--height", "48", *[a for p in paths.values() for a in ("--save", str(p))]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return SimpleNamespace(paths=paths, stdout=proc.stdout, stderr=proc.stderr, npz=dict(np.load(paths["npz"])))


def forward_kinematics(qpos: np.ndarray) -> np.ndarray:
    m, d = CHARACTER.model, mujoco.MjData(CHARACTER.model)
    out = []
    for q in qpos:
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        out.append(d.xpos[1:].copy())
    return np.array(out)


def test_npz_holds_states_bodies_and_the_matched_timeline(rendered):
    z = rendered.npz
    assert z["qpos"].shape == (FRAMES, CHARACTER.model.nq) and float(z["fps"]) == 30.0
    assert list(z["body_names"]) == list(CHARACTER.body_names)
    assert list(z["joint_names"]) == list(CHARACTER.joint_names)
    np.testing.assert_allclose(z["body_pos"], forward_kinematics(z["qpos"]), atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(z["body_quat"], axis=-1), 1.0, atol=1e-9)
    assert np.ptp(z["body_pos"][:, CHARACTER.body_index("right_hand")], axis=0).max() > 0.05  # it moved
    assert list(z["command_text"]) == ["wave goodbye", "do a backflip"]
    assert list(z["command_caption"]) == ["wave goodbye", "jogging forward"]  # what the policy played
    sim = z["command_similarity"]
    assert sim[0] == pytest.approx(1.0, abs=1e-4) and sim[1] < KNOWN_SIMILARITY
    np.testing.assert_allclose(z["command_start_s"], [0.0, 1.5], atol=1e-9)


def test_an_unknown_prompt_warns_once_and_the_summary_names_every_file(rendered):
    warnings = [line for line in rendered.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, rendered.stderr
    assert "'do a backflip' is not a known skill" in warnings[0] and "'jogging forward'" in warnings[0]
    for path in rendered.paths.values():
        assert f"wrote {path} ({FRAMES} frames at 30 fps)" in rendered.stdout


def test_bvh_reimports_to_the_same_body_positions(rendered, tmp_path):
    from motions import cli as motions_cli
    from motions.clip import read_manifest

    lib = tmp_path / "lib"
    assert motions_cli.main(["import", str(rendered.paths["bvh"]), "--out", str(lib), "--quiet"]) == 0
    (entry,) = read_manifest(lib)["clips"]
    assert entry["joint_map"] == "padl_humanoid" and entry["scale"] == pytest.approx(1.0, abs=1e-6)
    qpos = np.load(lib / "clips" / f"{entry['id']}.npz")["qpos"]
    assert len(qpos) == FRAMES
    err = np.linalg.norm(forward_kinematics(qpos) - rendered.npz["body_pos"], axis=-1)
    assert err.max() <= 0.01, f"worst body {err.max() * 100:.2f} cm"


def test_bvh_reads_in_bvhio_with_the_same_pose(rendered):
    import bvhio

    bvh = bvhio.readAsBvh(str(rendered.paths["bvh"]))
    assert bvh.FrameCount == FRAMES and bvh.FrameTime == pytest.approx(1 / 30)
    root = bvhio.readAsHierarchy(str(rendered.paths["bvh"]))
    joints = [j for j, _, _ in root.layout()]
    assert [j.Name for j in joints] == list(CHARACTER.body_names)
    want = rendered.npz["body_pos"] @ TO_Y_UP.T
    for k in (0, 45, FRAMES - 1):
        root.loadPose(k)
        got = np.array([list(j.PositionWorld) for j in joints])
        np.testing.assert_allclose(got, want[k], atol=1e-3)


def _accessor(gltf, i: int) -> np.ndarray:
    a = gltf.accessors[i]
    view = gltf.bufferViews[a.bufferView]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[a.type]
    dtype = {5126: np.float32, 5123: np.uint16, 5125: np.uint32}[a.componentType]
    data = np.frombuffer(gltf.binary_blob(), dtype, a.count * width, view.byteOffset + (a.byteOffset or 0))
    return data.reshape(a.count, width)


def _rotate(q_xyzw: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y, z, w = q_xyzw
    u = np.array([x, y, z])
    return v + 2 * np.cross(u, np.cross(u, v) + w * v)


def _qmul_xyzw(a, b):
    x1, y1, z1, w1 = a
    x2, y2, z2, w2 = b
    return np.array([w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2, w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                     w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2, w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2])


def test_glb_animates_the_skeleton(rendered):
    import pygltflib

    gltf = pygltflib.GLTF2().load(str(rendered.paths["glb"]))
    (skin,) = gltf.skins
    assert len(skin.joints) == len(CHARACTER.body_names)
    assert [gltf.nodes[j].name for j in skin.joints] == list(CHARACTER.body_names)
    (anim,) = gltf.animations
    times = _accessor(gltf, anim.samplers[0].input)[:, 0]
    assert len(times) == FRAMES and times[-1] == pytest.approx((FRAMES - 1) / 30, abs=1e-5)
    mesh = gltf.meshes[gltf.nodes[-1].mesh].primitives[0].attributes
    assert _accessor(gltf, mesh.JOINTS_0)[:, 0].max() == len(skin.joints) - 1  # every body has geometry

    # world positions from the node hierarchy and the animation at some frames = the npz body positions
    keys = {(c.target.node, c.target.path): _accessor(gltf, anim.samplers[c.sampler].output) for c in anim.channels}
    parent = {c: p for p, n in enumerate(gltf.nodes) for c in (n.children or [])}
    want = rendered.npz["body_pos"] @ TO_Y_UP.T
    for k in (0, 45, FRAMES - 1):
        pos, rot = {}, {}
        for j in skin.joints:  # parents precede children
            t = keys.get((j, "translation"), [gltf.nodes[j].translation] * FRAMES)[k]
            r = keys[(j, "rotation")][k].astype(np.float64)
            if j in parent:
                pos[j] = pos[parent[j]] + _rotate(rot[parent[j]], np.asarray(t, np.float64))
                rot[j] = _qmul_xyzw(rot[parent[j]], r)
            else:
                pos[j], rot[j] = np.asarray(t, np.float64), r
        np.testing.assert_allclose([pos[j] for j in skin.joints], want[k], atol=1e-5)


@pytest.mark.skipif(shutil.which("blender") is None, reason="Blender is not installed (apt-get install blender "
                                                            "python3-numpy): the importer check needs it")
def test_blender_imports_bvh_and_glb(rendered, tmp_path):
    script = tmp_path / "check.py"
    script.write_text(
        "import builtins, sys, bpy\n"
        "_open = builtins.open  # Debian's Blender 3.4 BVH importer opens with mode 'rU', which Python 3.11 refuses\n"
        "builtins.open = lambda f, mode='r', *a, **k: _open(f, 'r' if mode == 'rU' else mode, *a, **k)\n"
        "import numpy  # its glTF importer uses np.bool, which Debian's numpy no longer has\n"
        "numpy.bool = getattr(numpy, 'bool', bool)\n"
        "bvh, glb = sys.argv[sys.argv.index('--') + 1:]\n"
        "bpy.ops.import_anim.bvh(filepath=bvh)\n"
        "arm = [o for o in bpy.context.scene.objects if o.type == 'ARMATURE'][0]\n"
        "first, last = arm.animation_data.action.frame_range\n"
        "print('BVH', len(arm.data.bones), int(last - first + 1))\n"
        "bpy.ops.import_scene.gltf(filepath=glb)\n"
        "arms = [o for o in bpy.context.scene.objects if o.type == 'ARMATURE']\n"
        "print('GLB', len(arms), max(len(a.data.bones) for a in arms), len(bpy.data.actions))\n")
    proc = subprocess.run(["blender", "-b", "--factory-startup", "--python", str(script), "--",
                           str(rendered.paths["bvh"]), str(rendered.paths["glb"])],
                          capture_output=True, text=True, timeout=300)
    lines = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines() if line[:4] in ("BVH ", "GLB ")}
    assert "BVH" in lines and "GLB" in lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert int(lines["BVH"][0]) == len(CHARACTER.body_names) and int(lines["BVH"][1]) == FRAMES
    assert int(lines["GLB"][0]) == 2 and int(lines["GLB"][1]) == len(CHARACTER.body_names)


def test_unknown_format_fails_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "resolve_controller", lambda policy: pytest.fail("no work before the check"))
    out = tmp_path / "a.mp4"
    assert cli.main(["render", "--prompt", "bow", "-o", str(out), "--save", str(tmp_path / "a.fbx")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"superpadl: error: --save {tmp_path / 'a.fbx'}: unknown export format '.fbx'; use one of "
                   ".npz, .bvh, .glb"]
    assert list(tmp_path.iterdir()) == []


def test_skills_lists_the_captions_by_clip(capsys):
    assert cli.main(["skills"]) == 0
    lines = capsys.readouterr().out.splitlines()
    clips = dict(line.split(": ", 1) for line in lines[:-1])
    assert len(clips) == 11 and "wave goodbye" in clips["bandai_bye_normal_001"].split(" | ")
    assert "stand still" in clips["bandai_call_normal_001_4.6-5.6s"].split(" | ")
    assert lines[-1].startswith("53 captions of 11 clips")


def test_skills_bad_policy_one_line(tmp_path, capsys):
    assert cli.main(["skills", "--policy", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err.strip() == f"superpadl: error: {tmp_path / 'nope'}: no such policy directory"


class MatchingController:
    """Test double with a matcher: 'bow' is known, anything else its nearest is 'bow' at similarity 0.3."""

    control_hz = 30.0

    def __init__(self):
        self.character, self.model = CHARACTER, CHARACTER.model
        self.matched_caption = self.similarity = None

    def initial_state(self):
        return CHARACTER.rest_qpos(), np.zeros(CHARACTER.model.nv)

    def reset(self, qpos, qvel):
        pass

    def set_command(self, text):
        self.matched_caption, self.similarity = "take a bow", (0.9 if text == "bow" else 0.3)

    def act(self, qpos, qvel):
        return CHARACTER.rest_qpos()[7:][CHARACTER.actuator_joint]


def test_history_is_bounded_and_the_timeline_starts_in_the_window():
    loop = SimLoop(CHARACTER.model, MatchingController(), history_s=1.0)
    loop.command("bow")
    loop.advance(2.0)
    loop.command("sit down")
    loop.advance(0.5)
    rec = loop.recording()
    assert rec.num_frames == 31 and rec.fps == 30.0
    assert [(c["text"], c["start_s"], c["caption"], c["similarity"]) for c in rec.timeline] == [
        ("bow", 0.0, "take a bow", 0.9), ("sit down", pytest.approx(0.5), "take a bow", 0.3)]
    np.testing.assert_array_equal(rec.qpos[-1], loop.data.qpos)
    assert loop.recording(0.2).num_frames == 7


def test_viewer_label_and_save_key(tmp_path):
    from viewer.interactive import Viewer, _command_text

    loop = SimLoop(CHARACTER.model, MatchingController())
    loop.command("bow")
    assert _command_text(loop) == 'bow -> "take a bow" (0.90)'
    loop.controller.idling = True  # a one-shot command held past its clip (PolicyController)
    assert _command_text(loop) == 'bow -> "take a bow" (0.90) — done, standing'
    loop.controller.idling = False
    loop.command("sit down")
    assert _command_text(loop) == 'sit down: not a known skill — nearest: "take a bow" (0.30)'
    loop.advance(1.0)
    stub = SimpleNamespace(loop=loop, error="")
    paths = Viewer.save_recent(stub, 30.0, tmp_path)
    assert sorted(p.suffix for p in paths) == [".bvh", ".glb", ".npz"] and all(p.is_file() for p in paths)
    z = np.load(next(p for p in paths if p.suffix == ".npz"))
    assert len(z["qpos"]) == 31  # "bow" was replaced before a frame passed: the timeline holds what played
    assert list(z["command_text"]) == ["sit down"] and list(z["command_caption"]) == ["take a bow"]
    assert stub.error.startswith("saved 1.0 s")


def test_save_is_atomic_and_refuses_unknown_formats(tmp_path):
    rec = Recording(CHARACTER.model, CHARACTER.rest_qpos()[None], 30.0)
    with pytest.raises(ValueError, match="unknown export format"):
        save(tmp_path / "x.fbx", rec)
    with pytest.raises(ValueError, match="nothing recorded"):
        save(tmp_path / "x.npz", Recording(CHARACTER.model, np.zeros((0, CHARACTER.model.nq)), 30.0))
    save(tmp_path / "x.npz", rec)
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]
