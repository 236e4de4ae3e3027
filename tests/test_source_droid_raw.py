"""droid_raw: geometry against the synthetic scene, convention conversions, dirty cases, job."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from appf.pipelines.sources import make_source
from appf.pipelines.sources._real_io import xyz_euler_to_pose7
from appf.schemas import SourceError, check_episode
from appf.transforms import synthetic_scene as scene
from tests.fixtures_droid import SERIALS, write_droid_raw
from tests.fixtures_media import write_mp4


@pytest.fixture(scope="module")
def droid(tmp_path_factory):
    return write_droid_raw(tmp_path_factory.mktemp("droid_raw"))


def _read(root: Path, **opts):
    src = make_source("droid_raw", {"input": str(root), **opts})
    refs = src.list_refs()
    return src, refs, check_episode(src.read(refs[0]))


def _stereo_error(ep, script, role: str, t: int) -> tuple[float, float]:
    """Mean abs difference (0..255) between the decoded eyes and the scene re-rendered through the
    episode's own K, T_base_cam (camera-to-base) and baseline."""
    cam = ep.cameras[role]
    Tc = cam.T_base_cam_at(t)
    H, W = cam.height, cam.width
    left = scene.render_view(script.state(t), cam.intrinsics, Tc, H, W)[0]
    right = scene.render_view(script.state(t), cam.intrinsics,
                              scene.right_camera_pose(Tc, cam.baseline_m), H, W)[0]
    dl = np.abs(cam.rgb[t].astype(float) - left).mean()
    dr = np.abs(cam.rgb_right[t].astype(float) - right).mean()
    return dl, dr


def test_stereo_pair_agrees_with_calibration(droid):
    _, _, ep = _read(droid.root)
    script = droid.scripts[0]
    for role in ("ext1", "ext2", "wrist"):
        for t in (0, 7, 15):  # container is 60 fps, h5 at 15 Hz: index alignment only
            dl, dr = _stereo_error(ep, script, role, t)
            assert dl < 6 and dr < 6, (role, t, dl, dr)
    # A swapped eye (wrong side) does not agree: the check has teeth.
    cam = ep.cameras["ext1"]
    assert np.abs(cam.rgb[3].astype(float) - cam.rgb_right[3]).mean() > 8


def test_refined_extrinsics_preferred_over_noisy_h5(droid, tmp_path):
    (tmp_path / "empty.json").write_text("{}")
    _, _, ep = _read(droid.root, extrinsics_file=str(tmp_path / "empty.json"))
    dl, _ = _stereo_error(ep, droid.scripts[0], "ext2", 5)
    assert dl > 10  # the perturbed h5 calibration does not reproduce the images
    _, _, ep2 = _read(droid.root)
    np.testing.assert_allclose(ep2.cameras["ext2"].T_base_cam, droid.T_ext[0]["ext2"], atol=1e-9)
    assert any("refined extrinsics" in c for c in ep2.conversions)


def test_intrinsics_rescaled_and_poses_converted(droid):
    _, refs, ep = _read(droid.root)
    assert refs[0].episode_id == droid.episode_ids[0]
    np.testing.assert_allclose(ep.cameras["ext1"].intrinsics, droid.K, atol=1e-9)
    assert ep.cameras["ext1"].baseline_m == pytest.approx(scene.BASELINE_M)
    script = droid.scripts[0]
    want = script.ee_pose()
    got = ep.steps.ee_pose[:, 0]
    np.testing.assert_allclose(got[:, :3], want[:, :3], atol=1e-9)
    dots = np.abs(np.sum(got[:, 3:] * want[:, 3:], axis=1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-9)
    np.testing.assert_allclose(ep.steps.gripper[:, 0], script.gripper, atol=1e-12)
    assert ep.cameras["wrist"].T_base_cam.shape == (16, 4, 4)
    np.testing.assert_allclose(ep.steps.timestamp[1], 0.066666667, atol=1e-6)
    assert ep.language_instruction == script.instruction
    assert ep.steps.action.shape == (16, 8)


def test_euler_xyz_hand_checked():
    # scipy lowercase "xyz" = extrinsic: R = Rz(rz) Ry(ry) Rx(rx).
    # rz = 90 deg alone: q = (0, 0, sin 45, cos 45).
    q = xyz_euler_to_pose7(np.array([[1.0, 2.0, 3.0, 0.0, 0.0, np.pi / 2]]))[0]
    np.testing.assert_allclose(q, [1, 2, 3, 0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    # rx = rz = 90 deg: qz * qx = (0.5, 0.5, 0.5, 0.5); the intrinsic "XYZ" reading (Rx Rz)
    # would give (0.5, -0.5, 0.5, 0.5) (the droid_policy_learning pitfall).
    q = xyz_euler_to_pose7(np.array([[0, 0, 0, np.pi / 2, 0.0, np.pi / 2]]))[0, 3:]
    np.testing.assert_allclose(q, [0.5, 0.5, 0.5, 0.5], atol=1e-12)


def test_tcp_offset_moves_along_flange_z(droid):
    _, _, ep = _read(droid.root, tcp_offset_m=0.1)
    z_axis = droid.scripts[0].tcp_poses[:, :3, 2]
    np.testing.assert_allclose(ep.steps.ee_pose[:, 0, :3] - droid.scripts[0].tcp_poses[:, :3, 3],
                               0.1 * z_axis, atol=1e-9)


def _copy(droid, tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "copy"
    shutil.copytree(droid.root, root)
    return root, root / droid.episode_dirs[0].relative_to(droid.root)


def test_missing_intrinsics_fails_unless_nominal_accepted(droid, tmp_path):
    root, _ = _copy(droid, tmp_path)
    (root / "intrinsics.json").unlink()
    with pytest.raises(SourceError) as e:
        _read(root)
    assert "accept_nominal_zed" in str(e.value) and e.value.field == f"intrinsics[{SERIALS['ext1']}]"
    assert e.value.episode_id == droid.episode_ids[0]
    _, _, ep = _read(root, accept_nominal_zed=True)
    assert ep.cameras["ext1"].baseline_m == pytest.approx(0.12)
    assert ep.cameras["wrist"].baseline_m == pytest.approx(0.063)
    assert any("NOMINAL" in c for c in ep.conversions)
    # user config wins over nominal
    K = droid.K
    cal = {"ext1": {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2], "baseline_m": 0.065,
                    "width": 64, "height": 48}}
    _, _, ep = _read(root, calibration=cal, cameras=["ext1"])
    np.testing.assert_allclose(ep.cameras["ext1"].intrinsics, K)


def test_dirty_cases_name_file_episode_field(droid, tmp_path):
    root, ep_dir = _copy(droid, tmp_path)
    eid = droid.episode_ids[0]
    src = make_source("droid_raw", {"input": str(root)})
    ref = src.list_refs()[0]
    # 1. a required h5 dataset missing
    with h5py.File(ep_dir / "trajectory.h5", "a") as f:
        grip = f["observation/robot_state/gripper_position"][()]
        del f["observation/robot_state/gripper_position"]
    with pytest.raises(SourceError) as e:
        src.read(ref)
    assert e.value.field == "observation/robot_state/gripper_position"
    assert e.value.path.endswith("trajectory.h5") and e.value.episode_id == eid
    with h5py.File(ep_dir / "trajectory.h5", "a") as f:
        f["observation/robot_state/gripper_position"] = grip
    # 2. a video with fewer frames than h5 rows
    mp4 = ep_dir / "recordings" / "MP4" / f"{SERIALS['ext2']}-stereo.mp4"
    write_mp4(mp4, np.zeros((10, 48, 128, 3), np.uint8))
    with pytest.raises(SourceError) as e:
        src.read(ref)
    assert "10 frames" in str(e.value) and e.value.field == "ext2 video" and e.value.path == str(mp4)
    # 3. the stereo video missing
    mp4.unlink()
    with pytest.raises(SourceError) as e:
        src.read(ref)
    assert e.value.field == "ext2 stereo video"
    # 4. no metadata file
    for m in ep_dir.glob("metadata_*.json"):
        m.unlink()
    with pytest.raises(SourceError) as e:
        make_source("droid_raw", {"input": str(root)}).read(ref)
    assert e.value.field == "metadata"


def test_left_only_mono_video(droid, tmp_path):
    root, ep_dir = _copy(droid, tmp_path)
    mp4 = ep_dir / "recordings" / "MP4"
    shutil.move(mp4 / f"{SERIALS['ext1']}-stereo.mp4", tmp_path / "s.mp4")
    import av
    with av.open(str(tmp_path / "s.mp4")) as c:
        frames = np.stack([f.to_ndarray(format="rgb24")[:, :64] for f in c.decode(video=0)])
    write_mp4(mp4 / f"{SERIALS['ext1']}.mp4", frames)
    _, _, ep = _read(root, stereo=False, cameras=["ext1"])
    assert ep.cameras["ext1"].rgb_right is None and ep.cameras["ext1"].rgb.shape == (16, 48, 64, 3)
    assert np.abs(ep.cameras["ext1"].rgb[4].astype(float) - frames[4]).mean() < 4


def test_job_end_to_end(droid, tmp_path):
    from appf.annotators.registry import DEPTH_BACKENDS
    from appf.launch.runners import local_options
    from appf.pipelines.config import JobConfig
    from appf.pipelines.job import run_job

    depth = "sgbm" if "sgbm" in DEPTH_BACKENDS else "ground_truth"
    cfg = JobConfig.from_dict(dict(source="droid_raw",
                                   source_options={"input": str(droid.root), "cameras": ["ext1"]},
                                   out=str(tmp_path / "out"), n_points=128, progress_every_s=0,
                                   depth=depth, masks="none"))
    summary = run_job(cfg, local_options(1))
    assert summary.planned_episodes == 1
    assert "read" not in summary.failures_by_stage
    if depth == "sgbm":
        assert summary.episodes == 1 and summary.frames == 16
    else:  # no stereo backend registered yet: the read succeeds, the depth stage reports why
        assert summary.failures_by_stage == {"depth": 1}
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]


def test_corrupt_annotations_file_is_named(droid, tmp_path):
    root, _ = _copy(droid, tmp_path)
    ann = root / "aggregated-annotations-030724.json"
    ann.write_text(ann.read_text()[:50])
    with pytest.raises(SourceError) as e:
        _read(root)
    assert (e.value.path, e.value.episode_id, e.value.field) == (
        str(ann), droid.episode_ids[0], "annotations_file")


def test_two_metadata_files_pick_the_known_one(droid, tmp_path):
    # formats-real.md §1.2: some episode folders hold two metadata_*.json. The one the post-hoc
    # calibration/annotation files know (and whose serials have videos) is the episode's; a stray
    # one that sorts first must not rename the episode or break its read.
    root, ep_dir = _copy(droid, tmp_path)
    eid = droid.episode_ids[0]
    real = json.loads((ep_dir / f"metadata_{eid}.json").read_text())
    stray_id = "AAAA+00000000+2024-02-13-10h-00m-00s"
    stray = {**real, "uuid": stray_id, **{f"{r}_cam_serial": "99999999" for r in SERIALS}}
    (ep_dir / f"metadata_{stray_id}.json").write_text(json.dumps(stray))
    src, refs, ep = _read(root)
    assert [r.episode_id for r in refs] == [eid]
    assert ep.episode_id == eid and ep.metadata["metadata_file"] == f"metadata_{eid}.json"
    assert sorted(ep.metadata["metadata_files"]) == sorted([f"metadata_{eid}.json", f"metadata_{stray_id}.json"])
    assert ep.language_instruction == droid.scripts[0].instruction
    assert any("refined extrinsics" in c for c in ep.conversions)
