"""Prompt scripts: a sequence of text commands, each held for a duration, for multi-stage animations.

Format (file or inline prompt):
    # comments run to the end of a line; blank lines are ignored
    walk forward happily for 4s
    bow                               <- no duration: default_duration
    wave goodbye for 3 s; then run for 2.5 seconds

Commands are separated by newlines, ';', and the word 'then' (also ', then', 'and then'); a leading
'then' is dropped, and one trailing ';' on a line is allowed. A command's duration is a trailing
'for <number>[ ]<unit>' with unit s, sec, secs, second or seconds; a bare number ('for 4') means seconds.
Durations must be > 0 and at most 600 s. A trailing 'for' clause counts as a (possibly malformed)
duration when its value starts with a digit, sign or '.', when a unit word follows it ('for ten seconds'),
or when it is a vowel-less stem plus a unit ('for xs'); otherwise it is ordinary text ('look for keys').
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

MAX_DURATION = 600.0
_UNITS = {"", "s", "sec", "secs", "second", "seconds"}
_TIME_WORDS = _UNITS | {"ms", "min", "mins", "minute", "minutes", "h", "hr", "hrs", "hour", "hours"}
_LEADING_THEN = re.compile(r"^(?:and\s+)?then\b\s*", re.I)
_THEN = re.compile(r"(?:,\s*|\s+)(?:and\s+)?then\b", re.I)
_VALUE = re.compile(r"([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*([a-z]*)", re.I)


class ScriptError(ValueError):
    """Bad script. The message is one line: '<source>, line N: problem'."""

    def __init__(self, source: str, line: int | None, problem: str):
        where = f"{source}, line {line}" if line is not None else str(source)
        super().__init__(f"{where}: {problem}")
        self.source, self.line, self.problem = str(source), line, problem


@dataclass(frozen=True)
class Stage:
    text: str
    duration: float  # seconds


def _is_duration_clause(words: list[str]) -> bool:
    """words follow a trailing 'for': decide whether they are meant as a duration (see module doc)."""
    if len(words) == 2:
        return words[1].lower() in _TIME_WORDS
    if len(words) != 1:
        return False
    w = words[0].lower()
    if w[0] in "0123456789+-.":
        return True
    for unit in sorted(_UNITS - {""}, key=len, reverse=True):
        if w.endswith(unit) and len(w) > len(unit):
            return not re.search(r"[aeiouy]", w[: -len(unit)])
    return False


def _parse_duration(value: str, where) -> float:
    m = _VALUE.fullmatch(value)
    if not m:
        raise ScriptError(*where, f"bad duration {value!r}: not a number of seconds")
    if m.group(2).lower() not in _UNITS:
        raise ScriptError(*where, f"bad duration {value!r}: unit {m.group(2)!r} not one of s, sec, seconds")
    seconds = float(m.group(1))
    if not math.isfinite(seconds) or seconds <= 0:
        raise ScriptError(*where, f"bad duration {value!r}: must be positive")
    if seconds > MAX_DURATION:
        raise ScriptError(*where, f"bad duration {value!r}: longer than {MAX_DURATION:g} s")
    return seconds


def _command(raw: str, default_duration: float, where) -> Stage:
    words = raw.strip().rstrip(".,").split()  # 'Walk for 4s.' reads as a sentence
    if not words:
        raise ScriptError(*where, "empty command")
    lowered = [w.lower() for w in words]
    if "for" in lowered:
        i = len(lowered) - 1 - lowered[::-1].index("for")
        tail = words[i + 1:]
        if tail and _is_duration_clause(tail):
            if i == 0:
                raise ScriptError(*where, f"empty command (only a duration: {raw.strip()!r})")
            return Stage(" ".join(words[:i]), _parse_duration(" ".join(tail), where))
    return Stage(" ".join(words), float(default_duration))


def parse_script(text: str, default_duration: float = 4.0, source: str = "<prompt>") -> list[Stage]:
    """Parse a script or inline prompt into stages; any problem raises ScriptError naming source and line."""
    if not (0 < default_duration <= MAX_DURATION):
        raise ValueError(f"default_duration must be in (0, {MAX_DURATION:g}] s, got {default_duration}")
    stages: list[Stage] = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0]
        if not line.strip():
            continue
        parts = line.split(";")
        if len(parts) > 1 and not parts[-1].strip():
            parts.pop()  # one trailing ';'
        for part in parts:
            part = _LEADING_THEN.sub("", part.strip())
            for cmd in _THEN.split(part):
                stages.append(_command(cmd, default_duration, (source, n)))
    if not stages:
        raise ScriptError(source, None, "script has no commands")
    return stages


def load_script(path, default_duration: float = 4.0) -> list[Stage]:
    """Parse a script file; errors name the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScriptError(str(path), None, f"cannot read: {e}") from None
    return parse_script(text, default_duration, source=str(path))


def total_duration(stages: list[Stage]) -> float:
    return float(sum(s.duration for s in stages))


def schedule(stages: list[Stage], fps: float) -> list[tuple[int, str]]:
    """(start frame, text) per stage; frames come from rounded cumulative time, so no drift builds up."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    out, t = [], 0.0
    for s in stages:
        out.append((int(round(t * fps)), s.text))
        t += s.duration
    return out
