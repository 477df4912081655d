"""Motion export: the simulated character's states as npz, BVH and glTF binary, for Blender, Unity or Unreal.

A `Recording` is what a run leaves: qpos per frame at a fixed rate and the command timeline (typed text, the
caption it was matched to, their cosine similarity, start time). Body positions and rotations come from MuJoCo's
forward kinematics of the character's own MJCF, so every format holds the same motion:

- npz: qpos, world body positions and rotations (Z up, metres, quaternions wxyz), fps, names, the timeline;
- BVH (written by `bvhio`): a joint per body, offsets from the MJCF, Y up, +Z forward, metres, ZXY Euler channels
  (for this character's hinge triplets, R = Rx Ry Rz in MuJoCo axes, these are exactly the joint angles); End Sites
  at the character's head top, hand ends and toes, so `motions import` maps it back 1:1
  (motions/joint_maps/padl_humanoid.json);
- glb (written by `pygltflib`): the same skeleton as glTF nodes, one skinned mesh of the character's capsules,
  spheres and boxes (`trimesh` builds them), one animation with a key per frame; Y up, +Z forward, metres.

Files are written to a temporary name and renamed, so a failed export leaves nothing half-written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

FORMATS = (".npz", ".bvh", ".glb")
# Z-up MuJoCo (x forward, y left) to Y-up BVH / glTF (z forward, x left): a cyclic permutation, so a rotation
_TO_Y_UP = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], np.float64)


@dataclass
class Recording:
    """States at `fps` (`qpos` (T, nq) of `model`) and the commands given: dicts {start_s (from the first frame),
    text, caption (None when the controller does not match text), similarity (NaN then)}."""

    model: mujoco.MjModel
    qpos: np.ndarray
    fps: float
    timeline: list[dict] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return len(self.qpos)

    def bodies(self) -> tuple[np.ndarray, np.ndarray]:
        """World body positions (T, B, 3) and rotations (T, B, 4, wxyz), world body excluded."""
        m, d = self.model, mujoco.MjData(self.model)
        pos = np.zeros((self.num_frames, m.nbody - 1, 3))
        quat = np.zeros((self.num_frames, m.nbody - 1, 4))
        for t, q in enumerate(self.qpos):
            d.qpos[:] = q
            mujoco.mj_kinematics(m, d)
            pos[t], quat[t] = d.xpos[1:], d.xquat[1:]
        return pos, quat

    def local_rotations(self) -> np.ndarray:
        """(T, B, 4) wxyz rotation of each body relative to its parent (the root's: its world rotation)."""
        _, quat = self.bodies()
        parent = self.model.body_parentid[1:] - 1
        out = quat.copy()
        child = parent >= 0
        out[:, child] = _qmul(_qconj(quat[:, parent[child]]), quat[:, child])
        return out


def check_path(path: str | Path) -> Path:
    """The path, or ValueError naming it when its suffix is not an export format."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{path}: unknown export format {path.suffix or '(no suffix)'!r}; use one of "
                         f"{', '.join(FORMATS)}")
    return path


def save(path: str | Path, rec: Recording) -> Path:
    """Write `rec` in the format the suffix names."""
    path = check_path(path)
    if rec.num_frames < 1:
        raise ValueError(f"{path}: nothing recorded to export")
    writer = {".npz": write_npz, ".bvh": write_bvh, ".glb": write_glb}[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        writer(tmp, rec)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ----- npz ---------------------------------------------------------------------------------------------------------
def write_npz(path: Path, rec: Recording) -> None:
    m = rec.model
    pos, quat = rec.bodies()
    tl = rec.timeline
    with open(path, "wb") as f:  # np.savez would append .npz to the temporary name
        np.savez(f, qpos=rec.qpos.astype(np.float64), fps=np.float64(rec.fps),
                 time=np.arange(rec.num_frames) / rec.fps, body_pos=pos, body_quat=quat,
                 body_names=np.array([m.body(b).name for b in range(1, m.nbody)]),
                 joint_names=np.array([m.joint(j).name for j in range(m.njnt)
                                       if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]),
                 command_start_s=np.array([c["start_s"] for c in tl], np.float64),
                 command_text=np.array([c["text"] for c in tl], dtype=str),
                 command_caption=np.array([c["caption"] or "" for c in tl], dtype=str),
                 command_similarity=np.array([np.nan if c["similarity"] is None else c["similarity"] for c in tl],
                                             np.float64),
                 frame=np.array("world: Z up, metres; quaternions w, x, y, z; qpos = root position, root "
                                "quaternion, one angle per hinge (radians) in joint_names order"))


# ----- BVH ---------------------------------------------------------------------------------------------------------
def _end_sites(model: mujoco.MjModel) -> dict[int, np.ndarray]:
    """Leaf body -> End Site in its frame: the character's farthest named point on that body (head top, hand end,
    toe; characters.character.POINTS), else its first geom's centre."""
    from characters.character import POINTS

    leaves = set(range(1, model.nbody)) - set(model.body_parentid[1:])
    out = {}
    for b in sorted(leaves):
        name = model.body(b).name
        offsets = [np.array(off, np.float64) for body, off in POINTS.values() if body == name]
        best = max(offsets, key=np.linalg.norm, default=None)
        if best is None or not np.linalg.norm(best) > 0:
            geoms = np.flatnonzero(model.geom_bodyid == b)
            best = model.geom_pos[geoms[0]].copy() if len(geoms) else np.array([0.0, 0.0, 0.1])
        out[b] = best
    return out


def write_bvh(path: Path, rec: Recording) -> None:
    import bvhio
    from pyglm import glm

    m = rec.model
    local = rec.local_rotations()
    local[..., 1:] = local[..., 1:] @ _TO_Y_UP.T  # a rotation's axis turns like a vector
    root_pos = rec.qpos[:, :3] @ _TO_Y_UP.T
    ends = _end_sites(m)
    joints: dict[int, bvhio.BvhJoint] = {}
    for b in range(1, m.nbody):
        offset = np.zeros(3) if b == 1 else _TO_Y_UP @ m.body_pos[b]  # the root's place is in its channels
        j = bvhio.BvhJoint(m.body(b).name, glm.vec3(*offset))
        j.Channels = (["Xposition", "Yposition", "Zposition"] if b == 1 else []) + ["Zrotation", "Xrotation",
                                                                                     "Yrotation"]
        if b in ends:
            j.EndSite = glm.vec3(*(_TO_Y_UP @ ends[b]))
        for t in range(rec.num_frames):
            q = local[t, b - 1]
            j.Keyframes.append(bvhio.Pose(glm.vec3(*root_pos[t]) if b == 1 else glm.vec3(0.0),
                                          glm.quat(*q)))
        joints[b] = j
        if b > 1:
            joints[m.body_parentid[b]].Children.append(j)
    bvhio.writeBvh(str(path), bvhio.BvhContainer(joints[1], rec.num_frames, 1.0 / rec.fps), percision=6)


# ----- glTF binary -------------------------------------------------------------------------------------------------
def _body_meshes(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The character's geoms as one triangle mesh at the rest pose (world, Z up): vertices, normals, faces and the
    body (0-based, world body excluded) each vertex belongs to."""
    import trimesh

    d = mujoco.MjData(model)
    mujoco.mj_kinematics(model, d)
    verts, norms, faces, owner, n = [], [], [], [], 0
    for g in range(model.ngeom):
        b, kind, size = model.geom_bodyid[g], model.geom_type[g], model.geom_size[g]
        if b == 0:
            continue  # the floor
        if kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
            mesh = trimesh.creation.capsule(height=2 * size[1], radius=size[0], count=[12, 12])
        elif kind == mujoco.mjtGeom.mjGEOM_SPHERE:
            mesh = trimesh.creation.icosphere(subdivisions=2, radius=size[0])
        elif kind == mujoco.mjtGeom.mjGEOM_BOX:
            mesh = trimesh.creation.box(extents=2 * size[:3])
        else:
            continue  # meshes and planes: none on this character
        rot = d.geom_xmat[g].reshape(3, 3)
        verts.append(mesh.vertices @ rot.T + d.geom_xpos[g])
        norms.append(mesh.vertex_normals @ rot.T)
        faces.append(mesh.faces + n)
        owner.append(np.full(len(mesh.vertices), b - 1))
        n += len(mesh.vertices)
    return np.concatenate(verts), np.concatenate(norms), np.concatenate(faces), np.concatenate(owner)


def write_glb(path: Path, rec: Recording) -> None:
    import pygltflib as G

    m = rec.model
    nb = m.nbody - 1
    blob = bytearray()
    gltf = G.GLTF2(asset=G.Asset(generator="padl-motion rendering.export"))

    def accessor(array: np.ndarray, kind: str, target: int | None = None, bounds: bool = False) -> int:
        array = np.ascontiguousarray(array)
        ctype = {np.dtype(np.float32): G.FLOAT, np.dtype(np.uint16): G.UNSIGNED_SHORT,
                 np.dtype(np.uint32): G.UNSIGNED_INT}[array.dtype]
        while len(blob) % 4:
            blob.append(0)
        gltf.bufferViews.append(G.BufferView(buffer=0, byteOffset=len(blob), byteLength=array.nbytes, target=target))
        blob.extend(array.tobytes())
        flat = array.reshape(len(array), -1)
        gltf.accessors.append(G.Accessor(bufferView=len(gltf.bufferViews) - 1, componentType=ctype, count=len(array),
                                         type=kind, min=flat.min(0).tolist() if bounds else None,
                                         max=flat.max(0).tolist() if bounds else None))
        return len(gltf.accessors) - 1

    # skeleton: a node per body, rest translation = the MJCF offset (the root's: its rest position)
    for b in range(1, m.nbody):
        children = [c - 1 for c in range(1, m.nbody) if m.body_parentid[c] == b]
        offset = _TO_Y_UP @ (m.qpos0[:3] if b == 1 else m.body_pos[b])
        gltf.nodes.append(G.Node(name=m.body(b).name, translation=offset.tolist(), children=children or None))

    # one mesh skinned rigidly: every vertex follows its body's joint
    verts, norms, faces, owner = _body_meshes(m)
    d = mujoco.MjData(m)
    mujoco.mj_kinematics(m, d)
    rest = d.xpos[1:] @ _TO_Y_UP.T
    ibm = np.tile(np.eye(4, dtype=np.float32), (nb, 1, 1))
    ibm[:, 3, :3] = -rest  # column-major: the translation is the last column, stored last
    joints = np.zeros((len(verts), 4), np.uint16)
    joints[:, 0] = owner
    weights = np.zeros((len(verts), 4), np.float32)
    weights[:, 0] = 1.0
    attrs = G.Attributes(POSITION=accessor((verts @ _TO_Y_UP.T).astype(np.float32), G.VEC3, G.ARRAY_BUFFER, True),
                         NORMAL=accessor((norms @ _TO_Y_UP.T).astype(np.float32), G.VEC3, G.ARRAY_BUFFER),
                         JOINTS_0=accessor(joints, G.VEC4, G.ARRAY_BUFFER),
                         WEIGHTS_0=accessor(weights, G.VEC4, G.ARRAY_BUFFER))
    indices = accessor(faces.reshape(-1).astype(np.uint32), G.SCALAR, G.ELEMENT_ARRAY_BUFFER)
    rgba = m.geom_rgba[np.flatnonzero(m.geom_bodyid > 0)[0]].tolist()
    gltf.materials.append(G.Material(name="skin", pbrMetallicRoughness=G.PbrMetallicRoughness(
        baseColorFactor=rgba, metallicFactor=0.0, roughnessFactor=0.8)))
    gltf.meshes.append(G.Mesh(name="body", primitives=[G.Primitive(attributes=attrs, indices=indices, material=0)]))
    gltf.skins.append(G.Skin(name="skeleton", joints=list(range(nb)), skeleton=0,
                             inverseBindMatrices=accessor(ibm, G.MAT4)))
    gltf.nodes.append(G.Node(name="body", mesh=0, skin=0))
    gltf.scenes.append(G.Scene(name=m.body(1).name, nodes=[0, nb]))
    gltf.scene = 0

    # animation: the root's translation and every body's local rotation, a key per frame
    times = accessor((np.arange(rec.num_frames) / rec.fps).astype(np.float32), G.SCALAR, bounds=True)
    local = rec.local_rotations()
    xyzw = np.concatenate([local[..., 1:] @ _TO_Y_UP.T, local[..., :1]], axis=-1).astype(np.float32)
    samplers = [G.AnimationSampler(input=times, output=accessor((rec.qpos[:, :3] @ _TO_Y_UP.T).astype(np.float32),
                                                                G.VEC3), interpolation=G.ANIM_LINEAR)]
    channels = [G.AnimationChannel(sampler=0, target=G.AnimationChannelTarget(node=0, path="translation"))]
    for j in range(nb):
        samplers.append(G.AnimationSampler(input=times, output=accessor(xyzw[:, j], G.VEC4),
                                           interpolation=G.ANIM_LINEAR))
        channels.append(G.AnimationChannel(sampler=len(samplers) - 1,
                                           target=G.AnimationChannelTarget(node=j, path="rotation")))
    gltf.animations.append(G.Animation(name="motion", samplers=samplers, channels=channels))

    gltf.buffers.append(G.Buffer(byteLength=len(blob)))
    gltf.set_binary_blob(bytes(blob))
    gltf.save_binary(str(path))


# ----- quaternions (wxyz) ------------------------------------------------------------------------------------------
def _qconj(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = np.moveaxis(a, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(b, -1, 0)
    return np.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], -1)
