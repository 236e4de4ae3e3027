"""Baseline of bench_sim.py, run by .venv-sim's python: robosuite's own replay loop.

Loads the demo's stored model the same way as the replay worker (same env, MSAA off, sites
shrunk, reflections on), then times the plain simulator loop over the same states: set state,
forward, and per camera one RGB + depth render and one segmentation render. Prints one JSON line
{"load_s": ..., "loop_s": ..., "frames": ...}.
Run: .venv-sim/bin/python bench/sim_render_loop.py FILE DEMO HEIGHT WIDTH STRIDE STOP CAM [CAM...]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.stdout, _out = sys.stderr, sys.stdout  # robosuite prints on import

from appf.simreplay.robosuite_replay import load_stored_model, make_env, read_demo  # noqa: E402


def main() -> None:
    path, demo_name, h, w, stride, stop, *cams = sys.argv[1:]
    h, w, stride, stop = int(h), int(w), int(stride), int(stop)
    demo = read_demo(path, demo_name)
    env = make_env(demo, cams, h, w)
    t0 = time.perf_counter()
    load_stored_model(env, demo, cams, reflections=True)
    t1 = time.perf_counter()
    frames = range(0, min(stop, len(demo.states)), stride)
    sim = env.sim
    for t in frames:
        sim.set_state_from_flattened(demo.states[t])
        sim.forward()
        for cam in cams:
            sim.render(camera_name=cam, width=w, height=h, depth=True)
            sim.render(camera_name=cam, width=w, height=h, segmentation=True)
    t2 = time.perf_counter()
    _out.write(json.dumps({"load_s": t1 - t0, "loop_s": t2 - t1, "frames": len(frames)}) + "\n")


if __name__ == "__main__":
    main()
