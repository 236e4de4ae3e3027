"""DROID calibration resolution: intrinsics + stereo baseline per camera, refined extrinsics.

The raw `trajectory.h5` holds no usable intrinsics (droid issues #4, #32), so K and the
baseline come, in this order, from:

1. the post-hoc `intrinsics.json` (KarlP/droid on Hugging Face), keyed by episode id then
   camera serial;
2. the user's config (`calibration={serial or role: {...}}` source option);
3. nominal ZED values, only when the user sets `accept_nominal_zed=True`.

Without any of these the episode fails with a SourceError naming the camera.

Accepted `intrinsics.json` entries (per camera serial, under the episode id):
- the released form: `{"cameraMatrix": [fx, cx, fy, cy], "width": W, "height": H}`. NOTE THE ORDER:
  fx, cx, fy, cy (public readers of the DROID calibration release unpack it as
  `fx, cx, fy, cy = entry["cameraMatrix"]`). `width`/`height` are the resolution K refers to and
  are optional: HD720, 1280x720 per eye, when absent;
- `{"fx", "fy", "cx", "cy"}` (or `ppx`/`ppy`), a 3x3 (or 9-value) `"K"`/`"camera_matrix"`/
  `"cameraMatrix"`, or `{"left": {...}, "right": {...}}` (left is used);
- each with an optional `"baseline_m"` (metres).
K is rescaled to the decoded frame size; a K whose principal point then lies outside the central
part of the frame (|cx - W/2| > 0.2 W or |cy - H/2| > 0.2 H) fails the episode, naming the file,
the serial, the K found and the frame size (a wrong resolution or value order would otherwise put
the clouds centimetres off the surfaces without a warning). Without `baseline_m` the droid_raw
source takes the stereo baseline from the h5 left/right extrinsics (see droid_raw).
`cam2base_extrinsics.json` follows the third-party-documented form
`{episode_id: {serial: [x, y, z, rx, ry, rz], serial_metric_type: str,
serial_quality_metric: float}}`; which eye it refers to is unconfirmed — it is taken as the
LEFT eye (the eye `T_base_cam` describes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appf.pipelines.sources._real_io import pinhole_K
from appf.schemas import SourceError

HD720 = (1280, 720)  # per-eye (width, height) px of DROID raw stereo video
MAX_PRINCIPAL_OFFSET = 0.2  # |cx - W/2| / W (and |cy - H/2| / H) above this: K does not fit

# Nominal values, used ONLY with accept_nominal_zed=True. ZED 2: focal / principal point as
# reported by a user for an exterior ZED 2 at HD720 (droid issue #39), 120 mm baseline
# (manufacturer). ZED Mini: 63 mm baseline (manufacturer); focal assumed like the ZED 2 and
# principal point at the image centre (rough, not measured).
NOMINAL = {
    "zed2": dict(fx=531.7, fy=531.7, cx=636.2, cy=344.0, baseline_m=0.120, width=1280, height=720),
    "zed_mini": dict(fx=531.7, fy=531.7, cx=639.5, cy=359.5, baseline_m=0.063, width=1280, height=720),
}


@dataclass
class StereoCalibration:
    K: np.ndarray            # 3x3 pixels, for the decoded per-eye resolution
    baseline_m: float | None
    origin: str              # where it came from (recorded in Episode.conversions)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SourceError(f"cannot read calibration JSON: {e}", path=str(path)) from e


def _camera_matrix(key: str, value: Any) -> np.ndarray | None:
    """3x3 K from a matrix entry: 3x3 or 9 values, or (key "cameraMatrix" only) the released
    DROID form [fx, cx, fy, cy]; None for any other shape."""
    a = np.asarray(value, dtype=np.float64)
    if a.shape == (3, 3):
        return a
    if a.shape == (9,):
        return a.reshape(3, 3)
    if a.shape == (4,) and key == "cameraMatrix":
        fx, cx, fy, cy = a
        return pinhole_K(fx, fy, cx, cy)
    return None


def _entry_to_K(entry: Any, where: str, path: str, episode_id: str
                ) -> tuple[np.ndarray, float | None, tuple[int, int]]:
    if isinstance(entry, dict) and "left" in entry and isinstance(entry["left"], dict):
        base = entry.get("baseline_m")
        entry = {**entry["left"], **({"baseline_m": base} if base is not None else {})}
    if isinstance(entry, dict):
        size = (int(entry.get("width", HD720[0])), int(entry.get("height", HD720[1])))
        base = entry.get("baseline_m")
        for key in ("cameraMatrix", "K", "camera_matrix"):
            K = _camera_matrix(key, entry[key]) if key in entry else None
            if K is not None:
                return K, None if base is None else float(base), size
        cx = entry.get("cx", entry.get("ppx"))
        cy = entry.get("cy", entry.get("ppy"))
        if all(v is not None for v in (entry.get("fx"), entry.get("fy"), cx, cy)):
            return (pinhole_K(float(entry["fx"]), float(entry["fy"]), float(cx), float(cy)),
                    None if base is None else float(base), size)
    raise SourceError(f"unrecognised intrinsics entry {str(entry)[:120]!r}: expected "
                      "cameraMatrix [fx, cx, fy, cy] (+ width, height), fx, fy, cx, cy, or a 3x3 K",
                      path=path, episode_id=episode_id, field=where)


def check_fits_frames(K: np.ndarray, K_found: np.ndarray, found_wh: tuple[int, int],
                      frame_wh: tuple[int, int], path: str, serial: str, episode_id: str) -> None:
    """SourceError unless the principal point of K (rescaled to the frames) is near the centre."""
    W, H = frame_wh
    off_x, off_y = abs(K[0, 2] - W / 2) / W, abs(K[1, 2] - H / 2) / H
    if max(off_x, off_y) <= MAX_PRINCIPAL_OFFSET:
        return
    f = lambda v: f"{v:.1f}"  # noqa: E731
    raise SourceError(
        f"intrinsics for camera {serial} do not fit its {W}x{H} frames: K found fx={f(K_found[0, 0])} "
        f"fy={f(K_found[1, 1])} cx={f(K_found[0, 2])} cy={f(K_found[1, 2])} for "
        f"{found_wh[0]}x{found_wh[1]} puts the principal point at ({f(K[0, 2])}, {f(K[1, 2])}) on the "
        f"frames, {max(off_x, off_y):.0%} of the image off centre. Likely cause: the wrong resolution "
        f"(width/height missing or wrong; K is taken at {HD720[0]}x{HD720[1]} when absent) or the "
        "wrong value order (the released cameraMatrix is [fx, cx, fy, cy])",
        path=path, episode_id=episode_id, field=f"intrinsics[{serial}]")


def scale_K(K: np.ndarray, from_wh: tuple[int, int], to_wh: tuple[int, int]) -> np.ndarray:
    """K for another image size (pixel-unit conversion; pixel centres at integer coords)."""
    sx, sy = to_wh[0] / from_wh[0], to_wh[1] / from_wh[1]
    K2 = K.copy()
    K2[0, 0] *= sx
    K2[1, 1] *= sy
    K2[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K2[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K2


class CalibrationResolver:
    """Resolves K/baseline and refined extrinsics for (episode id, camera serial, role)."""

    def __init__(self, intrinsics_file: str | None, extrinsics_file: str | None,
                 calibration: dict[str, Any] | None, accept_nominal_zed: bool,
                 max_reprojection_error_px: float | None, min_quality_metric: float | None):
        self.intrinsics_path = Path(intrinsics_file) if intrinsics_file else None
        self.extrinsics_path = Path(extrinsics_file) if extrinsics_file else None
        self.calibration = dict(calibration or {})
        self.accept_nominal = bool(accept_nominal_zed)
        self.max_reproj = max_reprojection_error_px
        self.min_quality = min_quality_metric
        self._intr: dict | None = None
        self._extr: dict | None = None

    def _intrinsics_table(self) -> dict:
        if self._intr is None:
            self._intr = _load_json(self.intrinsics_path) if self.intrinsics_path else {}
        return self._intr

    def _extrinsics_table(self) -> dict:
        if self._extr is None:
            self._extr = _load_json(self.extrinsics_path) if self.extrinsics_path else {}
        return self._extr

    def extrinsics_table(self) -> dict:
        """The refined-extrinsics table keyed by episode id ({} without a file)."""
        return self._extrinsics_table()

    def stereo(self, episode_id: str, serial: str, role: str, model: str,
               decoded_wh: tuple[int, int], extra_file: Path | None = None) -> StereoCalibration:
        """K (for `decoded_wh`) and baseline of one camera, or a SourceError saying what to give."""
        sources: list[tuple[str, dict]] = []
        if extra_file is not None and extra_file.is_file():
            sources.append((str(extra_file), _load_json(extra_file)))
        if self.intrinsics_path is not None:
            sources.append((str(self.intrinsics_path), self._intrinsics_table()))
        for path, table in sources:
            ep = table.get(episode_id, table if serial in table else None)
            if isinstance(ep, dict) and serial in ep:
                K, base, size = _entry_to_K(ep[serial], f"intrinsics[{serial}]", path, episode_id)
                return self._fitted(K, base, size, decoded_wh, path, serial, episode_id,
                                    f"intrinsics from {Path(path).name} (camera {serial})")
        for key in (serial, role):
            if key in self.calibration:
                K, base, size = _entry_to_K(self.calibration[key], f"calibration[{key}]",
                                            "source option calibration", episode_id)
                return self._fitted(K, base, size, decoded_wh, "source option calibration", serial,
                                    episode_id, f"intrinsics from the user's config (key {key!r})")
        if self.accept_nominal:
            n = NOMINAL[model]
            K = pinhole_K(n["fx"], n["fy"], n["cx"], n["cy"])
            return StereoCalibration(scale_K(K, (n["width"], n["height"]), decoded_wh),
                                     n["baseline_m"],
                                     f"NOMINAL {model} intrinsics/baseline (accept_nominal_zed=True; "
                                     "not this camera's calibration)")
        raise SourceError(
            f"no intrinsics for camera {serial} ({role}): give intrinsics_file= (post-hoc "
            f"intrinsics.json keyed by episode id and serial), calibration={{'{serial}': "
            "{'fx':..,'fy':..,'cx':..,'cy':..,'baseline_m':..}} in the source options, or set "
            "accept_nominal_zed=True to use nominal ZED values",
            episode_id=episode_id, field=f"intrinsics[{serial}]")

    @staticmethod
    def _fitted(K: np.ndarray, base: float | None, size: tuple[int, int], decoded_wh: tuple[int, int],
                path: str, serial: str, episode_id: str, origin: str) -> StereoCalibration:
        scaled = scale_K(K, size, decoded_wh)
        check_fits_frames(scaled, K, size, decoded_wh, path, serial, episode_id)
        if size != tuple(decoded_wh):
            origin += f", K for {size[0]}x{size[1]} rescaled to {decoded_wh[0]}x{decoded_wh[1]}"
        return StereoCalibration(scaled, base, origin)

    def refined_extrinsics(self, episode_id: str, serial: str) -> tuple[np.ndarray, str] | None:
        """The refined [x, y, z, rx, ry, rz] camera-to-base 6-vector when given and its quality
        metric passes the thresholds; None otherwise (the h5 original is then used)."""
        if self.extrinsics_path is None:
            return None
        ep = self._extrinsics_table().get(episode_id)
        if not isinstance(ep, dict) or serial not in ep:
            return None
        v = np.asarray(ep[serial], dtype=np.float64)
        if v.shape != (6,) or not np.isfinite(v).all():
            raise SourceError(f"refined extrinsics must be 6 finite floats, found {ep[serial]!r}",
                              path=str(self.extrinsics_path), episode_id=episode_id, field=serial)
        metric = str(ep.get(f"{serial}_metric_type", ""))
        quality = ep.get(f"{serial}_quality_metric")
        if quality is not None:
            q = float(quality)
            if metric == "Reprojection_error":  # lower is better
                if self.max_reproj is not None and q > self.max_reproj:
                    return None
            elif self.min_quality is not None and q < self.min_quality:  # higher is better
                return None
        return v, f"refined extrinsics from {self.extrinsics_path.name} ({metric or 'no metric'}={quality})"
