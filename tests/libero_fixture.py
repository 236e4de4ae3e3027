"""Writes a demo file in LIBERO's exact on-disk layout (LIBERO scripts/create_dataset.py: data/
attrs env_name, problem_info, macros_image_convention, bddl_file_name, bddl_file_content,
env_args; demo_0 with actions, states, obs/agentview_rgb, attrs model_file, init_state,
num_samples) from libero_spatial task 0 and its first bundled init state, driven by a scripted
reach-and-close. Runs in .venv-sim (LIBERO demos themselves are a download; this scene is not).

The stored paths are those of another machine, as in the released files: asset paths under
/home/collector/..., the BDDL under /home/collector/LIBERO/... Images are stored as LIBERO
stores them (robosuite's "opengl" row order), rendered at states[t] (before actions[t]).

Run: .venv-sim/bin/python tests/libero_fixture.py OUT.hdf5 STEPS SIZE
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ.setdefault("LIBERO_CONFIG_PATH", tempfile.mkdtemp())

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import robosuite  # noqa: E402
from libero.libero import benchmark, get_libero_path  # noqa: E402
from libero.libero.envs import OffScreenRenderEnv  # noqa: E402
from libero.libero.envs.bddl_utils import get_problem_info  # noqa: E402

COLLECTOR_ROBOSUITE = "/home/collector/robosuite/robosuite"
COLLECTOR_ASSETS = "/home/collector/LIBERO/libero/libero/assets"


def scripted_action(t: int) -> np.ndarray:
    """Down and forward for 8 steps, then close the gripper (-1 open, +1 close)."""
    a = np.zeros(7)
    a[:3] = (0.3, 0.0, -0.6) if t < 8 else (0.0, 0.0, 0.0)
    a[6] = -1.0 if t < 8 else 1.0
    return a


def collector_paths(xml: str) -> str:
    here_rs = os.path.dirname(robosuite.__file__)
    return xml.replace(get_libero_path("assets"), COLLECTOR_ASSETS).replace(here_rs, COLLECTOR_ROBOSUITE)


def main() -> None:
    out, steps, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    suite = benchmark.get_benchmark_dict()["libero_spatial"]()
    task = suite.get_task(0)
    bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
    env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=size, camera_widths=size)
    env.reset()
    env.set_init_state(suite.get_task_init_states(0)[0])
    states, actions, images = [], [], []
    for t in range(steps):
        states.append(env.sim.get_state().flatten())
        images.append(env.env._get_observations(force_update=True)["agentview_image"])
        actions.append(scripted_action(t))
        env.step(actions[-1])
    xml = collector_paths(env.sim.model.get_xml())
    info = get_problem_info(bddl)
    fake_bddl = f"/home/collector/LIBERO/libero/libero/bddl_files/{task.problem_folder}/{task.bddl_file}"
    env_kwargs = {"robots": ["Panda"], "controller_configs": robosuite.load_controller_config(
        default_controller="OSC_POSE"), "bddl_file_name": fake_bddl, "has_renderer": True,
        "has_offscreen_renderer": False, "ignore_done": True, "use_camera_obs": False,
        "camera_depths": False, "camera_names": ["robot0_eye_in_hand", "agentview"],
        "reward_shaping": True, "control_freq": 20, "camera_heights": 128, "camera_widths": 128,
        "camera_segmentations": None}
    with h5py.File(out, "w") as f:
        g = f.create_group("data")
        g.attrs["env_name"] = info["problem_name"]
        g.attrs["problem_info"] = json.dumps(info)
        g.attrs["macros_image_convention"] = "opengl"
        g.attrs["bddl_file_name"] = fake_bddl
        g.attrs["bddl_file_content"] = open(bddl).read()
        g.attrs["env_args"] = json.dumps({"type": 1, "env_name": info["problem_name"],
                                          "problem_name": info["problem_name"],
                                          "bddl_file": fake_bddl, "env_kwargs": env_kwargs})
        d = g.create_group("demo_0")
        d.create_dataset("states", data=np.stack(states))
        d.create_dataset("actions", data=np.stack(actions))
        d.create_dataset("obs/agentview_rgb", data=np.stack(images))
        d.attrs["model_file"] = xml
        d.attrs["init_state"] = states[0]
        d.attrs["num_samples"] = steps
        g.attrs["num_demos"] = 1
        g.attrs["total"] = steps
    env.close()


if __name__ == "__main__":
    main()
