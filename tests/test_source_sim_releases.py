"""robotwin, calvin, rlbench, maniskill: each release layout, written from a scene of known
geometry, must give clouds on the known surfaces in the robot base frame; documented dirty cases
raise SourceError naming file, episode and field; a whole job runs per source."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from appf.launch.runners import local_options
from appf.pipelines.config import JobConfig
from appf.pipelines.job import run_job
from appf.pipelines.sources import make_source
from appf.schemas import SourceError, check_episode, materialize
from appf.transforms import synthetic_scene as scene
from tests import fixtures_sim as fx


def _read(name: str, **opts):
    src = make_source(name, opts)
    refs = src.list_refs()
    return src, refs, check_episode(src.read(refs[0]))


def _unproject_base(depth: np.ndarray, K: np.ndarray, T_base_cam: np.ndarray) -> np.ndarray:
    v, u = np.mgrid[: depth.shape[0], : depth.shape[1]]
    p = np.stack([(u - K[0, 2]) * depth / K[0, 0], (v - K[1, 2]) * depth / K[1, 1], depth,
                  np.ones_like(depth)], -1)
    return (p @ T_base_cam.T)[..., :3]


def assert_on_known_surfaces(ep, cam: str, rec: fx.Recording, tol_m: float, frames=(0, -1)) -> None:
    """Table pixels at base z = 0; cube pixels inside the cube's box from the script's state."""
    c = ep.cameras[cam]
    depth = materialize(c.depth)
    for t in frames:
        t = t % rec.steps
        pts = _unproject_base(depth[t], c.intrinsics, c.T_base_cam_at(t))
        table = (rec.seg[t] == scene.TABLE_ID) & (depth[t] > 0)
        assert table.sum() > 50
        assert np.abs(pts[table, 2] - scene.TABLE_HEIGHT).max() < tol_m
        cube = rec.seg[t] == scene.CUBE_ID
        if cube.any():
            local = (pts[cube] - rec.script.cube_poses[t][:3, 3]) @ rec.script.cube_poses[t][:3, :3]
            assert np.abs(local).max() < scene.CUBE_HALF + tol_m


def assert_steps_match(ep, rec: fx.Recording, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(ep.steps.ee_pose[:, 0, :3], rec.script.ee_pose()[:, :3], atol=atol)
    q, want = ep.steps.ee_pose[:, 0, 3:], rec.script.ee_pose()[:, 3:]
    np.testing.assert_allclose(np.abs(np.sum(q * want, axis=1)), 1.0, atol=atol)  # same rotation


# ---------------------------------------------------------------------------------------------- RoboTwin

@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("robotwin")
    rec = fx.record(seed=1)
    fx.write_robotwin(root / "classic", rec)
    fx.write_robotwin(root / "v1", rec, v1=True)
    return root, rec


@pytest.mark.parametrize("layout", ["classic", "v1"])
def test_robotwin_clouds_on_known_surfaces(twin, layout):
    root, rec = twin
    _, refs, ep = _read("robotwin", input=str(root / layout), T_world_base=fx.T_WORLD_BASE.tolist())
    assert refs[0].episode_id == "data/episode0"
    assert_on_known_surfaces(ep, "head_camera", rec, tol_m=1e-4)
    assert_steps_match(ep, rec)
    np.testing.assert_allclose(ep.steps.gripper[:, 0], rec.script.gripper, atol=1e-6)
    np.testing.assert_allclose(ep.steps.gripper[:, 1], 0.0)
    assert ep.language_instruction == rec.script.instruction
    rgb = materialize(ep.cameras["head_camera"].rgb).astype(float)
    err, err_swapped = np.abs(rgb - rec.rgb).mean(), np.abs(rgb - rec.rgb[..., ::-1]).mean()
    assert err < 6 and err < err_swapped / 2  # JPEG loss only; RGB, not BGR
    assert ep.steps.ee_pose.shape == (rec.steps, 2, 7)


def test_robotwin_without_base_pose_says_world_frame(twin):
    root, rec = twin
    _, _, ep = _read("robotwin", input=str(root / "classic"))
    assert any("world frame" in c for c in ep.conversions)
    pts = _unproject_base(materialize(ep.cameras["head_camera"].depth)[0], ep.cameras["head_camera"].intrinsics,
                          ep.cameras["head_camera"].T_base_cam_at(0))
    np.testing.assert_allclose(pts[rec.seg[0] == scene.TABLE_ID, 2], 0.75, atol=1e-4)  # world table height


def test_robotwin_dirty_cases(twin, tmp_path):
    root, rec = twin
    bad = tmp_path / "bad"
    shutil.copytree(root / "classic", bad)
    path = bad / "data" / "episode0.hdf5"
    with h5py.File(path, "a") as f:
        f["observation/head_camera/extrinsic_cv"][0, 0, 3] += 0.05
    with pytest.raises(SourceError, match="disagree") as e:
        _read("robotwin", input=str(bad))
    assert "episode0.hdf5" in str(e.value) and "extrinsic_cv" in str(e.value)
    with h5py.File(path, "a") as f:
        del f["endpose/right_gripper"]
        f["endpose/right_gripper"] = np.ones(3)
    with pytest.raises(SourceError, match="rows") as e:
        _read("robotwin", input=str(bad))
    assert "endpose/right_gripper" in str(e.value)
    with pytest.raises(SourceError, match="camera 'left_camera' not in the file"):
        _read("robotwin", input=str(root / "classic"), cameras=["left_camera"])


# ---------------------------------------------------------------------------------------------- CALVIN

@pytest.fixture(scope="module")
def calvin(tmp_path_factory):
    root = tmp_path_factory.mktemp("calvin")
    K, T_base_cam, cfg = fx.calvin_camera()
    rec = fx.record(seed=2, H=48, W=48, K=K, T_base_cam=T_base_cam)
    fx.write_calvin(root / "task_D_D" / "training", rec, cfg)
    return root / "task_D_D", rec, K


def test_calvin_recordings_on_known_surfaces(calvin):
    split, rec, K = calvin
    _, refs, ep = _read("calvin", input=str(split), episodes="recordings")
    assert refs[0].episode_id == "training/0000358-0000373" and ep.num_steps == rec.steps
    np.testing.assert_allclose(ep.cameras["static"].intrinsics, K, atol=1e-9)  # from fov, +0.5 centres
    assert_on_known_surfaces(ep, "static", rec, tol_m=1e-4)
    assert_steps_match(ep, rec)
    np.testing.assert_array_equal(ep.steps.gripper[:, 0], (rec.script.gripper >= 0.5).astype(float))
    np.testing.assert_allclose(ep.steps.action[:-1, :3], rec.script.ee_pose()[1:, :3], atol=1e-5)
    assert ep.language_instruction == ""


def test_calvin_language_windows(calvin):
    split, rec, _ = calvin
    _, refs, ep = _read("calvin", input=str(split / "training"))
    assert [r.episode_id for r in refs] == ["training/0000360-0000371"]
    assert ep.num_steps == 12 and ep.language_instruction == rec.script.instruction
    np.testing.assert_allclose(ep.steps.ee_pose[:, 0, :3], rec.script.ee_pose()[2:14, :3], atol=1e-5)


def test_calvin_dirty_cases(calvin, tmp_path):
    split, rec, _ = calvin
    bad = tmp_path / "split"
    shutil.copytree(split / "training", bad)
    (bad / "episode_0000365.npz").unlink()
    with pytest.raises(SourceError, match="missing") as e:
        _read("calvin", input=str(bad))
    assert "episode=split/0000360-0000371" in str(e.value) and "field=episode_*.npz" in str(e.value)
    shutil.rmtree(bad / ".hydra")
    with pytest.raises(SourceError, match="cameras.static"):
        _read("calvin", input=str(bad), episodes="recordings")


# ---------------------------------------------------------------------------------------------- RLBench

@pytest.fixture(scope="module")
def rlb(tmp_path_factory):
    root = tmp_path_factory.mktemp("rlbench")
    rec = fx.record(seed=3)
    fx.write_rlbench(root, rec, variation=1)
    fx.write_rlbench(root, rec, task="close_jar", all_variations=True)
    return root, rec


@pytest.mark.parametrize("task", ["pick_up_cup", "close_jar"])
def test_rlbench_layouts_on_known_surfaces(rlb, task):
    root, rec = rlb
    seg_ids = {"robot": [fx.ROBOT_HANDLE], "task_object": [fx.CUBE_HANDLE]}
    _, refs, ep = _read("rlbench", input=str(root / task), T_world_base=fx.T_WORLD_BASE.tolist(),
                        segment_ids=seg_ids)
    assert refs[0].episode_id in ("variation1/episode0", "all_variations/episode0")
    # 24-bit depth over 4.5 m: quantisation ~0.3 um
    assert_on_known_surfaces(ep, "front", rec, tol_m=1e-4)
    assert_steps_match(ep, rec)
    seg = materialize(ep.cameras["front"].segmentation)
    np.testing.assert_array_equal(seg == fx.ROBOT_HANDLE, rec.seg == scene.ROBOT_ID)
    np.testing.assert_array_equal(seg == fx.TABLE_HANDLE, rec.seg == scene.TABLE_ID)  # little-endian, 3 bytes
    assert ep.language_instruction == rec.script.instruction
    np.testing.assert_allclose(ep.steps.action[:-1, :3], ep.steps.ee_pose[1:, 0, :3])


def test_rlbench_refuses_foreign_pickle(rlb, tmp_path):
    root, rec = rlb
    bad = tmp_path / "t"
    shutil.copytree(root / "pick_up_cup", bad / "pick_up_cup")
    ep_dir = bad / "pick_up_cup" / "variation1" / "episodes" / "episode0"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    import pickle
    (ep_dir / "low_dim_obs.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(SourceError, match="refused global builtins.print") as e:
        _read("rlbench", input=str(bad))
    assert "low_dim_obs.pkl" in str(e.value)
    shutil.rmtree(ep_dir / "front_depth")
    (ep_dir / "front_depth").mkdir()
    fx.write_rlbench(tmp_path / "ok", rec)
    okdir = tmp_path / "ok" / "pick_up_cup" / "variation0" / "episodes" / "episode0"
    (okdir / "front_depth" / "3.png").unlink()
    with pytest.raises(SourceError, match="15 front_depth images for 16 observations"):
        _read("rlbench", input=str(tmp_path / "ok"))


# ---------------------------------------------------------------------------------------------- ManiSkill

@pytest.fixture(scope="module")
def mani(tmp_path_factory):
    root = tmp_path_factory.mktemp("maniskill")
    rec = fx.record(seed=4)
    fx.write_maniskill(root / "PickCube-v1", rec, traj_ids=(0, 3))
    fx.write_maniskill(root / "demos", rec, stem="trajectory", obs=False)
    return root, rec


def test_maniskill_clouds_in_true_base_frame(mani):
    root, rec = mani
    seg_ids = {"robot": [fx.MS_ROBOT_ID], "task_object": [fx.MS_CUBE_ID]}
    _, refs, ep = _read("maniskill", input=str(root / "PickCube-v1"), segment_ids=seg_ids)
    assert [r.episode_id for r in refs][:2] == [
        "trajectory.rgb+depth+segmentation.pd_ee_delta_pose.physx_cpu/traj_0",
        "trajectory.rgb+depth+segmentation.pd_ee_delta_pose.physx_cpu/traj_3"]
    assert_on_known_surfaces(ep, "base_camera", rec, tol_m=1.5e-3)  # mm depth
    assert_steps_match(ep, rec)
    np.testing.assert_allclose(ep.steps.gripper[:, 0], rec.script.gripper, atol=1e-5)
    assert "pd_ee_delta_pose" in ep.action_space and ep.steps.action.shape == (rec.steps, 7)
    labels = materialize(ep.cameras["base_camera"].segmentation)
    np.testing.assert_array_equal(labels == fx.MS_CUBE_ID, rec.seg == scene.CUBE_ID)


def test_maniskill_without_observations_names_the_replay_command(mani):
    root, _ = mani
    src = make_source("maniskill", {"input": str(root / "demos")})
    ref = src.list_refs()[0]
    with pytest.raises(SourceError, match="replay_trajectory") as e:
        src.read(ref)
    assert "trajectory.h5" in str(e.value) and "traj_0/obs/sensor_data" in str(e.value)


# ---------------------------------------------------------------------------------------------- jobs

@pytest.mark.parametrize("name", ["robotwin", "calvin", "rlbench", "maniskill"])
def test_job_per_source(name, twin, calvin, rlb, mani, tmp_path):
    inputs = {"robotwin": (twin[0] / "classic", {"T_world_base": fx.T_WORLD_BASE.tolist()}),
              "calvin": (calvin[0], {"episodes": "recordings"}),
              "rlbench": (rlb[0], {"T_world_base": fx.T_WORLD_BASE.tolist(),
                                   "segment_ids": {"robot": [fx.ROBOT_HANDLE], "task_object": [fx.CUBE_HANDLE]}}),
              "maniskill": (mani[0] / "PickCube-v1", {})}
    path, opts = inputs[name]
    crop = [[0.1, -0.5, -0.02], [1.2, 0.5, 0.5]]
    cfg = JobConfig.from_dict(dict(source=name, source_options={"input": str(path), **opts},
                                   out=str(tmp_path / "out"), n_points=64, episodes_per_shard=1,
                                   crop=crop, progress_every_s=0,
                                   **({"masks": "ground_truth", "mask_mode": "no_robot"}
                                      if name == "rlbench" else {})))
    summary = run_job(cfg, local_options(1))
    n_eps = len(make_source(name, cfg.source_options).list_refs())
    assert summary.failures == 0 and summary.episodes == n_eps
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["frames"] == 16 * n_eps
    if name == "rlbench":  # handle masks -> labels: robot points dropped, the cube kept
        import zarr
        labels = zarr.open_group(str(tmp_path / "out" / manifest["shards"][0]["path"]), mode="r")["data/point_label"][:]
        assert (labels == 1).sum() == 0 and (labels == 2).sum() > 0
