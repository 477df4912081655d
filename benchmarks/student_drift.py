"""Where a student leaves its teacher: a global policy and the group controller it was distilled from, acting on the
same simulation from the start pose under one command, driven by either.

    python benchmarks/student_drift.py RUN --clip CLIP [--caption TEXT] [--seconds 5]

RUN is a `superpadl train` folder (`RUN/model`, `RUN/groups/group_000`). Per 1/3 s: the root position, height and the
mean / largest difference between the two policies' PD targets on the state reached, once with the student driving
and once with the teacher driving (the baseline, in the same run). A student that matches its teacher's actions and
still drifts away shows compounding error on a skill its teacher only marginally holds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def drive(run: Path, policy, clip: str, caption: str, seconds: float, driver: str) -> list[tuple]:
    import mujoco

    from superpadl.runtime import GroupController, PolicyController

    student = PolicyController(policy)
    teacher = GroupController(run / "groups" / "group_000", student.start_qpos)
    model = student.model
    data = mujoco.MjData(model)
    data.qpos[:] = student.start_qpos
    mujoco.mj_forward(model, data)
    student.set_command(caption)
    teacher.set_command(clip)
    substeps = int(round(1.0 / (student.control_hz * model.opt.timestep)))
    rows = []
    for k in range(int(seconds * student.control_hz)):
        a_s = student.act(data.qpos.copy(), data.qvel.copy())
        a_t = teacher.act(data.qpos.copy(), data.qvel.copy())
        if k % 10 == 0:
            gap = np.abs(a_s - a_t)
            rows.append((k / student.control_hz, *data.qpos[:3], gap.mean(), gap.max()))
        data.ctrl[:] = a_s if driver == "student" else a_t
        mujoco.mj_step(model, data, nstep=substeps)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--clip", required=True, help="the group controller's clip id")
    p.add_argument("--caption", help="the student's command (default: the clip's first caption)")
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    if not (args.run / "model").is_dir() or not (args.run / "groups" / "group_000").is_dir():
        sys.exit(f"student_drift: {args.run}: no model/ and groups/group_000/ (a superpadl train folder)")
    from superpadl.policies import GlobalPolicy

    policy = GlobalPolicy.load(args.run / "model")
    if args.clip not in policy.caption_clips:
        sys.exit(f"student_drift: {args.clip}: not a clip of {args.run / 'model'}")
    caption = args.caption or policy.captions[policy.caption_clips.index(args.clip)]
    runs = {d: drive(args.run, policy, args.clip, caption, args.seconds, d) for d in ("teacher", "student")}
    print(f"{args.run}: '{caption}' from the start pose; action gap = |student - teacher| PD targets (rad)")
    print(f"{'t (s)':>6} | {'teacher driving (baseline): root x, y, z, gap mean/max':<52} | student driving")
    for a, b in zip(*runs.values()):
        cell = lambda r: f"{r[1]:6.2f} {r[2]:6.2f} {r[3]:5.2f}  {r[4]:.3f}/{r[5]:.2f}"
        print(f"{a[0]:6.1f} | {cell(a):<52} | {cell(b)}")


if __name__ == "__main__":
    main()
