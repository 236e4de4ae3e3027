"""A deterministic synthetic tabletop scene and its exact ray caster (pure numpy, no file I/O).

This is appf's demo data and the geometry oracle of the tests, so every number is analytic.

Frames and units follow DESIGN.md: metres, seconds; the scene lives in the robot BASE frame
(x forward from the robot, y to the robot's left, z up); cameras use OpenCV axes (x right,
y down, z forward); `T_base_cam` maps camera to base (p_base = T @ p_cam); quaternions xyzw;
gripper 0 = open, 1 = closed.

Scene (all primitives analytic):

- table: a box, top face at z = TABLE_HEIGHT (0), x in TABLE_X, y in TABLE_Y, TABLE_THICKNESS
  thick. The cameras of `sample_camera_pose` are above the table and inside its footprint, so
  only the top face is ever visible: every table pixel lies on z = TABLE_HEIGHT.
- cube: the task object, CUBE_SIZE edge, resting on the table, position / yaw / colour from
  the seed; it follows the gripper rigidly while grasped.
- robot: the gripper only, as boxes in the TCP frame: two fingers, a palm and a forearm box
  FOREARM_LENGTH long going up out of view. TCP frame: origin between the fingers, 1 cm above
  the fingertips (FINGERTIP_Z below it); z = approach direction (points down when grasping),
  y = the axis the fingers close along, x = y cross z. The finger gap follows the gripper
  signal: inner gap FINGER_OPEN_GAP at 0 (open) and FINGER_CLOSED_GAP = CUBE_SIZE at 1
  (closed: the fingers touch the cube's faces).
- background: a back wall (plane x = WALL_X, facing +x) and a floor (plane z = FLOOR_Z). Both
  are textured and have valid depth. depth = 0 (invalid, segmentation BACKGROUND_ID, colour
  SKY_RGB) only where a ray hits nothing at all, i.e. a ray pointing up and away from the wall;
  the cameras of `sample_camera_pose` never see such a ray.

Segmentation ids: BACKGROUND_ID = 0 (wall, floor, nothing), TABLE_ID = 1, ROBOT_ID = 2 (every
gripper part), CUBE_ID = 3.

Rendering: `render_view` casts one ray per pixel through the pixel's integer coordinates
(u = column, v = row) with direction K^-1 [u, v, 1] (camera z = 1), so the ray parameter of a
hit is its camera z: depth is exact (float64 ray/plane and ray/box slab intersections, stored as
float32), and unprojecting x = (u - cx) z / fx, y = (v - cy) z / fy gives the hit point.
Colours: Lambertian shading of an albedo (no shadows, view-independent, so a world point has the
same colour in every view) times a deterministic, world/object-anchored procedural texture
(random blocks at two scales, high contrast) on table, cube, wall and floor; robot untextured.
A rectified right view is the same K with the camera moved by +baseline along camera x
(`right_camera_pose`), so disparity = fx * baseline / depth exactly.

This module holds the constants, poses, camera and scene geometry; the ray caster
(`SceneRenderer`, `render_view`) is in `synthetic_render` and the scripted episode
(`make_script`, `EpisodeScript`, `MIN_STEPS`, `synthetic_joint_positions`) in `synthetic_script`;
both are re-exported here, so `synthetic_scene.make_script` etc. keep working.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# ----------------------------------------------------------------------------------------------
# Constants

BACKGROUND_ID = 0
TABLE_ID = 1
ROBOT_ID = 2
CUBE_ID = 3
SEGMENT_NAMES: dict[int, str] = {
    BACKGROUND_ID: "background", TABLE_ID: "table", ROBOT_ID: "robot", CUBE_ID: "cube",
}

TABLE_HEIGHT = 0.0
TABLE_THICKNESS = 0.04
TABLE_X = (-0.45, 1.60)
TABLE_Y = (-1.00, 1.00)
WALL_X = -0.45
FLOOR_Z = -0.75

CUBE_SIZE = 0.05
CUBE_HALF = CUBE_SIZE / 2

# Gripper geometry, TCP frame (z = approach, y = closing axis), metres.
FINGER_WIDTH = 0.02          # along x
FINGER_THICKNESS = 0.012     # along y
FINGERTIP_Z = 0.01           # fingertips 1 cm beyond the TCP
FINGER_LENGTH = 0.06         # fingers span z in [FINGERTIP_Z - FINGER_LENGTH, FINGERTIP_Z]
FINGER_OPEN_GAP = 0.08       # inner distance between the fingers at gripper = 0
FINGER_CLOSED_GAP = CUBE_SIZE  # inner distance at gripper = 1 (touching the cube)
PALM_HALF = (0.03, 0.06, 0.015)
PALM_CENTER_Z = FINGERTIP_Z - FINGER_LENGTH - PALM_HALF[2]
FOREARM_HALF_XY = 0.025
FOREARM_LENGTH = 1.0

HFOV_DEG = 60.0
BASELINE_M = 0.065
GRIPPER_THRESHOLD = 0.5

AMBIENT = 0.35
DIFFUSE = 0.65
LIGHT_DIR = np.array([0.4, 0.5, 1.0]) / np.linalg.norm([0.4, 0.5, 1.0])  # towards the light
SKY_RGB = (0.55, 0.65, 0.80)

CUBE_COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.15, 0.30, 0.85),
    "yellow": (0.90, 0.80, 0.10),
}
_TABLE_RGB = (0.70, 0.52, 0.34)
_WALL_RGB = (0.62, 0.66, 0.72)
_FLOOR_RGB = (0.45, 0.45, 0.45)
_PALM_RGB = (0.78, 0.78, 0.80)
_FINGER_RGB = (0.22, 0.22, 0.25)


# ----------------------------------------------------------------------------------------------
# Small rigid-transform helpers (private: geometry proper lives elsewhere in transforms/)


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _pose(R: np.ndarray, p: Sequence[float]) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = p
    return T


def translation(x: float, y: float, z: float) -> np.ndarray:
    """4x4 pure translation."""
    return _pose(np.eye(3), (x, y, z))


def invert_pose(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4."""
    R = T[:3, :3]
    return _pose(R.T, -R.T @ T[:3, 3])


def gripper_rotation(yaw: float) -> np.ndarray:
    """TCP orientation in base: approach axis (TCP z) pointing down, rotated by `yaw` about z."""
    return _rot_z(yaw) @ _rot_x(np.pi)


def matrix_to_quat_xyzw(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (x, y, z, w) (Shepperd's method, no scipy)."""
    m = np.asarray(R, dtype=np.float64)
    tr = np.trace(m)
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def pose_to_xyzquat(T: np.ndarray) -> np.ndarray:
    """4x4 -> (7,) xyz + quaternion xyzw."""
    return np.concatenate([T[:3, 3], matrix_to_quat_xyzw(T[:3, :3])])


# ----------------------------------------------------------------------------------------------
# Camera


def intrinsics_from_fov(width: int, height: int, hfov_deg: float = HFOV_DEG) -> np.ndarray:
    """Pinhole K with square pixels from a horizontal field of view; principal point at the
    image centre ((W - 1) / 2, (H - 1) / 2: pixel centres at integer coordinates)."""
    f = (width / 2.0) / np.tan(np.deg2rad(hfov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def look_at(eye: Sequence[float], target: Sequence[float], roll: float = 0.0) -> np.ndarray:
    """Camera-to-base 4x4 of an OpenCV camera at `eye` looking at `target`, world up = +z
    (image up = +x when looking straight down or up), rolled by `roll` radians about its
    optical axis."""
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    if np.linalg.norm(x) < 1e-9:  # looking straight up or down: image "up" is then +x
        x = np.cross(z, [1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=1)
    c, s = np.cos(roll), np.sin(roll)
    R = R @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    return _pose(R, eye)


def sample_camera_pose(rng: np.random.Generator) -> np.ndarray:
    """The episode's fixed front camera: in front of the table (x > cube), above it, looking back
    at the workspace (towards -x and down); position, aim and roll jittered by `rng`."""
    eye = np.array([1.10, 0.0, 0.62]) + rng.uniform(-0.04, 0.04, 3)
    target = np.array([0.45, 0.0, 0.02]) + rng.uniform(-0.03, 0.03, 3)
    roll = np.deg2rad(rng.uniform(-2.0, 2.0))
    return look_at(eye, target, roll)


def right_camera_pose(T_base_left: np.ndarray, baseline_m: float = BASELINE_M) -> np.ndarray:
    """Rectified right camera: the left one moved by +baseline along its own x axis."""
    return np.asarray(T_base_left, dtype=np.float64) @ translation(baseline_m, 0.0, 0.0)


# ----------------------------------------------------------------------------------------------
# Scene state and primitives


@dataclass(frozen=True)
class Box:
    """An oriented box: `T_base_box` (4x4, box-to-base, centre at the origin), half extents."""

    name: str
    seg_id: int
    T_base_box: np.ndarray
    half: np.ndarray
    rgb: tuple[float, float, float]
    texture: str | None = None   # a key of synthetic_render._TEX, or None for a plain albedo
    # None: texture on each face from its two tangential box coordinates; (a, b): a planar
    # projection of box coordinates a and b on every face (the table: local x, y)
    texture_axes: tuple[int, int] | None = None


@dataclass(frozen=True)
class SceneState:
    """Everything that moves: TCP pose (4x4, base), gripper in [0, 1], cube pose (4x4, base),
    plus the episode's cube colour and texture seed."""

    T_base_tcp: np.ndarray
    gripper: float
    T_base_cube: np.ndarray
    cube_rgb: tuple[float, float, float] = CUBE_COLORS["red"]
    texture_seed: int = 0


def finger_inner_half_gap(gripper: float) -> float:
    """Half the inner distance between the fingers for a gripper value (0 open, 1 closed)."""
    g = float(np.clip(gripper, 0.0, 1.0))
    return 0.5 * (FINGER_OPEN_GAP + (FINGER_CLOSED_GAP - FINGER_OPEN_GAP) * g)


def table_box() -> Box:
    cx, cy = (TABLE_X[0] + TABLE_X[1]) / 2, (TABLE_Y[0] + TABLE_Y[1]) / 2
    half = np.array([(TABLE_X[1] - TABLE_X[0]) / 2, (TABLE_Y[1] - TABLE_Y[0]) / 2,
                     TABLE_THICKNESS / 2])
    T = translation(cx, cy, TABLE_HEIGHT - TABLE_THICKNESS / 2)
    return Box("table", TABLE_ID, T, half, _TABLE_RGB, "table", (0, 1))


def robot_boxes(T_base_tcp: np.ndarray, gripper: float) -> list[Box]:
    """The gripper's boxes in base for a TCP pose and gripper value."""
    w = finger_inner_half_gap(gripper)
    fz = FINGERTIP_Z - FINGER_LENGTH / 2
    fhalf = np.array([FINGER_WIDTH / 2, FINGER_THICKNESS / 2, FINGER_LENGTH / 2])
    fy = w + FINGER_THICKNESS / 2
    forearm_z = PALM_CENTER_Z - PALM_HALF[2] - FOREARM_LENGTH / 2
    T = np.asarray(T_base_tcp, dtype=np.float64)
    return [
        Box("finger_left", ROBOT_ID, T @ translation(0, fy, fz), fhalf, _FINGER_RGB),
        Box("finger_right", ROBOT_ID, T @ translation(0, -fy, fz), fhalf, _FINGER_RGB),
        Box("palm", ROBOT_ID, T @ translation(0, 0, PALM_CENTER_Z), np.array(PALM_HALF),
            _PALM_RGB),
        Box("forearm", ROBOT_ID, T @ translation(0, 0, forearm_z),
            np.array([FOREARM_HALF_XY, FOREARM_HALF_XY, FOREARM_LENGTH / 2]), _PALM_RGB),
    ]


def cube_box(state: SceneState) -> Box:
    return Box("cube", CUBE_ID, np.asarray(state.T_base_cube, dtype=np.float64),
               np.full(3, CUBE_HALF), tuple(state.cube_rgb), "cube")


def scene_boxes(state: SceneState) -> list[Box]:
    """Every box of the scene at `state`: table, cube, gripper parts (walls are planes)."""
    return [table_box(), cube_box(state), *robot_boxes(state.T_base_tcp, state.gripper)]


# ----------------------------------------------------------------------------------------------
# Re-exports: the renderer and the episode script live in their own modules, which import the
# geometry above; they are re-exported lazily (PEP 562) so that importing either module first
# never meets a half-initialised synthetic_scene.

_LAZY = {
    "SceneRenderer": "synthetic_render", "render_view": "synthetic_render",
    "_intersect_box": "synthetic_render",
    "EpisodeScript": "synthetic_script", "MIN_STEPS": "synthetic_script",
    "make_script": "synthetic_script", "synthetic_joint_positions": "synthetic_script",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        module = importlib.import_module(f"appf.transforms.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
