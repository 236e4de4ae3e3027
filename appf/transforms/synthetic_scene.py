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
"""

from __future__ import annotations

from dataclasses import dataclass, field
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

# Texture: random blocks at two scales, value = lo + (1 - lo) * (w * coarse + (1 - w) * fine).
_TEX = {
    # material: (coarse cell m, fine cell m, weight of coarse, lowest factor)
    "table": (0.03, 0.008, 0.45, 0.25),
    "cube": (0.025, 0.00625, 0.5, 0.55),
    "wall": (0.06, 0.015, 0.5, 0.45),
    "floor": (0.08, 0.02, 0.5, 0.5),
}

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
    texture: str | None = None   # a key of _TEX, or None for a plain albedo
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
# Procedural texture


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = 0x9E3779B97F4A7C15


_PRIMES = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D)


def _hash01(seed: int, *cells: np.ndarray) -> np.ndarray:
    """Deterministic per-cell uniform values in [0, 1) from integer-valued cell coordinates
    (up to 3): a wrapping linear key, then the splitmix64 finaliser."""
    key = np.zeros(np.shape(cells[0]), dtype=np.int64)
    for c, p in zip(cells, _PRIMES):
        key += np.asarray(c).astype(np.int64) * np.int64(p)
    h = key.view(np.uint64)
    h ^= np.uint64((seed * _GOLD + 0x632BE59BD9B4E019) % 2**64)
    h ^= h >> np.uint64(30)
    h *= _M1
    h ^= h >> np.uint64(27)
    h *= _M2
    h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def _texture(material: str, seed: int, coords: Sequence[np.ndarray]) -> np.ndarray:
    """Texture factor in [lo, 1] at 2D/3D surface coordinates (metres, surface-anchored)."""
    coarse, fine, wc, lo = _TEX[material]
    salt = sum(ord(ch) for ch in material) * 7919
    a = _hash01(seed + salt, *[np.floor(c * (1.0 / coarse)) for c in coords])
    b = _hash01(seed + salt + 1, *[np.floor(c * (1.0 / fine)) for c in coords])
    a *= (1 - lo) * wc
    b *= (1 - lo) * (1 - wc)
    a += b
    a += lo
    return a


# ----------------------------------------------------------------------------------------------
# Ray casting


def _shade(normals: np.ndarray) -> np.ndarray:
    return AMBIENT + DIFFUSE * np.clip(normals @ LIGHT_DIR, 0.0, None)


def _intersect_box(origin: np.ndarray, dirs: np.ndarray, box: Box):
    """Slab test of rays origin + t * dirs (dirs (3, N) in base) against a box.

    Returns entry t (inf where missed; a camera inside the box sees nothing of it), the entry
    face's axis (0, 1, 2) and the ray origin / directions in the box frame."""
    R = box.T_base_box[:3, :3]
    ol = R.T @ (origin - box.T_base_box[:3, 3])
    dl = R.T @ dirs
    axis = np.zeros(dirs.shape[1], dtype=np.int8)
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in range(3):
            inv = 1.0 / dl[a]
            t1 = (-box.half[a] - ol[a]) * inv
            t2 = (box.half[a] - ol[a]) * inv
            near = np.minimum(t1, t2)
            far = np.maximum(t1, t2)
            if a == 0:
                t_in, t_out = near, far
            else:
                axis[near > t_in] = a
                t_in = np.maximum(t_in, near)
                t_out = np.minimum(t_out, far)
        hit = (t_in > 0) & (t_in <= t_out)
    t = np.where(hit, t_in, np.inf)
    return t, axis, ol, dl


def _box_colour(box: Box, t, axis, ol, dl, hit, tex_seed: int) -> np.ndarray:
    """RGB float in [0, 1] for the hit rays of a box (rays where `hit`), shape (n_hit, 3)."""
    R = box.T_base_box[:3, :3]
    ax = axis[hit]
    dh = dl[:, hit]
    idx = np.arange(len(ax))
    sg = -np.sign(dh[ax, idx])
    n_local = np.zeros((len(ax), 3))
    n_local[idx, ax] = sg
    shade = _shade(n_local @ R.T)
    albedo = np.broadcast_to(np.asarray(box.rgb), (len(ax), 3))
    if box.texture is not None:
        local = ol[:, None] + t[hit] * dh
        if box.texture_axes is not None:
            coords = [local[a] for a in box.texture_axes]
        else:
            # the normal coordinate is replaced by a face code, so that float noise on the
            # face plane never flips a texture cell
            coords = [np.where(ax == a, 1000.0 * sg, local[a]) for a in range(3)]
        albedo = albedo * _texture(box.texture, tex_seed, coords)[:, None]
    return albedo * shade[:, None]


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


@dataclass
class _Layer:
    depth: np.ndarray   # (H, W) float64, inf = nothing
    seg: np.ndarray     # (H, W) int32
    rgb: np.ndarray     # (H, W, 3) uint8


class SceneRenderer:
    """Ray caster for one camera (K, T_base_cam, size). The static part (wall, floor, table) is
    rendered once per texture seed and cached; each frame casts only the moving boxes (cube,
    gripper) inside their projected bounding rectangles. `render_view` is the one-shot form."""

    def __init__(self, K: np.ndarray, T_base_cam: np.ndarray, height: int, width: int):
        self.K = np.asarray(K, dtype=np.float64)
        self.T_base_cam = np.asarray(T_base_cam, dtype=np.float64)
        self.height, self.width = int(height), int(width)
        Kinv = np.linalg.inv(self.K)
        u = np.arange(self.width, dtype=np.float64)[None, :]
        v = np.arange(self.height, dtype=np.float64)[:, None]
        d_cam = np.empty((3, self.height, self.width))
        d_cam[0] = Kinv[0, 0] * u + Kinv[0, 1] * v + Kinv[0, 2]
        d_cam[1] = Kinv[1, 0] * u + Kinv[1, 1] * v + Kinv[1, 2]
        d_cam[2] = 1.0  # exactly: K's last row is (0, 0, 1), so the ray parameter is camera z
        self._R = self.T_base_cam[:3, :3]
        self.origin = self.T_base_cam[:3, 3].copy()
        # (3, H, W) base-frame ray directions, camera z component = 1
        self.dirs = (self._R @ d_cam.reshape(3, -1)).reshape(3, self.height, self.width)
        self._static: dict[int, _Layer] = {}

    # -- static layer ----------------------------------------------------------------------
    def _static_layer(self, tex_seed: int) -> _Layer:
        if tex_seed in self._static:
            return self._static[tex_seed]
        H, W = self.height, self.width
        o = self.origin
        d = self.dirs.reshape(3, -1)
        N = d.shape[1]
        depth = np.full(N, np.inf)
        seg = np.full(N, BACKGROUND_ID, dtype=np.int32)
        rgb = np.empty((N, 3))
        rgb[:] = SKY_RGB
        for axis, value, material, base in ((0, WALL_X, "wall", _WALL_RGB),
                                            (2, FLOOR_Z, "floor", _FLOOR_RGB)):
            if o[axis] <= value:  # seen from behind: invisible (the planes face +x / +z)
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (value - o[axis]) / d[axis]
            hit = (t > 0) & (t < depth)
            depth[hit] = t[hit]
            seg[hit] = BACKGROUND_ID
            th = t[hit]
            tang = [o[a] + th * d[a, hit] for a in range(3) if a != axis]
            n = np.zeros(3)
            n[axis] = 1.0
            rgb[hit] = (np.asarray(base) * _texture(material, tex_seed, tang)[:, None]
                        * _shade(n[None])[0])
        box = table_box()
        c = box.T_base_box[:3, 3]
        if (o[2] > TABLE_HEIGHT and TABLE_X[0] < o[0] < TABLE_X[1]
                and TABLE_Y[0] < o[1] < TABLE_Y[1]):
            # Camera above the top face and inside the footprint: no other face is visible,
            # so intersect the top face only (same result as the slab test, much cheaper).
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (TABLE_HEIGHT - o[2]) / d[2]
            xl = o[0] - c[0] + t * d[0]
            yl = o[1] - c[1] + t * d[1]
            hit = ((t > 0) & (t < depth) & (np.abs(xl) <= box.half[0])
                   & (np.abs(yl) <= box.half[1]))
            depth[hit] = t[hit]
            seg[hit] = box.seg_id
            rgb[hit] = (np.asarray(box.rgb) * _texture(box.texture, tex_seed,
                                                       [xl[hit], yl[hit]])[:, None]
                        * _shade(np.array([[0.0, 0.0, 1.0]]))[0])
        else:
            t, axis, ol, dl = _intersect_box(o, d, box)
            hit = t < depth
            depth[hit] = t[hit]
            seg[hit] = box.seg_id
            rgb[hit] = _box_colour(box, t, axis, ol, dl, hit, tex_seed)
        layer = _Layer(depth.reshape(H, W), seg.reshape(H, W), _to_uint8(rgb).reshape(H, W, 3))
        self._static[tex_seed] = layer
        return layer

    # -- moving boxes ----------------------------------------------------------------------
    def _rect(self, box: Box) -> tuple[int, int, int, int] | None:
        """Pixel rectangle [v0, v1) x [u0, u1) that contains the box's projection (the whole
        image when a corner is behind the camera)."""
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        pts = corners * box.half @ box.T_base_box[:3, :3].T + box.T_base_box[:3, 3]
        pc = (pts - self.origin) @ self._R
        if np.any(pc[:, 2] <= 1e-6):
            return 0, self.height, 0, self.width
        uvw = pc @ self.K.T
        u = uvw[:, 0] / uvw[:, 2]
        v = uvw[:, 1] / uvw[:, 2]
        u0 = int(max(0, np.floor(u.min()) - 1))
        u1 = int(min(self.width, np.ceil(u.max()) + 2))
        v0 = int(max(0, np.floor(v.min()) - 1))
        v1 = int(min(self.height, np.ceil(v.max()) + 2))
        if u0 >= u1 or v0 >= v1:
            return None
        return v0, v1, u0, u1

    def render(self, state: SceneState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rgb uint8 (H, W, 3), depth float32 (H, W) camera z in metres with 0 = nothing hit,
        seg int32 (H, W))."""
        tex_seed = int(state.texture_seed)
        static = self._static_layer(tex_seed)
        depth = static.depth.copy()
        seg = static.seg.copy()
        rgb = static.rgb.copy()
        for box in [cube_box(state), *robot_boxes(state.T_base_tcp, state.gripper)]:
            rect = self._rect(box)
            if rect is None:
                continue
            v0, v1, u0, u1 = rect
            d = self.dirs[:, v0:v1, u0:u1].reshape(3, -1)
            t, axis, ol, dl = _intersect_box(self.origin, d, box)
            t = t.reshape(v1 - v0, u1 - u0)
            zwin = depth[v0:v1, u0:u1]          # views into the frame buffers
            hit = t < zwin
            if not hit.any():
                continue
            zwin[hit] = t[hit]
            seg[v0:v1, u0:u1][hit] = box.seg_id
            rgb[v0:v1, u0:u1][hit] = _to_uint8(_box_colour(box, t.reshape(-1), axis, ol, dl,
                                                           hit.reshape(-1), tex_seed))
        depth[~np.isfinite(depth)] = 0.0
        return rgb, depth.astype(np.float32), seg


def render_view(state: SceneState, K: np.ndarray, T_base_cam: np.ndarray, height: int,
                width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one view: (rgb uint8 (H, W, 3), depth float32 (H, W) = camera z in metres (not the
    ray length), 0 where nothing is hit, seg int32 (H, W) of the *_ID constants)."""
    return SceneRenderer(K, T_base_cam, height, width).render(state)


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
