"""Replay of one robosuite / robomimic demonstration in robosuite 1.4 (runs in .venv-sim only).

Recipe and pitfalls: shared/reference/sim-replay.md §2-§5. The environment is rebuilt from the
file's own attributes (`env` + `env_info`, or robomimic's `env_args`), then loaded from the
demo's stored model XML with asset paths rewritten to the installed robosuite
(`edit_model_xml`), multisampling off (exact depth), sites shrunk out of segmentation.
`replay="states"` sets every stored state and renders (exact); `replay="actions"` sets the first
state and re-executes the stored actions, reporting the qpos drift against the stored states.

Everything returned is raw simulator output (bottom-up rows, normalised depth buffer, geom ids,
OpenGL camera frames, world poses); the appf source converts it with appf.transforms.sim_camera.
MUJOCO_GL must be set before robosuite is imported (the worker does that).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np


class ReplayError(ValueError):
    """A demo cannot be replayed; the message names the file, demo and field."""


@dataclass
class Demo:
    """One demonstration as stored: env name + kwargs, states (T, 1+nq+nv), actions (T, D)."""

    path: str
    name: str
    env_name: str
    env_kwargs: dict[str, Any]
    states: np.ndarray
    actions: np.ndarray
    model_xml: str
    language: str
    problem_name: str = ""  # LIBERO: the problem class (TASK_MAPPING key)
    bddl_content: str = ""  # LIBERO: the task's BDDL as stored in the file

    @property
    def is_libero(self) -> bool:
        return bool(self.problem_name)


def _env_from_attrs(attrs: Any, where: str) -> tuple[str, dict[str, Any], str]:
    """(env name, env kwargs, LIBERO problem name or "")."""
    if "env_args" in attrs:  # robomimic / LIBERO: {"env_name", "type", "env_kwargs"[, "problem_name"]}
        args = json.loads(attrs["env_args"])
        return str(args["env_name"]), dict(args.get("env_kwargs", {})), str(args.get("problem_name", ""))
    if "env" in attrs:  # robosuite raw demo: env + env_info JSON
        info = json.loads(attrs["env_info"]) if "env_info" in attrs else {}
        info.pop("env_name", None)
        return str(attrs["env"]), info, ""
    raise ReplayError(f"{where}: data/ has neither an `env_args` nor an `env` attribute; "
                      "this is not a robosuite / robomimic / LIBERO demonstration file")


def _language(attrs: Any) -> str:
    if "problem_info" in attrs:  # LIBERO
        return str(json.loads(attrs["problem_info"]).get("language_instruction", ""))
    return ""


def read_demo(path: str, demo: str) -> Demo:
    """The stored demo `demo` (e.g. "demo_1") of the HDF5 file at `path`."""
    where = f"file={path}, episode={demo}"
    with h5py.File(path, "r") as f:
        if "data" not in f or demo not in f["data"]:
            raise ReplayError(f"{where}: no group data/{demo}")
        env_name, env_kwargs, problem = _env_from_attrs(f["data"].attrs, where)
        bddl = str(f["data"].attrs.get("bddl_file_content", ""))
        g = f["data"][demo]
        for key in ("states", "actions"):
            if key not in g:
                raise ReplayError(f"{where}, field={key}: dataset missing")
        model_xml = g.attrs.get("model_file", "")
        if not str(model_xml).lstrip().startswith("<"):
            raise ReplayError(f"{where}, field=model_file: {str(model_xml)[:80]!r} is not an inline "
                              "MJCF model (old robosuite demos name a model file that is not "
                              "shipped with them); the scene cannot be rebuilt without it")
        demo_rec = Demo(path, demo, env_name, env_kwargs, np.asarray(g["states"], np.float64),
                        np.asarray(g["actions"], np.float64), str(model_xml), _language(f["data"].attrs),
                        problem, bddl)
    if demo_rec.is_libero and not bddl:
        raise ReplayError(f"{where}, field=bddl_file_content: a LIBERO file (problem "
                          f"{problem!r}) without its BDDL; the scene cannot be rebuilt")
    if demo_rec.states.ndim != 2 or len(demo_rec.states) != len(demo_rec.actions):
        raise ReplayError(f"{where}, field=states: shape {demo_rec.states.shape} does not match "
                          f"actions {demo_rec.actions.shape} (one state per action)")
    return demo_rec


def make_env(demo: Demo, cameras: list[str], height: int, width: int) -> Any:
    import robosuite

    kwargs = {k: v for k, v in demo.env_kwargs.items()
              if k not in ("has_renderer", "has_offscreen_renderer", "use_camera_obs",
                           "camera_names", "camera_heights", "camera_widths", "camera_depths",
                           "camera_segmentations", "renderer", "env_name")}
    kwargs.update(has_renderer=False, has_offscreen_renderer=True, ignore_done=True,
                  use_camera_obs=False, camera_names=list(cameras), camera_heights=height,
                  camera_widths=width)
    if demo.is_libero:
        from appf.simreplay.libero_scene import make_libero_env

        return make_libero_env(demo, kwargs)
    if demo.env_name not in robosuite.ALL_ENVIRONMENTS:
        raise ReplayError(f"file={demo.path}, episode={demo.name}, field=env: environment "
                          f"{demo.env_name!r} is not a robosuite {robosuite.__version__} environment "
                          "(nor a LIBERO file: no problem_name in env_args)")
    env = robosuite.make(demo.env_name, **kwargs)
    env.reset()
    return env


_ENV_CACHE: dict[str, Any] = {}


def cached_env(demo: Demo, cameras: list[str], height: int, width: int) -> Any:
    """The env of the previous request when it was built the same way (building one costs
    seconds; each demo then loads its own stored model into it), else a new one."""
    key = json.dumps([demo.env_name, demo.env_kwargs, demo.problem_name, demo.bddl_content,
                      cameras, height, width], sort_keys=True, default=str)
    if key not in _ENV_CACHE:
        drop_cached_env()
        _ENV_CACHE[key] = make_env(demo, cameras, height, width)
    return _ENV_CACHE[key]


def drop_cached_env() -> None:
    for env in _ENV_CACHE.values():
        env.close()
    _ENV_CACHE.clear()


def without_msaa(xml: str) -> str:
    """The model XML with offscreen multisampling off (MSAA corrupts read-back depth)."""
    root = ET.fromstring(xml)
    visual = root.find("visual")
    if visual is None:
        visual = ET.SubElement(root, "visual")
    quality = visual.find("quality")
    if quality is None:
        quality = ET.SubElement(visual, "quality")
    quality.set("offsamples", "0")
    return ET.tostring(root, encoding="unicode")


def load_stored_model(env: Any, demo: Demo, cameras: list[str], reflections: bool) -> None:
    """Load the demo's own model into `env` (no env.reset() after: that rebuilds the default
    model), keep sites out of segmentation, check the cameras exist."""
    import mujoco

    if demo.is_libero:
        from appf.simreplay.libero_scene import relocate_libero_assets

        xml = relocate_libero_assets(demo.model_xml)
    else:
        xml = env.edit_model_xml(demo.model_xml)
    env.reset_from_xml_string(without_msaa(xml))
    env.sim.reset()
    env.sim.model.site_size[:] = 1e-8
    names = [env.sim.model.camera_id2name(i) for i in range(env.sim.model.ncam)]
    missing = [c for c in cameras if c not in names]
    if missing:
        raise ReplayError(f"file={demo.path}, episode={demo.name}, field=cameras: {missing} not in "
                          f"the model; it has {names}")
    if not reflections:
        env.sim._render_context_offscreen.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    nq_nv = env.sim.model.nq + env.sim.model.nv
    if demo.states.shape[1] != 1 + nq_nv:
        raise ReplayError(f"file={demo.path}, episode={demo.name}, field=states: width "
                          f"{demo.states.shape[1]} != 1 + nq + nv = {1 + nq_nv} of the stored model")


def scene_facts(env: Any) -> dict[str, Any]:
    """Static facts of the loaded model: depth range, cameras, geom ownership, robots, table."""
    model = env.sim.model
    m = model._model
    robots = [r.robot_model for r in env.robots]
    robot_models = [rm for rm in robots] + [sub for rm in robots for sub in rm.models]
    names = [model.geom_id2name(g) or "" for g in range(model.ngeom)]
    bodies = [model.body_id2name(int(model.geom_bodyid[g])) or "" for g in range(model.ngeom)]
    inst = env.model.geom_ids_to_instances
    finger_ranges = [model.jnt_range[model.joint_name2id(j)] for r in env.robots
                     for j in r.gripper.joints]
    table = [g for g, n in enumerate(names) if n == "table_visual"]
    base = env.sim.data.get_body_xpos(robots[0].root_body), env.sim.data.get_body_xmat(robots[0].root_body)
    return {
        "near_m": float(m.vis.map.znear * m.stat.extent),
        "far_m": float(m.vis.map.zfar * m.stat.extent),
        "camera_fovy_deg": {model.camera_id2name(i): float(model.cam_fovy[i]) for i in range(model.ncam)},
        "geom_names": names, "geom_body_names": bodies,
        "geom_instance": [str(inst.get(g, "")) for g in range(model.ngeom)],
        "robot_instances": [rm.name for rm in robot_models],
        "robot_prefixes": [rm.naming_prefix for rm in robot_models],
        "object_instances": [o.name for o in env.model.mujoco_objects],
        "object_prefixes": [o.naming_prefix for o in env.model.mujoco_objects],
        "open_finger_width_m": float(sum(abs(r[1] - r[0]) for r in finger_ranges[:2])),
        "table_top_center_world_m": (_box_top(env, table[0]) if table else None),
        "T_world_base": _pose_matrix(*base).tolist(),
        "control_freq_hz": float(env.control_freq),
        "robot_names": [type(r.robot_model).__name__ for r in env.robots],
        "joint_names": [j for r in env.robots for j in r.robot_joints],
    }


def _box_top(env: Any, geom: int) -> list[float]:
    """World centre of the top face of a box geom (level table)."""
    top = env.sim.data.geom_xpos[geom] + env.sim.data.geom_xmat[geom].reshape(3, 3)[:, 2] * \
        env.sim.model.geom_size[geom][2]
    return [float(v) for v in top]


def _pose_matrix(pos: np.ndarray, xmat: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = np.asarray(xmat).reshape(3, 3)
    T[:3, 3] = pos
    return T


def _object_geoms(env: Any) -> np.ndarray:
    """Visual geom ids of the task objects (what images show of them)."""
    ids = []
    for obj in env.model.mujoco_objects:
        ids += [env.sim.model.geom_name2id(g) for g in obj.visual_geoms]
    return np.asarray(sorted(ids), dtype=np.int64)


class FrameRecorder:
    """Renders the cameras and reads the robot / object state of the current sim state."""

    def __init__(self, env: Any, cameras: list[str], height: int, width: int):
        import mujoco

        self.env, self.cameras, self.h, self.w = env, cameras, height, width
        self.geom_type = int(mujoco.mjtObj.mjOBJ_GEOM)
        self.object_geoms = _object_geoms(env)
        self.frames: dict[str, list[np.ndarray]] = {}

    def _add(self, key: str, value: np.ndarray) -> None:
        self.frames.setdefault(key, []).append(np.asarray(value).copy())

    def render(self) -> None:
        sim = self.env.sim
        for cam in self.cameras:
            rgb, zbuf = sim.render(camera_name=cam, width=self.w, height=self.h, depth=True)
            seg = sim.render(camera_name=cam, width=self.w, height=self.h, segmentation=True)
            self._add(f"rgb/{cam}", rgb)
            self._add(f"zbuffer/{cam}", zbuf)
            self._add(f"geom/{cam}", np.where(seg[..., 0] == self.geom_type, seg[..., 1], -1).astype(np.int32))

    def record_state(self) -> None:
        sim, robots = self.env.sim, self.env.robots
        for cam in self.cameras:
            cid = sim.model.camera_name2id(cam)
            self._add(f"cam_xpos/{cam}", sim.data.cam_xpos[cid])
            self._add(f"cam_xmat/{cam}", sim.data.cam_xmat[cid])
        self._add("eef_pos", [sim.data.site_xpos[r.eef_site_id] for r in robots])
        self._add("eef_quat_wxyz", [sim.data.get_body_xquat(r.robot_model.eef_name) for r in robots])
        self._add("joint_qpos", np.concatenate([sim.data.qpos[r._ref_joint_pos_indexes] for r in robots]))
        self._add("finger_qpos", [sim.data.qpos[r._ref_gripper_joint_pos_indexes] for r in robots])
        self._add("object_geom_xpos", sim.data.geom_xpos[self.object_geoms])
        self._add("object_geom_xmat", sim.data.geom_xmat[self.object_geoms])

    def arrays(self) -> dict[str, np.ndarray]:
        out = {k: np.stack(v) for k, v in self.frames.items()}
        out["object_geom_ids"] = self.object_geoms
        out["object_geom_size"] = self.env.sim.model.geom_size[self.object_geoms].copy()
        return out


def _set_state(env: Any, state: np.ndarray) -> None:
    env.sim.set_state_from_flattened(state)
    env.sim.forward()


def replay_frames(env: Any, demo: Demo, rec: FrameRecorder, frames: list[int],
                  mode: str, render: bool = True) -> np.ndarray:
    """Record `frames` (sorted state indices); returns the qpos drift (per recorded frame, max
    abs difference to the stored state, 0 in state replay)."""
    nq = env.sim.model.nq
    drift = np.zeros(len(frames))
    if mode == "states":
        for i, t in enumerate(frames):
            _set_state(env, demo.states[t])
            rec.record_state()
            if render:
                rec.render()
        return drift
    # Always from the first stored state: controllers keep state the MuJoCo state lacks (the
    # Panda gripper integrates its command), so starting mid-demo would drift at once.
    _set_state(env, demo.states[0])
    wanted = {t: i for i, t in enumerate(frames)}
    for t in range(frames[-1] + 1):
        if t in wanted:
            drift[wanted[t]] = float(np.max(np.abs(env.sim.data.qpos[:nq] - demo.states[t, 1:1 + nq])))
            rec.record_state()
            if render:
                rec.render()
        if t < frames[-1]:
            env.step(demo.actions[t])
    return drift


def select_frames(n_states: int, start: int, stop: int | None, stride: int) -> list[int]:
    stop = n_states if stop is None else min(int(stop), n_states)
    frames = list(range(max(0, int(start)), stop, max(1, int(stride))))
    if not frames:
        raise ReplayError(f"no frames selected: start={start}, stop={stop}, stride={stride} of "
                          f"{n_states} states")
    return frames


def replay_episode(request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Replay one demo as the request says: path, demo, cameras, height, width, replay
    ("states" | "actions"), start, stop, stride, reflections. Returns (meta, arrays)."""
    import mujoco
    import robosuite

    demo = read_demo(request["path"], request["demo"])
    cameras, h, w = list(request["cameras"]), int(request["height"]), int(request["width"])
    mode = request.get("replay", "states")
    if mode not in ("states", "actions"):
        raise ReplayError(f"replay must be 'states' or 'actions', got {mode!r}")
    frames = select_frames(len(demo.states), request.get("start", 0), request.get("stop"),
                           request.get("stride", 1))
    env = cached_env(demo, cameras, h, w)
    try:
        load_stored_model(env, demo, cameras, bool(request.get("reflections", True)))
        rec = FrameRecorder(env, cameras, h, w)
        drift = replay_frames(env, demo, rec, frames, mode)
        meta, arrays = scene_facts(env), rec.arrays()
    except Exception:
        drop_cached_env()  # a failed model load can leave the env half-rebuilt
        raise
    meta.update(env_name=demo.env_name, language=demo.language, num_states=len(demo.states),
                replay=mode, versions={"robosuite": robosuite.__version__,
                                       "mujoco": mujoco.__version__, "numpy": np.__version__})
    arrays.update(frames=np.asarray(frames, np.int64), time_s=demo.states[frames, 0],
                  actions=demo.actions[frames], qpos_drift=drift)
    return meta, arrays
