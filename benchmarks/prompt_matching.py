"""Where does a prompt stop naming a known skill? Cosine similarity of a prompt's nearest training caption, for
paraphrases of the default model's skills against prompts it has no skill for.

    python benchmarks/prompt_matching.py [--policy models/default]

The runtime snaps every prompt to its nearest caption (superpadl.runtime), so "do a backflip" plays something;
below a similarity threshold the CLI warns and the viewer says "not a known skill". This prints both
distributions (each prompt, its nearest caption and similarity), the errors at every candidate threshold, and the
one with the fewest errors (ties: the middle of the tied range), which superpadl.runtime.KNOWN_SIMILARITY records.
Only the text encoder runs: no simulation.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from superpadl.runtime import DEFAULT_MODEL, KNOWN_SIMILARITY, known_skills  # noqa: E402

# Paraphrases, none a training caption, keyed by the clip's content name (the word after its source prefix).
PARAPHRASES = {
    "bow": ["bow to the audience", "greet the audience with a deep bow", "bend at the waist politely",
            "make a polite bow"],
    "bye": ["say farewell with a hand", "wave bye", "wave to a friend who is leaving", "wave your hand"],
    "byebye": ["wave both arms to say goodbye", "wave with two hands", "wave goodbye using both arms"],
    "call": ["beckon a friend to come closer", "motion for someone to come here", "call a friend over",
             "wave someone over"],
    "guide": ["point the direction to go", "direct a visitor with an arm", "show the way with your hand",
              "point out the way"],
    "punch": ["jab with the fist", "box", "punch the air", "throw a punch"],
    "respond": ["put a hand up to answer", "raise your hand in class", "raise one hand", "lift a hand to reply"],
    "slash": ["cut down an enemy with a blade", "swing a katana", "attack with a sword", "strike with a blade"],
    "jog": ["run at an easy pace", "go for a light run", "jog ahead", "run slowly forward"],
    "walk": ["go for a walk", "someone ambles ahead", "walk ahead", "stroll forward"],
}
# Prompts for skills the default model does not have, and text that names no motion.
UNRELATED = ["do a backflip", "sit down", "lie down on the floor", "do a cartwheel", "jump as high as you can",
             "kick a ball", "climb a ladder", "crawl on all fours", "do push-ups", "swim", "dance salsa",
             "ride a bicycle", "drink a glass of water", "play the guitar", "stand on one leg", "kneel",
             "do a handstand", "turn around", "skip rope", "throw a ball", "pick something up from the floor",
             "clap your hands", "open a door", "type on a keyboard", "what is the weather today", "banana",
             "the quick brown fox", "tie your shoes", "yawn and stretch", "do the splits"]


def nearest(encoder, captions: list[str], prompts: list[str]) -> tuple[list[str], np.ndarray]:
    cap = encoder.encode(captions)
    sim = encoder.encode(prompts) @ cap.T
    return [captions[i] for i in sim.argmax(1)], sim.max(1)


def choose(known: np.ndarray, unknown: np.ndarray) -> tuple[float, list[tuple[float, int, int]]]:
    """The threshold with the fewest misclassified prompts (known below it, unknown at or above it), and the errors
    (threshold, known below, unknown above) at every candidate between two observed similarities."""
    values = np.unique(np.concatenate([known, unknown]))
    candidates = (values[:-1] + values[1:]) / 2
    table = [(float(t), int((known < t).sum()), int((unknown >= t).sum())) for t in candidates]
    best = min(k + u for _, k, u in table)
    tied = [t for t, k, u in table if k + u == best]
    return float(np.median(tied)), table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", type=Path, default=DEFAULT_MODEL)
    args = p.parse_args()
    from superpadl.text import default_encoder

    skills = known_skills(args.policy)
    captions = [c for cs in skills.values() for c in cs]
    names = {clip.split("_")[1] for clip in skills}
    paraphrases = [q for name, qs in PARAPHRASES.items() if name in names for q in qs]
    assert not set(paraphrases + UNRELATED) & set(captions), "a test prompt is a training caption"
    encoder = default_encoder()
    rows = {}
    for kind, prompts in (("paraphrase", paraphrases), ("unrelated", UNRELATED)):
        matched, sim = nearest(encoder, captions, prompts)
        rows[kind] = sim
        print(f"\n{kind}s ({len(prompts)}): nearest caption, cosine similarity")
        for i in np.argsort(-sim):
            print(f"  {sim[i]:.2f}  {prompts[i]!r:42} -> {matched[i]!r}")
        print(f"  min {sim.min():.2f}  median {np.median(sim):.2f}  max {sim.max():.2f}")
    threshold, table = choose(rows["paraphrase"], rows["unrelated"])
    k, u = rows["paraphrase"], rows["unrelated"]
    print(f"\nthreshold {threshold:.3f}: {(k < threshold).sum()}/{len(k)} paraphrases below it (warned), "
          f"{(u >= threshold).sum()}/{len(u)} unrelated prompts at or above it (played without a warning)")
    print(f"in use (superpadl.runtime.KNOWN_SIMILARITY): {KNOWN_SIMILARITY:.2f}: {(k < KNOWN_SIMILARITY).sum()} and "
          f"{(u >= KNOWN_SIMILARITY).sum()}")


if __name__ == "__main__":
    main()
