"""`superpadl`: make the simulated humanoid perform text commands, to an mp4 (`render`) or live (`view`);
distil experts into group controllers and one text-conditioned policy (`distill groups|global`); evaluate any of
them (`eval`).

    superpadl distill groups LIB EXPERTS [EXPERTS ...] --out DIR [--resume]
    superpadl distill global LIB GROUPS --out DIR [--resume]
    superpadl eval POLICY LIB [--json OUT]
    superpadl train RECIPE --out RUN [--resume]  # every stage from a recipe (configs/*.toml), unattended
    superpadl status RUN
    superpadl skills [--policy DIR]           # the captions a policy knows, by clip

Controllers: `--policy DIR` loads a trained text-conditioned policy (superpadl.runtime.load_controller);
without it the installed default policy is used (superpadl.runtime.default_controller), and until one is
installed a placeholder that holds the rest pose (superpadl.host.HoldController), with a warning.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import rendering  # noqa: F401  (first: chooses MuJoCo's OpenGL backend before anything imports mujoco)
from motions import entry, interrupts
from motions import options as O


class CliError(Exception):
    """A user-facing problem; the message is one line '<file>: <what>'."""


def _runtime():
    """superpadl.runtime, or None while it does not exist (other import errors name their cause)."""
    try:
        return importlib.import_module("superpadl.runtime")
    except ModuleNotFoundError as e:
        if e.name in ("superpadl.runtime", "superpadl"):
            return None
        raise


def resolve_controller(policy: Path | None):
    """The controller the commands drive: --policy DIR, else the installed default, else HoldController."""
    if policy is not None:
        policy = Path(policy)
        if not policy.exists():
            raise CliError(f"{policy}: no such policy directory")
        if not policy.is_dir():
            raise CliError(f"{policy}: not a policy directory")
        try:
            runtime = _runtime()
        except ImportError as e:
            raise CliError(f"{policy}: cannot load policies: superpadl.runtime fails to import ({e})") from None
        if runtime is None or not hasattr(runtime, "load_controller"):
            raise CliError(f"{policy}: cannot load policies: superpadl.runtime is not installed in this version")
        try:
            return runtime.load_controller(policy)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CliError(f"{policy}: not a readable policy ({_one_line(e)})") from None
    try:
        runtime = _runtime()
    except ImportError as e:
        runtime, why = None, f"superpadl.runtime fails to import: {_one_line(e)}"
    else:
        why = "superpadl.runtime is not installed" if runtime is None else "superpadl.runtime has no default_controller"
    if runtime is not None and hasattr(runtime, "default_controller"):
        try:
            return runtime.default_controller()
        except (OSError, ValueError, KeyError) as e:
            why = _one_line(e)
    from superpadl.host import HoldController

    print(f"superpadl: warning: no trained policy is installed ({why}); the character only holds its rest pose "
          "(placeholder HoldController); pass --policy DIR", file=sys.stderr)
    return HoldController()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def controller_model(controller):
    """The MuJoCo model a controller drives: its `model`, its `character.model`, or the default humanoid."""
    model = getattr(controller, "model", None)
    if model is None and getattr(controller, "character", None) is not None:
        model = controller.character.model
    if model is None:
        from characters.character import Character

        model = Character().model
    return model


def _stages(args):
    from superpadl.script import load_script, parse_script

    if args.script is not None:
        if not args.script.is_file():
            raise CliError(f"{args.script}: no such script file")
        return load_script(args.script), str(args.script)
    return parse_script("\n".join(args.prompt), source="<prompt>"), "<prompt>"


def cmd_render(args) -> None:
    from tqdm import tqdm

    from superpadl.host import SimLoop
    from rendering.offscreen import FrameRenderer, VideoWriter
    from superpadl.script import total_duration

    if args.output.suffix.lower() != ".mp4":
        raise CliError(f"{args.output}: output must be an .mp4 file")
    saves = _export_paths(args.save)
    stages, source = _stages(args)
    controller = resolve_controller(args.policy)
    loop = SimLoop(controller_model(controller), controller, seed=args.seed, history_s=total_duration(stages) + 1)
    matches = _Matches(loop)
    n = int(round(total_duration(stages) * args.fps))
    renderer = FrameRenderer(loop.model, args.width, args.height, args.quality)
    bar = tqdm(total=n, desc="rendering", unit="frame", disable=args.quiet or not sys.stderr.isatty())
    try:
        try:
            video = VideoWriter(args.output, args.fps, args.quality)
        except OSError as e:
            raise CliError(f"{args.output}: cannot write: {_one_line(e)}") from None
        with video:
            def on_frame(data, caption):
                caption = matches.label()
                video.append(renderer.render(data, None if args.no_caption else caption))
                bar.update()

            try:
                loop.run_script(stages, args.fps, on_frame)
            except ValueError as e:  # a command the controller cannot perform
                raise CliError(f"{source}: {_one_line(e)}") from None
    finally:
        bar.close()
        renderer.close()
    if not args.quiet:
        bad = f", {loop.bad_actions} of them non-finite actions" if loop.bad_actions else ""
        print(f"wrote {args.output} ({n} frames, {total_duration(stages):g} s, {loop.falls} falls{bad})")
    _save_exports(saves, loop.recording(), args.quiet)


def _export_paths(paths: list[Path] | None) -> list[Path]:
    """--save paths, checked before any work: a known suffix, and each once."""
    from rendering.export import check_path

    out = []
    for path in paths or []:
        try:
            out.append(check_path(path))
        except ValueError as e:
            raise CliError(f"--save {e}") from None
        if path in out[:-1]:
            raise CliError(f"--save {path}: given twice")
    return out


def _save_exports(paths: list[Path], rec, quiet: bool) -> None:
    from rendering.export import save

    for path in paths:
        try:
            save(path, rec)
        except OSError as e:
            raise CliError(f"{path}: cannot write: {_one_line(e)}") from None
        if not quiet:
            print(f"wrote {path} ({rec.num_frames} frames at {rec.fps:g} fps)")


class _Matches:
    """The caption of each frame, 'typed text -> "matched caption" (similarity)', and one warning line on stderr
    for each command whose nearest caption is below superpadl.runtime.KNOWN_SIMILARITY."""

    def __init__(self, loop):
        self.loop, self.last = loop, None

    def label(self) -> str | None:
        from tqdm import tqdm

        from superpadl.runtime import KNOWN_SIMILARITY, match_label

        timeline = self.loop.timeline
        new = []
        for entry in reversed(timeline):
            if entry is self.last:
                break
            new.insert(0, entry)
        for entry in new:
            if entry["similarity"] is not None and entry["similarity"] < KNOWN_SIMILARITY:
                tqdm.write(f"superpadl: warning: {entry['text']!r} is not a known skill (nearest: "
                           f"{entry['caption']!r}, similarity {entry['similarity']:.2f}; `superpadl skills` lists "
                           "them)", file=sys.stderr)
        if not timeline:
            return self.loop.current_text
        self.last = entry = timeline[-1]
        return match_label(entry["text"], entry["caption"], entry["similarity"])


def cmd_skills(args) -> None:
    from superpadl.runtime import KNOWN_SIMILARITY, known_skills

    if args.policy is not None and not args.policy.is_dir():
        raise CliError(f"{args.policy}: no such policy directory")
    skills = known_skills(args.policy)
    for clip, captions in skills.items():
        print(f"{clip}: " + " | ".join(captions))
    print(f"{sum(map(len, skills.values()))} captions of {len(skills)} clips; a command plays the nearest one "
          f"(below similarity {KNOWN_SIMILARITY:g}: not a known skill)")


def cmd_handover_states(args) -> None:
    from padl.checkpoint import write_npz_atomic
    from superpadl.endurance import handover_states

    controller = resolve_controller(args.policy)
    qpos, qvel = handover_states(controller, args.minutes, args.seeds)
    if not len(qpos):
        raise CliError(f"{args.policy}: no upright state at any command of {args.seeds} x {args.minutes:g} min")
    write_npz_atomic(args.out, qpos=qpos, qvel=qvel)
    print(f"{args.out}: {len(qpos)} states where real use gave a command ({args.seeds} x {args.minutes:g} simulated "
          f"min of random captions held 2-20 s)")


def cmd_view(args) -> None:
    from viewer.interactive import ViewerError, Viewer, check_display  # before mujoco: picks MUJOCO_GL

    try:
        check_display()
    except ViewerError as e:
        raise CliError(f"display: {e}") from None
    controller = resolve_controller(args.policy)
    from superpadl.host import SimLoop

    loop = SimLoop(controller_model(controller), controller, seed=args.seed)
    try:
        viewer = Viewer(loop, args.width, args.height, quality=args.quality)
    except ViewerError as e:
        raise CliError(f"display: {e}") from None
    try:
        if args.command:
            viewer.type_text(args.command)
            viewer.press("enter")
        viewer.run(frames=args.frames)
        if args.screenshot is not None:
            viewer.save_screenshot(args.screenshot)
    finally:
        viewer.close()


def _library(path: Path):
    from motions.library import MotionLibrary

    return MotionLibrary(path, include_flagged=True)


def _fresh_run(out: Path, marker: str, resume: bool, force: bool) -> None:
    """--resume needs a run to resume (its `marker` file); a new run may not start over one unless --force."""
    if resume and not (out / marker).exists():
        raise CliError(f"{out / marker}: no run to resume (drop --resume to start a new one)")
    if (out / marker).exists() and not (resume or force):
        raise CliError(f"{out}: a run already exists here; pass --resume to continue it, --force to start over, or "
                       "choose another --out")


def _training(args, cfg):
    """Apply the common training options to a GroupConfig / GlobalConfig."""
    import dataclasses

    from padl.config import replace

    env = replace(cfg.env, physics=dict(backend=args.backend, num_threads=args.threads), episode=dict(hold_s=args.hold_s),
                  **({"num_envs": args.num_envs} if args.num_envs is not None else {}))
    cfg = dataclasses.replace(cfg, env=env, seed=args.seed)
    for name in ("iterations", "eval_every"):
        if getattr(args, name) is not None:
            cfg = dataclasses.replace(cfg, **{name: getattr(args, name)})
    return cfg


def cmd_distill_groups(args) -> None:
    import dataclasses

    from superpadl.groups import GroupConfig, distill_groups

    _fresh_run(args.out, "groups.json", args.resume, args.force)
    cfg = _training(args, GroupConfig())
    cfg = dataclasses.replace(cfg, group_size=args.group_size, grouping=args.grouping,
                              eval_transitions=args.eval_transitions,
                              **({"bc_warmup_iterations": args.warmup} if args.warmup is not None else {}))
    lib = _library(args.lib)
    results = distill_groups(lib, args.experts, args.out, cfg, clips=args.clips, resume=True,
                             progress=sys.stderr.isatty(),
                             iterations=args.iterations, init_from=args.init_from, force=args.force,
                             time_limit_s=args.minutes * 60 if args.minutes is not None else None)
    for name, r in results.items():
        print(f"{name}: success {r.get('success', float('nan')):.0%}, G-MPJPE {r.get('g_mpjpe_mm', float('nan')):.1f} mm")


def cmd_distill_global(args) -> None:
    import dataclasses

    from superpadl.global_policy import GlobalConfig, train_global
    from superpadl.teachers import load_groups

    _fresh_run(args.out, "train_state.json", args.resume, args.force)
    lib = _library(args.lib)
    teachers = load_groups(args.groups, lib)
    cfg = _training(args, GlobalConfig())
    cfg = dataclasses.replace(cfg, commands=dataclasses.replace(
        cfg.commands, end_switch=args.end_switch, finish_s=args.finish_s, rest_switch=args.rest_switch,
        beta_floor=args.beta_floor))
    r = train_global(lib, teachers, args.out, cfg, clips=args.clips, resume=args.resume,
                     progress=sys.stderr.isatty(),
                     iterations=args.iterations, time_limit_s=args.minutes * 60 if args.minutes is not None else None,
                     init_from=None if args.resume else args.init_from, force=args.force)
    print(f"global: success {r.get('success', float('nan')):.0%}, G-MPJPE {r.get('g_mpjpe_mm', float('nan')):.1f} mm")


def cmd_eval(args) -> None:
    from superpadl.evaluate import evaluate, load_agent

    lib = _library(args.lib)
    agent = load_agent(args.policy, lib)
    result = evaluate(agent, lib, episodes=args.episodes, transitions=args.transitions, seed=args.seed)
    cols = ("success", "g_mpjpe_mm", "precision_auc", "recall_auc", "retrieval_top1")
    head = f"{'command':<44} {'success':>8} {'G-MPJPE':>8} {'prec':>6} {'recall':>6} {'top-1':>6}"
    print(head + "\n" + "-" * len(head))
    for name, m in list(result["commands"].items()) + [("mean (over clips)", result["mean"])]:
        vals = [m.get(c, float("nan")) for c in cols]
        print(f"{name[:44]:<44} {vals[0]:>8.0%} {vals[1]:>8.1f} {vals[2]:>6.2f} {vals[3]:>6.2f} {vals[4]:>6.0%}")
    if "transitions" in result:
        t = result["transitions"]
        print(f"transition success {t['success']:.0%} ({len(t['pairs'])} pairs; falls before/after the switch: "
              f"{t['fell_before_switch']}/{t['fell_after_switch']}; the second skill not performed: "
              f"{t['not_performed']}" + ("" if t["gestures_checked"] else
                                        ", gestures unchecked: the library has no standing clip") + ")")
        print(f"{'clip':<44} {'from it':>8} {'to it':>8}  (pairs served: no fall, the second skill performed / pairs)")
        for clip, sides in t["by_clip"].items():
            print(f"{clip[:44]:<44} " + " ".join(f"{'%d/%d' % tuple(sides[k]):>8}" for k in ("from", "to")))
    if args.endurance_minutes > 0:
        result["endurance"] = _endurance(args)
    if args.json is not None:  # its folder was checked writable when parsed, before the evaluation
        from padl.checkpoint import write_json_atomic

        write_json_atomic(args.json, result)


def cmd_train(args) -> None:
    from superpadl import pipeline

    if not args.recipe.is_file():
        raise CliError(f"{args.recipe}: no such recipe file")
    pipeline.train(args.recipe, args.out, resume=args.resume, max_hours=args.max_hours, workers=args.workers,
                   ray_address=args.ray_address)


def cmd_status(args) -> None:
    from superpadl.pipeline import status_table

    if not (args.run / "status.json").is_file():
        raise CliError(f"{args.run}: not a training run (no status.json)")
    print(status_table(args.run))


def _endurance(args) -> dict | None:
    """Real use (superpadl.endurance): random captions held 2-20 s from the start pose, through SimLoop."""
    from superpadl import endurance as E
    from superpadl import policies
    from superpadl.runtime import load_controller

    if policies.kind(args.policy) != policies.GLOBAL_KIND:
        print("endurance: skipped (it needs a text-conditioned policy)")
        return None
    from motions.library import MotionLibrary

    summary = E.run(load_controller(args.policy), args.endurance_minutes, args.endurance_seeds,
                    *E.command_checks(MotionLibrary(args.lib, include_flagged=True)))
    print(f"\nreal use: random captions held 2-20 s from the start pose, {args.endurance_seeds} seed(s) x "
          f"{args.endurance_minutes:g} simulated min\n" + E.report({str(args.policy): summary}))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = O.Parser(prog="superpadl", description=__doc__, formatter_class=O.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("render", help="perform a prompt script headless and write an mp4",
                       description="Simulate the character performing a prompt script and write an mp4 "
                                   "(tracking camera, caption of the current command).")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--script", type=Path, help="prompt script file (see superpadl/script.py for the format)")
    src.add_argument("--prompt", action="append", help="inline prompt, e.g. 'walk for 3s; then bow' (repeatable: "
                                                       "each one is another line of the script)")
    r.add_argument("-o", "--output", type=O.output_file, required=True, help="mp4 to write (written atomically)")
    _policy_arg(r)
    r.add_argument("--width", type=O.width, default=640)
    r.add_argument("--height", type=O.height, default=480)
    r.add_argument("--fps", type=O.frame_rate, default=30.0)
    r.add_argument("--seed", type=O.seed, default=0)
    _quality_arg(r, "preview: shadows, floor reflection and multisampling off (several times faster on a CPU); "
                    "final: all on, for the finished video")
    r.add_argument("--no-caption", action="store_true", help="do not draw the current command on the frames")
    r.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    r.add_argument("--save", type=Path, action="append", metavar="OUT",
                   help="also write the simulated motion, 30 fps (the control rate): OUT.npz (qpos, body positions "
                        "and rotations, command timeline), OUT.bvh (the character's skeleton, Y up, metres), OUT.glb "
                        "(glTF binary, skinned mesh); repeatable")
    r.set_defaults(func=cmd_render)

    k = sub.add_parser("skills", help="list the captions a policy knows, by clip",
                       description="List the captions a policy was trained on, grouped by clip. A command is "
                                   "matched to the nearest of them (cosine similarity of text embeddings); below "
                                   "superpadl.runtime.KNOWN_SIMILARITY it names no known skill.")
    _policy_arg(k)
    k.set_defaults(func=cmd_skills)

    h = sub.add_parser("handover-states", help="record the states real use gives commands in: starts for experts",
                       description="Random captions held 2-20 s from the start pose (as benchmarks/endurance.py), "
                                   "the simulated state at each new command saved (qpos, qvel; xy at the origin): "
                                   "`padl train-expert --foreign-starts S --state-starts NPZ` teaches an expert "
                                   "to take over from where the runtime really hands it a command.")
    h.add_argument("policy", type=Path, help="a policy or expert-controller folder")
    h.add_argument("--out", type=O.output_file, required=True, help="npz to write (written atomically)")
    h.add_argument("--minutes", type=O.positive_float, default=10.0, help="simulated minutes per seed (default 10)")
    h.add_argument("--seeds", type=O.positive_int, default=4, help="chains (default 4)")
    h.set_defaults(func=cmd_handover_states)

    v = sub.add_parser("view", help="interactive window: type commands and watch the character perform them",
                       description="Interactive viewer. Type a command and press Enter (';' or 'then' queue "
                                   "several). Esc leaves the command line; then space pauses, r resets, "
                                   "f toggles camera follow, s saves the last 30 s (npz, bvh, glb) here, q quits, "
                                   "Enter/Tab type again. Drag to orbit, "
                                   "scroll to zoom.")
    _policy_arg(v)
    v.add_argument("--width", type=O.width, default=960)
    v.add_argument("--height", type=O.height, default=720)
    v.add_argument("--seed", type=O.seed, default=0)
    _quality_arg(v, "preview: shadows, floor reflection and multisampling off (keeps the window fluid on a CPU); "
                    "final: all on")
    v.add_argument("--command", help="send this command at start")
    v.add_argument("--frames", type=O.positive_int, help="quit after N frames (smoke tests)")
    v.add_argument("--screenshot", type=Path, help="save the last frame as PNG on exit")
    v.set_defaults(func=cmd_view)

    d = sub.add_parser("distill", help="distil experts into group controllers, then one text-conditioned policy")
    dsub = d.add_subparsers(dest="stage", required=True)
    g = dsub.add_parser("groups", help="stage 2: group controllers (DAgger warm-up, then PPO + discriminator + BC)")
    g.add_argument("lib", type=Path, help="motion library folder")
    g.add_argument("experts", type=Path, nargs="+", help="expert run folders, or folders of them")
    g.add_argument("--group-size", type=O.positive_int, default=20)
    g.add_argument("--grouping", choices=("random", "cluster"), default="random")
    g.add_argument("--warmup", type=O.nonneg_int, help="BC warm-up iterations (default: the config's)")
    g.add_argument("--eval-transitions", type=O.nonneg_int, default=0,
                   help="command pairs each evaluation also switches between; the controller kept is then the best "
                        "by the mean of success and transition success (default 0: success alone)")
    g.add_argument("--init-from", type=Path,
                   help="a groups folder (same clips) whose controllers new group runs start from (with --warmup 0: "
                        "fine-tuning)")
    g.set_defaults(func=cmd_distill_groups)
    gl = dsub.add_parser("global", help="stage 3: the global text-conditioned policy, by DAgger from the groups")
    gl.add_argument("lib", type=Path, help="motion library folder")
    gl.add_argument("groups", type=Path, help="a `distill groups` output folder")
    gl.add_argument("--init-from", type=Path, help="a global policy (same inputs) to fine-tune instead of a new one")
    gl.add_argument("--end-switch", type=O.fraction, default=1.0,
                    help="share of non-looping clip ends that switch command in the rollouts; the others keep it "
                         "(for groups whose experts learnt to stand after the skill, --hold-s; default 1)")
    gl.add_argument("--finish-s", type=O.nonneg_float, default=0.0,
                    help="a command given in the last FINISH_S seconds of a non-looping clip is labelled by that "
                         "clip's teacher until it ends (finish a recovery, e.g. out of a lunge; default 0)")
    gl.add_argument("--rest-switch", type=O.fraction, default=0.0,
                    help="share of episodes begun at a clip's first frame that are commanded another clip at once "
                         "(a user's first command from the viewer's rest pose; default 0)")
    gl.add_argument("--beta-floor", type=O.fraction, default=0.0,
                    help="share of envs the group controllers still drive once DAgger's beta has decayed "
                         "(CommandSchedule.beta_iterations; default 0: the student alone)")
    gl.set_defaults(func=cmd_distill_global)
    for q in (g, gl):
        q.add_argument("--out", type=Path, required=True)
        q.add_argument("--clips", nargs="+", help="clip ids (default: all the teachers cover)")
        again = q.add_mutually_exclusive_group()
        again.add_argument("--resume", action="store_true", help="continue the run in --out")
        again.add_argument("--force", action="store_true",
                           help="start a new run in --out even over an earlier run and the policies it kept")
        q.add_argument("--iterations", type=O.positive_int,
                       help="total iterations, also of a resumed run (default: the config's)")
        q.add_argument("--num-envs", type=O.num_envs)
        q.add_argument("--minutes", type=O.positive_float,
                       help="wall-clock budget of this call (a checkpoint is written)")
        q.add_argument("--eval-every", type=O.positive_int)
        q.add_argument("--backend", choices=("auto", "mujoco", "mjx"), default="auto")
        q.add_argument("--threads", type=O.nonneg_int, default=0, help="MuJoCo C threads (0: all CPUs)")
        q.add_argument("--seed", type=O.seed, default=0)
        q.add_argument("--hold-s", type=O.nonneg_float, default=0.0,
                       help="episodes of a non-looping clip go on this long past its end, standing in its last frame; "
                            "also in the evaluations (default 0: they end with the clip)")

    e = sub.add_parser("eval", help="success, G-MPJPE, motion precision/recall, retrieval and transitions")
    e.add_argument("policy", type=Path, help="a global policy or expert folder, or a groups folder")
    e.add_argument("lib", type=Path, help="motion library folder")
    e.add_argument("--episodes", type=O.positive_int, default=2)
    e.add_argument("--transitions", type=O.nonneg_int, default=100,
                   help="random command pairs to switch between (20 scatter by +-10 points)")
    e.add_argument("--seed", type=O.seed, default=0)
    e.add_argument("--json", type=O.output_file, help="write the full result here (its folder must exist)")
    e.add_argument("--endurance-minutes", type=O.nonneg_float, default=5.0,
                   help="simulated minutes per seed of random captions held 2-20 s from the start pose (0: skip)")
    e.add_argument("--endurance-seeds", type=O.positive_int, default=1)
    e.set_defaults(func=cmd_eval)

    t = sub.add_parser("train", help="every stage from a recipe: import, experts, handover, groups, global, eval, "
                       "export",
                       description="Train a model from a recipe (configs/*.toml, see superpadl/recipe.py) into RUN: "
                                   "import, experts, their hand-over fine-tunes, group controllers, the global "
                                   "policy, its evaluation and the export RUN/model (as models/default), with "
                                   "RUN/status.json and RUN/report.md. "
                                   "Every stage resumes from its last checkpoint after a kill (--resume).")
    t.add_argument("recipe", type=Path, help="recipe file (TOML)")
    t.add_argument("--out", type=Path, required=True, help="run folder (created; must be new unless --resume)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out (started from this recipe)")
    t.add_argument("--max-hours", type=O.positive_float,
                   help="stop cleanly, after a checkpoint, once this much wall clock is spent (--resume goes on)")
    t.add_argument("--workers", type=O.positive_int,
                   help="expert trainers at once, each in its own process (default: the recipe's experts.workers, "
                        "else one per CPU core)")
    t.add_argument("--ray-address", metavar="ADDR", help="run the experts as Ray tasks on this cluster")
    t.set_defaults(func=cmd_train)
    s_ = sub.add_parser("status", help="progress of a training run: one table of its stages")
    s_.add_argument("run", type=Path, help="a `superpadl train` run folder")
    s_.set_defaults(func=cmd_status)
    return p


def _quality_arg(parser: argparse.ArgumentParser, help: str) -> None:
    from rendering.presets import DEFAULT, PRESETS

    parser.add_argument("--quality", choices=tuple(PRESETS), default=DEFAULT, help=help)


def _policy_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", type=Path, help="trained policy directory (default: the installed default "
                                                    "policy; a rest-pose placeholder while none is installed)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from superpadl.script import ScriptError

    interrupts.terminate_as_interrupt()  # SIGTERM unwinds like Ctrl-C: a partial video is removed
    entry.prepare()
    try:
        with interrupts.as_interrupt():
            args.func(args)
    except CliError as e:
        print(f"superpadl: error: {e}", file=sys.stderr)
        return 1
    except ScriptError as e:  # message already names the file (or <prompt>) and line
        print(f"superpadl: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:  # bad libraries, checkpoints and configs (CheckpointError, LibraryError)
        print(f"superpadl: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        return interrupts.report("superpadl", e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
