"""`motions`: import mocap into a library, inspect it, and play a clip back to video."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from motions.clip import LibraryError
from motions.source import MotionImportError


def cmd_import(args) -> None:
    from motions.importer import import_clips, qa_table
    from motions.quality import Thresholds

    t = Thresholds(args.max_key_body_error, args.max_penetration, args.max_joint_limit)
    entries = import_clips(args.sources, args.out, args.format, t, progress=not args.quiet)
    print(qa_table(entries))
    print(f"library written to {args.out}")


def cmd_info(args) -> None:
    from motions.clip import read_manifest
    from motions.importer import qa_table

    m = read_manifest(args.lib)
    print(f"{args.lib}: character {m['character']}, {m['fps']:g} fps, {len(m['clips'])} clips")
    print(qa_table(m["clips"]))
    if args.captions:
        for e in m["clips"]:
            print(f"{e['id']}: " + " | ".join(e["captions"]))
    if args.speeds:
        print_speeds(args.lib, m, args.speeds, args.every)


def print_speeds(lib: Path, manifest: dict, clip: str, every: float) -> None:
    from motions.clip import load_clip
    from motions.quality import speed_profile

    entry = next((e for e in manifest["clips"] if e["id"] == clip), None)
    if entry is None:
        raise LibraryError(f"{lib}: no clip {clip!r}")
    z = load_clip(Path(lib) / entry["file"])
    print(f"{clip}: mean over {every:g} s windows (rest: joint speed near 0)")
    print(f"{'start s':>8} {'root z m':>9} {'root m/s':>9} {'joint rad/s':>12} {'from start m':>13}")
    for t, z_, v, w, d in speed_profile(z["qpos"], z["qvel"], float(z["fps"]), every):
        print(f"{t:8.2f} {z_:9.3f} {v:9.2f} {w:12.2f} {d:13.2f}")


def cmd_render(args) -> None:
    import mujoco
    import numpy as np
    from tqdm import tqdm

    from motions.library import MotionLibrary
    from rendering.offscreen import FrameRenderer, VideoWriter

    lib = MotionLibrary(args.lib, clips=[args.clip])
    model = lib.character.model
    data = mujoco.MjData(model)
    n = int(round(lib.durations[0] * args.fps)) + 1
    qpos = np.asarray(lib.sample(np.zeros(n, np.int32), np.arange(n) / args.fps).qpos, np.float64)
    renderer = FrameRenderer(model, args.width, args.height)
    with VideoWriter(args.output, args.fps) as video:
        for q in tqdm(qpos, desc=f"rendering {args.clip}", disable=args.quiet):
            data.qpos[:] = q
            mujoco.mj_kinematics(model, data)
            video.append(renderer.render(data, lib.captions[0][0] if args.caption else None))
    print(f"wrote {args.output} ({n} frames)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="motions", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("import", help="import mocap files (BVH, DeepMimic JSON, poselib .npy, AMASS .npz) into a library")
    i.add_argument("sources", nargs="+", help="mocap files; FILE@START:END imports the span from START to END s")
    i.add_argument("--out", type=Path, required=True, help="library folder (created, or extended if it exists)")
    i.add_argument("--format", choices=["bvh", "deepmimic", "poselib", "amass"], help="default: detected per file")
    i.add_argument("--max-key-body-error", type=float, default=5.0, help="cm, mean (default 5)")
    i.add_argument("--max-penetration", type=float, default=2.0, help="cm (default 2)")
    i.add_argument("--max-joint-limit", type=float, default=5.0, help="degrees past a limit (default 5)")
    i.add_argument("--quiet", action="store_true")
    i.set_defaults(func=cmd_import)
    n = sub.add_parser("info", help="summary and quality table of a library")
    n.add_argument("lib", type=Path)
    n.add_argument("--captions", action="store_true", help="also list every clip's captions")
    n.add_argument("--speeds", metavar="CLIP", help="also print CLIP's root and joint speeds over time (rest windows)")
    n.add_argument("--every", type=float, default=0.1, help="window of --speeds, s (default 0.1)")
    n.set_defaults(func=cmd_info)
    r = sub.add_parser("render", help="kinematic playback of one clip to mp4 (headless)")
    r.add_argument("lib", type=Path)
    r.add_argument("clip")
    r.add_argument("-o", "--output", type=Path, required=True)
    r.add_argument("--width", type=int, default=640)
    r.add_argument("--height", type=int, default=480)
    r.add_argument("--fps", type=float, default=30.0)
    r.add_argument("--caption", action="store_true", help="draw the clip's first caption on the frames")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_render)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (MotionImportError, LibraryError) as e:
        print(f"motions: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
