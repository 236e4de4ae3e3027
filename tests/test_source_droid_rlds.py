"""droid_rlds: TFRecord reading without TensorFlow, conventions against the synthetic scene and
hand-checked numbers, action/action_dict check, lazy decode, calibration options, dirty cases,
end-to-end jobs."""

from __future__ import annotations

import json
import pickle
import shutil
import sys

import numpy as np
import pytest

from appf.pipelines.sources import _rlds_io, make_source
from appf.pipelines.sources._tfrecord import read_record, scan_records
from appf.schemas import LazyFrames, SourceError, check_episode
from appf.transforms import synthetic_scene as scene
from tests.fixtures_droid import WRIST_OFFSET, euler6
from tests.fixtures_rlds import (
    PLANE_DEPTH_M, droid_features, failure_rows, run_job_local, use_plane_depth, write_droid_rlds,
)


@pytest.fixture(scope="module")
def droid(tmp_path_factory):
    return write_droid_rlds(tmp_path_factory.mktemp("droid_rlds"))


def _src(fix, **opts):
    return make_source("droid_rlds", {"input": str(fix.dir), **opts})


def _render_error(frame, state, K, T_base_cam) -> float:
    """Mean abs difference (0..255) between a decoded frame and the scene rendered through K and
    a camera-to-base pose (JPEG q95 of the textured scene: about 3)."""
    rendered = scene.render_view(state, K, T_base_cam, *frame.shape[:2])[0]
    return float(np.abs(frame.astype(int) - rendered).mean())


def _quat_close(a, b, atol=1e-6):
    np.testing.assert_allclose(np.abs(np.sum(a * b, axis=-1)), 1.0, atol=atol)


def test_layout_refs_and_record_format(droid):
    # The exact TFDS layout: builder-named shards listed by dataset_info.json.
    names = sorted(p.name for p in droid.dir.iterdir())
    assert names == ["dataset_info.json", "droid-train.tfrecord-00000-of-00002",
                     "droid-train.tfrecord-00001-of-00002", "features.json"]
    info = json.loads((droid.dir / "dataset_info.json").read_text())
    assert info["name"] == "droid" and info["splits"][0]["shardLengths"] == ["2", "1"]
    refs = _src(droid).list_refs()
    assert [r.episode_id for r in refs] == ["droid-1.0.1-train-00000-00000",
                                            "droid-1.0.1-train-00000-00001",
                                            "droid-1.0.1-train-00001-00000"]
    assert [r.index for r in refs] == [0, 1, 2] and refs[2].uri.endswith("00001-of-00002")
    # Our reader against Beam's independent TFRecord reader (both check the masked CRC32C).
    from apache_beam.io.tfrecordio import _TFRecordUtil

    shard0 = droid.shards["train"][0]
    with open(shard0, "rb") as fh:
        beam_records = [_TFRecordUtil.read_record(fh) for _ in range(2)]
    ours = [read_record(shard0, off, n) for off, n in scan_records(shard0)]
    assert ours == beam_records
    assert (refs[1].option("offset"), refs[1].option("length")) == scan_records(shard0)[1]
    assert "tensorflow" not in sys.modules


def test_read_conventions_against_the_scene(droid):
    src = _src(droid)
    ref = src.list_refs()[1]
    ep = check_episode(src.read(ref))
    script = droid.scripts[1]
    T = script.steps
    assert ep.dataset == "droid" and ep.num_steps == T and ep.control_hz == 15.0
    # ee_pose: "xyz" Euler -> quaternion xyzw (values are float32 in tf.Example float_list)
    want = script.ee_pose()
    np.testing.assert_allclose(ep.steps.ee_pose[:, 0, :3], want[:, :3], atol=1e-6)
    _quat_close(ep.steps.ee_pose[:, 0, 3:], want[:, 3:])
    # gripper: DROID 0 = open, 1 = closed, kept as is
    np.testing.assert_allclose(ep.steps.gripper[:, 0], script.gripper, atol=1e-6)
    assert ep.steps.gripper.max() == pytest.approx(1.0, abs=1e-6)
    # action (T, 8): next commanded pose + next gripper target
    nxt = np.minimum(np.arange(T) + 1, T - 1)
    np.testing.assert_allclose(ep.steps.action[:, :3], want[nxt, :3], atol=1e-6)
    _quat_close(ep.steps.action[:, 3:7], want[nxt, 3:])
    np.testing.assert_allclose(ep.steps.action[:, 7], script.gripper[nxt], atol=1e-6)
    np.testing.assert_allclose(ep.steps.timestamp[3], 3 / 15.0)
    assert ep.steps.joint_positions.shape == (T, 7)
    assert ep.language_instruction == script.instruction
    assert ep.metadata["language_instructions"] == [script.instruction, "alt " + script.instruction]
    assert ep.metadata["success"] and ep.metadata["scene_id"] == 8
    assert ep.metadata["rlds"]["record"] == 1 and ep.metadata["rlds"]["split"] == "train"
    for role in ("ext1", "ext2", "wrist"):
        cam = ep.cameras[role]
        assert cam.rgb.shape == (T, 180, 320, 3)
        assert cam.intrinsics is None and cam.intrinsics_unknown
        assert cam.T_base_cam is None and cam.extrinsics_unknown
    with pytest.raises(ValueError, match="no extrinsics"):
        ep.cameras["ext1"].T_base_cam_at(0)


def test_hand_checked_numbers(tmp_path):
    def tamper(k, ex):
        obs = ex["steps"][0]["observation"]
        obs["cartesian_position"] = np.array([0.5, -0.1, 0.3, np.pi, 0.0, np.pi / 2])
        obs["gripper_position"] = np.array([0.25])
        ad = ex["steps"][0]["action_dict"]
        ad["cartesian_position"] = np.array([0.1, 0.2, 0.3, 0.0, 0.0, 0.0])
        ad["gripper_position"] = np.array([1.0])
        ex["steps"][0]["action"] = np.array([0.1, 0.2, 0.3, 0.0, 0.0, 0.0, 1.0])

    fix = write_droid_rlds(tmp_path, shards=(1,), tamper=tamper)
    src = _src(fix, tcp_offset_m=0.1)
    ep = src.read(src.list_refs()[0])
    # R = Rz(90 deg) Rx(180 deg): q = qz(90) * qx(180) = (0, 0, s, s) * (1, 0, 0, 0) = (s, s, 0, 0),
    # s = sqrt(1/2). Its z axis is Rz(90) (0, 0, -1) = (0, 0, -1): a 0.1 m TCP offset lowers z.
    s = np.sqrt(0.5)
    q = ep.steps.ee_pose[0, 0, 3:]
    np.testing.assert_allclose(q * np.sign(q[0]), [s, s, 0, 0], atol=1e-6)
    np.testing.assert_allclose(ep.steps.ee_pose[0, 0, :3], [0.5, -0.1, 0.2], atol=1e-6)
    assert ep.steps.gripper[0, 0] == pytest.approx(0.25)
    np.testing.assert_allclose(ep.steps.action[0], [0.1, 0.2, 0.3, 0, 0, 0, 1, 1.0], atol=1e-6)


def test_action_mismatch_names_file_episode_field(tmp_path):
    def tamper(k, ex):
        if k == 1:
            ex["steps"][5]["action"] = ex["steps"][5]["action"].copy()
            ex["steps"][5]["action"][2] += 0.01

    fix = write_droid_rlds(tmp_path, shards=(2,), tamper=tamper)
    src = _src(fix)
    ok, bad = src.list_refs()
    src.read(ok)
    with pytest.raises(SourceError, match="step 5 dim 2 differs by 0.01") as e:
        src.read(bad)
    assert (e.value.path, e.value.episode_id, e.value.field) == (
        str(fix.shards["train"][0]), bad.episode_id, "steps/action")
    assert f"episode={bad.episode_id}" in str(e.value) and "file=" in str(e.value)
    assert _src(fix, check_action=False).read(bad).num_steps == 16


def test_images_decode_lazily(droid, monkeypatch):
    calls = []
    real = _rlds_io.decode_image
    monkeypatch.setattr(_rlds_io, "decode_image", lambda b: calls.append(1) or real(b))
    src = _src(droid)
    ref = src.list_refs()[0]
    ep = src.read(ref)
    assert calls == []  # reading keeps the encoded bytes only
    cam = ep.cameras["ext2"]
    assert isinstance(cam.rgb, LazyFrames)
    loader = pickle.loads(pickle.dumps(cam.rgb.loader))  # self-contained after a shuffle
    frame = cam.rgb[3]
    assert len(calls) == 1 and frame.shape == (180, 320, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(loader(3, 4)[0], frame)
    # Same pixels as TFDS's own full decode of the same record.
    raw = read_record(ref.uri, ref.option("offset"))
    full = src.ds.features.deserialize_example_np(raw)["steps"][3]["observation"]["exterior_image_2_left"]
    np.testing.assert_array_equal(full, frame)
    # ... and the scene rendered through the fixture's camera, up to JPEG loss.
    script, T2 = droid.scripts[0], droid.T_base_cam[0]["ext2"][3]
    err = _render_error(frame, script.state(3), droid.K["ext2"], T2)
    wrong = _render_error(frame, script.state(3), droid.K["ext2"], droid.T_base_cam[0]["ext1"][3])
    assert err < 5.0 and wrong > 4 * err


def test_calibration_options_reproduce_the_images(droid):
    script, true = droid.scripts[0], droid.T_base_cam[0]
    K = droid.K["ext1"]
    src = _src(droid, intrinsics={"ext1": K.tolist()}, extrinsics={"ext1": true["ext1"][0].tolist()},
               episode_extrinsics=True, wrist_offset=euler6(WRIST_OFFSET).tolist())
    ep = check_episode(src.read(src.list_refs()[0]))
    cams = ep.cameras
    assert not cams["ext1"].intrinsics_unknown and not cams["ext1"].extrinsics_unknown
    np.testing.assert_allclose(cams["ext1"].T_base_cam, true["ext1"][0], atol=1e-12)
    # ext2 from episode_metadata/extrinsics_exterior_cam_2 (float32-stored 6-vector)
    np.testing.assert_allclose(cams["ext2"].T_base_cam, true["ext2"][0], atol=2e-6)
    # wrist: flange pose per step @ the user's offset
    assert cams["wrist"].T_base_cam.shape == (16, 4, 4)
    np.testing.assert_allclose(cams["wrist"].T_base_cam, true["wrist"], atol=2e-6)
    for role in ("ext2", "wrist"):
        assert _render_error(cams[role].rgb[7], script.state(7), K, cams[role].T_base_cam_at(7)) < 5.0, role
    with pytest.raises(SourceError) as e:
        _src(droid, extrinsics={"wrist": np.eye(4).tolist()})
    assert e.value.field == "extrinsics['wrist']"


def test_droid_100_1_0_0_layout(tmp_path):
    fix = write_droid_rlds(tmp_path, name="r2d2_faceblur", version="1.0.0", shards=(1,))
    assert fix.shards["train"][0].name == "r2d2_faceblur-train.tfrecord-00000-of-00001"
    src = make_source("droid_rlds", {"input": str(fix.dir.parent)})  # the version folder is found
    ref = src.list_refs()[0]
    assert ref.episode_id == "r2d2_faceblur-1.0.0-train-00000-00000"
    ep = check_episode(src.read(ref))
    assert ep.metadata["episode_extrinsics"] == {} and "scene_id" not in ep.metadata
    with pytest.raises(SourceError) as e:
        _src(fix, episode_extrinsics=True).read(ref)
    assert e.value.field == "episode_metadata/extrinsics_exterior_cam_1"
    assert e.value.episode_id == ref.episode_id


def test_dirty_files(droid, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(droid.dir, d)
    shard = d / droid.shards["train"][0].name
    src = make_source("droid_rlds", {"input": str(d)})
    refs = src.list_refs()
    # a flipped byte inside record 1's data: listing (headers only) still works, reading fails
    off, n = scan_records(shard)[1]
    data = bytearray(shard.read_bytes())
    data[off + 12 + n // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert len(src.list_refs()) == 3
    with pytest.raises(SourceError, match="data CRC mismatch") as e:
        src.read(refs[1])
    assert (e.value.path, e.value.episode_id, e.value.field) == (str(shard), refs[1].episode_id, "record 1")
    # a truncated shard is a listing error naming the file
    shard.write_bytes(bytes(data[: off + 100]))
    with pytest.raises(SourceError, match="truncated") as e:
        src.list_refs()
    assert e.value.path == str(shard)
    # a schema without a required field: the source refuses at construction, naming features.json
    bad = tmp_path / "bad"
    shutil.copytree(droid.dir, bad)
    droid_features(drop=("joint_position",)).save_config(str(bad))
    with pytest.raises(SourceError) as e:
        make_source("droid_rlds", {"input": str(bad)})
    assert e.value.path == str(bad / "features.json") and e.value.field == "steps/observation/joint_position"


def test_job_without_calibration_fails_at_pointcloud_stage(droid, tmp_path, monkeypatch):
    # No depth and no calibration in RLDS: a monocular backend (here a fake with MoGe's contract)
    # gives depth and K, then base-frame clouds need extrinsics -> documented "pointcloud" failure.
    s = run_job_local("droid_rlds", {"input": str(droid.dir)}, tmp_path / "out", use_plane_depth(monkeypatch))
    assert s.planned_episodes == 3 and s.episodes == 0
    assert s.failures_by_stage == {"pointcloud": 3}
    rows = failure_rows(tmp_path / "out")
    assert sorted(r["episode_id"] for r in rows) == [r.episode_id for r in _src(droid).list_refs()]
    assert all("no extrinsics" in r["message"] and r["stage"] == "pointcloud" for r in rows), rows[0]


def test_job_with_episode_extrinsics_writes_clouds_in_base(droid, tmp_path, monkeypatch):
    import zarr

    out = tmp_path / "out"
    s = run_job_local("droid_rlds", {"input": str(droid.dir), "cameras": ["ext1"], "episode_extrinsics": True},
             out, use_plane_depth(monkeypatch), crop=[[-5, -5, -5], [5, 5, 5]])
    assert s.failures == 0, failure_rows(out)
    assert s.episodes == 3 and s.frames == 48 and s.sft_records > 0
    root = zarr.open_group(str(out / "pointclouds/shard-00000.zarr"), mode="r")
    pts = np.asarray(root["data/point_cloud"][:16])[..., :3].reshape(-1, 3)
    # every point lies on the camera-z plane of ext1 (camera-to-base applied, OpenCV axes)
    T1 = droid.T_base_cam[0]["ext1"][0]
    p_cam = (np.linalg.inv(T1) @ np.c_[pts, np.ones(len(pts))].T).T
    np.testing.assert_allclose(p_cam[:, 2], PLANE_DEPTH_M, atol=1e-4)


def test_corrupt_record_header_names_the_episode(droid, tmp_path):
    # A record header damaged after listing (e.g. a shard re-synced between list and read): the
    # read error names file, episode and record.
    d = tmp_path / "copy"
    shutil.copytree(droid.dir, d)
    shard = d / droid.shards["train"][0].name
    src = make_source("droid_rlds", {"input": str(d)})
    refs = src.list_refs()
    off, _ = scan_records(shard)[1]
    data = bytearray(shard.read_bytes())
    data[off + 9] ^= 0xFF  # inside the masked CRC of the length
    shard.write_bytes(bytes(data))
    with pytest.raises(SourceError, match="length CRC mismatch") as e:
        src.read(refs[1])
    assert (e.value.path, e.value.episode_id, e.value.field) == (str(shard), refs[1].episode_id, "record 1")
    assert f"episode={refs[1].episode_id}" in str(e.value)
