"""`motions`: import mocap into a library, inspect it, and play a clip back to video."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import rendering  # noqa: F401  (first: chooses MuJoCo's OpenGL backend before anything imports mujoco)
from motions import entry, interrupts
from motions import options as O
from motions.clip import LibraryError
from motions.source import MotionImportError


def cmd_import(args) -> None:
    from motions.importer import import_clips, qa_table
    from motions.quality import Thresholds

    if args.caption and not all(c.strip() for c in args.caption):
        raise MotionImportError("--caption", "a caption must not be blank")
    t = Thresholds(args.max_key_body_error, args.max_penetration, args.max_joint_limit)
    entries = import_clips(args.sources, args.out, args.format, t, progress=not args.quiet, captions=args.caption)
    print(qa_table(entries))
    print(f"library written to {args.out}")


def cmd_info(args) -> None:
    from motions.clip import read_manifest
    from motions.importer import qa_table

    m = read_manifest(args.lib)
    fps = f"{m['fps']:g} fps" if isinstance(m.get("fps"), (int, float)) else "no frame rate"
    print(f"{args.lib}: character {m.get('character')}, {fps}, {len(m['clips'])} clips")
    print(qa_table(m["clips"]))
    if args.captions:
        for e in m["clips"]:
            print(f"{e['id']}: " + (" | ".join(e.get("captions") or []) or "(uncaptioned)"))
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
            video.append(renderer.render(data, (lib.captions[0] or [None])[0] if args.caption else None))
    print(f"wrote {args.output} ({n} frames)")


def build_parser() -> argparse.ArgumentParser:
    p = O.Parser(prog="motions", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("import", help="import mocap files (BVH, DeepMimic JSON, poselib .npy, AMASS .npz) into a library")
    i.add_argument("sources", nargs="+", help="mocap files; FILE@START:END imports the span from START to END s")
    i.add_argument("--out", type=Path, required=True, help="library folder (created, or extended if it exists)")
    i.add_argument("--format", choices=["bvh", "deepmimic", "poselib", "amass"], help="default: detected per file")
    i.add_argument("--caption", action="append", metavar="TEXT",
                   help="caption every imported clip with TEXT (repeat for paraphrases); default: from the dataset's "
                        "labels, else the file name's words")
    i.add_argument("--max-key-body-error", type=O.nonneg_float, default=5.0, help="cm, mean (default 5)")
    i.add_argument("--max-penetration", type=O.nonneg_float, default=2.0, help="cm (default 2)")
    i.add_argument("--max-joint-limit", type=O.nonneg_float, default=5.0, help="degrees past a limit (default 5)")
    i.add_argument("--quiet", action="store_true")
    i.set_defaults(func=cmd_import)
    n = sub.add_parser("info", help="summary and quality table of a library")
    n.add_argument("lib", type=Path)
    n.add_argument("--captions", action="store_true", help="also list every clip's captions")
    n.add_argument("--speeds", metavar="CLIP", help="also print CLIP's root and joint speeds over time (rest windows)")
    n.add_argument("--every", type=O.positive_float, default=0.1, help="window of --speeds, s (default 0.1)")
    n.set_defaults(func=cmd_info)
    r = sub.add_parser("render", help="kinematic playback of one clip to mp4 (headless)")
    r.add_argument("lib", type=Path)
    r.add_argument("clip")
    r.add_argument("-o", "--output", type=O.output_file, required=True)
    r.add_argument("--width", type=O.width, default=640)
    r.add_argument("--height", type=O.height, default=480)
    r.add_argument("--fps", type=O.frame_rate, default=30.0)
    r.add_argument("--caption", action="store_true", help="draw the clip's first caption on the frames")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_render)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    interrupts.terminate_as_interrupt()  # SIGTERM unwinds like Ctrl-C: an import removes its temporary folder
    entry.prepare()
    try:
        with interrupts.as_interrupt():
            args.func(args)
    except (MotionImportError, LibraryError) as e:
        print(f"motions: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the file system refused (permissions, a full disk, a file where a folder should be)
        print(f"motions: error: {str(e.filename) + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        return interrupts.report("motions", e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
