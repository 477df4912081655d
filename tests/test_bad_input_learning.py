"""Bad input and faults on the learning side (issue 34): option ranges refused when parsed, output paths checked
before the work, `--resume`/`--force` and the kept policy, a run killed between keeping a policy and its next
checkpoint, the text encoder a global policy records, malformed policy folders, non-finite actions, and SIGINT /
SIGTERM / SIGKILL during training and rendering. Each refusal: exit code != 0, one line on stderr naming the
option or file, no traceback, nothing of the user's changed, no temporaries left after the next run."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from motions.library import MotionLibrary
from padl import checkpoint
from padl.cli import main as padl_main
from padl.expert import train
from superpadl import cli as superpadl_cli
from superpadl.global_policy import train_global
from superpadl.groups import train_group
from superpadl.policies import FINGERPRINT_TEXT, check_encoder, encoder_record
from superpadl.host import HoldController, SimLoop
from superpadl.runtime import DEFAULT_MODEL, PolicyController, load_controller
from superpadl.text import MODEL_NAME
from synthetic import write_synthetic_library
from test_expert import TINY, tiny_config

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"}


@pytest.fixture(scope="module")
def lib_path(tmp_path_factory) -> Path:
    return write_synthetic_library(tmp_path_factory.mktemp("lib") / "synthetic", kinds=("sway", "squat"))


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def listing(folder: Path) -> dict:
    """Every file under `folder` with its bytes: what "nothing changed" compares."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- option ranges, refused when parsed ------------------------------------------------------------------------

@pytest.mark.parametrize("tool, argv, option", [
    ("padl", ["train-expert", "L", "c", "--out", "o", "--steps", "-5"], "--steps"),
    ("padl", ["train-expert", "L", "c", "--out", "o", "--steps", "0"], "--steps"),
    ("padl", ["train-expert", "L", "c", "--out", "o", "--checkpoint-every", "-1"], "--checkpoint-every"),
    ("padl", ["train-expert", "L", "c", "--out", "o", "--minutes", "-1"], "--minutes"),
    ("padl", ["train-expert", "L", "c", "--out", "o", "--num-envs", "-1"], "--num-envs"),
    ("padl", ["train-expert", "L", "c", "--out", "o", "--foreign-starts", "5"], "--foreign-starts"),
    ("padl", ["train-expert", "L", "c", "--out", "o", "--eval-every", "nan"], "--eval-every"),
    ("padl", ["train-expert", "L", "c", "--out", "o", "--resume", "--force"], "--force"),
    ("padl", ["train-experts", "L", "--out", "o", "--jobs", "0"], "--jobs"),
    ("padl", ["eval", "P", "L", "--episodes", "0"], "--episodes"),
    ("padl", ["eval", "P", "L", "--seconds", "inf"], "--seconds"),
    ("padl", ["record", "P", "L", "--out", "o", "--seed", "-1"], "--seed"),
    ("superpadl", ["eval", "P", "L", "--transitions", "-3"], "--transitions"),
    ("superpadl", ["render", "--prompt", "x", "-o", "o.mp4", "--fps", "inf"], "--fps"),
    ("superpadl", ["render", "--prompt", "x", "-o", "o.mp4", "--width", "0"], "--width"),
    ("superpadl", ["view", "--frames", "0"], "--frames"),
    ("superpadl", ["handover-states", "P", "--out", "o.npz", "--minutes", "0"], "--minutes"),
    ("padl", ["train-expert", "L", "c", "--out", "o", "--start-noise", "-0.1"], "--start-noise"),
    ("superpadl", ["distill", "global", "L", "G", "--out", "o", "--rest-switch", "2"], "--rest-switch"),
    ("superpadl", ["distill", "global", "L", "G", "--out", "o", "--finish-s", "-1"], "--finish-s"),
    ("superpadl", ["distill", "groups", "L", "E", "--out", "o", "--iterations", "0"], "--iterations"),
    ("superpadl", ["distill", "global", "L", "G", "--out", "o", "--end-switch", "1.5"], "--end-switch"),
    ("motions", ["render", "L", "c", "-o", "o.mp4", "--width", "0"], "--width"),
    ("motions", ["render", "L", "c", "-o", "o.mp4", "--width", "100000"], "--width"),
    ("motions", ["import", "f.bvh", "--out", "o", "--max-key-body-error", "nan"], "--max-key-body-error"),
])
def test_numeric_options_are_range_checked_when_parsed(tool, argv, option, capsys, tmp_path, monkeypatch):
    from motions.cli import build_parser as motions_parser

    monkeypatch.chdir(tmp_path)
    parse = {"padl": lambda a: padl_main(a), "superpadl": lambda a: superpadl_cli.main(a),
             "motions": lambda a: motions_parser().parse_args(a)}[tool]
    with pytest.raises(SystemExit) as e:
        parse(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    if tool != "motions":  # their parsers print the error line alone (motions' own parser adds argparse's usage)
        one_line(err)
    last = err.strip().splitlines()[-1]
    assert f"argument {option}" in last or f"/{option}" in last, err
    assert list(tmp_path.iterdir()) == []


def test_option_types_accept_their_edges():
    from motions import options as O

    assert O.positive_int("1") == 1 and O.nonneg_int("0") == 0 and O.fraction("1") == 1.0 and O.fraction("0") == 0
    assert O.width("16") == 16 and O.height("1080") == 1080 and O.frame_rate("240") == 240.0
    assert O.seed(str(2**32 - 1)) == 2**32 - 1
    for t, bad in ((O.positive_int, "1.5"), (O.positive_float, "0"), (O.finite_float, "-inf"), (O.frame_rate, "0")):
        with pytest.raises(Exception, match="expected|must be"):
            t(bad)


# --- output paths checked before the work ----------------------------------------------------------------------

@pytest.mark.parametrize("target, problem", [("missing/out.json", "does not exist"), (".", "is a directory"),
                                             ("/proc/out.json", "cannot write")])
def test_output_paths_are_checked_before_the_work(target, problem, tmp_path, capsys):
    out = target if target.startswith("/") else str(tmp_path / target)
    for main, argv in ((padl_main, ["eval", "P", "L", "--json", out]),
                       (superpadl_cli.main, ["eval", "P", "L", "--json", out]),
                       (superpadl_cli.main, ["render", "--prompt", "stand", "-o", out.replace(".json", ".mp4")])):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = one_line(capsys.readouterr().err)
        assert problem in err and ("--json" in err or "--output" in err), err
    assert list(tmp_path.iterdir()) == []  # the probe of a writable folder leaves nothing


# --- --resume, --force and the kept policy ---------------------------------------------------------------------

def test_resume_without_a_run_and_new_runs_over_a_kept_policy_are_refused(lib_path, tmp_path, capsys):
    out = tmp_path / "run"
    code = padl_main(["train-expert", str(lib_path), "synthetic_sway", "--out", str(out), "--resume", *TINY])
    assert code == 1 and "train_state.json: no run to resume" in one_line(capsys.readouterr().err)
    assert not out.exists()
    for stage, marker in (("groups", "groups.json"), ("global", "train_state.json")):
        code = superpadl_cli.main(["distill", stage, str(lib_path), str(tmp_path), "--out", str(out), "--resume"])
        assert code == 1 and f"{marker}: no run to resume" in one_line(capsys.readouterr().err)
    # a folder whose run state is gone but whose kept policy is there: a new run refuses to overwrite it ...
    checkpoint.save(out / "policy", {"w": np.ones(3)}, {"kind": "padl-expert", "eval": {"success": 1.0}})
    (out / "progress.jsonl").write_text('{"iteration": 7}\n')
    kept = listing(out)
    code = padl_main(["train-expert", str(lib_path), "synthetic_sway", "--out", str(out), *TINY, "--steps", "128"])
    err = one_line(capsys.readouterr().err)
    assert code == 1 and "policy.json" in err and "--force" in err
    assert listing(out) == kept
    # ... and so do the distillation runs, before anything is loaded (no teachers are needed to refuse)
    for run in (lambda: train_group(None, None, [], out), lambda: train_global(None, None, out)):
        with pytest.raises(checkpoint.CheckpointError, match="kept policy"):
            run()
    assert listing(out) == kept
    # with --force it is a new run: the policy and the log are its own
    code = padl_main(["train-expert", str(lib_path), "synthetic_sway", "--out", str(out), *TINY, "--steps", "128",
                      "--force", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "train_state.json").read_text())["config"]["iteration"] == 1
    assert [json.loads(r)["iteration"] for r in (out / "progress.jsonl").read_text().splitlines()] == [1]


def test_a_state_starts_file_that_is_not_one_is_refused_in_one_line_before_the_run(lib_path, tmp_path, capsys):
    (tmp_path / "text.npz").write_text("not an npz")
    np.savez(tmp_path / "other.npz", qpos=np.zeros((4, 10)), qvel=np.zeros((4, 34)))
    for name, problem in (("text.npz", "not a state-starts file"), ("other.npz", "qpos (P, 35)"),
                          ("absent.npz", "no such state-starts file")):
        out = tmp_path / name.replace(".npz", "")
        code = padl_main(["train-expert", str(lib_path), "synthetic_sway", "--out", str(out), *TINY,
                          "--foreign-starts", "0.5", "--state-starts", str(tmp_path / name)])
        err = one_line(capsys.readouterr().err)
        assert code == 1 and str(tmp_path / name) in err and problem in err, err
        assert not out.exists()


def test_a_run_killed_after_keeping_a_policy_resumes_without_duplicates_or_a_worse_policy(lib_path, tmp_path):
    """The run checkpointed at iteration 2, then (before its next checkpoint) logged an evaluation at 3, kept an
    excellent policy there, and was killed mid-way through writing its log: the resumed run redoes iteration 3
    without a second row for it, and keeps that policy, however its own evaluations come out."""
    lib, out = MotionLibrary(lib_path), tmp_path / "run"
    cfg = tiny_config(eval_every=1, eval_episodes=3, stop_success=2.0)  # no early stop
    train(lib, out, cfg, iterations=2, progress=False, log=lambda m: None)
    policy_tree, meta = checkpoint.load(out / "policy")
    meta = {**meta, "iteration": 3, "eval": {**meta["eval"], "success": 1.0, "g_mpjpe_mm": 0.5}}
    checkpoint.save(out / "policy", policy_tree, meta)
    kept = listing(out)[Path("policy.npz")], (out / "policy.json").read_text()
    with open(out / "progress.jsonl", "a") as f:
        f.write(json.dumps({"iteration": 3, "success": 1.0, "g_mpjpe_mm": 0.5}) + '\n{"iteration": 4, "succ')
    (out / ".tmp-999999999-abcdefgh.npz").write_bytes(b"left by a killed save")  # no such process
    train(lib, out, cfg, resume=True, iterations=4, progress=False, log=lambda m: None)
    rows = [json.loads(r) for r in (out / "progress.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    assert rows[2]["g_mpjpe_mm"] != 0.5  # iteration 3's row is the resumed run's own
    assert (listing(out)[Path("policy.npz")], (out / "policy.json").read_text()) == kept
    assert not list(out.glob(".tmp-*"))
    state, _ = checkpoint.load(out / "train_state")
    assert tuple(state["['best']"]) == (1.0, -0.5)  # and the next checkpoint carries that score


def test_trim_log_keeps_rows_up_to_the_checkpoint(tmp_path):
    log = tmp_path / "progress.jsonl"
    log.write_text('{"iteration": 1}\n{"iteration": 2}\nnot json\n[1]\n{"iteration": 3}\n{"iteration": 2, "x"')
    checkpoint.trim_log(log, 2)
    assert log.read_text() == '{"iteration": 1}\n{"iteration": 2}\n'
    checkpoint.trim_log(log, 0)
    assert log.read_text() == ""
    checkpoint.trim_log(tmp_path / "absent.jsonl", 3)
    assert not (tmp_path / "absent.jsonl").exists()


def test_sweep_removes_only_dead_writers_temporaries(tmp_path):
    from motions import tempfiles

    dead, mine = ".tmp-999999999-abcdefgh.json", f".tmp-{os.getpid()}-abcdefgh.json"
    names = [dead, mine, ".tmp-abcdefgh.json", "notes.tmp-1-abcdefgh.json", ".clip.partial-999999999.mp4",
             f".clip.partial-{os.getpid()}.mp4", ".clip.partial.mp4"]
    for n in names:
        (tmp_path / n).write_text("x")
    assert [p.name for p in tempfiles.sweep(tmp_path)] == [dead]
    assert [p.name for p in tempfiles.sweep(tmp_path, tempfiles.PARTIAL_VIDEO)] == [".clip.partial-999999999.mp4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(names) - {dead, ".clip.partial-999999999.mp4"})


# --- the text encoder a global policy records ------------------------------------------------------------------

class FakeEncoder:
    """Deterministic unit vectors, one per text; `model_name` and a `shift` make other encoders."""

    def __init__(self, model_name=MODEL_NAME, shift=0.0, table=None):
        self.model_name, self.shift, self.table = model_name, shift, table or {}

    def encode(self, texts):
        texts = [texts] if isinstance(texts, str) else texts
        out = []
        for t in texts:
            if t in self.table:
                out.append(np.asarray(self.table[t], np.float32))
                continue
            v = np.random.default_rng(sum(map(ord, t))).normal(size=384) + self.shift
            out.append((v / np.linalg.norm(v)).astype(np.float32))
        return np.stack(out)


def test_encoder_record_refuses_another_encoder():
    record = encoder_record(FakeEncoder())
    assert record["name"] == MODEL_NAME and record["dim"] == 384 and record["fingerprint"]["text"] == FINGERPRINT_TEXT
    check_encoder(json.loads(json.dumps(record)), FakeEncoder(), "p.json")  # survives JSON; the same encoder passes
    with pytest.raises(ValueError, match="p.json: distilled with text encoder 'all-MiniLM-L6-v2', not .*'other'"):
        check_encoder(record, FakeEncoder("other"), "p.json")
    with pytest.raises(ValueError, match="p.json: .*embeddings differ"):
        check_encoder(record, FakeEncoder(shift=0.5), "p.json")


@pytest.fixture
def shipped_copy(tmp_path) -> Path:
    """models/default, whose policy.json (no encoder record) may be edited: its checksum covers the npz alone."""
    return Path(shutil.copytree(DEFAULT_MODEL, tmp_path / "model", ignore=shutil.ignore_patterns("README.md")))


def test_policies_refuse_a_runtime_encoder_other_than_theirs(shipped_copy, capsys):
    meta = json.loads((shipped_copy / "policy.json").read_text())
    tree, _ = checkpoint.load(shipped_copy / "policy")
    caption, emb = meta["config"]["captions"][0], tree["['caption_emb']"][0]
    # without a record (a policy distilled before they were kept): the default encoder, fingerprinted by the
    # policy's own first caption
    meta["config"].pop("text_encoder", None)
    (shipped_copy / "policy.json").write_text(json.dumps(meta))
    same = PolicyController(shipped_copy, encoder=FakeEncoder(table={caption: emb}))
    same.set_command(caption)
    assert same.matched_caption == caption
    other = PolicyController(shipped_copy, encoder=FakeEncoder())
    with pytest.raises(ValueError, match="policy.json: .*embeddings differ"):
        other.set_command("a person walks")
    # with a record naming another encoder: refused when loaded, one line through the CLI
    meta["config"]["text_encoder"] = {"name": "some-other-encoder", "dim": 384, "fingerprint": {}}
    (shipped_copy / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="distilled with text encoder 'some-other-encoder'"):
        load_controller(shipped_copy)
    code = superpadl_cli.main(["render", "--prompt", "stand", "-o", str(shipped_copy / "o.mp4"),
                               "--policy", str(shipped_copy)])
    assert code == 1 and "some-other-encoder" in one_line(capsys.readouterr().err)
    assert not (shipped_copy / "o.mp4").exists()


# --- malformed policy folders ----------------------------------------------------------------------------------

@pytest.mark.parametrize("content", ["[1, 2]", '"text"', '{"format": "padl-checkpoint", "version": 1, "config": [], '
                                                         '"leaves": [], "sha256": "0"}'])
def test_a_malformed_policy_json_is_one_line(content, lib_path, tmp_path, capsys):
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "policy.json").write_text(content)
    (folder / "policy.npz").write_bytes(b"")
    calls = [(padl_main, ["eval", str(folder), str(lib_path)]),
             (superpadl_cli.main, ["eval", str(folder), str(lib_path), "--endurance-minutes", "0"]),
             (superpadl_cli.main, ["render", "--prompt", "stand", "-o", str(tmp_path / "o.mp4"), "--policy",
                                   str(folder)])]
    for main, argv in calls:
        assert main(argv) == 1
        assert "policy.json" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy"]


# --- non-finite actions ------------------------------------------------------------------------------------------

class BlowingUp(HoldController):
    """Holds the rest pose, with an all-NaN action every 10th control step."""

    calls = 0

    def act(self, qpos, qvel):
        self.calls += 1
        return np.full(self.model.nu, np.nan) if self.calls % 10 == 0 else super().act(qpos, qvel)


def test_non_finite_actions_are_counted_and_restart_the_character():
    controller = BlowingUp()
    loop = SimLoop(controller.model, controller)
    for _ in range(45):
        loop.control_step()
    assert loop.bad_actions == 4 and loop.falls == 4
    assert np.isfinite(loop.data.qpos).all() and loop.pelvis_height > 0.8  # restarted standing, not collapsed


# --- interrupts ----------------------------------------------------------------------------------------------------

RENDER = ("import sys, superpadl.cli as c; from superpadl.host import HoldController; "
          "c.resolve_controller = lambda p: HoldController(); sys.exit(c.main(sys.argv[1:]))")


def _render(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RENDER, "render", "--prompt", "stand for 120s", "-o", str(out),
                             "--quiet", "--width", "64", "--height", "48"], env=ENV, stderr=subprocess.PIPE, text=True)


def _wait_for(folder: Path, pattern: str, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while not list(folder.glob(pattern)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert list(folder.glob(pattern)), proc.stderr.read() if proc.poll() is not None else "timed out"


def test_an_error_raised_while_unwinding_an_interrupt_reports_the_interrupt(monkeypatch, capsys):
    """A library that turns SIGTERM into its own error on the way out (a video writer closed mid-frame) still ends
    the run as interrupted (128 + 15), not as failed (1)."""
    from motions.interrupts import Terminated, interrupt_behind

    def render(args):
        try:
            raise Terminated()
        except KeyboardInterrupt:
            raise OSError("broken pipe") from None  # (`from None` hides it from tracebacks, not from __context__)

    assert interrupt_behind(ValueError("bad")) is None
    monkeypatch.setattr(superpadl_cli, "cmd_render", render)
    monkeypatch.setattr(os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code)))
    with pytest.raises(SystemExit) as ended:
        superpadl_cli.main(["render", "--prompt", "stand", "-o", "x.mp4"])
    assert ended.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip() == "superpadl: interrupted (SIGTERM)"


def test_an_error_that_does_not_chain_a_sigterm_received_still_ends_the_run_as_interrupted(monkeypatch, capsys):
    """An error made in C++ code a SIGTERM cut short (JAX, an encoder) carries no interrupt in its chain; the run
    still ends as interrupted (CI saw exit 1 from a render terminated mid-video)."""
    previous = signal.getsignal(signal.SIGTERM)

    def render(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            pass
        raise RuntimeError("cancelled")

    monkeypatch.setattr(superpadl_cli, "cmd_render", render)
    monkeypatch.setattr(os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code)))
    try:
        with pytest.raises(SystemExit) as ended:
            superpadl_cli.main(["render", "--prompt", "stand", "-o", "x.mp4"])
        assert ended.value.code == 128 + signal.SIGTERM
        assert capsys.readouterr().err.strip() == "superpadl: interrupted (SIGTERM)"
        monkeypatch.setattr(superpadl_cli, "cmd_render", lambda args: (_ for _ in ()).throw(RuntimeError("bug")))
        with pytest.raises(RuntimeError, match="bug"):  # the next run starts afresh: its own error is its own
            superpadl_cli.main(["render", "--prompt", "stand", "-o", "x.mp4"])
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_during_render_removes_the_partial_video_and_sigkill_leftovers_are_swept(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    proc = _render(tmp_path / "a.mp4")
    _wait_for(tmp_path, ".a.partial-*", proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and one_line(err) == "superpadl: interrupted (SIGTERM)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    proc = _render(tmp_path / "b.mp4")
    _wait_for(tmp_path, ".b.partial-*", proc)
    proc.kill()
    proc.wait()
    assert list(tmp_path.glob(".b.partial-*"))  # a kill cleans nothing up ...
    code = subprocess.run([sys.executable, "-c", RENDER, "render", "--prompt", "stand for 0.2s", "-o",
                           str(tmp_path / "c.mp4"), "--quiet", "--width", "64", "--height", "48"], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert code.returncode == 0, code.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4", "notes.txt"]  # ... the next render does


def test_an_interrupted_training_ends_with_one_line_and_a_whole_checkpoint(lib_path, tmp_path):
    """Ctrl-C (SIGTERM takes the same way out, as the render test shows)."""
    out, sig = tmp_path / "run", signal.SIGINT
    proc = subprocess.Popen([sys.executable, "-m", "padl.cli", "train-expert", str(lib_path), "synthetic_sway",
                             "--steps", "100000", *TINY, "--threads", "1", "--quiet", "--out", str(out)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(tmp_path, "*/train_state.json", proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig and err.strip().splitlines()[-1] == f"padl: interrupted ({sig.name})", err
    assert "Traceback" not in err
    state, meta = checkpoint.load(out / "train_state")  # whole: it loads and passes its checksum
    assert meta["iteration"] >= 2 and not list(out.glob(".tmp-*"))
