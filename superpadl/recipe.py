"""Training recipes: one TOML file names the motion sources and what differs from the defaults of every stage.

    name = "default"
    sources = ["data/walk.txt", "data/punch.bvh@0:2"]    # or: sources_file = "sources.txt" (+ data = ROOT)
    [experts]   # ExpertConfig fields (nested [experts.env], [experts.ppo], ...) and the stage keys of EXPERT_KEYS
    [groups]    # GroupConfig fields and `minutes`
    [global]    # GlobalConfig fields and `minutes`
    [handover]  # HandoverStage fields
    [stop]      # StopStage: `teacher`, `minutes` and GroupConfig fields
    [eval]      # EvalSettings fields

Paths are relative to the recipe file (the entries of a `sources_file` to `data`, default the sources file's
folder). A bad recipe is a `RecipeError`, one line naming the file and the key, raised before anything is written.
"""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from padl.config import replace
from padl.expert import ExpertConfig
from superpadl.global_policy import GlobalConfig
from superpadl.groups import GroupConfig


class RecipeError(ValueError):
    """'<recipe file>: <key>: <what is wrong>'."""


@dataclass(frozen=True)
class ExpertStage:
    config: ExpertConfig = ExpertConfig()
    teachers: Path | None = None  # a folder of finished experts: clips with an expert there are not trained
    # a policy every expert's first attempt starts from (a tracker of related clips, e.g. models/warmstarts/NAME)
    init_from: Path | None = None
    minutes: float | None = None  # wall-clock budget of one expert's first attempt (None: iterations alone)
    success: float = 0.9  # the bar an expert must reach, or be retried: success at least this...
    g_mpjpe_mm: float = 100.0  # ...and G-MPJPE at most this
    retries: int = 2  # further attempts of an expert below its bar (`superpadl.pipeline.retry_plan`)
    clips_per_expert: int = 1  # >1: one expert tracks a caption-embedding cluster of about this many clips
    # expert trainers at once (`superpadl train --workers` overrides); 0: one per CPU core (on a 2-core CPU, 2 ran
    # the experts stage 1.20x faster than 1: benchmarks/pipeline_workers.py)
    workers: int = 0


@dataclass(frozen=True)
class Stage:
    config: typing.Any
    minutes: float | None = None  # wall-clock budget of the stage (None: its config's iterations alone)
    # a finished policy of this stage's kind to fine-tune from (a groups folder of the same clips; a global policy
    # with the same inputs): a warm start, as `superpadl distill ... --init-from`
    init_from: Path | None = None


@dataclass(frozen=True)
class StopStage:
    """A standing expert taught to stop from locomotion (`teacher`), distilled into a group controller of the idle
    clip alone (`config`: GroupConfig fields), which labels DAgger's braking before a gesture or standing given while
    moving (`superpadl.global_policy.dagger_rollout`'s `stop_teacher`). Not the standing teacher itself: taught to
    stop, it stands in another stance than the one every gesture starts from (docs/experiments.md)."""
    teacher: Path | None = None  # an expert folder of the idle clip; none: no stage, the standing teacher brakes
    config: GroupConfig = GroupConfig()
    minutes: float | None = None


@dataclass(frozen=True)
class HandoverStage:
    """Experts that learn to take over where real use hands them a command: reference states are not what the
    runtime hands over (a walk taught from the standing clip's first frame fell from that stance held one control
    step by the standing expert). Each round records the simulated states at every command of real-use chains of the
    run's experts (`superpadl.endurance.handover_states`), then fine-tunes the experts of `clips` with `share` of their
    episodes starting there (`padl.env.StartConfig.state_starts`): in the default model's teachers, 75 falls per hour
    in the expert-level chain against 180 (docs/experiments.md)."""
    clips: tuple[str, ...] = ()  # clip ids whose experts are fine-tuned (all the clips of each); none: no stage
    rounds: int = 1  # record-then-fine-tune rounds, each recording from the experts the round before left
    record_minutes: float = 10.0  # simulated minutes of each recorded chain (random captions held 2-20 s)
    record_seeds: int = 4  # chains recorded per round
    share: float = 0.5  # of a fine-tune's episodes, those starting in a recorded state
    start_noise: float = 0.05  # rad on the joints of every start: the recorded states are a few hundred
    iterations: int = 2000  # per fine-tune (trained whole: no early stop)
    minutes: float | None = None  # wall-clock budget of one fine-tune
    eval_episodes: int = 32  # its evaluations (half of them from the states) pick the policy it keeps


@dataclass(frozen=True)
class EvalSettings:
    episodes: int = 2  # per caption, as `superpadl eval --episodes`
    transitions: int = 100
    seed: int = 0
    endurance_minutes: float = 0.0  # simulated minutes of real use per seed (`superpadl.endurance`; 0: skip)
    endurance_seeds: int = 1


@dataclass(frozen=True)
class Recipe:
    path: Path
    name: str
    sources: tuple[str, ...]  # absolute 'FILE' or 'FILE@START:END'
    listed: tuple[str, ...]  # the same as the recipe writes them (for the exported sources.txt)
    experts: ExpertStage = ExpertStage()
    groups: Stage = field(default_factory=lambda: Stage(GroupConfig()))
    global_: Stage = field(default_factory=lambda: Stage(GlobalConfig()))
    eval: EvalSettings = EvalSettings()
    handover: HandoverStage = HandoverStage()
    stop: StopStage = StopStage()
    # clips (library ids) whose experts also learn to start from the standing skill's states, as a user's first
    # command does (`superpadl.pipeline.stand_start_config`): a teacher of the recipe that covers one is fine-tuned
    # so, all its clips
    stand_starts: tuple[str, ...] = ()
    # where those episodes begin: "standing" (the standing skill's states) or "any" (every other clip's, at random
    # times: a command given during another skill, as a user switches; the standing skill is one of them)
    start_from: str = "standing"
    raw: dict = field(default_factory=dict)  # the parsed TOML: a run refuses to resume under another recipe


TOP_KEYS = {"name", "sources", "sources_file", "data", "stand_starts", "start_from", "experts", "handover", "groups",
            "stop", "global", "eval"}
EXPERT_KEYS = {f.name for f in dataclasses.fields(ExpertStage)} - {"config"}
STAGE_KEYS = {"minutes", "init_from"}


def load(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path}: cannot read ({e.__class__.__name__})") from None
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: not valid TOML ({e})") from None
    return parse(raw, path)


def parse(raw: dict, path: Path) -> Recipe:
    def fail(key: str, what: str):
        raise RecipeError(f"{path}: {key}: {what}")

    for key in raw:
        if key not in TOP_KEYS:
            fail(key, f"unknown key (known: {', '.join(sorted(TOP_KEYS))})")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        fail("name", "must be a non-empty string")
    listed, sources = _sources(raw, path, fail)
    stand_starts = raw.get("stand_starts", [])
    if not isinstance(stand_starts, list) or not all(isinstance(c, str) and c for c in stand_starts):
        fail("stand_starts", "must be a list of clip ids")
    start_from = raw.get("start_from", "standing")
    if start_from not in ("standing", "any"):
        fail("start_from", f"must be 'standing' or 'any', not {start_from!r}")

    def table(key: str) -> dict:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            fail(key, f"must be a table, not {type(value).__name__}")
        return value

    e = table("experts")
    stage = {k: v for k, v in e.items() if k in EXPERT_KEYS}
    ex = ExpertStage(config=_config(ExpertConfig, {k: v for k, v in e.items() if k not in EXPERT_KEYS}, "experts",
                                    fail, ExpertStage.config),
                     **_fields(ExpertStage, {k: v for k, v in stage.items() if k not in ("teachers", "init_from")},
                               "experts", fail))
    for key, what in (("teachers", "folder of experts"), ("init_from", "policy folder")):
        if key in stage:
            ex = dataclasses.replace(ex, **{key: _folder(path, stage[key], f"experts.{key}", what, fail)})
    for key, low in (("retries", 0), ("clips_per_expert", 1), ("workers", 0)):
        if getattr(ex, key) < low:
            fail(f"experts.{key}", f"must be >= {low}, not {getattr(ex, key)}")
    if not 0 <= ex.success <= 1:
        fail("experts.success", f"must be in [0, 1], not {ex.success}")
    stages = {}
    if "init_from" in table("stop"):
        fail("stop.init_from", "unknown key (the stop stage starts from its teacher alone)")
    for key, cls in (("groups", GroupConfig), ("stop", GroupConfig), ("global", GlobalConfig)):
        t = {k: v for k, v in table(key).items() if k != "teacher" or key != "stop"}
        cfg = _config(cls, {k: v for k, v in t.items() if k not in STAGE_KEYS}, key, fail, cls())
        stages[key] = Stage(cfg, **_fields(Stage, {k: v for k, v in t.items() if k == "minutes"}, key, fail))
        if "init_from" in t:
            stages[key] = dataclasses.replace(stages[key], init_from=_folder(
                path, t["init_from"], f"{key}.init_from", "policy folder", fail))
        if states := stages[key].config.env.starts.state_starts:
            file = (path.parent / states).resolve()
            if not file.is_file():
                fail(f"{key}.env.starts.state_starts", f"no such file {file}")
            cfg = replace(stages[key].config, env=dict(starts=dict(state_starts=str(file))))
            stages[key] = dataclasses.replace(stages[key], config=cfg)
    stop = StopStage(config=stages["stop"].config, minutes=stages["stop"].minutes)
    if "teacher" in table("stop"):
        stop = dataclasses.replace(stop, teacher=_folder(path, table("stop")["teacher"], "stop.teacher", "expert folder",
                                                         fail))
    ev = EvalSettings(**_fields(EvalSettings, table("eval"), "eval", fail))
    hand = HandoverStage(**_fields(HandoverStage, table("handover"), "handover", fail))
    if not 0 < hand.share <= 1:
        fail("handover.share", f"must be in (0, 1], not {hand.share}")
    if hand.start_noise < 0:
        fail("handover.start_noise", f"must not be negative, not {hand.start_noise}")
    for where, obj in (("experts", ex), ("handover", hand), ("groups", stages["groups"]), ("stop", stop),
                       ("global", stages["global"]), ("eval", ev)):
        _check_budgets(obj, where, fail)
    return Recipe(path=path.resolve(), name=name, sources=sources, listed=listed, experts=ex,
                  groups=stages["groups"], global_=stages["global"], eval=ev, handover=hand, stop=stop,
                  stand_starts=tuple(stand_starts), start_from=start_from, raw=raw)


def _folder(path: Path, value, key: str, what: str, fail) -> Path:
    """A folder the recipe names, relative to the recipe file; it must exist."""
    if not isinstance(value, str):
        fail(key, f"must be a {what} path (string)")
    folder = (path.parent / value).resolve()
    if not folder.is_dir():
        fail(key, f"no such folder {folder}")
    return folder


def _sources(raw: dict, path: Path, fail) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the entries as written, their absolute forms), each file checked to exist."""
    if ("sources" in raw) == ("sources_file" in raw):
        fail("sources", "give either `sources` (a list of files) or `sources_file` (a sources.txt)")
    if "sources" in raw:
        key, entries, root = "sources", raw["sources"], path.parent
        if not isinstance(entries, list) or not all(isinstance(s, str) for s in entries):
            fail(key, "must be a list of file paths ('FILE' or 'FILE@START:END')")
        if "data" in raw:
            fail("data", "only with `sources_file`")
    else:
        key = "sources_file"
        if not isinstance(raw[key], str):
            fail(key, "must be a file path (string)")
        listing = path.parent / raw[key]
        if not listing.is_file():
            fail(key, f"no such file {listing}")
        if not isinstance(raw.get("data", ""), str):
            fail("data", "must be a folder path (string)")
        root = path.parent / raw["data"] if "data" in raw else listing.parent
        entries = [s.strip() for s in listing.read_text().splitlines() if s.strip() and not s.lstrip().startswith("#")]
    if not entries:
        fail(key, "empty clip list")
    absolute = []
    for s in entries:
        file, sep, span = s.rpartition("@")
        file, span = (file, sep + span) if sep and not (root / s).is_file() else (s, "")
        full = (root / file).resolve()
        if not full.is_file():
            fail(key, f"source file {full} is missing")
        absolute.append(f"{full}{span}")
    if len(set(absolute)) != len(absolute):
        fail(key, "a source is listed twice")
    return tuple(entries), tuple(absolute)


def _fields(cls, data: dict, where: str, fail) -> dict:
    """`data` checked against the fields of dataclass `cls` (names and types), nested tables included."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for key, value in data.items():
        if key not in known:
            fail(f"{where}.{key}", f"unknown key (not a field of {cls.__name__})")
        out[key] = _value(hints[key], value, f"{where}.{key}", fail)
    return out


def _config(cls, data: dict, where: str, fail, default):
    """Dataclass `default` with the fields `data` sets replaced; a nested table replaces fields of the nested
    default (a recipe states only what differs, at any depth)."""
    return replace(default, **_fields(cls, data, where, fail))


def _value(hint, value, key: str, fail):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _value(arg, value, key, _mismatch)
            except _Mismatch as e:
                errors.append(str(e))
        fail(key, errors[0] if errors else "must not be empty")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            fail(key, f"must be a table, not {type(value).__name__}")
        return _fields(hint, value, key, fail)  # checked here; `replace` builds it from the nested default
    if hint is bool:
        if not isinstance(value, bool):
            fail(key, f"must be true or false, not {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(key, f"must be an integer, not {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(key, f"must be a number, not {value!r}")
        return float(value)
    elif hint is str or hint is Path:
        if not isinstance(value, str):
            fail(key, f"must be a string, not {value!r}")
    elif origin is tuple or hint is tuple:
        if not isinstance(value, list):
            fail(key, f"must be a list, not {value!r}")
        item = args[0] if args else typing.Any
        return tuple(_value(item, v, f"{key}[{i}]", fail) for i, v in enumerate(value))
    return value


BUDGET_SUFFIXES = ("iterations", "_every", "_s", "episodes", "transitions", "seeds", "_steps", "_size")
BUDGET_NAMES = {"minutes", "num_envs", "retries", "workers", "clips_per_expert", "buffer", "bc_buffer", "rounds",
                "record_minutes"}


class _Mismatch(Exception):
    """A value that is not of one member of a union type (the next member is tried)."""


def _mismatch(key: str, what: str):
    raise _Mismatch(what)


def _check_budgets(obj, where: str, fail) -> None:
    """Budgets and sizes are not negative: iterations, minutes, episodes, transitions, seconds."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_budgets(value, f"{where}.{f.name}" if f.name != "config" else where, fail)
        elif (isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0
              and (f.name.endswith(BUDGET_SUFFIXES) or f.name in BUDGET_NAMES)):
            fail(f"{where}.{f.name}", f"must not be negative, not {value}")
        elif f.name == "minutes" and value is not None and value <= 0:
            fail(f"{where}.{f.name}", f"must be > 0, not {value}")
