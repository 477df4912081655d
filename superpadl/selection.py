"""Choosing a distillation run's policy among its candidates by real use measured longer than training can afford.

A run keeps the evaluation with the best `superpadl.evaluate.kept_score`, whose real use is a few simulated minutes:
a few dozen commands, where falls come in the tens per hour. The best few evaluations are kept as candidates
(`padl.run.CANDIDATES`); this runs each through the chains of `superpadl.endurance` on seeds of its own (from
SELECT_SEED, so a benchmark's seeds 0.. stay unseen by the choice) and keeps the one that serves the most commands,
then falls least.
"""
from __future__ import annotations

from pathlib import Path

from padl import checkpoint
from padl.run import CANDIDATES, POLICY, candidates
from superpadl import endurance as E

SELECT_SEED = 1000
SELECTION = "selection.json"


def measure(folder: str | Path, library, minutes: float, seeds: int, encoder=None) -> list[dict]:
    """Each candidate of the run in `folder`: its iteration, the evaluation training recorded, and its real use
    (`endurance.summarize`) over `seeds` chains of `minutes` from SELECT_SEED."""
    from superpadl.policies import GlobalPolicy
    from superpadl.runtime import PolicyController

    directions, gestures = E.command_checks(library)
    rows = []
    for path in candidates(Path(folder) / CANDIDATES):
        policy = GlobalPolicy.load(path.with_suffix(""))
        use = E.run(PolicyController(policy, encoder=encoder), minutes, seeds, directions, gestures,
                    first_seed=SELECT_SEED)
        rows.append({"candidate": path.stem, "iteration": int(path.stem), "eval": policy.meta.get("eval", {}),
                     "served_share": use["served_share"], "falls_per_hour": use["falls_per_hour"],
                     "commands": use["commands"]})
    return rows


def best(rows: list[dict]) -> dict:
    """The candidate serving the most commands, then falling least."""
    return max(rows, key=lambda r: (r["served_share"], -r["falls_per_hour"]))


def select(folder: str | Path, library, minutes: float, seeds: int, encoder=None, log=print) -> dict | None:
    """Measure the run's candidates and make the best the run's policy (its sidecar records the choice); the
    measurements go to `folder/SELECTION`. None when the run kept no candidates."""
    folder = Path(folder)
    rows = measure(folder, library, minutes, seeds, encoder)
    if not rows:
        return None
    from superpadl.policies import GlobalPolicy

    chosen = best(rows)
    policy = GlobalPolicy.load(folder / CANDIDATES / chosen["candidate"])
    selection = {"minutes": minutes, "seeds": seeds, "first_seed": SELECT_SEED, "chosen": chosen["candidate"],
                 "candidates": rows}
    checkpoint.save(folder / POLICY, policy.tree, {**policy.meta, "selection": selection})
    checkpoint.write_json_atomic(folder / SELECTION, selection)
    for r in rows:
        log(f"candidate {r['iteration']}: served {r['served_share']:.0%}, {r['falls_per_hour']:.0f} falls per hour"
            + ("  <- kept" if r is chosen else ""))
    return chosen
