"""Command-line option types shared by the `motions`, `padl` and `superpadl` CLIs: every numeric option is
range-checked when it is parsed, so a bad value is refused at once with one line naming the option, instead of
being read by truthiness (`--steps 0` meaning "the default"), wrapping a loop to nothing (`--steps -5`) or failing
deep in the work with a traceback (`--fps inf`, `--width 100000`).

Each type is a callable for `add_argument(type=...)` that raises `argparse.ArgumentTypeError`; argparse then
reports "prog: error: argument --NAME: MESSAGE" and exits with code 2. `Parser` prints that line alone (without the
usage block), so every refusal of these tools is one line on stderr.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from motions import tempfiles

MAX_SEED = 2**32 - 1  # numpy's and JAX's seeds: non-negative, 32 bits keep both happy
MAX_ENVS = 1 << 16  # parallel environments: beyond this a run only exhausts memory
MAX_FPS = 240.0  # video frame rate
MAX_WIDTH, MAX_HEIGHT = 1920, 1080  # rendered frames (MuJoCo's offscreen buffer and the encoder's sane range)
MIN_SIDE = 16


def _no_default(action: argparse.Action) -> bool:
    return action.default is None or action.default is False or action.default is argparse.SUPPRESS


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, unless there is none to show (None, a flag's False) or the help text
    names it already."""

    def _get_help_string(self, action):
        text = action.help or ""
        if _no_default(action) or "default" in text:
            return text
        return super()._get_help_string(action)


class RawDescriptionHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """HelpFormatter that keeps the description's own line breaks (a module docstring with a usage block)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (`-h` still shows the usage), and whose --help shows
    the defaults (HelpFormatter); its subcommands' parsers are Parsers too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if not action.help and not _no_default(action):
            action.help = "default: %(default)s"  # argparse shows no help line, so no default, without a text
        return action

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(text: str, kind: type):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{'an integer' if kind is int else 'a number'} expected, got {text!r}") \
            from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _ranged(kind: type, low=None, high=None, low_open: bool = False, what: str = ""):
    def check(text: str):
        value = _number(text, kind)
        if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    check.__name__ = what.replace(" ", "_")  # argparse names the type in its messages
    return check


def int_in(low: int, high: int):
    """An integer in [low, high]."""
    return _ranged(int, low, high, what=f"an integer from {low} to {high}")


def float_in(low: float, high: float, low_open: bool = False):
    """A finite number in [low, high] ((low, high] with low_open)."""
    return _ranged(float, low, high, low_open, what=f"a number in {'(' if low_open else '['}{low:g}, {high:g}]")


positive_int = _ranged(int, 1, what="an integer >= 1")
nonneg_int = _ranged(int, 0, what="an integer >= 0")
finite_float = _ranged(float, what="a finite number")
positive_float = _ranged(float, 0.0, low_open=True, what="a finite number > 0")
nonneg_float = _ranged(float, 0.0, what="a finite number >= 0")
fraction = float_in(0.0, 1.0)
seed = int_in(0, MAX_SEED)
num_envs = int_in(1, MAX_ENVS)
frame_rate = float_in(0.0, MAX_FPS, low_open=True)
width = int_in(MIN_SIDE, MAX_WIDTH)
height = int_in(MIN_SIDE, MAX_HEIGHT)


def output_file(text: str) -> Path:
    """A file this run will write (atomically, through a temporary beside it): not a directory, in an existing
    folder this process can write to. Checked by creating and removing a temporary file there, since permission
    bits do not tell (root, read-only mounts)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a directory, not a file to write")
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: folder {folder} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{path}: not writable")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=tempfiles.prefix(), suffix=".probe")
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{path}: cannot write in {folder} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
    return path
