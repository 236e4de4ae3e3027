"""bridge_rlds: both schemas (rail bridge_dataset, OXE bridge) dispatched on features.json,
relative-Euler and gripper conversions (bridge_raw's), missing views, lazy decode, jobs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from appf.pipelines.sources import _rlds_io, make_source
from appf.schemas import LazyFrames, SourceError, check_episode
from appf.transforms import synthetic_scene as scene
from tests.fixtures_rlds import (
    PLANE_DEPTH_M, bridge_eef, bridge_rail_features, failure_rows, run_job_local, use_plane_depth,
    write_bridge_rlds,
)


@pytest.fixture(scope="module")
def rail(tmp_path_factory):
    return write_bridge_rlds(tmp_path_factory.mktemp("bridge_rail"), "bridge_dataset")


@pytest.fixture(scope="module")
def oxe(tmp_path_factory):
    return write_bridge_rlds(tmp_path_factory.mktemp("bridge_oxe"), "oxe")


def _src(fix, **opts):
    return make_source("bridge_rlds", {"input": str(fix.dir), **opts})


def _render_error(frame, script, t, K, T_base_cam) -> float:
    rendered = scene.render_view(script.state(t), K, T_base_cam, *frame.shape[:2])[0]
    return float(np.abs(frame.astype(int) - rendered).mean())


def test_dispatch_on_features_json(rail, oxe):
    r, o = _src(rail), _src(oxe)
    assert (r.schema, r.views) == ("bridge_dataset", ["image_0", "image_1", "image_2", "image_3"])
    assert (o.schema, o.views) == ("oxe", ["image"])
    assert [x.episode_id for x in r.list_refs()] == [
        "bridge_dataset-1.0.0-train-00000-00000", "bridge_dataset-1.0.0-train-00000-00001",
        "bridge_dataset-1.0.0-val-00000-00000"]
    assert [x.episode_id for x in o.list_refs()] == ["bridge-0.1.0-test-00000-00000",
                                                      "bridge-0.1.0-train-00000-00000"]
    assert [x.episode_id for x in _src(rail, splits=["val"]).list_refs()] == [
        "bridge_dataset-1.0.0-val-00000-00000"]
    with pytest.raises(SourceError, match="unknown split"):
        _src(rail, splits=["test"]).list_refs()
    with pytest.raises(SourceError) as e:
        _src(oxe, cameras=["image_0"])
    assert e.value.field == "cameras"


def _check_common(ep, script, T=16):
    want = np.stack([scene.pose_to_xyzquat(P) for P in bridge_eef(script)[:T]])
    np.testing.assert_allclose(ep.steps.ee_pose[:, 0, :3], want[:, :3], atol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(ep.steps.ee_pose[:, 0, 3:] * want[:, 3:], 1)), 1, atol=1e-6)
    np.testing.assert_allclose(ep.steps.gripper[:, 0], script.gripper[:T], atol=1e-6)  # 1 - (1 = open)
    # deltas as stored: next state - state
    np.testing.assert_allclose(ep.steps.action[:, :3], np.diff(script.tcp_poses[:T + 1, :3, 3], axis=0),
                               atol=1e-6)
    assert ep.language_instruction == script.instruction
    assert ep.control_hz == 5.0 and ep.steps.timestamp[2] == pytest.approx(0.4)


def test_rail_conventions_and_missing_view(rail):
    src = _src(rail)
    ref = src.list_refs()[1]
    ep = check_episode(src.read(ref))
    script = rail.scripts[1]
    _check_common(ep, script)
    np.testing.assert_allclose(ep.steps.action[:, 6], script.gripper[1:17], atol=1e-6)
    # image_2 is zero-filled in every step: left out, and said so (the has_image_* flags lie)
    assert sorted(ep.cameras) == ["image_0", "image_1", "image_3"]
    assert ep.metadata["missing_views"] == ["image_2"] and ep.metadata["has_image_0"] is False
    assert ep.metadata["episode_id"] == 1 and ep.metadata["rlds"]["schema"] == "bridge_dataset"
    for name, cam in ep.cameras.items():
        assert cam.rgb.shape == (16, 256, 256, 3)
        assert cam.intrinsics_unknown and cam.extrinsics_unknown and cam.T_base_cam is None
        err = _render_error(cam.rgb[4], script, 4, rail.K[name], rail.T_base_cam[1][name][4])
        assert err < 5.0, (name, err)
    with pytest.raises(SourceError) as e:
        _src(rail, cameras=["image_2"]).read(ref)
    assert (e.value.episode_id, e.value.field) == (ref.episode_id, "steps/observation/image_2")


def test_oxe_conventions(oxe):
    src = _src(oxe)
    ep = check_episode(src.read(src.list_refs()[1]))
    script = oxe.scripts[1]
    _check_common(ep, script)
    # open_gripper (True = open) -> 0 = open / 1 = closed
    np.testing.assert_array_equal(ep.steps.action[:, 6], (script.gripper[1:17] > 0.5).astype(float))
    assert list(ep.cameras) == ["image"] and ep.cameras["image"].rgb.shape == (16, 480, 640, 3)
    assert ep.metadata["rlds"]["schema"] == "oxe" and ep.metadata["first_action_all_zero"] is False
    assert _render_error(ep.cameras["image"].rgb[9], script, 9, oxe.K["image"], oxe.T_base_cam[1]["image"][9]) < 5.0


def test_hand_checked_numbers(tmp_path):
    def rail_tamper(k, ex):
        s = ex["steps"]
        s[0]["observation"]["state"] = np.array([0.1, 0.2, 0.3, 0, 0, 0, 0.8], np.float32)
        s[0]["action"] = np.array([0.01, 0, 0, 0, 0, 0, 1.0], np.float32)
        s[1]["observation"]["state"] = np.array([0, 0, 0, 0, 0, np.pi / 2, 0.0], np.float32)
        s[-1]["action"] = np.zeros(7, np.float32)  # the raw-based builder's padding

    def oxe_tamper(k, ex):
        ex["steps"][0]["action"]["open_gripper"] = True
        ex["steps"][1]["action"]["open_gripper"] = False

    rail = write_bridge_rlds(tmp_path / "r", "bridge_dataset", tamper=rail_tamper)
    ep = _src(rail).read(_src(rail).list_refs()[0])
    s = np.sqrt(0.5)
    # rpy = 0 -> the default gripper-down rotation [[0,0,1],[0,1,0],[-1,0,0]] = Ry(+90 deg)
    np.testing.assert_allclose(ep.steps.ee_pose[0, 0], [0.1, 0.2, 0.3, 0, s, 0, s], atol=1e-6)
    # yaw = 90 deg: Rz(90) @ Ry(90) -> qz * qy = (-0.5, 0.5, 0.5, 0.5)
    q = ep.steps.ee_pose[1, 0, 3:]
    np.testing.assert_allclose(q * np.sign(q[3]), [-0.5, 0.5, 0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(ep.steps.gripper[:2, 0], [0.2, 1.0], atol=1e-6)  # 0.8 open, 0 closed
    np.testing.assert_allclose(ep.steps.action[0], [0.01, 0, 0, 0, 0, 0, 0.0], atol=1e-7)
    # all-zero last action (padding): zero deltas + its own gripper, not "closed"
    np.testing.assert_allclose(ep.steps.action[-1], [0, 0, 0, 0, 0, 0, ep.steps.gripper[-1, 0]])
    assert any("padding" in c for c in ep.conversions)
    oxe = write_bridge_rlds(tmp_path / "o", "oxe", tamper=oxe_tamper)
    ep = _src(oxe).read(_src(oxe).list_refs()[0])
    np.testing.assert_array_equal(ep.steps.action[:2, 6], [0.0, 1.0])


def test_images_decode_lazily(rail, monkeypatch):
    calls = []
    real = _rlds_io.decode_image
    monkeypatch.setattr(_rlds_io, "decode_image", lambda b: calls.append(1) or real(b))
    monkeypatch.setattr("appf.pipelines.sources.bridge_rlds.decode_image", _rlds_io.decode_image)
    ep = _src(rail).read(_src(rail).list_refs()[0])
    # only the first frame of the byte-identical (zero-filled) view is decoded, to confirm it is black
    assert len(calls) == 1
    cam = ep.cameras["image_3"]
    assert isinstance(cam.rgb, LazyFrames)
    assert cam.rgb[2:5].shape == (3, 256, 256, 3) and len(calls) == 4


def test_schema_errors(rail, tmp_path):
    import tensorflow_datasets as tfds

    bad = tmp_path / "bad"
    shutil.copytree(rail.dir, bad)
    feats = bridge_rail_features()
    step = dict(feats["steps"].feature.items())
    step["observation"] = tfds.features.FeaturesDict(
        {k: v for k, v in step["observation"].items() if k != "state"})
    tfds.features.FeaturesDict({"steps": tfds.features.Dataset(step)}).save_config(str(bad))
    with pytest.raises(SourceError) as e:
        make_source("bridge_rlds", {"input": str(bad)})
    assert e.value.path == str(bad / "features.json") and e.value.field == "steps/observation/state"


def test_job_without_calibration_fails_at_pointcloud_stage(rail, tmp_path, monkeypatch):
    s = run_job_local("bridge_rlds", {"input": str(rail.dir)}, tmp_path / "out", use_plane_depth(monkeypatch))
    assert s.planned_episodes == 3 and s.episodes == 0 and s.failures_by_stage == {"pointcloud": 3}
    rows = failure_rows(tmp_path / "out")
    assert all("no extrinsics" in r["message"] and "image_0" in r["message"] for r in rows), rows[0]


def test_job_with_user_extrinsics_on_oxe(oxe, tmp_path, monkeypatch):
    import zarr

    out = tmp_path / "out"
    T1 = oxe.T_base_cam[0]["image"][0]
    s = run_job_local("bridge_rlds", {"input": str(oxe.dir), "extrinsics": {"image": T1.tolist()}}, out,
             use_plane_depth(monkeypatch))
    assert s.failures == 0, failure_rows(out)
    assert s.episodes == 2 and s.frames == 32
    pts = np.asarray(zarr.open_group(str(out / "pointclouds/shard-00000.zarr"), mode="r")["data/point_cloud"])
    p_cam = (np.linalg.inv(T1) @ np.c_[pts[..., :3].reshape(-1, 3), np.ones(pts.shape[0] * pts.shape[1])].T).T
    np.testing.assert_allclose(p_cam[:, 2], PLANE_DEPTH_M, atol=1e-4)
