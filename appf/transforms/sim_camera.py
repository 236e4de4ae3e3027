"""MuJoCo / robosuite render conventions -> appf's canonical ones (pure numpy).

Facts (shared/reference/sim-replay.md §3, formats-sim.md §1.6), each verified by the tests on
replayed robosuite demos:
- MuJoCo reads images back bottom row first: flip rows only (`[::-1]`), never columns.
- The depth buffer is normalised and non-linear; z-depth in metres along the optical axis is
  `near / (1 - d * (1 - near / far))` with near/far = `vis.map.znear/zfar * stat.extent`.
- `fovy` is vertical; f = H / 2 / tan(fovy / 2). MuJoCo's principal point is the image centre in
  continuous coordinates (W/2, H/2); with appf's pixel centres at integer coordinates that is
  ((W - 1) / 2, (H - 1) / 2).
- A MuJoCo camera frame is OpenGL (x right, y up, looking down -z): T_cv = T_gl @ diag(1,-1,-1,1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from appf.schemas import Segment, SegmentCategory

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
NO_GEOM_ID = 0  # segmentation id of pixels that show no geom (sky); geom g has id g + 1


def flip_rows(frames: np.ndarray) -> np.ndarray:
    """MuJoCo's bottom-up rows -> top-down: (T, H, W, ...) flipped along H only."""
    return np.ascontiguousarray(np.asarray(frames)[:, ::-1])


def depth_m_from_zbuffer(zbuffer: np.ndarray, near_m: float, far_m: float) -> np.ndarray:
    """Normalised OpenGL depth in [0, 1] -> z-depth in metres (float32); the far plane
    (nothing rendered there) becomes 0, appf's "invalid"."""
    if not 0 < near_m < far_m:
        raise ValueError(f"need 0 < near_m < far_m, got near_m={near_m}, far_m={far_m}")
    d = np.asarray(zbuffer, dtype=np.float64)
    z = near_m / (1.0 - d * (1.0 - near_m / far_m))
    z[d >= 1.0] = 0.0
    return z.astype(np.float32)


def intrinsics_from_fovy(fovy_deg: float, height: int, width: int) -> np.ndarray:
    """K (3x3, pixels) of a MuJoCo camera with square pixels rendered at height x width."""
    f = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def T_world_cam_opencv(cam_xpos: np.ndarray, cam_xmat: np.ndarray) -> np.ndarray:
    """(..., 4, 4) camera-to-world in OpenCV axes from MuJoCo's cam_xpos (..., 3) and
    cam_xmat (..., 9 or 3x3, OpenGL camera axes as columns)."""
    pos = np.asarray(cam_xpos, dtype=np.float64)
    R = np.asarray(cam_xmat, dtype=np.float64).reshape(*pos.shape[:-1], 3, 3)
    T = np.zeros((*pos.shape[:-1], 4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = pos
    T[..., 3, 3] = 1.0
    return T @ OPENGL_TO_OPENCV


def finger_width_m(finger_qpos: np.ndarray) -> np.ndarray:
    """Panda finger opening (T,) metres from the two finger joints (T, 2) = [+q, -q]."""
    q = np.asarray(finger_qpos, dtype=np.float64)
    return q[:, 0] - q[:, 1]


def gripper_closure(width_m: np.ndarray, open_width_m: float,
                    min_travel_m: float = 0.005) -> np.ndarray:
    """Finger opening (T,) metres -> gripper closure in [0, 1] (0 = open, 1 = closed).

    0 is the gripper's full opening (`open_width_m`, from the finger joint range); 1 is the
    narrowest the fingers got in this episode, which for a grasp is the object's width (fingers
    stop on it): the keyframe thresholds then see a grasp as "closed" whatever the object's size.
    An episode whose fingers never close by `min_travel_m` keeps the full stroke (1 = touching).
    """
    w = np.asarray(width_m, dtype=np.float64)
    closed = float(np.min(w)) if len(w) else 0.0
    if open_width_m - closed < min_travel_m:
        closed = 0.0
    return np.clip((open_width_m - w) / (open_width_m - closed), 0.0, 1.0)


@dataclass(frozen=True)
class Owners:
    """Who owns geoms: model instance names (robosuite's geom_ids_to_instances) and name
    prefixes (robosuite naming_prefix: "robot0_", "gripper0_", "mount0_", "cube_")."""

    instances: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    def owns(self, geom: str, body: str, instance: str) -> bool:
        return (bool(instance) and instance in self.instances) or any(
            p and (geom.startswith(p) or body.startswith(p)) for p in self.prefixes)


def segment_table(geom_names: Sequence[str], geom_body_names: Sequence[str],
                  geom_instances: Sequence[str], robot: Owners, objects: Owners) -> tuple[Segment, ...]:
    """Id table of geom-id segmentation (id = geom id + 1; 0 = no geom).

    A geom is ROBOT when the robot owns it (arm, gripper, mount), TASK_OBJECT when a task object
    does, else BACKGROUND (arena: floor, walls, table, fixtures)."""
    rows = [Segment(NO_GEOM_ID, "no_geom", SegmentCategory.BACKGROUND)]
    for gid, (geom, body, inst) in enumerate(zip(geom_names, geom_body_names, geom_instances)):
        category = (SegmentCategory.ROBOT if robot.owns(geom, body, inst)
                    else SegmentCategory.TASK_OBJECT if objects.owns(geom, body, inst)
                    else SegmentCategory.BACKGROUND)
        rows.append(Segment(gid + 1, geom or f"geom{gid}", category))
    return tuple(rows)
