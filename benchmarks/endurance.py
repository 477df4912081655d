"""Real use: falls per hour of random held commands from the start pose, and every caption held from it.

    python benchmarks/endurance.py POLICY [--baseline models/default|none] [--lib libs/default]
                                   [--minutes 20] [--seeds 3] [--start-pose-s 30] [--shoves 20] [--json OUT]

Both parts run the policy through `superpadl.host.SimLoop`, as the viewer and renderer do (`superpadl.endurance`):
1. `--seeds` chains of random captions, each held 2-20 s, from the start pose for `--minutes` simulated minutes
   each: falls per hour, and per clip the falls on entering a command and while holding it;
2. every caption given once from the start pose and held `--start-pose-s` seconds (0: skip): captions that fell,
   and for locomotion the metres covered in the commanded direction 4 s after the command (the bar is 2 m), for the
   others the farthest the character got from where the command began before a fall (a stand that walks off) and,
   for gestures, whether it was done (`endurance.GestureCheck`: a policy that stands through a "bow" never falls);
3. `--shoves` forced falls (0: skip): from the start pose a 4 m/s shove in a random direction; of the shoves that
   fell the character, the share standing again within 5 s by its learned get-up without a restart (the bar: 80 %).
The baseline (the shipped model by default) is measured in the same run; `--idle-after S [S ...]` measures POLICY
once per value of its `idle_after_s` (seconds after a one-shot clip's end that a held command turns into the
standing skill; 'never': the switch off, as before it existed); `--start-at CLIP [CLIP ...]` measures it once per
start pose, the first frame of each CLIP ('own': the policy's). LIB (a library of the policy's clips)
tells which clips are locomotion and which way they go (`endurance.locomotion_directions`), and what each gesture
and the standing skill look like.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from superpadl import endurance as E  # noqa: E402
from superpadl.runtime import DEFAULT_MODEL, load_controller  # noqa: E402


def start_pose(controller, seconds: float, directions: dict, gestures: dict) -> dict[str, list[E.CommandRecord]]:
    out: dict[str, list] = {}
    for caption, clip in zip(controller.captions, controller.caption_clips):
        out.setdefault(clip, []).append(E.hold_from_start(controller, caption, clip, seconds, directions.get(clip),
                                                          gesture=gestures.get(clip)))
    return out


def start_pose_cell(records: list[E.CommandRecord] | None) -> str:
    if records is None:
        return "-"
    fell = [r.falls_s[0] for r in records if r.falls_s]
    cell = f"{len(fell)}/{len(records)} fell" + (f" at {min(fell):.1f}-{max(fell):.1f} s" if fell else "")
    set_off = [r.set_off_m for r in records if r.set_off_m is not None]
    if set_off:
        return cell + f", set off {min(set_off):.2f}-{max(set_off):.2f} m"
    checked = [r for r in records if r.performed_s is not None]  # a gesture stood through is no gesture
    done = f", done {sum(map(E.performed, checked))}/{len(checked)}" if checked else ""
    return cell + done + f", up to {max(r.wander_m for r in records):.2f} m off"  # one that walks away


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", type=Path)
    p.add_argument("--baseline", default=str(DEFAULT_MODEL), help="a policy folder, or 'none'")
    p.add_argument("--lib", type=Path, default=Path("libs/default"), help="library holding the policies' clips")
    p.add_argument("--minutes", type=float, default=20.0, help="simulated minutes per seed")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--start-pose-s", type=float, default=30.0, help="seconds each caption is held (0: skip)")
    p.add_argument("--shoves", type=int, default=20, help="forced falls per policy (0: skip)")
    p.add_argument("--idle-after", nargs="+", metavar="S",
                   help="measure POLICY once per idle_after_s (seconds after a one-shot clip's end, or 'never')")
    p.add_argument("--start-at", nargs="+", metavar="CLIP",
                   help="measure POLICY once per start pose: the first frame of CLIP ('own': the policy's start pose), "
                        "where the chains and holds begin and a fall restarts")
    p.add_argument("--json", type=Path, help="write POLICY's chain summary here (tests/regression/endurance.json)")
    args = p.parse_args()
    if not (args.lib / "manifest.json").is_file():
        sys.exit(f"endurance: {args.lib}: not a motion library; import the policy's sources first (README)")
    from motions.library import MotionLibrary

    directions, gestures = E.command_checks(MotionLibrary(args.lib, include_flagged=True))
    policies = {str(args.policy): args.policy}
    if args.baseline != "none" and Path(args.baseline).resolve() != args.policy.resolve():
        policies[f"baseline {args.baseline}"] = Path(args.baseline)
    controllers = {name: load_controller(path) for name, path in policies.items()}

    def variants(values, label, setup):
        """POLICY measured once per value (the first reuses the loaded controller), ahead of the baseline."""
        own = controllers.pop(str(args.policy))
        made = {}
        for value in values:
            c = load_controller(args.policy) if made else own
            made[f"{args.policy} {label} {value}"] = setup(c, value) or c
        return {**made, **controllers}

    if args.idle_after:
        def idle_after(c, value):
            if value == "never":
                c.one_shot_s = {}
            else:
                c.idle_after_s = float(value)
        controllers = variants(args.idle_after, "idle after", idle_after)
    if args.start_at:
        library = MotionLibrary(args.lib, include_flagged=True)
        if missing := [c for c in args.start_at if c != "own" and c not in library.clip_ids]:
            sys.exit(f"endurance: --start-at {missing[0]}: not a clip of {args.lib}")
        controllers = variants(args.start_at, "from", lambda c, clip: None if clip == "own" else
                               E.stand_at(c, E.first_frame(library, clip)))

    summaries = {name: E.run(c, args.minutes, args.seeds, directions, gestures) for name, c in controllers.items()}
    print(f"random captions held 2-20 s from the start pose: {args.seeds} seeds x {args.minutes:g} simulated min")
    print(E.report(summaries))
    if args.json:
        from padl.checkpoint import write_json_atomic

        write_json_atomic(args.json, {"minutes": args.minutes, "seeds": args.seeds, **next(iter(summaries.values()))})
    rates = [s["falls_per_hour"] for s in summaries.values()]
    if len(rates) == 2:
        print(f"falls per hour: {rates[0]:.1f} against {rates[1]:.1f}"
              + (f"; ratio {rates[0] / rates[1]:.2f}" if rates[1] else ""))

    if args.start_pose_s > 0:
        held = {name: start_pose(c, args.start_pose_s, directions, gestures) for name, c in controllers.items()}
        clips = dict.fromkeys(clip for h in held.values() for clip in h)
        rows = [(clip, *(start_pose_cell(h.get(clip)) for h in held.values())) for clip in clips]
        totals = [sum(bool(r.falls_s) for rs in h.values() for r in rs) for h in held.values()]
        counts = [sum(len(rs) for rs in h.values()) for h in held.values()]
        served = [sum(E.served(r) for rs in h.values() for r in rs) for h in held.values()]
        rows.append(("all captions", *(f"{t}/{n} fell, {v}/{n} served" for t, n, v in zip(totals, counts, served))))
        print(f"\nevery caption given from the start pose and held {args.start_pose_s:g} s")
        print(E.table(("", *held), rows))

    if args.shoves > 0:
        shoves = {name: E.shove_summary(E.shove(c, args.shoves)) for name, c in controllers.items()}
        cell = lambda s: "-" if s["got_up_share"] is None else f"{s['got_up_share']:.0%}"
        time = lambda s: "-" if s["get_up_median_s"] is None else f"{s['get_up_median_s']:.1f} s"
        print(f"\nforced falls: {args.shoves} shoves of {E.SHOVE_SPEED:g} m/s from the start pose")
        print(E.table(("", *shoves), [("fell", *(f"{s['fell']}/{s['trials']}" for s in shoves.values())),
                                      (f"standing within {E.GET_UP_BAR_S:g} s, no restart",
                                       *(cell(s) for s in shoves.values())),
                                      ("median time to get up", *(time(s) for s in shoves.values()))]))


if __name__ == "__main__":
    main()
