"""`motions import`: read sources, retarget, measure, caption, and write a library in one transaction."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from characters.character import Character
from motions.captions import STANDING_CAPTIONS, clip_captions
from motions.clip import LibraryWriter, library_target, sweep_stale, velocities
from motions.detect import load_source
from motions.quality import Thresholds, assess, at_rest, foot_metrics, joint_limit_violation_deg, key_body_error_cm, thresholds_dict
from motions.retarget import KEY_POINTS, IKSolver, character_points, retarget
from motions.source import MotionImportError, SourceMotion, check_duration, cut, parse_spec

LICENCES = {
    "bandai": "CC BY-NC 4.0 (Bandai Namco Research Motiondataset-1)",
    "cmu": "CMU Graphics Lab Motion Capture Database: free for research and commercial use",
    "deepmimic": "MIT (DeepMimic motions, derived from CMU/SFU mocap)",
    "poselib": "BSD-3-Clause (IsaacGymEnvs AMP motions, derived from CMU mocap)",
    "amass": "AMASS licence: non-commercial scientific research only",
}


def clip_identity(src: SourceMotion) -> tuple[str, str, bool]:
    """(clip id, licence, loops) from the source's labels and format."""
    clip_id, licence, loop = _source_identity(src)
    if "span_s" in src.labels:
        start, end = src.labels["span_s"]
        return f"{clip_id}_{start:g}-{end:g}s", licence, False
    return clip_id, licence, loop


def _source_identity(src: SourceMotion) -> tuple[str, str, bool]:
    lab = src.labels
    if "content" in lab:
        return f"bandai_{lab['content']}_{lab['style']}_{lab.get('take', '000')}", LICENCES["bandai"], False
    if "cmu_clip_id" in lab:
        return f"cmu_{lab['cmu_clip_id']}", LICENCES["cmu"], False
    if src.source_format == "deepmimic":
        return f"deepmimic_{lab['name']}", LICENCES["deepmimic"], lab.get("loop") == "wrap"
    if src.source_format == "poselib":
        return f"amp_{lab['name']}", LICENCES["poselib"], False
    if src.source_format == "amass":
        return f"amass_{Path(src.source_file).stem}", LICENCES["amass"], False
    return Path(src.source_file).stem, "unknown (stated by the user)", False


def measure(character: Character, qpos: np.ndarray, fps: float, target: np.ndarray) -> dict:
    pts = character_points(character, qpos)
    key = np.array([character.point_names.index(p) for p in KEY_POINTS])
    mean, worst = key_body_error_cm(pts, target, key)
    limit, joint = joint_limit_violation_deg(character, qpos)
    return {"key_body_error_mean_cm": mean, "key_body_error_max_cm": worst, **foot_metrics(character, qpos, fps),
            "joint_limit_deg": limit, "joint_limit_joint": joint}


def find_cmu_descriptions(src_path: Path) -> Path | None:
    for d in (src_path.parent, src_path.parent.parent):
        p = d / "cmu_clip_descriptions.tsv"
        if p.is_file():
            return p
    return None


def import_clips(paths: list, out: Path, fmt: str | None = None, thresholds: Thresholds = Thresholds(),
                 character: Character | None = None, progress: bool = True,
                 captions: list[str] | None = None) -> list[dict]:
    """Import every path (or 'path@START:END', seconds) into the library at out; all-or-nothing. captions, when
    given, caption every clip; otherwise they come from the sources' labels or names (or none: uncaptioned).
    Returns the manifest entries added."""
    sweep_stale(out)  # what an earlier, killed import left
    library_target(out)  # refuse a folder that is not ours before any work
    character = character or Character()
    specs = [parse_spec(p) for p in paths]
    paths = [p for p, _ in specs]
    for p in paths:
        if not p.is_file():
            raise MotionImportError(p, "no such file")
    # Parse everything first: a bad file fails the import before any work or any write.
    sources = [load_source(p, fmt) for p in tqdm(paths, desc="reading", disable=not progress)]
    sources = [cut(s, span) if span else s for s, (_, span) in zip(sources, specs)]
    for p, s in zip(paths, sources):
        if s.num_frames < 2:
            raise MotionImportError(p, f"only {s.num_frames} frame(s); a clip needs at least 2")
        check_duration(s)
    solver = IKSolver(character)
    added = []
    writer = LibraryWriter(out, character, thresholds_dict(thresholds))
    try:
        for p, src in tqdm(list(zip(paths, sources)), desc="retargeting", disable=not progress):
            clip_id, licence, loop = clip_identity(src)
            clip_id = writer.unique_id(clip_id, p, src.labels.get("span_s"))
            r = retarget(src, character, solver)
            qa = measure(character, r.qpos, r.fps, r.target_points)
            reasons = assess(qa, thresholds)
            vel = velocities(character, r.qpos, r.fps)
            if captions:
                texts = list(captions)
            elif "span_s" in src.labels and at_rest(r.qpos, vel["qvel"], r.fps):
                texts = list(STANDING_CAPTIONS)
            else:
                texts = clip_captions(src.labels, src.source_format, p.stem, find_cmu_descriptions(p))
            entry = {
                "id": clip_id,
                "captions": texts,
                "source_file": str(p), "source_format": src.source_format, "licence": licence,
                "labels": src.labels, "loop": loop, "num_frames": int(len(r.qpos)),
                "duration_s": float((len(r.qpos) - 1) / r.fps), "joint_map": r.joint_map, "scale": r.scale,
                "qa": qa, "flagged": bool(reasons), "flag_reasons": reasons,
            }
            writer.add(entry, r.qpos, r.fps, vel)
            added.append(entry)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return added


_QA_COLUMNS = (("key_body_error_mean_cm", 8), ("key_body_error_max_cm", 7), ("penetration_cm", 5),
               ("skate_speed_cm_s", 6), ("max_stance_slide_cm", 6), ("joint_limit_deg", 6))


def qa_table(entries: list[dict]) -> str:
    """The quality table `motions import` and `motions info` print; figures a manifest lacks show as '-', and
    clips without captions are listed (they give text-conditioned training nothing)."""
    head = f"{'clip':<36} {'frames':>6} {'kb mean':>8} {'kb max':>7} {'pen':>5} {'skate':>6} {'slide':>6} {'limit':>6}  flag"
    lines = [head, "-" * len(head)]
    for e in entries:
        q = e.get("qa") if isinstance(e.get("qa"), dict) else {}
        figures = " ".join(f"{q[k]:>{w}.1f}" if isinstance(q.get(k), (int, float)) else f"{'-':>{w}}"
                           for k, w in _QA_COLUMNS)
        flag = "; ".join(e.get("flag_reasons") or []) if e.get("flagged") else ""
        lines.append(f"{str(e['id'])[:36]:<36} {e.get('num_frames', '-'):>6} {figures}  {flag}")
    n = sum(bool(e.get("flagged")) for e in entries)
    lines.append(f"{len(entries)} clips, {n} flagged (kept out of the default library). "
                 "kb = key-body error (cm), pen = foot penetration (cm), skate = foot speed in contact (cm/s), "
                 "slide = largest slide in one stance (cm), limit = worst joint past its limit (deg)")
    bare = [str(e["id"]) for e in entries if not e.get("captions")]
    if bare:
        lines.append(f"{len(bare)} uncaptioned (no text to train on; caption them with `motions import --caption "
                     f"TEXT`): {', '.join(bare)}")
    return "\n".join(lines)
