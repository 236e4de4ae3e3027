"""bridge_raw: restricted unpickler, relative-Euler and gripper conversions, depth, dirty cases, job."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from appf.pipelines.sources import make_source
from appf.pipelines.sources.bridge_raw import bridge_state_to_pose7
from appf.pipelines.sources.safe_pickle import safe_load
from appf.schemas import EpisodeValidationError, SourceError, check_episode
from appf.transforms import synthetic_scene as scene
from tests.fixtures_bridge import write_bridge_raw


@pytest.fixture(scope="module")
def br(tmp_path_factory):
    return write_bridge_raw(tmp_path_factory.mktemp("bridge"))


def _calib(br):
    return {"intrinsics": {"image_0": br.K.tolist()}, "extrinsics": {"image_0": br.T_base_cam.tolist()}}


def test_relative_euler_hand_checked():
    # rpy = 0 -> the default gripper-down rotation [[0,0,1],[0,1,0],[-1,0,0]] = Ry(+90 deg):
    # quaternion xyzw (0, sin 45, 0, cos 45).
    q = bridge_state_to_pose7(np.array([[0.1, 0.2, 0.3, 0.0, 0.0, 0.0]]))[0]
    np.testing.assert_allclose(q, [0.1, 0.2, 0.3, 0, np.sqrt(0.5), 0, np.sqrt(0.5)], atol=1e-12)
    # yaw = 90 deg: Rz(90) @ Ry(90) -> qz * qy = (-0.5, 0.5, 0.5, 0.5).
    q = bridge_state_to_pose7(np.array([[0, 0, 0, 0.0, 0.0, np.pi / 2]]))[0, 3:]
    np.testing.assert_allclose(q * np.sign(q[3]), [-0.5, 0.5, 0.5, 0.5], atol=1e-12)


def test_read_conventions(br):
    src = make_source("bridge_raw", {"input": str(br.root)})
    ref = src.list_refs()[0]
    assert ref.episode_id.endswith("raw__traj_group0__traj0")
    ep = src.read(ref)
    cam = ep.cameras["image_0"]
    assert cam.intrinsics is None and cam.intrinsics_unknown
    # no calibration released: the camera says so and the episode validates; base-frame geometry
    # is refused with the "no extrinsics" message
    assert cam.T_base_cam is None and cam.extrinsics_unknown
    check_episode(ep)
    with pytest.raises(ValueError, match="no extrinsics"):
        cam.T_base_cam_at(0)
    # a camera without extrinsics and without the flag is still invalid
    cam.extrinsics_unknown = False
    with pytest.raises(EpisodeValidationError, match="T_base_cam"):
        check_episode(ep)
    want = np.stack([scene.pose_to_xyzquat(P) for P in br.eef])
    np.testing.assert_allclose(ep.steps.ee_pose[:, 0, :3], want[:, :3], atol=1e-12)
    np.testing.assert_allclose(np.abs(np.sum(ep.steps.ee_pose[:, 0, 3:] * want[:, 3:], 1)), 1, atol=1e-9)
    np.testing.assert_allclose(ep.steps.gripper[:, 0], br.script.gripper, atol=1e-12)  # 1 - (1 = open)
    assert ep.steps.action.shape == (16, 7)
    np.testing.assert_allclose(ep.steps.action[:-1, 6], br.script.gripper[1:], atol=1e-6)
    np.testing.assert_allclose(ep.steps.action[-1, :6], 0)
    assert ep.language_instruction == br.script.instruction
    np.testing.assert_allclose(ep.steps.timestamp[2], 0.4, atol=1e-6)
    # depth_images0: uint16 mm -> metres, equal to the rendered depth within 0.5 mm
    d = scene.render_view(br.script.state(5), br.K, br.T_base_cam, 48, 64)[1]
    assert np.abs(cam.depth[5] - d).max() <= 5e-4 + 1e-6


def test_restricted_unpickler_refuses_code(tmp_path, br):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"full_state": Evil()}))
    with pytest.raises(SourceError, match="refused global (posix|os).system") as e:
        safe_load(p, "ep", "obs_dict.pkl")
    assert e.value.path == str(p) and e.value.field == "obs_dict.pkl"
    assert isinstance(safe_load(br.traj / "obs_dict.pkl")["full_state"], np.ndarray)
    p.write_bytes(pickle.dumps({"x": np.float64(1.5), "s": {1, 2}, "t": (1, [2])}, protocol=2))
    assert safe_load(p)["x"] == 1.5


def test_latency_fix_and_dirty_cases(br, tmp_path):
    old = write_bridge_raw(tmp_path / "old", stamp="2021-06-01_10-00-00")
    ep = make_source("bridge_raw", {"input": str(old.root)}).read(
        make_source("bridge_raw", {"input": str(old.root)}).list_refs()[0])
    assert ep.num_steps == 15 and ep.cameras["image_0"].rgb.shape[0] == 15
    np.testing.assert_allclose(ep.steps.ee_pose[:, 0, :3], old.script.ee_pose()[1:, :3], atol=1e-12)
    root = tmp_path / "copy"
    shutil.copytree(br.root, root)
    traj = root / br.traj.relative_to(br.root)
    src = make_source("bridge_raw", {"input": str(root)})
    ref = src.list_refs()[0]
    (traj / "images0" / "im_15.jpg").unlink()
    with pytest.raises(SourceError) as e:
        src.read(ref)
    assert e.value.field == "images0" and e.value.episode_id == ref.episode_id
    with open(traj / "policy_out.pkl", "wb") as f:
        pickle.dump([{"actions": np.zeros(7)}] * 3, f)
    with pytest.raises(SourceError) as e:
        src.read(ref)
    assert e.value.field == "actions" and "15 actions" in str(e.value)


def test_job_end_to_end(br, tmp_path):
    from appf.launch.runners import local_options
    from appf.pipelines.config import JobConfig
    from appf.pipelines.job import run_job

    cfg = JobConfig.from_dict(dict(source="bridge_raw", source_options={"input": str(br.root), **_calib(br)},
                                   out=str(tmp_path / "out"), n_points=128, progress_every_s=0,
                                   depth="ground_truth", masks="none",
                                   crop=[[0.0, -0.6, -0.05], [1.0, 0.6, 0.6]]))
    s = run_job(cfg, local_options(1))
    assert s.failures == 0, s.failures_by_stage
    assert s.episodes == 1 and s.frames == 16


def test_job_without_extrinsics_fails_at_pointcloud_stage(br, tmp_path):
    # intrinsics given (ground-truth sensor depth needs K), no extrinsics: read and depth pass,
    # the point-cloud stage fails with the documented "no extrinsics" message.
    from appf.launch.runners import local_options
    from appf.pipelines.config import JobConfig
    from appf.pipelines.job import run_job

    cfg = JobConfig.from_dict(dict(source="bridge_raw", source_options={"input": str(br.root),
                                                                         "intrinsics": _calib(br)["intrinsics"]},
                                   out=str(tmp_path / "out"), n_points=128, progress_every_s=0,
                                   depth="ground_truth", masks="none"))
    s = run_job(cfg, local_options(1))
    assert s.episodes == 0 and s.failures_by_stage == {"pointcloud": 1}
    (row,) = [r for f in sorted((tmp_path / "out/failures").glob("*.parquet"))
              for r in pq.read_table(f).to_pylist()]
    assert row["stage"] == "pointcloud" and row["episode_id"].endswith("traj0")
    assert "camera 'image_0' has no extrinsics" in row["message"]
    assert "the dataset has no calibration" in row["message"]


def test_eight_bit_depth_is_not_read_as_millimetres(br, tmp_path):
    # formats-real.md §3.2: a few trajectories store depth_images0 as 8-bit (PIL mode "L"); those
    # values are not millimetres (max 0.255 m) and must never come out as metric depth.
    from PIL import Image

    root = tmp_path / "copy"
    shutil.copytree(br.root, root)
    traj = root / br.traj.relative_to(br.root)
    pngs = sorted((traj / "depth_images0").glob("im_*.png"))
    for p in pngs:
        Image.fromarray((np.asarray(Image.open(p)) // 10).clip(0, 255).astype(np.uint8)).save(p)
    src = make_source("bridge_raw", {"input": str(root)})
    ep = check_episode(src.read(src.list_refs()[0]))
    assert ep.cameras["image_0"].depth is None
    assert any("8-bit" in c and "left out" in c for c in ep.conversions)
    assert "image_0" in ep.metadata["depth_left_out"]
    # one 8-bit frame inside a 16-bit sequence: a SourceError naming file/episode/field on decode
    shutil.rmtree(root)
    shutil.copytree(br.root, root)
    bad = traj / "depth_images0" / "im_7.png"
    Image.fromarray(np.full((48, 64), 90, np.uint8)).save(bad)
    ref = src.list_refs()[0]
    depth = src.read(ref).cameras["image_0"].depth
    assert depth[6].max() > 0.3  # 16-bit frames still read as metres
    with pytest.raises(SourceError) as e:
        depth[7]
    assert (e.value.path, e.value.episode_id, e.value.field) == (str(bad), ref.episode_id, "depth_images0")
