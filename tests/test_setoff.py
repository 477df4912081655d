"""Set-off clips (`motions.setoff`): a standing pose blended into a locomotion cycle."""
from __future__ import annotations

import json

import numpy as np
import pytest

from characters.character import Character
from motions import kinematics as K
from motions.clip import LibraryError
from motions.library import MotionLibrary
from motions.setoff import BLEND_S, REST_S, add_set_offs, blend_set_off, cycle_of, loop_cycle
from synthetic import CAPTIONS, write_synthetic_library

FPS = 30.0


def _cycle() -> np.ndarray:
    """A 1-s loop of swinging knees whose root goes forward (+x) at 0.9 m/s."""
    c = Character()
    qpos = np.tile(c.rest_qpos(), (31, 1))
    knee = 7 + c.joint_names.index("left_knee")
    qpos[:, knee] = 0.3 * (1 - np.cos(2 * np.pi * np.arange(31) / 30))
    qpos[:, 0] = 1.0 + 0.03 * np.arange(31)
    return qpos


def test_a_set_off_stands_still_then_eases_into_the_cycle():
    cycle, rest = _cycle(), Character().rest_qpos()
    rest[:2] = (3.0, 4.0)  # elsewhere, facing +y: put where the cycle begins and turned to its heading
    rest[3:7] = np.asarray(K.axis_angle_to_quat(np.array([0.0, 0.0, 1.0]), np.array(np.pi / 2)))
    q = blend_set_off(rest, cycle, FPS)
    assert len(q) == round((REST_S + BLEND_S + 3.0) * FPS) + 1
    still = q[:round(REST_S * FPS) + 1]
    np.testing.assert_allclose(still[:, 7:], np.broadcast_to(rest[7:], still[:, 7:].shape), atol=1e-6)
    np.testing.assert_allclose(still[:, :2], np.broadcast_to(cycle[0, :2], still[:, :2].shape), atol=1e-6)
    np.testing.assert_allclose(np.asarray(K.heading_yaw(still[:, 3:7].astype(np.float32))), 0.0, atol=1e-5)
    after = round((REST_S + BLEND_S) * FPS)
    t = np.arange(after, len(q)) / FPS  # after the blend the cycle at its own pace, half the blend behind
    np.testing.assert_allclose(q[after:, 7:], loop_cycle(cycle, FPS, t - REST_S - BLEND_S / 2)[:, 7:], atol=1e-4)
    speed = np.diff(q[:, 0]) * FPS
    np.testing.assert_allclose(speed[after:], 0.9, atol=1e-4)  # the cycle's pace, once blended in
    assert np.all(np.diff(speed) >= -1e-4) and speed[round(REST_S * FPS) + 3] < 0.1  # rising from standing


def test_add_set_offs_writes_a_clip_with_the_cycles_captions_and_refuses_bad_clips(tmp_path):
    lib = write_synthetic_library(tmp_path / "lib", kinds=("sway", "balance"))
    before = (lib / "manifest.json").read_text()
    with pytest.raises(LibraryError, match="no clip 'synthetic_walk'"):
        add_set_offs(lib, ["synthetic_walk"], "synthetic_balance")
    with pytest.raises(LibraryError, match="'synthetic_balance' does not loop"):
        add_set_offs(lib, ["synthetic_balance"], "synthetic_balance")
    assert (lib / "manifest.json").read_text() == before  # nothing written
    assert add_set_offs(lib, ["synthetic_sway"], "synthetic_balance") == ["synthetic_sway_setoff"]
    entry = {e["id"]: e for e in json.loads((lib / "manifest.json").read_text())["clips"]}["synthetic_sway_setoff"]
    assert entry["captions"] == [CAPTIONS["sway"]] and entry["loop"] is False
    assert entry["labels"]["set_off"] == {"cycle": "synthetic_sway", "rest": "synthetic_balance", "rest_s": REST_S,
                                          "blend_s": BLEND_S}
    library = MotionLibrary(lib, include_flagged=True)
    assert library.clip_ids == ["synthetic_balance", "synthetic_sway", "synthetic_sway_setoff"]
    assert cycle_of("synthetic_sway_setoff", library.clip_ids) == "synthetic_sway"
    assert cycle_of("synthetic_sway_setoff", ["synthetic_balance"]) is None
    assert cycle_of("synthetic_sway", library.clip_ids) is None
