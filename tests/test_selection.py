"""Choosing a run's policy among its candidates by real use (`superpadl.selection`)."""
import json

import jax
import numpy as np

from padl import checkpoint
from padl.run import CANDIDATES
from superpadl import selection
from superpadl.policies import GlobalPolicy
from superpadl.runtime import DEFAULT_MODEL
from synthetic import write_synthetic_library


def test_the_candidate_that_falls_least_in_use_becomes_the_policy(tmp_path):
    """Two candidates, the shipped policy and the same network with noise on every weight (its actions flail):
    whichever training ranked higher, the selection measures both from the start pose and keeps the shipped one,
    whose arrays and choice the run's policy then carries."""
    from motions.library import MotionLibrary

    shipped = GlobalPolicy.load(DEFAULT_MODEL)
    rng = np.random.default_rng(0)
    flailing = jax.tree.map(lambda x: np.asarray(x) + rng.normal(0.0, 0.5, np.shape(x)).astype(np.float32),
                            shipped.tree["policy_params"])
    run = tmp_path / "run"
    for stem, params, score in (("000020", shipped.tree["policy_params"], 0.5), ("000040", flailing, 0.9)):
        checkpoint.save(run / CANDIDATES / stem, {**shipped.tree, "policy_params": params},
                        {**shipped.meta, "eval": {"success": score, "g_mpjpe_mm": 50.0}})
    library = MotionLibrary(write_synthetic_library(tmp_path / "lib"))
    chosen = selection.select(run, library, minutes=0.25, seeds=1, log=lambda m: None)
    assert chosen["candidate"] == "000020"
    rows = {r["candidate"]: r for r in json.loads((run / selection.SELECTION).read_text())["candidates"]}
    assert rows["000040"]["falls_per_hour"] > rows["000020"]["falls_per_hour"]
    kept = GlobalPolicy.load(run)
    assert kept.meta["selection"]["chosen"] == "000020"
    for a, b in zip(jax.tree.leaves(kept.tree["policy_params"]), jax.tree.leaves(shipped.tree["policy_params"])):
        np.testing.assert_array_equal(a, b)
    assert selection.select(tmp_path / "none", library, 0.25, 1) is None  # a run that kept no candidates
