"""What does the shipped policy do with prompts it was not trained on? Paraphrases, none a training caption,
of the skills it knows.

    python benchmarks/heldout_prompts.py [--policy models/default] [--seconds 4]

For each prompt: the training caption it is matched to (cosine similarity of all-MiniLM-L6-v2 embeddings; the
policy is conditioned on that caption's embedding), the clip behind it, the skill the prompt was written for,
whether they agree, and what the character did in `--seconds` of simulation from the start pose: falls, distance
its pelvis travelled (m), lowest pelvis height (m) and the largest wrist height above the pelvis (m) — a bow
lowers the head, a walk travels, a wave raises a hand. The last line is the match rate against the intended skill.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from superpadl.runtime import DEFAULT_MODEL, load_controller  # noqa: E402
from superpadl.host import SimLoop  # noqa: E402

# (prompt, the skill it should select: a clip's content name, the word after its source prefix)
PROMPTS = [
    ("an elderly person strolls", "walk"),
    ("someone ambles ahead", "walk"),
    ("go for a walk", "walk"),
    ("step backwards carefully", "walk-back"),
    ("back away slowly", "walk-back"),
    ("sprint ahead", "dash"),
    ("bolt forward", "dash"),
    ("run at an easy pace", "jog"),
    ("go for a light run", "jog"),
    ("greet the audience with a deep bow", "bow"),
    ("bend at the waist politely", "bow"),
    ("say farewell with a hand", "bye"),
    ("wave both arms to say goodbye", "byebye"),
    ("beckon a friend to come closer", "call"),
    ("motion for someone to come here", "call"),
    ("point the direction to go", "guide"),
    ("direct a visitor with an arm", "guide"),
    ("put a hand up to answer", "respond"),
    ("raise your hand in class", "respond"),
    ("strike out with a foot", "kick"),
    ("do a karate kick", "kick"),
    ("jab with the fist", "punch"),
    ("cut down an enemy with a blade", "slash"),
    ("swing a katana", "slash"),
]


def skill(clip: str) -> str:
    """'bandai_walk-back_normal_001' -> 'walk-back', 'deepmimic_kick' -> 'kick'."""
    return clip.split("_")[1]


def run(controller, prompt: str, seconds: float) -> dict:
    loop = SimLoop(controller.model, controller, seed=0)
    loop.command(prompt)
    start = loop.data.qpos[:2].copy()
    model = controller.model
    pelvis = model.body("pelvis").id if _has(model, "pelvis") else 1
    wrists = [model.body(n).id for n in ("left_hand", "right_hand") if _has(model, n)]
    low, raise_ = np.inf, -np.inf
    for _ in range(int(round(seconds * loop.control_hz))):
        loop.control_step()
        low = min(low, float(loop.data.xpos[pelvis, 2]))
        if wrists:
            raise_ = max(raise_, float(max(loop.data.xpos[w, 2] for w in wrists) - loop.data.xpos[pelvis, 2]))
    return {"falls": loop.falls, "travel": float(np.linalg.norm(loop.data.qpos[:2] - start)), "low": low,
            "wrist": raise_}


def _has(model, name: str) -> bool:
    try:
        model.body(name)
        return True
    except KeyError:
        return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--seconds", type=float, default=4.0)
    args = p.parse_args()
    controller = load_controller(args.policy)
    known = set(controller.captions)
    skills = {skill(c) for c in controller.caption_clips}
    prompts = [(p, s) for p, s in PROMPTS if s in skills]  # only skills this policy was trained on
    rows, hits = [], 0
    for prompt, intended in prompts:
        assert prompt not in known, f"{prompt!r} is a training caption"
        caption, sim, _ = controller.match(prompt)
        clip = controller.caption_clips[controller.captions.index(caption)]
        did = run(controller, prompt, args.seconds)
        hits += skill(clip) == intended
        rows.append((prompt, caption, f"{sim:.2f}", clip, "yes" if skill(clip) == intended else f"no ({intended})",
                     str(did["falls"]), f"{did['travel']:.2f}", f"{did['low']:.2f}", f"{did['wrist']:.2f}"))
    header = ("prompt", "matched caption", "cos", "clip", "intended?", "falls", "travel m", "min pelvis m",
              "wrist-pelvis m")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    print(f"| {' | '.join(h.ljust(w) for h, w in zip(header, widths))} |")
    print(f"|{'|'.join('-' * (w + 2) for w in widths)}|")
    for r in rows:
        print(f"| {' | '.join(c.ljust(w) for c, w in zip(r, widths))} |")
    print(f"\nintended skill selected for {hits}/{len(prompts)} prompts ({args.seconds:g} s each, seed 0)")


if __name__ == "__main__":
    main()
