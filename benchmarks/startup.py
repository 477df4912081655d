"""How long until the user sees something: `superpadl render --prompt ...` to its first frame, and `superpadl view`
to a window that takes a command, then to the character performing it. Cold and warm.

    python benchmarks/startup.py [--runs 2]

Each measurement is a fresh process (this script run with --child), timed from just before it starts; the child
reports the moment of each event (`time.time()`) on stdout:
- render: first frame = the first frame handed to the video writer (policy loaded, prompt embedded, first control
  step, first render);
- view (on $DISPLAY, else on an Xvfb started here): window = the first frame drawn, when the window already takes
  typing; performing = the first frame with the --command playing (it waits for the text model, which loads in
  the background from when the window opens).
Cold: a new, empty $XDG_CACHE_HOME (no JAX compilation cache, prompt cache or Mesa shader cache); warm: the same
folder again, after that run; warm, new prompt: compilation warm, but a prompt never embedded (the text model
must load). The before, from issue 32 on this CPU: 11-22 s to the first frame.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPT, NEW_PROMPT = "take a bow for 1s", "wave goodbye for 1s"


def child(kind: str, prompt: str, out: Path) -> None:
    """Run the CLI in this process with hooks that print 'EVENT name time' lines."""
    sys.path.insert(0, str(REPO))
    import superpadl.cli as cli

    def event(name: str) -> None:
        print(f"EVENT {name} {time.time():.6f}", flush=True)

    if kind == "render":
        from rendering import offscreen

        append = offscreen.VideoWriter.append

        def first_append(self, frame):
            if not getattr(self, "_seen", False):
                self._seen = True
                event("first_frame")
            append(self, frame)

        offscreen.VideoWriter.append = first_append
        sys.exit(cli.main(["render", "--prompt", prompt, "-o", str(out), "--quiet"]))

    from viewer import interactive

    tick = interactive.Viewer.tick

    def hooked_tick(self, dt):
        tick(self, dt)
        if self.frames == 1:
            event("window")
        if self.loop.current_text is not None:
            event("performing")
            self.close_request()

    interactive.Viewer.tick = hooked_tick
    sys.exit(cli.main(["view", "--command", prompt.split(" for ")[0], "--frames", "100000"]))


def measure(kind: str, prompt: str, env: dict, out: Path) -> dict[str, float]:
    t0 = time.time()
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--prompt", prompt, "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    events = {}
    for line in proc.stdout.splitlines():
        if line.startswith("EVENT "):
            _, name, t = line.split()
            events[name] = float(t) - t0
    events["exit"] = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return events


def xvfb() -> tuple[subprocess.Popen | None, str | None]:
    if os.environ.get("DISPLAY"):
        return None, os.environ["DISPLAY"]
    if shutil.which("Xvfb") is None:
        return None, None
    n = next(n for n in range(90, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists())
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if Path(f"/tmp/.X11-unix/X{n}").exists():
            return proc, f":{n}"
        time.sleep(0.05)
    proc.kill()
    return None, None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", choices=("render", "view"), help=argparse.SUPPRESS)
    p.add_argument("--prompt", default=PROMPT, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--warm-runs", type=int, default=2, help="warm runs per command; the table shows the fastest")
    args = p.parse_args()
    if args.child:
        child(args.child, args.prompt, args.out)
        return

    server, display = xvfb()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "cache"
            env = {k: v for k, v in os.environ.items()
                   if k not in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "MUJOCO_GL")}
            env["XDG_CACHE_HOME"] = str(cache)
            out = Path(tmp) / "out.mp4"
            kinds = ["render"] + (["view"] if display else [])
            for kind in kinds:
                shutil.rmtree(cache, ignore_errors=True)
                run_env = {**env, **({"DISPLAY": display} if kind == "view" else {})}
                cold = measure(kind, PROMPT, run_env, out)
                warm = [measure(kind, PROMPT, run_env, out) for _ in range(args.warm_runs)]
                new = measure(kind, NEW_PROMPT, run_env, out)
                for label, r in [("cold", cold), ("warm", min(warm, key=lambda r: r["exit"])),
                                 ("warm, new prompt", new)]:
                    if kind == "render":
                        rows.append((f"superpadl render --prompt '{PROMPT if 'new' not in label else NEW_PROMPT}'",
                                     label, f"first frame {r['first_frame']:5.1f} s", f"process {r['exit']:5.1f} s"))
                    else:
                        rows.append(("superpadl view --command ...", label,
                                     f"window takes commands {r['window']:5.1f} s",
                                     f"performing it {r['performing']:5.1f} s"))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"startup on {os.cpu_count()} CPUs (before, issue 32: 11-22 s to the first frame)")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if not display:
        print("(view not measured: no $DISPLAY and no Xvfb)")


if __name__ == "__main__":
    main()
