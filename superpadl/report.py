"""The report of a training run (`RUN/report.{json,md}`) and the model card of its export (`RUN/model/README.md`):
per stage its evaluation table (per clip or group, and the mean), the clips left out and why, and the compute spent
per stage (wall clock, samples)."""
from __future__ import annotations

import json
from pathlib import Path

from padl import checkpoint

STAGES = ("import", "experts", "handover", "groups", "stop", "global", "eval", "export")


def progress_of(run_dir: Path) -> tuple[int, int]:
    """(iteration, samples) of a trainer's last checkpoint in `run_dir` ((0, 0) before its first)."""
    try:
        config = checkpoint.sidecar_config(Path(run_dir) / "train_state")
        return int(config.get("iteration", 0)), int(config.get("samples", 0))
    except (OSError, ValueError):
        return 0, 0


def kept_eval(run_dir: Path) -> dict:
    """The evaluation recorded with the policy a trainer kept in `run_dir` ({} when none)."""
    try:
        return checkpoint.sidecar_config(Path(run_dir) / "policy").get("eval") or {}
    except (OSError, ValueError):
        return {}


COLUMNS = (("success", "success", "{:.0%}"), ("g_mpjpe_mm", "G-MPJPE mm", "{:.1f}"),
           ("transition_success", "transitions", "{:.0%}"), ("retrieval_top1", "retrieval", "{:.0%}"),
           ("precision_auc", "precision", "{:.2f}"), ("recall_auc", "recall", "{:.2f}"))


def stage_samples(out: Path, name: str, data: dict) -> int:
    """Environment samples a stage has simulated so far, from its trainers' checkpoints."""
    if name == "experts":
        return sum(progress_of(Path(a["dir"]))[1] for e in data.get("experts", {}).values() for a in e["attempts"])
    if name == "handover":
        return sum(progress_of(Path(j["dir"]))[1] for r in data.get("handover", []) for j in r["experts"].values())
    if name in ("groups", "stop"):
        try:
            spec = json.loads((out / name / "groups.json").read_text())
        except (OSError, ValueError):
            return 0
        return sum(progress_of(out / name / g["name"])[1] for g in spec.get("groups", []))
    if name == "global":
        return progress_of(out / "global")[1]
    return 0


def _row(ev: dict) -> dict:
    return {k: float(ev[k]) for k, *_ in COLUMNS if isinstance(ev.get(k), (int, float))}


def build(out: Path) -> dict:
    out = Path(out)
    data = json.loads((out / "status.json").read_text())
    experts = {name: {"clips": e["clips"], "state": e["state"], "attempts": len(e["attempts"]),
                      **_row(e.get("eval") or {})} for name, e in data.get("experts", {}).items()}
    groups = {}
    if (out / "groups" / "groups.json").is_file():
        for g in json.loads((out / "groups" / "groups.json").read_text())["groups"]:
            groups[g["name"]] = {"clips": g["clips"], **_row(kept_eval(out / "groups" / g["name"]))}
    global_eval = {}
    if (out / "eval" / "global.json").is_file():
        result = json.loads((out / "eval" / "global.json").read_text())
        global_eval = {"clips": {c: _row(m) for c, m in result["clips"].items()}, "mean": _row(result["mean"])}
        if "transitions" in result:
            global_eval["transition_pairs"] = len(result["transitions"].get("pairs", []))
        if "endurance" in result:
            global_eval["endurance"] = result["endurance"]
    compute = {s: {"state": data["stages"][s]["state"], "wall_s": data["stages"][s]["wall_s"],
                   "samples": stage_samples(out, s, data)} for s in STAGES if s in data["stages"]}
    return {"name": data.get("name"), "clips": data.get("clips", []), "left_out": data.get("left_out", {}),
            "experts": experts, "groups": groups, "global": global_eval, "compute": compute}


def _table(title: str, rows: dict, mean: dict | None = None) -> list[str]:
    cols = [c for c in COLUMNS if any(c[0] in r for r in list(rows.values()) + [mean or {}])]
    lines = [f"### {title}", "", "| | " + " | ".join(h for _, h, _ in cols) + " |",
             "|---|" + "---|" * len(cols)]
    fmt = lambda r: " | ".join(f.format(r[k]) if k in r else "-" for k, _, f in cols)
    for name, r in rows.items():
        lines.append(f"| {name} | {fmt(r)} |")
    if mean:
        lines.append(f"| **mean** | {fmt(mean)} |")
    return lines + [""]


def _mean(rows: dict) -> dict:
    keys = {k for r in rows.values() for k in r if k in dict((c, 0) for c, *_ in COLUMNS)}
    return {k: sum(r[k] for r in rows.values() if k in r) / sum(1 for r in rows.values() if k in r) for k in keys}


def _clock(seconds: float) -> str:
    m = seconds / 60
    return f"{m:.1f} min" if m < 120 else f"{m / 60:.1f} h"


def evaluation_md(rep: dict) -> list[str]:
    lines = []
    if rep["global"]:
        title = "Global policy (`superpadl eval`, per clip)"
        if "transition_pairs" in rep["global"]:
            title += f"; transitions over {rep['global']['transition_pairs']} random pairs"
        lines += _table(title, rep["global"]["clips"], rep["global"]["mean"])
        if "endurance" in rep["global"]:  # clip starts do not show what a user meets: real use, beside them
            from superpadl.endurance import report as endurance_table

            lines += ["### Real use (`superpadl.endurance`: random captions held 2-20 s, chained from the start pose)",
                      "", "```", endurance_table({"global policy": rep["global"]["endurance"]}), "```", ""]
    if rep["groups"]:
        rows = {f"{n} ({len(g['clips'])} clips)": {k: v for k, v in g.items() if k != "clips"}
                for n, g in rep["groups"].items()}
        lines += _table("Group controllers (their kept evaluation)", rows, _mean(rows))
    if rep["experts"]:
        rows = {f"{n} ({e['state']}, {e['attempts']} attempts)" if e["state"] != "reused" else f"{n} (reused)":
                {k: v for k, v in e.items() if k not in ("clips", "state", "attempts")} for n, e in rep["experts"].items()}
        lines += _table("Experts (their kept evaluation)", rows, _mean(rows))
    return lines


def compute_md(rep: dict) -> list[str]:
    lines = ["| stage | state | wall clock | samples |", "|---|---|---|---|"]
    for s, c in rep["compute"].items():
        lines.append(f"| {s} | {c['state']} | {_clock(c['wall_s'])} | {c['samples']:,} |")
    total = sum(c["wall_s"] for c in rep["compute"].values())
    return lines + [f"| **total** | | **{_clock(total)}** | {sum(c['samples'] for c in rep['compute'].values()):,} |", ""]


def markdown(rep: dict) -> str:
    lines = [f"# Training report: {rep['name']}", "", f"{len(rep['clips'])} clips imported; "
             f"{len(rep['clips']) - len(rep['left_out'])} trained through every stage.", "", "## Evaluation", ""]
    lines += evaluation_md(rep)
    lines += ["## Clips left out", ""]
    lines += [f"- {c}: {why}" for c, why in rep["left_out"].items()] or ["none"]
    lines += ["", "## Compute (this machine)", ""] + compute_md(rep)
    return "\n".join(lines) + "\n"


def licences(library: Path) -> dict[str, list[str]]:
    """{licence: clip ids} from a library's manifest."""
    from motions.clip import read_manifest

    out: dict[str, list[str]] = {}
    for e in read_manifest(library)["clips"]:
        out.setdefault(e.get("licence") or "unknown", []).append(e["id"])
    return out


def model_card(rep: dict, recipe_text: str, library: Path) -> str:
    kept = [c for c in rep["clips"] if c not in rep["left_out"]]
    lines = [f"# Model card: {rep['name']}", "",
             "A SuperPADL global text-conditioned policy (`policy.npz` + `policy.json`), trained by "
             "`superpadl train` from the recipe below; `superpadl render --policy DIR` and `superpadl view --policy DIR` "
             "drive it. It needs no motion library at run time.", "",
             f"## Clips ({len(kept)})", "", ", ".join(kept) or "none", "", "## Motion sources and licences", "",
             "The clips were imported from the files in `sources.txt`. Treat the policy as a derivative of this "
             "data and respect the most restrictive of these licences:", ""]
    for licence, clips in licences(library).items():
        lines.append(f"- **{licence}**: {', '.join(c for c in clips if c in kept) or '(none kept)'}")
    lines += ["", "## Evaluation", ""] + evaluation_md(rep)
    if rep["left_out"]:
        lines += ["Clips left out: " + "; ".join(f"{c} ({why})" for c, why in rep["left_out"].items()), ""]
    lines += ["## How it was trained", "", "```toml", recipe_text.rstrip(), "```", "", "Compute per stage:", ""]
    lines += compute_md(rep)
    return "\n".join(lines) + "\n"
