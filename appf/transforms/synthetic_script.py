"""The scripted, seeded pick-and-place episode of the synthetic scene (pure numpy):
`make_script` (poses, gripper, cube track, camera, instruction) and synthetic joint angles.

Frames and units are those of `appf.transforms.synthetic_scene`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from appf.transforms.synthetic_scene import (
    CUBE_COLORS, CUBE_HALF, GRIPPER_THRESHOLD, SceneState, _pose, _rot_z, gripper_rotation,
    invert_pose, pose_to_xyzquat, sample_camera_pose,
)

# ----------------------------------------------------------------------------------------------
# Scripted pick-and-place episode

MIN_STEPS = 16


@dataclass(frozen=True)
class EpisodeScript:
    """A seeded pick-and-place: per-step TCP pose, gripper, cube pose, plus the fixed camera.

    Gripper events use a 0.5 threshold: `close_step` is the first step with gripper >= 0.5
    (the previous < 0.5), `open_step` the first later step with gripper < 0.5. The cube is
    rigidly attached to the TCP for steps `grasp_step` (fully closed) .. `release_step` (last
    fully closed step, before the opening ramp); the TCP does not move while the gripper
    closes or opens.
    """

    seed: int
    steps: int
    tcp_poses: np.ndarray      # (T, 4, 4) base
    gripper: np.ndarray        # (T,) in [0, 1]
    cube_poses: np.ndarray     # (T, 4, 4) base
    attached: np.ndarray       # (T,) bool
    close_step: int
    open_step: int
    grasp_step: int
    release_step: int
    T_base_cam: np.ndarray     # (4, 4) camera-to-base, fixed for the episode
    cube_color: str
    cube_rgb: tuple[float, float, float]
    place_direction: str       # "left" (+y, the robot's left) or "right" (-y)
    instruction: str
    texture_seed: int
    phases: dict[str, tuple[int, int]] = field(default_factory=dict)

    def state(self, t: int) -> SceneState:
        return SceneState(self.tcp_poses[t], float(self.gripper[t]), self.cube_poses[t],
                          self.cube_rgb, self.texture_seed)

    def ee_pose(self) -> np.ndarray:
        """(T, 7) TCP xyz + quaternion xyzw (sign-continuous)."""
        out = np.stack([pose_to_xyzquat(T) for T in self.tcp_poses])
        for t in range(1, len(out)):
            if np.dot(out[t, 3:], out[t - 1, 3:]) < 0:
                out[t, 3:] *= -1
        return out


def _smoothstep(s: np.ndarray) -> np.ndarray:
    return s * s * (3 - 2 * s)


def _allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split `total` intervals by weights (largest remainder), at least 1 each."""
    w = np.asarray(weights, dtype=np.float64)
    raw = 1 + (total - len(w)) * w / w.sum()
    n = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - n), kind="stable")[: total - n.sum()]:
        n[i] += 1
    return [int(x) for x in n]


@dataclass(frozen=True)
class _Layout:
    """The random draws of one episode (base frame, metres, radians), in draw order."""
    T_base_cam: np.ndarray
    color: str
    cube_xy: np.ndarray
    cube_yaw: float
    direction: str
    target_xy: np.ndarray
    target_yaw: float
    start: np.ndarray
    start_yaw: float
    texture_seed: int


def _sample_layout(rng: np.random.Generator) -> _Layout:
    """Camera, cube, target and start pose; the draw order fixes every seed's episode."""
    T_cam = sample_camera_pose(rng)
    color = list(CUBE_COLORS)[int(rng.integers(len(CUBE_COLORS)))]
    cube_xy = np.array([rng.uniform(0.40, 0.55), rng.uniform(-0.10, 0.10)])
    cube_yaw = rng.uniform(-np.pi / 4, np.pi / 4)
    direction = "left" if rng.random() < 0.5 else "right"
    dy = rng.uniform(0.14, 0.22) * (1 if direction == "left" else -1)
    target_xy = cube_xy + np.array([rng.uniform(-0.06, 0.06), dy])
    target_yaw = cube_yaw + rng.uniform(-0.5, 0.5)
    start = np.array([cube_xy[0] + rng.uniform(-0.10, 0.05), cube_xy[1] + rng.uniform(-0.1, 0.1),
                      rng.uniform(0.26, 0.32)])
    start_yaw = cube_yaw + rng.uniform(-0.3, 0.3)
    texture_seed = int(rng.integers(0, 2**31 - 1))
    return _Layout(T_cam, color, cube_xy, cube_yaw, direction, target_xy, target_yaw, start,
                   start_yaw, texture_seed)


def _waypoints(lay: _Layout) -> list[tuple[np.ndarray, float, float]]:
    """Waypoints (xyz, yaw, gripper); segment i goes from waypoint i to i + 1."""
    cube_xy, cube_yaw, target_xy, target_yaw = lay.cube_xy, lay.cube_yaw, lay.target_xy, lay.target_yaw
    lift = CUBE_HALF + 0.15
    return [
        (lay.start, lay.start_yaw, 0.0),
        (np.r_[cube_xy, CUBE_HALF + 0.10], cube_yaw, 0.0),   # pre-grasp
        (np.r_[cube_xy, CUBE_HALF], cube_yaw, 0.0),          # grasp pose
        (np.r_[cube_xy, CUBE_HALF], cube_yaw, 1.0),          # closed
        (np.r_[cube_xy, lift], cube_yaw, 1.0),               # lifted
        (np.r_[target_xy, lift], target_yaw, 1.0),           # above the target
        (np.r_[target_xy, CUBE_HALF], target_yaw, 1.0),      # placed
        (np.r_[target_xy, CUBE_HALF], target_yaw, 0.0),      # opened
        (np.r_[target_xy, CUBE_HALF + 0.18], target_yaw, 0.0),  # retracted
    ]


def _interpolate(wps: list[tuple[np.ndarray, float, float]], steps: int
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[int, int]]]:
    """(tcp poses (T, 4, 4), gripper (T,) in [0, 1], phases name -> [start, end) steps)."""
    names = ["approach", "descend", "close", "lift", "transfer", "lower", "open", "retract"]
    n_ramp = max(3, 2 * int(round((steps - 1) * 1.5 / 40)) + 1)  # odd: no sample at exactly 0.5
    motion = _allocate(steps - 1 - 2 * n_ramp, [5, 4, 3, 6, 4, 4])
    counts = [motion[0], motion[1], n_ramp, motion[2], motion[3], motion[4], n_ramp, motion[5]]
    pos, yaw, grip = [wps[0][0]], [wps[0][1]], [wps[0][2]]
    phases: dict[str, tuple[int, int]] = {}
    t0 = 0
    for i, (name, n) in enumerate(zip(names, counts)):
        (pa, ya, ga), (pb, yb, gb) = wps[i], wps[i + 1]
        s = _smoothstep(np.arange(1, n + 1) / n)
        for si in s:
            pos.append(pa + (pb - pa) * si)
            yaw.append(ya + (yb - ya) * si)
            grip.append(ga + (gb - ga) * si)
        phases[name] = (t0, t0 + n)
        t0 += n
    gripper = np.clip(np.asarray(grip), 0.0, 1.0)
    tcp = np.stack([_pose(gripper_rotation(y), p) for p, y in zip(pos, yaw)])
    assert len(tcp) == steps
    return tcp, gripper, phases


def _cube_track(lay: _Layout, tcp: np.ndarray, grasp_step: int, release_step: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """(cube poses (T, 4, 4), attached (T,) bool): at rest, then rigid with the TCP, then placed."""
    steps = len(tcp)
    cube0 = _pose(_rot_z(lay.cube_yaw), np.r_[lay.cube_xy, CUBE_HALF])
    T_tcp_cube = invert_pose(tcp[grasp_step]) @ cube0
    attached = np.zeros(steps, dtype=bool)
    attached[grasp_step:release_step + 1] = True
    cube = np.empty((steps, 4, 4))
    for t in range(steps):
        if t < grasp_step:
            cube[t] = cube0
        elif t <= release_step:
            cube[t] = tcp[t] @ T_tcp_cube
        else:
            cube[t] = cube[release_step]
    return cube, attached


def make_script(seed: int, steps: int = 40) -> EpisodeScript:
    """The deterministic pick-and-place of episode `seed` with `steps` steps (>= MIN_STEPS)."""
    if steps < MIN_STEPS:
        raise ValueError(f"synthetic episodes need at least {MIN_STEPS} steps, got {steps}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    lay = _sample_layout(rng)
    tcp, gripper, phases = _interpolate(_waypoints(lay), steps)
    closed = gripper >= GRIPPER_THRESHOLD
    close_step = int(np.flatnonzero(closed[1:] & ~closed[:-1])[0] + 1)
    open_step = int(np.flatnonzero(~closed[1:] & closed[:-1])[0] + 1)
    grasp_step = phases["close"][1]
    release_step = phases["open"][0]
    cube, attached = _cube_track(lay, tcp, grasp_step, release_step)
    instruction = f"pick up the {lay.color} cube and place it on the {lay.direction}"
    return EpisodeScript(
        seed=int(seed), steps=int(steps), tcp_poses=tcp, gripper=gripper, cube_poses=cube,
        attached=attached, close_step=close_step, open_step=open_step, grasp_step=grasp_step,
        release_step=release_step, T_base_cam=lay.T_base_cam, cube_color=lay.color,
        cube_rgb=CUBE_COLORS[lay.color], place_direction=lay.direction, instruction=instruction,
        texture_seed=lay.texture_seed, phases=phases,
    )


def synthetic_joint_positions(ee_pose: np.ndarray) -> np.ndarray:
    """(T, 7) SYNTHETIC joint angles (rad): a smooth deterministic function of the TCP pose in
    plausible Franka-like ranges. Not a real kinematic chain; do not use for geometry."""
    p = np.asarray(ee_pose)[:, :3]
    q = np.asarray(ee_pose)[:, 3:]
    yaw = np.arctan2(2 * (q[:, 3] * q[:, 2] + q[:, 0] * q[:, 1]),
                     1 - 2 * (q[:, 1] ** 2 + q[:, 2] ** 2))
    base = np.arctan2(p[:, 1], p[:, 0])
    r = np.hypot(p[:, 0], p[:, 1])
    return np.stack([
        base,
        -0.4 + 1.6 * (r - 0.3) - 0.8 * (p[:, 2] - 0.2),
        0.1 * np.sin(yaw),
        -2.4 + 1.5 * (r - 0.3) + 1.2 * (p[:, 2] - 0.2),
        0.05 * np.cos(yaw),
        1.9 + 0.6 * (p[:, 2] - 0.2),
        np.angle(np.exp(1j * (yaw - base))),
    ], axis=1)
