"""Decoding (and encoding) of stereo/depth evaluation files from bytes (no file access here: the
caller reads the bytes).

Disparity ground truth: PFM (Middlebury; +inf = unknown), PNG (8-bit: value = disparity;
16-bit: value / 256, KITTI; 0 = unknown; override with `png_scale`), NPY/NPZ (float; an NPZ's
"disparity" array, or its only array). Depth: PFM, NPY/NPZ ("depth" or the only array) in metres,
PNG 16-bit in millimetres (`png_scale` 0.001). Images: anything OpenCV decodes, returned RGB.
"""

from __future__ import annotations

import io
import re

import cv2
import numpy as np

__all__ = ["decode_pfm", "encode_pfm", "decode_image", "decode_disparity", "decode_depth"]


def decode_pfm(data: bytes) -> np.ndarray:
    """PFM -> float32 (H, W) or (H, W, 3), top row first."""
    header = re.match(rb"(P[Ff])\s+(\d+)\s+(\d+)\s+(-?[\d.eE+-]+)\s", data)
    if not header:
        raise ValueError("not a PFM file: expected 'Pf'/'PF', width, height and scale in the header")
    kind, w, h, scale = header.group(1), int(header.group(2)), int(header.group(3)), float(header.group(4))
    channels = 3 if kind == b"PF" else 1
    dtype = "<f4" if scale < 0 else ">f4"
    count = w * h * channels
    body = np.frombuffer(data, dtype=dtype, count=count, offset=header.end())
    if body.size != count:
        raise ValueError(f"PFM body holds {body.size} values, header says {count}")
    shape = (h, w, 3) if channels == 3 else (h, w)
    return np.flipud(body.reshape(shape)).astype(np.float32)


def encode_pfm(array: np.ndarray) -> bytes:
    """float (H, W) or (H, W, 3) -> little-endian PFM bytes."""
    a = np.asarray(array, dtype="<f4")
    kind = b"PF" if a.ndim == 3 else b"Pf"
    header = kind + f"\n{a.shape[1]} {a.shape[0]}\n-1.0\n".encode()
    return header + np.ascontiguousarray(np.flipud(a)).tobytes()


def _decode_raw(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("OpenCV cannot decode this image")
    return img


def decode_image(data: bytes) -> np.ndarray:
    """Image bytes -> RGB uint8 (H, W, 3)."""
    img = _decode_raw(data)
    if img.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit image, got {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)


def _npz_array(data: bytes, key: str) -> np.ndarray:
    with np.load(io.BytesIO(data)) as npz:
        if key in npz.files:
            return npz[key]
        if len(npz.files) == 1:
            return npz[npz.files[0]]
        raise ValueError(f"NPZ holds {npz.files}; expected a {key!r} array or a single array")


def _single_channel(a: np.ndarray, what: str) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"{what} must be a single-channel (H, W) map, got shape {a.shape}")
    return a


def decode_disparity(data: bytes, suffix: str, png_scale: float | None = None) -> np.ndarray:
    """Disparity in pixels, float32 (H, W); unknown pixels keep their marker (+inf or 0)."""
    suffix = suffix.lower().lstrip(".")
    if suffix == "pfm":
        return _single_channel(decode_pfm(data), "disparity")
    if suffix == "npy":
        return _single_channel(np.load(io.BytesIO(data)), "disparity").astype(np.float32)
    if suffix == "npz":
        return _single_channel(_npz_array(data, "disparity"), "disparity").astype(np.float32)
    raw = _single_channel(_decode_raw(data), "disparity")
    scale = png_scale if png_scale is not None else (1.0 / 256.0 if raw.dtype == np.uint16 else 1.0)
    return raw.astype(np.float32) * np.float32(scale)


def decode_depth(data: bytes, suffix: str, png_scale: float = 0.001) -> np.ndarray:
    """Depth in metres, float32 (H, W); PNG values times `png_scale` (default mm -> m)."""
    suffix = suffix.lower().lstrip(".")
    if suffix == "pfm":
        return _single_channel(decode_pfm(data), "depth")
    if suffix == "npy":
        return _single_channel(np.load(io.BytesIO(data)), "depth").astype(np.float32)
    if suffix == "npz":
        return _single_channel(_npz_array(data, "depth"), "depth").astype(np.float32)
    return _single_channel(_decode_raw(data), "depth").astype(np.float32) * np.float32(png_scale)
