"""Text captions for training clips, built from each source's labels.

Several paraphrases per clip so the text encoder sees varied wording for the same motion; everything is
deterministic (tables plus a hashlib-seeded rotation) so datasets rebuild byte-identically across processes.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import re
from pathlib import Path


class UnknownLabels(ValueError):
    """Labels the caption tables do not cover (an import falls back to the label words or the file stem)."""


# --- small English helpers ------------------------------------------------------------------------------

_ES_ENDINGS = ("s", "sh", "ch", "x", "z", "o")


def _third_person(verb_phrase: str) -> str:
    """'walk forward' -> 'walks forward'; the first word is taken as the verb."""
    m = re.match(r"[a-z]+", verb_phrase)
    if not m:
        return verb_phrase
    verb, rest = m.group(), verb_phrase[m.end():]
    if verb == "be":
        verb = "is"
    elif verb == "have":
        verb = "has"
    elif verb.endswith(_ES_ENDINGS):
        verb += "es"
    elif len(verb) > 1 and verb.endswith("y") and verb[-2] not in "aeiou":
        verb = verb[:-1] + "ies"
    else:
        verb += "s"
    return verb + rest


def _uniq(items) -> list[str]:
    """Drop repeats and blanks, keep first-seen order."""
    seen, out = set(), []
    for s in items:
        s = " ".join(s.split())
        if s and s not in seen:
            seen.add(s)
            out.append(s)
    return out


def _offset(key: str, n: int) -> int:
    """Stable per-clip rotation (hashlib, not hash(): the latter is salted per process)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % n


# --- Bandai-Namco: content x style ------------------------------------------------------------------------

# Base-form verb phrases per content, canonical first, in cfg/content_label.txt order (the JSON indexes it).
# Meanings checked against the clips' hand paths: 'bye' waves one hand, 'byebye' both; 'respond' raises
# one hand above the head; 'guide' sweeps one hand out to show the way; 'call' brings both hands together
# while leaning in (calling someone over); 'slash' swings both hands overhead, as with a two-handed sword.
BANDAI_CONTENTS: dict[str, tuple[str, ...]] = {
    "walk": ("walk forward", "walk straight ahead", "walk ahead"),
    "run": ("run forward", "run straight ahead", "run ahead"),
    "dash": ("dash forward", "sprint forward", "run forward at full speed"),
    "walk-back": ("walk backward", "walk backwards", "step backward"),
    "walk-left": ("walk to the left", "walk leftward", "move to the left on foot"),
    "walk-right": ("walk to the right", "walk rightward", "move to the right on foot"),
    "bow": ("bow", "take a bow", "bend forward in a bow"),
    "bye": ("wave goodbye", "wave goodbye with one hand", "wave a hand to say bye"),
    "guide": ("gesture the way with one hand", "guide someone with a hand gesture", "show someone the way"),
    "byebye": ("wave goodbye with both hands", "wave both hands to say goodbye", "wave bye-bye with both arms"),
    "respond": ("raise a hand to respond", "raise a hand in reply", "answer by raising a hand"),
    "call": ("call someone over", "call out to someone", "beckon someone to come"),
    "punch": ("throw punches", "punch", "box with the fists"),
    "kick": ("kick", "throw kicks", "do a series of kicks"),
    "slash": ("slash with a sword", "swing a sword with both hands", "strike with a sword"),
    "dance-long": ("dance", "perform a long dance", "dance for a while"),
    "dance-short": ("dance", "do a short dance", "perform a short dance move"),
}

# style -> (subjects, post-verb adverbials, manner phrases, cue words). Every adverbial and manner phrase
# carries a cue word, so every styled caption names its style. 'chimpira' is Japanese for a small-time
# thug (swaggering, provocative); 'musical' is the exaggerated stage-musical style.
BANDAI_STYLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "normal": ((), (), (), ()),
    "happy": (("a happy person", "a cheerful person"), ("happily", "cheerfully"),
              ("in a happy mood", "full of joy"), ("happ", "cheerful", "joy")),
    "sad": (("a sad person", "a sorrowful person"), ("sadly", "gloomily"),
            ("in a sad mood", "looking sad and downcast"), ("sad", "sorrow", "gloom")),
    "angry": (("an angry person", "a furious person"), ("angrily", "furiously"),
              ("in an angry mood", "with visible anger"), ("angr", "anger", "furious")),
    "proud": (("a proud person", "a haughty person"), ("proudly", "haughtily"),
              ("with a proud posture", "with chest puffed out proudly"), ("proud", "haught")),
    "not-confident": (("an unconfident person", "a timid person"), ("timidly", "hesitantly"),
                      ("without confidence", "looking unsure and timid"), ("confiden", "timid", "hesita", "unsure")),
    "masculinity": (("a masculine person", "a macho man"), ("in a masculine way", "in a manly way"),
                    ("with a masculine bearing", "like a macho man"), ("masculin", "manly", "macho")),
    "feminine": (("a feminine person", "a ladylike person"), ("in a feminine way", "daintily"),
                 ("with feminine poise", "in a ladylike manner"), ("feminin", "ladylike", "daint")),
    "childish": (("a child", "a childlike person"), ("childishly", "like a small child"),
                 ("in a childish way", "with childlike energy"), ("child",)),
    "old": (("an old person", "an elderly person"), ("like an elderly person", "like an old man"),
            ("with the stiffness of old age", "slowly like an old person"), ("old", "elderly")),
    "tired": (("a tired person", "an exhausted person"), ("wearily", "tiredly"),
              ("as if exhausted", "looking worn out and tired"), ("tired", "weari", "exhausted", "worn out")),
    "active": (("an energetic person", "a lively person"), ("energetically", "actively"),
               ("full of energy", "with lively, vigorous movements"), ("energ", "activ", "lively", "vigor")),
    "musical": (("a theatrical performer", "a musical actor"), ("theatrically", "like a musical performer"),
                ("as if performing in a musical", "with exaggerated, theatrical flair"), ("musical", "theatric")),
    "giant": (("a giant", "a huge giant"), ("like a giant", "heavily like a giant"),
              ("with giant, lumbering movements", "as if they were a giant"), ("giant",)),
    "chimpira": (("a thug", "a street punk"), ("with a thuggish swagger", "like a street thug"),
                 ("in a thuggish, swaggering way", "like a punk looking for trouble"), ("thug", "punk", "swagger")),
}


def bandai_captions(content: str, style: str) -> list[str]:
    """4-6 captions for a Bandai clip; every styled caption mentions the style."""
    if content not in BANDAI_CONTENTS:
        raise UnknownLabels(f"unknown Bandai content {content!r} (expected one of {', '.join(BANDAI_CONTENTS)})")
    if style not in BANDAI_STYLES:
        raise UnknownLabels(f"unknown Bandai style {style!r} (expected one of {', '.join(BANDAI_STYLES)})")
    v = BANDAI_CONTENTS[content]
    k = _offset(f"bandai:{content}:{style}", 2)
    v0, v1, v2 = v[0], v[1 + k], v[2 - k]  # canonical first, the other two in a per-clip order
    if style == "normal":
        return _uniq([f"a person {_third_person(v0)}", v0, f"someone {_third_person(v1)}",
                      f"a person {_third_person(v2)}", v2])
    subj, adv, manner, _ = BANDAI_STYLES[style]
    return _uniq([
        f"{subj[0]} {_third_person(v0)}",
        f"{'a person' if 'someone' in v0 else 'someone'} {_third_person(v0)} {adv[0]}",
        f"{v0} {adv[1]}",
        f"a person {_third_person(v1)} {manner[0]}",
        f"{subj[1]} {_third_person(v2)}",
        f"{v1} {manner[1]}",
    ])


def style_cues(style: str) -> tuple[str, ...]:
    """Substrings that mark a style in a caption (what tests and filters look for)."""
    if style not in BANDAI_STYLES:
        raise ValueError(f"unknown Bandai style {style!r}")
    return BANDAI_STYLES[style][3]


# --- CMU: free-text descriptions --------------------------------------------------------------------------

# Common base-form verbs that open CMU descriptions; anything else is treated as a noun phrase.
_CMU_VERBS = frozenset(
    "walk run jog jump hop skip climb sit stand get kick punch throw catch swing hang turn step march stretch "
    "carry push pull reach wave bend crawl roll dance box swim clean wash sweep lean pick put place start stop "
    "stumble limp sneak tiptoe spin twist shake balance squat lift drink eat play dribble shoot duck dodge look "
    "point bow salute clap slide skate fall lie rise bounce flip leap dash sprint chase fight strike block".split()
)
_PARENS_SUBJECT = re.compile(r"\s*\([^()]*subject[^()]*\)", re.I)  # '(2 subjects - subject A)', '(human subject)'


def _clean_cmu(text: str) -> str:
    """Readable lower-case text: split CamelCase ('SadWalk'), drop subject bookkeeping, tidy spaces."""
    text = _PARENS_SUBJECT.sub("", text)
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)
    text = text.replace('"', "").strip(" .")
    return " ".join(text.lower().split())


def _a_person(action: str) -> str:
    """'walk forward' -> 'a person walks forward'; 'walking up stairs' kept as is; nouns -> 'doing ...'."""
    first = re.split(r"[ ,/;]", action, maxsplit=1)[0]
    if first in _CMU_VERBS:
        return f"a person {_third_person(action)}"
    if first.endswith("ing") and len(first) > 4:
        return f"a person {action}"
    return f"a person doing {action}"


@functools.lru_cache(maxsize=None)
def _load_cmu(path: str) -> dict[str, tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.DictReader(f, delimiter="\t")
        return {r["clip_id"].strip(): (r["subject_description"] or "", r["clip_description"] or "") for r in rows}


def load_cmu_descriptions(path) -> dict[str, tuple[str, str]]:
    """clip_id -> (subject_description, clip_description), raw text; cached per resolved path."""
    return _load_cmu(str(Path(path).resolve()))


def cmu_captions(clip_id: str, descriptions_tsv: Path) -> list[str]:
    """Captions from the CMU clip description, with the subject's session description as context."""
    table = load_cmu_descriptions(descriptions_tsv)
    if clip_id not in table:
        raise UnknownLabels(f"unknown CMU clip id {clip_id!r} (not in {descriptions_tsv})")
    subject, desc = (_clean_cmu(s) for s in table[clip_id])
    if not desc or desc == "unknown":
        desc = subject or "moves"
    if " - " in desc:  # 'playground - climb': topic, then the action
        topic, action = (s.strip() for s in desc.split(" - ", 1))
        sentence = f"{topic}: {_a_person(action)}"
    else:
        sentence = _a_person(desc)
    out = [desc, sentence, sentence.replace("a person", "someone", 1)]
    if subject and subject != desc:
        out.append(f"{sentence}, from a session of {subject}")
    return _uniq(out)


# --- named clips (DeepMimic, AMP) -------------------------------------------------------------------------

NAMED_CAPTIONS: dict[str, tuple[str, ...]] = {
    "walk": ("a person walks forward", "walk forward", "someone walks at a normal pace", "walking forward"),
    "run": ("a person runs forward", "run", "someone runs at a steady pace", "run forward"),
    "jog": ("a person jogs forward", "jog", "someone jogs at an easy pace", "jogging forward"),
    "jump": ("a person jumps forward", "jump", "someone leaps forward and lands", "do a long jump"),
    "kick": ("a person kicks", "kick", "someone kicks with one leg", "throw a kick"),
    "punch": ("a person throws a punch", "punch", "someone punches forward", "throw a punch"),
    "spinkick": ("a person does a spinning kick", "spin kick", "someone spins around and kicks", "do a spinning kick"),
    "backflip": ("a person does a backflip", "backflip", "flip backwards", "someone jumps and flips backwards",
                 "do a back somersault"),
    "sideflip": ("a person does a side flip", "side flip", "flip sideways", "someone jumps and flips to the side",
                 "do a sideways somersault"),
    "cartwheel": ("a person does a cartwheel", "cartwheel", "someone cartwheels sideways", "do a cartwheel"),
    "crawl": ("a person crawls on hands and knees", "crawl", "someone crawls forward on all fours", "crawl forward"),
    "roll": ("a person does a forward roll", "roll", "someone rolls forward on the ground", "do a forward roll"),
    "getup_facedown": ("a person gets up from lying face down", "get up from the ground",
                       "someone stands up after lying on their stomach", "get up from a face-down position"),
    "getup_faceup": ("a person gets up from lying on their back", "get up from the ground",
                     "someone stands up after lying face up", "get up from lying on the back"),
    "dance_a": ("a person dances", "dance", "someone does a dance routine", "dancing"),
    "dance_b": ("a person dances", "dance", "someone performs a dance", "dance in place"),
    "dance_spin": ("a person dances and spins", "dance with a spin", "someone twirls while dancing",
                   "spin around while dancing"),
    "spin": ("a person spins around", "spin", "someone turns around in a full circle", "spin in place"),
    "stealthy_walk": ("a person sneaks forward", "walk stealthily", "someone tiptoes forward quietly", "sneak forward"),
    "zombie_walk": ("a person walks like a zombie", "zombie walk", "someone shambles forward like a zombie",
                    "walk like a zombie"),
    "hop": ("a person hops", "hop", "someone hops forward", "hop forward"),
    "dance": ("a person dances", "dance", "someone performs a dance", "dancing"),
}


def named_captions(name: str) -> list[str]:
    """Table lookup by clip name; unknown names fall back to their own words, never failing."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    key = re.sub(r"^(amp_humanoid_|humanoid3d_)", "", key)
    if key in NAMED_CAPTIONS:
        return list(NAMED_CAPTIONS[key])
    words = " ".join(key.replace("_", " ").split()) or "moves"
    return _uniq([f"a person {words}", words, f"someone {words}"])


# --- dispatch ---------------------------------------------------------------------------------------------

# A span cut from a take's rest (`motions import FILE@START:END`) shows standing, not the take's labelled skill.
STANDING_CAPTIONS = ("a person stands still", "stand still", "someone stands and waits", "a person stands idle",
                     "stand idle")
# Shared by both get-up clips' captions: the command `superpadl.host.SimLoop` gives after a fall.
GET_UP_CAPTIONS = ("get up from the ground",)


def captions_for(labels: dict, source_format: str, clip_id: str, cmu_tsv: Path | None) -> list[str]:
    """Pick the caption family from the labels an importer attached (see SourceMotion.labels)."""
    if "content" in labels and "style" in labels:
        return bandai_captions(labels["content"], labels["style"])
    if "cmu_clip_id" in labels:
        if cmu_tsv is None:
            raise UnknownLabels(f"{clip_id}: CMU clip ({source_format}) needs the descriptions tsv")
        return cmu_captions(labels["cmu_clip_id"], cmu_tsv)
    if "name" in labels:
        return named_captions(labels["name"])
    raise UnknownLabels(f"{clip_id}: no caption labels in {sorted(labels)} ({source_format})")


def words_captions(text: str) -> list[str]:
    """Captions from free words (label words or a file stem): 'myTake_02' -> 'a person doing my take', ...;
    [] when no words remain (a stem of numbers alone says nothing about the motion)."""
    words = " ".join(re.findall(r"[a-z]+", re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text).lower()))
    if not words:
        return []
    sentence = _a_person(words)
    return _uniq([sentence, words, sentence.replace("a person", "someone", 1)])


def clip_captions(labels: dict, source_format: str, stem: str, cmu_tsv: Path | None) -> list[str]:
    """captions_for, falling back to the label words (Bandai names outside the tables) or the file stem; never
    fails, [] for a clip with nothing to say (listed as uncaptioned)."""
    if "name" in labels and not re.search(r"[a-z]", str(labels["name"]), re.I):
        return []  # '0001.bvh': no words to caption it with
    try:
        return captions_for(labels, source_format, stem, cmu_tsv)
    except UnknownLabels:
        pass
    if "content" in labels and "style" in labels:
        action = BANDAI_CONTENTS.get(labels["content"], (labels["content"],))[0]
        return words_captions(action if labels["style"] == "normal" else f"{action} {labels['style']}")
    return words_captions(stem)
