"""Exact ray caster of the synthetic scene (pure numpy): procedural textures, Lambertian
shading, ray/plane and ray/box intersections, `SceneRenderer` and `render_view`.

The scene geometry, frames, ids and the rendering model are described in
`appf.transforms.synthetic_scene`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from appf.transforms.synthetic_scene import (
    AMBIENT, BACKGROUND_ID, DIFFUSE, FLOOR_Z, LIGHT_DIR, SKY_RGB, TABLE_HEIGHT, TABLE_X, TABLE_Y,
    WALL_X, Box, SceneState, _FLOOR_RGB, _WALL_RGB, cube_box, robot_boxes, table_box,
)

# Texture: random blocks at two scales, value = lo + (1 - lo) * (w * coarse + (1 - w) * fine).
_TEX = {
    # material: (coarse cell m, fine cell m, weight of coarse, lowest factor)
    "table": (0.03, 0.008, 0.45, 0.25),
    "cube": (0.025, 0.00625, 0.5, 0.55),
    "wall": (0.06, 0.015, 0.5, 0.45),
    "floor": (0.08, 0.02, 0.5, 0.5),
}

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
