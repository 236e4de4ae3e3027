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


# -- the calibration release's intrinsics.json (issue 11 §1) -------------------------------------

def _surface_distance_m(points: np.ndarray, state) -> np.ndarray:
    """|signed distance| (m) of base-frame points to the nearest box of the scene at `state`."""
    best = np.full(len(points), np.inf)
    for box in scene.scene_boxes(state):
        R, c = box.T_base_box[:3, :3], box.T_base_box[:3, 3]
        q = np.abs((points - c) @ R) - box.half
        sdf = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
        best = np.minimum(best, np.abs(sdf))
    return best


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """Two 320x180 episodes (HD720 / 4): episode 0 with cameraMatrix + width/height (K at
    640x360), episode 1 with cameraMatrix alone (K at HD720); intrinsics.json outside the root."""
    base = tmp_path_factory.mktemp("droid_released")
    fix = write_droid_raw(base / "raw", n_episodes=2, H=180, W=320,
                          intrinsics_form=["released", "released_hd720"])
    intr = base / "intrinsics.json"
    shutil.move(fix.root / "intrinsics.json", intr)
    return fix, intr


def test_released_intrinsics_read_with_baseline_from_h5(released):
    fix, intr = released
    src = make_source("droid_raw", {"input": str(fix.root), "intrinsics_file": str(intr)})
    for i, ref in enumerate(src.list_refs()):
        ep = check_episode(src.read(ref))
        for role in ("ext1", "ext2", "wrist"):
            np.testing.assert_allclose(ep.cameras[role].intrinsics, fix.K, atol=1e-9)
            assert ep.cameras[role].baseline_m == pytest.approx(scene.BASELINE_M, abs=1e-9)
        assert any("stereo baseline 0.0650 m = median distance of the h5" in c for c in ep.conversions)
        scaled = "K for 640x360 rescaled to 320x180" if i == 0 else "K for 1280x720 rescaled to 320x180"
        assert any(scaled in c for c in ep.conversions), ep.conversions


def test_released_intrinsics_give_clouds_on_the_surfaces_with_sgbm(released, tmp_path):
    from appf.launch.runners import local_options
    from appf.pipelines.config import JobConfig
    from appf.pipelines.job import run_job

    fix, intr = released
    out = tmp_path / "out"
    cfg = JobConfig.from_dict(dict(source="droid_raw", depth="sgbm", masks="none", n_points=256,
                                   source_options={"input": str(fix.root), "intrinsics_file": str(intr)},
                                   out=str(out), progress_every_s=0))
    summary = run_job(cfg, local_options(1))
    assert (summary.episodes, summary.failures) == (2, 0), summary.text()
    import zarr
    root = zarr.open_group(str(out / "pointclouds/shard-00000.zarr"), mode="r")
    ends, ids = root["meta/episode_ends"][:], [str(x) for x in root["meta/episode_ids"][:]]
    pc, real = root["data/point_cloud"][:], root["data/point_count_real"][:]
    for e, eid in enumerate(ids):
        script = fix.scripts[fix.episode_ids.index(eid)]
        lo = 0 if e == 0 else int(ends[e - 1])
        dist = np.concatenate([_surface_distance_m(pc[t, :real[t], :3].astype(np.float64),
                                                   script.state(t - lo)) for t in range(lo, int(ends[e]))])
        assert np.median(dist) < 0.015, (eid, np.median(dist))


def _hd720_copy(fix, tmp_path) -> Path:
    """The first episode with 1280x720-per-eye stereo videos: ext1 shows the scene's step 0 (the
    same render in every frame: rendering and sgbm cost ~0.4 s and ~16 s per HD720 frame here),
    the other cameras black frames (their content is not used)."""
    root = tmp_path / "hd720"
    shutil.copytree(fix.root, root, ignore=shutil.ignore_patterns("*+00000001+*", "Tue_Feb_13_10:46:01_2024"))
    ep_dir = next(root.rglob("trajectory.h5")).parent
    K720, T1 = scene.intrinsics_from_fov(1280, 720), fix.T_ext[0]["ext1"]
    state = fix.scripts[0].state(0)
    pair = np.concatenate([scene.render_view(state, K720, T1, 720, 1280)[0],
                           scene.render_view(state, K720, scene.right_camera_pose(T1), 720, 1280)[0]], axis=1)
    for role, serial in SERIALS.items():
        frame = pair if role == "ext1" else np.zeros_like(pair)
        write_mp4(ep_dir / "recordings/MP4" / f"{serial}-stereo.mp4", np.repeat(frame[None], 16, axis=0))
    return root


def _check_hd720_sgbm_cloud(cam, state) -> None:
    """sgbm depth of the HD720 frame, back-projected with the episode's K and T_base_cam (numpy, not
    appf's cloud code) and cropped to droid_raw's default box: on the surfaces within 1.5 cm."""
    from appf.annotators.depth.sgbm import SgbmStereoDepth
    from appf.annotators.protocols import DepthBatch
    from appf.pipelines.sources.droid_raw import DroidRawSource

    backend = SgbmStereoDepth()
    backend.load()
    depth = backend.annotate(DepthBatch(cam.rgb[0:1], cam.intrinsics, cam.rgb_right[0:1],
                                        cam.baseline_m)).depth_m[0]
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    K = cam.intrinsics
    p_cam = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z, np.ones_like(z)])
    p = (cam.T_base_cam_at(0) @ p_cam)[:3].T
    lo, hi = DroidRawSource.info.default_crop
    p = p[np.all((p >= lo) & (p <= hi), axis=1)]
    assert len(p) > 10000
    assert np.median(_surface_distance_m(p, state)) < 0.015


def test_released_intrinsics_without_size_are_hd720_and_a_wrong_size_fails_clearly(released, tmp_path):
    fix, _ = released
    root = _hd720_copy(fix, tmp_path)
    eid = fix.episode_ids[0]
    K720 = scene.intrinsics_from_fov(1280, 720)
    entry = {"cameraMatrix": [K720[0, 0], K720[0, 2], K720[1, 1], K720[1, 2]]}
    good = tmp_path / "hd720.json"
    good.write_text(json.dumps({eid: {s: entry for s in SERIALS.values()}}))
    src, _, ep = _read(root, intrinsics_file=str(good))
    np.testing.assert_allclose(ep.cameras["ext1"].intrinsics, K720, atol=1e-9)  # taken as is
    _check_hd720_sgbm_cloud(ep.cameras["ext1"], fix.scripts[0].state(0))
    # K of a 640x360 image given without width/height: the principal point lands off centre
    K360 = scene.intrinsics_from_fov(640, 360)
    wrong_size = tmp_path / "k360.json"
    wrong_size.write_text(json.dumps({eid: {s: {"cameraMatrix": [K360[0, 0], K360[0, 2], K360[1, 1],
                                                                 K360[1, 2]]} for s in SERIALS.values()}}))
    # the same K in the order fx, fy, cx, cy (a reader of the wrong order)
    wrong_order = tmp_path / "order.json"
    wrong_order.write_text(json.dumps({eid: {s: {"cameraMatrix": [K720[0, 0], K720[1, 1], K720[0, 2],
                                                                  K720[1, 2]]} for s in SERIALS.values()}}))
    for path in (wrong_size, wrong_order):
        with pytest.raises(SourceError) as e:
            _read(root, intrinsics_file=str(path))
        msg = str(e.value)
        assert (e.value.path, e.value.episode_id, e.value.field) == (str(path), eid, f"intrinsics[{SERIALS['ext1']}]")
        assert "1280x720 frames" in msg and SERIALS["ext1"] in msg and "fx=" in msg
        assert "wrong resolution" in msg and "[fx, cx, fy, cy]" in msg


def test_explicit_baseline_wins_over_h5_and_no_baseline_at_all_fails(released, tmp_path):
    fix, intr = released
    table = json.loads(intr.read_text())
    eid = fix.episode_ids[0]
    for entry in table[eid].values():
        entry["baseline_m"] = 0.07
    explicit = tmp_path / "explicit.json"
    explicit.write_text(json.dumps(table))
    _, _, ep = _read(fix.root, intrinsics_file=str(explicit))
    assert ep.cameras["ext1"].baseline_m == pytest.approx(0.07)
    assert not any("median distance of the h5" in c for c in ep.conversions)
    root, ep_dir = _copy(fix, tmp_path)
    with h5py.File(ep_dir / "trajectory.h5", "a") as f:
        del f[f"observation/camera_extrinsics/{SERIALS['ext1']}_right"]
    with pytest.raises(SourceError) as e:
        _read(root, intrinsics_file=str(intr), cameras=["ext1"])
    assert e.value.field == f"baseline_m[{SERIALS['ext1']}]" and "_right" in str(e.value)
