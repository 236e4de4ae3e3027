"""agibot: depth unprojection through the camera JSONs, conventions, dirty cases, job."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from appf.pipelines.sources import make_source
from appf.schemas import SourceError, check_episode
from appf.transforms import synthetic_scene as scene
from tests.fixtures_agibot import write_agibot


@pytest.fixture(scope="module")
def agi(tmp_path_factory):
    return write_agibot(tmp_path_factory.mktemp("agibot"))


def _read(root: Path, **opts):
    src = make_source("agibot", {"input": str(root), **opts})
    refs = src.list_refs()
    return refs, check_episode(src.read(refs[0]))


def _unproject(depth: np.ndarray, K: np.ndarray, T_base_cam: np.ndarray) -> np.ndarray:
    v, u = np.mgrid[: depth.shape[0], : depth.shape[1]]
    z = depth
    p = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z, np.ones_like(z)], -1)
    return (p @ T_base_cam.T)[..., :3]


def test_depth_unprojects_onto_known_surfaces(agi):
    refs, ep = _read(agi.root)
    assert refs[0].episode_id == "327_648649"
    head = ep.cameras["head"]
    for t in (0, 15):
        d = head.depth[t]
        seg = agi.segs[0][t]
        pts = _unproject(d, head.intrinsics, head.T_base_cam_at(t))
        table = (seg == scene.TABLE_ID) & (d > 0)
        assert table.sum() > 100
        assert np.abs(pts[table, 2] - scene.TABLE_HEIGHT).max() < 3e-3  # mm quantisation
        wall = (seg == scene.BACKGROUND_ID) & (d > 0)
        if wall.any():
            on_wall = np.abs(pts[..., 0] - scene.WALL_X) < 3e-3
            on_floor = np.abs(pts[..., 2] - scene.FLOOR_Z) < 3e-3
            assert (on_wall | on_floor)[wall].mean() > 0.99
        if t == 15:  # the head moved: the frame-0 extrinsics put the table 6 cm off
            wrong = _unproject(d, head.intrinsics, head.T_base_cam_at(0))
            assert np.abs(wrong[table, 2]).min() > 0.05
    # colour agrees with a re-render through the same K and per-frame camera-to-base pose
    rgb = scene.render_view(agi.scripts[0].state(9), head.intrinsics, head.T_base_cam_at(9), 48, 64)[0]
    assert np.abs(head.rgb[9].astype(float) - rgb).mean() < 8


def test_quaternion_gripper_and_action_conventions(agi):
    _, ep = _read(agi.root, cameras=["head", "hand_left", "hand_right"])
    assert ep.robot.arm_count == 2 and ep.steps.ee_pose.shape == (16, 2, 7)
    # right arm: Rz(0.3) Rx(pi) -> xyzw = +-(cos 0.15, sin 0.15, 0, 0), hand-computed
    q = ep.steps.ee_pose[0, 1, 3:]
    np.testing.assert_allclose(np.abs(q), [np.cos(0.15), np.sin(0.15), 0, 0], atol=1e-9)
    np.testing.assert_allclose(ep.steps.ee_pose[:, 0, :3], agi.scripts[0].ee_pose()[:, :3], atol=1e-12)
    # gripper: commands at frames 2, 5, 8, 11, 14 held; frames 0-1 take the first command
    g = agi.scripts[0].gripper
    want = g[[2, 2, 2, 2, 2, 5, 5, 5, 8, 8, 8, 11, 11, 11, 14, 14]]
    np.testing.assert_allclose(ep.steps.gripper[:, 0], want)
    np.testing.assert_allclose(ep.steps.gripper[:, 1], 0.0)
    assert ep.steps.action.shape == (16, 16)
    np.testing.assert_allclose(ep.steps.action[6, :3], agi.scripts[0].ee_pose()[5, :3])
    np.testing.assert_allclose(ep.steps.timestamp[3], 0.1, atol=1e-6)
    assert ep.language_instruction == agi.scripts[0].instruction
    assert [s["skill"] for s in ep.metadata["segments"]] == ["Pick", "Place"]
    assert ep.cameras["hand_left"].T_base_cam.shape == (16, 4, 4)
    assert ep.cameras["hand_left"].depth is None


def _copy(agi, tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "copy"
    shutil.copytree(agi.root, root)
    return root, root / "proprio_stats" / "327" / "648649" / "proprio_stats.h5"


def _fails(root: Path, **opts) -> SourceError:
    src = make_source("agibot", {"input": str(root), **opts})
    with pytest.raises(SourceError) as e:
        src.read(src.list_refs()[0])
    assert e.value.episode_id == "327_648649"
    return e.value


def test_dirty_cases(agi, tmp_path):
    root, h5p = _copy(agi, tmp_path)
    with h5py.File(h5p, "a") as f:  # action longer than state
        a = f["action/effector/position"][()]
        del f["action/effector/position"]
        f["action/effector/position"] = np.zeros((20, 2))
    e = _fails(root)
    assert e.field == "action/effector/position" and "more than" in str(e) and e.path == str(h5p)
    with h5py.File(h5p, "a") as f:  # short action without index
        del f["action/effector/position"], f["action/effector/index"]
        f["action/effector/position"] = a
    e = _fails(root)
    assert "no usable index" in str(e)
    with h5py.File(h5p, "a") as f:  # dexhand
        del f["action/effector/position"]
        f["action/effector/position"] = np.zeros((16, 12))
    assert "dexhand" in str(_fails(root))
    with h5py.File(h5p, "a") as f:  # empty (0,) dataset where data is needed
        del f["state/end/position"]
        f["state/end/position"] = np.zeros((0,))
    e = _fails(root)
    assert e.field == "state/end/position" and "empty" in str(e)


def test_missing_task_info_and_frames(agi, tmp_path):
    root, _ = _copy(agi, tmp_path)
    (root / "task_info" / "task_327.json").unlink()
    e = _fails(root)
    assert e.field == "task_info" and "allow_missing_task_info" in str(e)
    _, ep = _read(root, allow_missing_task_info=True)
    assert ep.language_instruction == "" and ep.metadata["task_info_found"] is False
    (root / "observations/327/648649/depth/head_depth_000015.png").unlink()
    e = _fails(root, allow_missing_task_info=True)
    assert e.field == "depth/head_depth" and "15 head depth PNGs" in str(e)


def test_outer_parameters_layout(tmp_path):
    fix = write_agibot(tmp_path / "a", steps=16, inner_parameters=False)
    _, ep = _read(fix.root)
    np.testing.assert_allclose(ep.cameras["head"].T_base_cam, fix.head_poses[0], atol=1e-12)


def test_job_end_to_end(agi, tmp_path):
    from appf.launch.runners import local_options
    from appf.pipelines.config import JobConfig
    from appf.pipelines.job import run_job

    cfg = JobConfig.from_dict(dict(source="agibot", source_options={"input": str(agi.root)},
                                   out=str(tmp_path / "out"), n_points=128, progress_every_s=0,
                                   depth="ground_truth", masks="none"))
    s = run_job(cfg, local_options(1))
    assert s.failures == 0, s.failures_by_stage
    assert s.episodes == 1 and s.frames == 16
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]["episodes"] == 1


def test_unreadable_proprio_h5_names_file_episode_field(agi, tmp_path):
    # A truncated/corrupt proprio_stats.h5 (a partial tar extract): h5py's own OSError names no
    # file, so the source must.
    root, h5p = _copy(agi, tmp_path)
    h5p.write_bytes(h5p.read_bytes()[:100])
    e = _fails(root)
    assert e.path == str(h5p) and e.field == "proprio_stats" and "cannot open HDF5" in str(e)
