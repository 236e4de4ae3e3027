"""`appf inspect OUT`: the summary of an output (local directory or URL), and an optional PNG picture."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from appf.schemas.tables import image_bytes
from appf.storage import Location, layout, open_group


def _manifest(out: Location) -> dict:
    return json.loads(out.read_text(layout.MANIFEST))


def _table(out: Location, key: str):
    return pq.read_table(io.BytesIO(out.read_bytes(key)))


def summary_text(out: str | Path) -> str:
    out = Location(out)
    m = _manifest(out)
    c = m["counts"]
    lines = [
        f"appf output {out.url}",
        f"  schema {m['schema_version']}, code {m['code_version']}, config {m['config_hash']}, "
        f"created {m['created_at']}",
        f"  sources {', '.join(m['sources'])}; depth {m['provenance']['depth_backend']}, "
        f"masks {m['provenance']['mask_backend']}, {m['provenance']['n_points']} points/frame, "
        f"crop {m['provenance']['crop_box']}",
        f"  episodes {c['episodes']}/{c['planned_episodes']}, frames {c['frames']}, points {c['points']}, "
        f"SFT records {c['sft_records']}, failures {c['failures']} {c['failures_by_stage'] or ''}",
        f"  action: {m.get('action', {}).get('dim', '?')} values per step: "
        f"{m.get('action', {}).get('space', 'unknown (written before appf recorded it)')}",
        "  shard                               episodes  frames  failures  sft",
    ]
    for s in m["shards"]:
        lines.append(f"  {str(s['path'] or '(no episode landed)'):<36}{s['episodes']:>8}{s['frames']:>8}"
                     f"{s['failures']:>10}{s['sft_records']:>5}")
    failures = []
    for s in m["shards"]:
        if s["failures"]:
            failures += _table(out, s["failures_path"]).to_pylist()
    for f in failures[:20]:
        lines.append(f"  FAILED {f['dataset']}/{f['episode_id']} at {f['stage']}: "
                     f"{f['error_type']}: {f['message'].splitlines()[0][:160]}")
    if len(failures) > 20:
        lines.append(f"  ... {len(failures) - 20} more failures")
    return "\n".join(lines)


def _decode(image: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))


def _project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    z = points_cam[:, 2:3]
    return (points_cam[:, :2] / z) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]


def write_png(out: str | Path, png: str | Path, episode_id: str | None = None,
              keyframe: int = 0) -> Path:
    """Picture: the point cloud of an SFT record's observation frame (coloured), its image, and
    the keyframe image with the anchor and the waypoints drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Location(out)
    m = _manifest(out)
    for s in m["shards"]:
        if not s["path"] or not s["sft_records"]:
            continue
        rows = _table(out, s["sft_path"]).to_pylist()
        rows = [r for r in rows if episode_id in (None, r["episode_id"])]
        if rows:
            break
    else:
        raise ValueError(f"{out.url}: no SFT record{' for episode ' + episode_id if episode_id else ''} "
                         "to draw")
    row = rows[min(keyframe, len(rows) - 1)]
    root = open_group(out, s["path"])
    ids = list(np.asarray(root["meta/episode_ids"][:]))
    ends = np.asarray(root["meta/episode_ends"][:])
    e = ids.index(row["episode_id"])
    t = int((0 if e == 0 else ends[e - 1]) + row["obs_frame"])
    cloud = np.asarray(root["data/point_cloud"][t])
    img = _decode(image_bytes(row["image"]))
    K = np.asarray(row["K"]).reshape(3, 3)

    fig = plt.figure(figsize=(15, 5))
    ax = fig.add_subplot(1, 3, 1, projection="3d")
    ax.scatter(cloud[:, 0], cloud[:, 1], cloud[:, 2], c=np.clip(cloud[:, 3:6], 0, 1), s=3)
    ax.set_title(f"{row['episode_id']} step {row['obs_frame']}: {len(cloud)} points (base frame)")
    ax.set_xlabel("x (m)"), ax.set_ylabel("y (m)"), ax.set_zlabel("z (m)")
    ax2 = fig.add_subplot(1, 3, 2)
    ax2.imshow(img)
    ax2.set_title(f"image, step {row['obs_frame']}")
    ax2.axis("off")
    ax3 = fig.add_subplot(1, 3, 3)
    ax3.imshow(img)
    wp = np.asarray(row["waypoints_cam"])
    if len(wp) and np.all(wp[:, 2] > 0):
        uv = _project(wp, K)
        ax3.plot(uv[:, 0], uv[:, 1], "-o", color="cyan", ms=3, label="waypoints")
    u, v = row["anchor_uv"]
    ax3.plot([u], [v], "x", color="red", ms=14, mew=3, label="anchor")
    ax3.set_xlim(0, row["width"]), ax3.set_ylim(row["height"], 0)
    ax3.legend(loc="lower right", fontsize=8)
    ax3.set_title(f"keyframe {row['keyframe_index']} -> step {row['target_frame']}, "
                  f"gripper {row['gripper_command']:.0f}")
    ax3.axis("off")
    fig.suptitle(row["instruction"])
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png
