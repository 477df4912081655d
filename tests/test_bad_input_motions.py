"""`motions import` against bad and hostile input (issue 34): whatever happens, one line on stderr naming the file
or option, exit code != 0, no traceback, nothing the user had changed or deleted, no temporary folder left after the
next run, and memory bounded by the input's real size."""
from __future__ import annotations

import io
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from motions.captions import clip_captions
from motions.cli import main
from motions.deepmimic import _ENDS, _JOINTS
from motions.detect import load_source
from test_importers import deepmimic_frame, expect_error, tiny_amass, tiny_bvh, tiny_deepmimic

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _restore_sigterm():
    """motions.cli.main turns SIGTERM into an interrupt; keep pytest's own handler afterwards."""
    old = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, old)


def motions(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def refused(rc: int, err: str, *names) -> str:
    """The one stderr line of a refusal, checked to name each of names."""
    assert rc != 0
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


def snapshot(root: Path) -> dict:
    """Every path under root with its mode and, for files, bytes (symlinks by their target)."""
    out = {".": stat.S_IMODE(root.lstat().st_mode)} if root.is_dir() else {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = ("link", os.readlink(p))
        elif p.is_file():
            out[key] = (stat.S_IMODE(p.stat().st_mode), p.read_bytes())
        else:
            out[key] = stat.S_IMODE(p.stat().st_mode)
    return out


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".motions-import-" in p.name)


def dm_bvh(path: Path, frames: int = 3, frame_time: str = "0.0333333") -> Path:
    """A BVH of DeepMimic's humanoid3d skeleton (its joint map retargets it), standing still; named as the
    caller likes, so its name matches no dataset."""
    kids: dict = {}
    for name, parent, off, _ in _JOINTS:
        kids.setdefault(parent, []).append((name, off, True))
    for name, parent, off in _ENDS:
        kids.setdefault(parent, []).append((name, off, False))
    lines = ["HIERARCHY"]

    def emit(name, off, joint, root=False):
        if not joint:
            lines.extend(["End Site", "{", f"OFFSET {off[0]} {off[1]} {off[2]}", "}"])
            return
        lines.extend([("ROOT " if root else "JOINT ") + name, "{", f"OFFSET {off[0]} {off[1]} {off[2]}",
                      "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" if root
                      else "CHANNELS 3 Zrotation Xrotation Yrotation"])
        for kid in kids.get(name, []):
            emit(*kid)
        lines.append("}")

    emit("root", (0, 0, 0), True, root=True)
    row = " ".join(["0 0.9 0 0 0 0"] + ["0 0 0"] * (len(_JOINTS) - 1))
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {frame_time}"] + [row] * frames
    path.write_text("\n".join(lines) + "\n")
    return path


def manifest(lib: Path) -> dict:
    return {e["id"]: e for e in json.loads((lib / "manifest.json").read_text())["clips"]}


# --- --out: only a library, an empty folder or nothing may be replaced ---------------------------------------

def test_out_folder_of_user_files_is_refused(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    (out / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before = snapshot(out)
    rc, _, err = motions(capsys, "import", tiny_deepmimic(tmp_path), "--out", out, "--quiet")
    assert "not a motion library" in refused(rc, err, out)
    assert snapshot(out) == before and leftovers(tmp_path) == []


def test_out_regular_file_is_refused(tmp_path, capsys):
    out = tmp_path / "f"
    out.write_text("precious")
    rc, _, err = motions(capsys, "import", tiny_deepmimic(tmp_path), "--out", out, "--quiet")
    assert "not a folder" in refused(rc, err, out)
    assert out.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "humanoid3d_tiny.txt"]


def test_out_below_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("precious")
    rc, _, err = motions(capsys, "import", tiny_deepmimic(tmp_path), "--out", tmp_path / "f" / "lib", "--quiet")
    refused(rc, err, tmp_path / "f")
    assert (tmp_path / "f").read_text() == "precious"


def test_reimport_keeps_user_files_cache_and_mode(tmp_path, capsys):
    """Re-importing rewrites the clips and the manifest; the notes, folders, links and the caption-embedding cache
    (which checks itself against the captions) stay, and so does the folder's mode."""
    from superpadl.text import CACHE_JSON, CACHE_NPZ

    lib = tmp_path / "lib"
    rc, _, err = motions(capsys, "import", tiny_deepmimic(tmp_path), "--out", lib, "--quiet")
    assert rc == 0, err
    (lib / "notes.txt").write_text("keep me")
    (lib / "sub").mkdir()
    (lib / "sub" / "x.txt").write_text("and me")
    (lib / "link").symlink_to("notes.txt")
    (lib / CACHE_JSON).write_text('{"model": "m"}')
    (lib / CACHE_NPZ).write_bytes(b"cache")
    lib.chmod(0o750)
    kept = {k: v for k, v in snapshot(lib).items() if k != "manifest.json" and not k.startswith("clips")}
    rc, _, err = motions(capsys, "import", tiny_deepmimic(tmp_path, name="humanoid3d_other.txt"), "--out", lib,
                         "--quiet")
    assert rc == 0, err
    after = snapshot(lib)
    assert {k: after[k] for k in kept} == kept  # mode 0o750 included
    assert set(manifest(lib)) == {"deepmimic_tiny", "deepmimic_other"}
    assert leftovers(tmp_path) == []


def test_new_library_takes_the_umask_mode_and_an_empty_folder_is_used(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        rc, _, err = motions(capsys, "import", tiny_deepmimic(tmp_path), "--out", tmp_path / "new", "--quiet")
    finally:
        os.umask(old)
    assert rc == 0, err
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o755  # not 0o700
    (tmp_path / "empty").mkdir(mode=0o775)
    (tmp_path / "empty").chmod(0o775)
    rc, _, err = motions(capsys, "import", tiny_deepmimic(tmp_path), "--out", tmp_path / "empty", "--quiet")
    assert rc == 0, err
    assert set(manifest(tmp_path / "empty")) == {"deepmimic_tiny"}
    assert stat.S_IMODE((tmp_path / "empty").stat().st_mode) == 0o775


def test_symlinked_out_updates_the_library_it_points_to(tmp_path, capsys):
    real = tmp_path / "real"
    assert motions(capsys, "import", tiny_deepmimic(tmp_path), "--out", real, "--quiet")[0] == 0
    (tmp_path / "link").symlink_to(real)
    other = tiny_deepmimic(tmp_path, name="humanoid3d_other.txt")
    assert motions(capsys, "import", other, "--out", tmp_path / "link", "--quiet")[0] == 0
    assert (tmp_path / "link").is_symlink() and set(manifest(real)) == {"deepmimic_tiny", "deepmimic_other"}


def test_failed_reimport_changes_nothing(tmp_path, capsys):
    lib = tmp_path / "lib"
    assert motions(capsys, "import", tiny_deepmimic(tmp_path), "--out", lib, "--quiet")[0] == 0
    (lib / "notes.txt").write_text("keep me")
    before = snapshot(lib)
    bad = tiny_deepmimic(tmp_path, [deepmimic_frame(1e9)] * 3, name="humanoid3d_bad.txt")
    rc, _, err = motions(capsys, "import", tiny_deepmimic(tmp_path, name="humanoid3d_ok.txt"), bad, "--out", lib,
                         "--quiet")
    refused(rc, err, bad)
    assert snapshot(lib) == before and leftovers(tmp_path) == []


# --- captions: any BVH imports; unknown labels fall back to words; none at all is listed -------------------------

def test_bvh_with_a_name_of_its_own_is_captioned_from_it(tmp_path, capsys):
    path = dm_bvh(tmp_path / "my_take.bvh")
    rc, out, err = motions(capsys, "import", path, "--out", tmp_path / "lib", "--quiet")
    assert rc == 0, err
    assert "uncaptioned" not in out
    assert any("my take" in c for c in manifest(tmp_path / "lib")["my_take"]["captions"])


def test_bandai_name_outside_the_phrase_table_falls_back_to_its_label_words(tmp_path, capsys):
    path = dm_bvh(tmp_path / "dataset-1_moonwalk_sleepy_001.bvh")
    rc, _, err = motions(capsys, "import", path, "--out", tmp_path / "lib", "--quiet")
    assert rc == 0, err
    assert manifest(tmp_path / "lib")["bandai_moonwalk_sleepy_001"]["captions"][1] == "moonwalk sleepy"
    known = clip_captions({"content": "walk", "style": "sleepy", "take": "001"}, "bvh", "x", None)
    assert known[1] == "walk forward sleepy"


def test_cmu_take_without_descriptions_is_uncaptioned(tmp_path):
    assert clip_captions({"cmu_clip_id": "02_01"}, "bvh", "02_01", None) == []
    tsv = tmp_path / "d.tsv"
    tsv.write_text("clip_id\tsubject\tsubject_description\tclip_description\n07_01\t7\twalk\twalk\n")
    assert clip_captions({"cmu_clip_id": "02_01"}, "bvh", "02_01", tsv) == []
    assert clip_captions({"cmu_clip_id": "07_01"}, "bvh", "07_01", tsv)[0] == "walk"


def test_clip_without_words_is_imported_and_listed_uncaptioned(tmp_path, capsys):
    lib = tmp_path / "lib"
    rc, out, err = motions(capsys, "import", dm_bvh(tmp_path / "0001.bvh"), "--out", lib, "--quiet")
    assert rc == 0, err
    assert manifest(lib)["0001"]["captions"] == [] and "1 uncaptioned" in out
    rc, out, err = motions(capsys, "info", lib, "--captions")
    assert rc == 0, err
    assert "1 uncaptioned" in out and "0001: (uncaptioned)" in out


def test_caption_option_sets_every_clips_captions(tmp_path, capsys):
    lib = tmp_path / "lib"
    rc, _, err = motions(capsys, "import", dm_bvh(tmp_path / "0001.bvh"), tiny_deepmimic(tmp_path), "--out", lib,
                         "--caption", "a person waves", "--caption", "wave", "--quiet")
    assert rc == 0, err
    assert [e["captions"] for e in manifest(lib).values()] == [["a person waves", "wave"]] * 2
    rc, _, err = motions(capsys, "import", tiny_deepmimic(tmp_path), "--out", tmp_path / "x", "--caption", " ",
                         "--quiet")
    refused(rc, err, "--caption")
    assert not (tmp_path / "x").exists()


def test_info_on_entries_without_qa_figures(tmp_path, capsys):
    lib = tmp_path / "lib"
    assert motions(capsys, "import", tiny_deepmimic(tmp_path), "--out", lib, "--quiet")[0] == 0
    m = json.loads((lib / "manifest.json").read_text())
    del m["clips"][0]["qa"]
    (lib / "manifest.json").write_text(json.dumps(m))
    rc, out, err = motions(capsys, "info", lib)
    assert rc == 0 and err == ""
    assert out.splitlines()[3].split()[:3] == ["deepmimic_tiny", "3", "-"]


def test_info_on_a_manifest_with_malformed_clips(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text('{"format": "padl-motion-library", "version": 1, "clips": [3]}')
    rc, _, err = motions(capsys, "info", tmp_path)
    refused(rc, err, tmp_path / "manifest.json")


# --- hostile headers --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames, fragment", [
    ("1000000000000", "'Frames:' says 1000000000000 but the file has 3 frame rows"),
    ("9" * 5000, "'Frames:' says 999999999999999999... but the file has 3"),
    ("\u00b2", "unparsable frame count"),
])
def test_bvh_frame_count_is_checked_against_the_rows(tmp_path, frames, fragment):
    expect_error(load_source, tiny_bvh(tmp_path, frames=frames), fragment)


@pytest.mark.parametrize("frame_time", ["1e9", "100", "2", "1e-12", "0.0009", "1e-320"])
def test_bvh_frame_time_outside_1ms_to_1s_is_refused(tmp_path, frame_time):
    expect_error(load_source, tiny_bvh(tmp_path, frame_time=frame_time), "outside 1-1000 fps",
                 "frame time 0.001-1 s")


def test_bvh_channel_count_must_be_a_small_ascii_number(tmp_path):
    from test_importers import TINY_BVH_HEADER

    for count in ("\u00b3", "9" * 5000):
        path = tiny_bvh(tmp_path)
        path.write_text(path.read_text().replace("CHANNELS 3 Zrotation Yrotation Xrotation",
                                                 f"CHANNELS {count} Zrotation Yrotation Xrotation", 1))
        assert path.read_text() != TINY_BVH_HEADER
        expect_error(load_source, path, "unparsable channel count")


def test_take_longer_than_ten_minutes_is_refused_but_a_span_of_it_is_not(tmp_path, capsys):
    path = dm_bvh(tmp_path / "long.bvh", frames=602, frame_time="1")
    rc, _, err = motions(capsys, "import", path, "--out", tmp_path / "lib", "--quiet")
    assert "601 s; the longest accepted is 600 s" in refused(rc, err, path)
    rc, _, err = motions(capsys, "import", f"{path}@0:2", "--out", tmp_path / "lib", "--quiet")
    assert rc == 0, err
    rc, _, err = motions(capsys, "import", f"{path}@0:inf", "--out", tmp_path / "lib", "--quiet")
    refused(rc, err, "0:inf")


@pytest.mark.parametrize("dt", [1e9, 2.0, 1e-9])
def test_deepmimic_dt_outside_range_is_refused(tmp_path, dt):
    path = tiny_deepmimic(tmp_path, [deepmimic_frame(dt)] * 3)
    expect_error(load_source, path, "outside 1-1000 fps")


@pytest.mark.parametrize("rate", [1e-9, 0.5, 1e9, np.nan])
def test_amass_rate_outside_range_is_refused(tmp_path, rate):
    path = tiny_amass(tmp_path, mocap_framerate=np.array(rate))
    msg = expect_error(load_source, path, "frame rate")
    assert msg.count(str(path)) == 1


def test_amass_errors_name_the_path_once(tmp_path):
    msg = expect_error(load_source, tiny_amass(tmp_path, poses=None), "missing key 'poses'")
    assert msg.count(str(tmp_path)) == 1


def npz_with_lying_header(path: Path, shape=(10**9, 156)) -> Path:
    """An AMASS .npz whose 'poses' header declares shape but carries one row."""
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    arrays = {"trans": np.zeros((shape[0], 3))[:1], "mocap_framerate": np.array(120.0)}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("poses.npy", header.getvalue() + np.zeros(156).tobytes())
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.save(buf, v)
            zf.writestr(f"{k}.npy", buf.getvalue())
    return path


def test_amass_member_declaring_more_than_it_holds_is_refused(tmp_path):
    expect_error(load_source, npz_with_lying_header(tmp_path / "lie.npz"), "'poses' declares shape (1000000000, 156)")


# --- hostile pickles: arrays bounded by the file's own bytes before numpy builds them ---------------------------

class _Reduce:
    def __init__(self, *reduced):
        self.reduced = reduced

    def __reduce__(self):
        return self.reduced


def pickled_npy(path: Path, obj) -> Path:
    """A poselib-style object .npy carrying obj's pickle as its payload."""
    with open(path, "wb") as f:
        npy_format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        f.write(pickle.dumps(obj, protocol=3))
    return path


def hostile_pickles(tmp_path: Path) -> dict[str, Path]:
    chunk = bytes(1 << 20)  # one MiB, pickled once, referenced 300 times through the memo
    repeated = [_Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (len(chunk),), np.dtype("u1"), False, chunk))
                for _ in range(300)]
    return {
        "huge_reconstruct": pickled_npy(tmp_path / "huge_reconstruct.npy",
                                        {"rotation": {"arr": _Reduce(_reconstruct, (np.ndarray, (10**12,), b"b"))}}),
        "huge_ndarray": pickled_npy(tmp_path / "huge_ndarray.npy", {"x": _Reduce(np.ndarray, ((10**6, 10**6), "f8"))}),
        "memo_reuse": pickled_npy(tmp_path / "memo_reuse.npy", {"rotation": {"arr": repeated}}),
    }


@pytest.mark.parametrize("case", ["huge_reconstruct", "huge_ndarray", "memo_reuse"])
def test_pickle_declaring_more_array_bytes_than_the_file_is_refused(tmp_path, case):
    path = hostile_pickles(tmp_path)[case]
    assert path.stat().st_size < (2 << 20)
    expect_error(load_source, path, "declare more bytes than the file holds")


DRIVER = r"""
import resource, sys
import motions.cli, motions.importer  # everything an import loads, before the limit
from motions.detect import load_source
from motions.source import MotionImportError

def vm_bytes():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))

limit = vm_bytes() + 192 * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
for path in sys.argv[2:]:
    try:
        src = load_source(path)
        print("ACCEPTED", path, src.num_frames)
    except MotionImportError as e:
        print("REFUSED", e)
    except MemoryError:
        print("MEMORYERROR", path)
sys.exit(motions.cli.main(["import", sys.argv[2], "--out", sys.argv[1], "--quiet"]))
"""


def test_import_memory_is_bounded_by_the_input_size(tmp_path):
    """Under an address-space limit 192 MiB above an idle importer, crafted headers and pickles that declare
    gigabytes are refused by their checks (not by a MemoryError), while a real small take still loads."""
    hostile = [tiny_bvh(tmp_path, frames="1000000000000"), npz_with_lying_header(tmp_path / "lie.npz"),
               *hostile_pickles(tmp_path).values()]
    good = tiny_deepmimic(tmp_path)
    r = subprocess.run([sys.executable, "-c", DRIVER, tmp_path / "lib", *hostile, good], capture_output=True,
                       text=True, cwd=REPO, timeout=300)
    lines = r.stdout.splitlines()
    assert len(lines) == len(hostile) + 1, r.stdout + r.stderr
    for path, line in zip(hostile, lines):
        assert line.startswith(f"REFUSED {path}: "), line
    assert lines[-1].startswith(f"ACCEPTED {good}"), lines[-1]
    assert r.returncode == 1 and "Traceback" not in r.stderr
    refused(r.returncode, r.stderr, hostile[0])
    assert not (tmp_path / "lib").exists()


# --- interrupts: the previous library stays, temporaries go ----------------------------------------------------

def start_import(tmp_path: Path, lib: Path) -> subprocess.Popen:
    """A `motions import` of a 100 s take (seconds of retargeting), returned once its temporary library exists."""
    src = tmp_path / "long.bvh"
    if not src.exists():
        dm_bvh(src, frames=3000)
    p = subprocess.Popen([sys.executable, "-m", "motions.cli", "import", src, "--out", lib, "--quiet"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not leftovers(lib.parent):
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return p


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_import_keeps_the_previous_library(tmp_path, capsys, sig):
    lib = tmp_path / "lib"
    assert motions(capsys, "import", tiny_deepmimic(tmp_path), "--out", lib, "--quiet")[0] == 0
    (lib / "notes.txt").write_text("keep me")
    before = snapshot(lib)
    p = start_import(tmp_path, lib)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == (-sig if sig == signal.SIGKILL else 128 + sig)
    if sig != signal.SIGKILL:
        assert refused(p.returncode, err) == f"motions: interrupted ({sig.name})"
        assert leftovers(tmp_path) == []
    assert snapshot(lib) == before
    # the next import sweeps what a killed one left, and keeps the notes
    assert motions(capsys, "import", tiny_deepmimic(tmp_path, name="humanoid3d_other.txt"), "--out", lib,
                   "--quiet")[0] == 0
    assert leftovers(tmp_path) == [] and (lib / "notes.txt").read_text() == "keep me"


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_kill_between_the_two_renames_of_a_commit_is_undone(tmp_path, capsys):
    """SIGKILL after the previous library was moved aside and before the new one moved in: the next import puts
    the previous library back before it starts, and removes the half-committed one."""
    lib = tmp_path / "lib"
    assert motions(capsys, "import", tiny_deepmimic(tmp_path), "--out", lib, "--quiet")[0] == 0
    before = snapshot(lib)
    tmp = tmp_path / f".lib.motions-import-{dead_pid()}-0123abcd"
    tmp.mkdir()
    (tmp / "manifest.json").write_text("{}")
    lib.rename(tmp.with_name(tmp.name + ".old"))
    rc, _, err = motions(capsys, "import", tiny_deepmimic(tmp_path), "bad-missing.txt", "--out", lib, "--quiet")
    refused(rc, err, "bad-missing.txt")  # the import is refused, and its start swept the killed one's folders
    assert snapshot(lib) == before and leftovers(tmp_path) == []
