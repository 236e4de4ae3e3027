"""The `lerobot` source on a v3.0 dataset written by the real lerobot 0.4.4 and on a hand-written
v2.1 dataset: frames by index, state/action/task, calibration options, and dirty cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from appf.pipelines.sources import make_source
from appf.schemas import SourceError
from appf.schemas.validation import validate_episode
from fixtures_lerobot import (
    CAMERAS, EPISODES, FPS, extra_frames, read_with_lerobot, requires_lerobot, run_lerobot, write_v21, write_v30,
)

# AV1 at LeRobot's CRF 30 is lossy: a frame must be close to its original (mean absolute error in
# 8-bit levels; the synthetic scenes' textures cost more than the smooth fixtures) and closer to it
# than to any other frame of the episode (index alignment).
MAX_MEAN_ABS_ERR = 4.0


def assert_frames_match(decoded: np.ndarray, original: np.ndarray, max_err: float = MAX_MEAN_ABS_ERR) -> None:
    assert decoded.shape == original.shape
    err = np.abs(decoded.astype(np.float64)[:, None] - original.astype(np.float64)[None]).mean(axis=(2, 3, 4))
    assert np.all(np.diag(err) < max_err), np.diag(err)
    best = err.argmin(axis=1)
    o = original.astype(np.float64)
    # frame t decodes closest to original t, or to an original that is the same picture (a pause)
    same = [np.abs(o[b] - o[t]).mean() < 1.0 for t, b in enumerate(best)]
    assert all(same), (best, same)


def check_droid_episode(src, ref, arrays, task: str) -> None:
    ep = src.read(ref)
    assert validate_episode(ep) == []
    assert ep.language_instruction == task
    assert ep.control_hz == FPS
    cart = arrays["observation.state.cartesian_position"].astype(np.float64)
    np.testing.assert_allclose(ep.steps.ee_pose[:, 0, :3], cart[:, :3], atol=1e-7)
    q = Rotation.from_euler("xyz", cart[:, 3:6]).as_quat()
    dots = np.abs(np.sum(q * ep.steps.ee_pose[:, 0, 3:], axis=1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-6)  # same rotation (q ~ -q)
    np.testing.assert_array_equal(ep.steps.gripper[:, 0], arrays["observation.state.gripper_position"][:, 0])
    np.testing.assert_array_equal(ep.steps.action, arrays["action"].astype(np.float64))
    np.testing.assert_array_equal(ep.steps.joint_positions, arrays["observation.state.joint_position"])
    np.testing.assert_allclose(ep.steps.timestamp, np.arange(len(cart)) / FPS, atol=1e-6)
    for cam in CAMERAS:
        assert_frames_match(np.asarray(ep.cameras[cam].rgb), arrays[f"observation.images.{cam}"])
        assert ep.cameras[cam].intrinsics_unknown
    T = ep.cameras["exterior_1_left"].T_base_cam
    np.testing.assert_allclose(T[:3, 3], [0.1, 0.5, 0.6], atol=1e-6)
    np.testing.assert_allclose(T[:3, :3], Rotation.from_euler("xyz", [-2.0, 0.0, -0.5]).as_matrix(), atol=1e-6)
    assert ep.cameras["wrist_left"].T_base_cam is None and ep.cameras["wrist_left"].extrinsics_unknown


DROID_OPTIONS = {"extrinsics_keys": {"exterior_1_left": "camera_extrinsics.exterior_1_left"}}


@pytest.fixture(scope="module")
def v30(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lerobot_v30")
    return tmp / "droid_fixture", write_v30(tmp / "droid_fixture", tmp)


@requires_lerobot
def test_v30_written_by_lerobot(v30):
    root, arrays = v30
    src = make_source("lerobot", {"input": str(root), **DROID_OPTIONS})
    assert src.layout["ee_pose_format"] == "xyz_euler_xyz"  # auto-detected DROID layout
    refs = src.list_refs()
    assert [r.episode_id for r in refs] == ["episode_000000", "episode_000001"]
    assert [r.dataset for r in refs] == ["droid_fixture"] * 2
    # the second episode starts mid-file (v3.0 packs episodes): index alignment is tested there
    for ref, a, (_, task) in zip(refs, arrays, EPISODES):
        check_droid_episode(src, ref, a, task)


def test_v21_hand_written(tmp_path):
    arrays = write_v21(tmp_path / "droid21")
    src = make_source("lerobot", {"input": str(tmp_path / "droid21"), **DROID_OPTIONS})
    refs = src.list_refs()
    for ref, a, (_, task) in zip(refs, arrays, EPISODES):
        check_droid_episode(src, ref, a, task)


@requires_lerobot
def test_v21_fixture_is_what_lerobot_converts(tmp_path):
    """lerobot's own v2.1 -> v3.0 converter accepts the hand-written v2.1 fixture; LeRobotDataset
    and this source read the converted dataset (videos concatenated: episode 1 starts mid-file)
    as the arrays written."""
    arrays = write_v21(tmp_path / "appf" / "droid21")
    run_lerobot("convert21", tmp_path, "appf/droid21")
    root = tmp_path / "appf" / "droid21"
    assert json.loads((root / "meta/info.json").read_text())["codebase_version"] == "v3.0"
    meta, items = read_with_lerobot(root, tmp_path)
    assert meta["tasks"] == [task for n, task in EPISODES for _ in range(n)]
    np.testing.assert_array_equal(items["observation.state.cartesian_position"],
                                  np.concatenate([a["observation.state.cartesian_position"] for a in arrays]))
    src = make_source("lerobot", {"input": str(root), **DROID_OPTIONS})
    for ref, a, (_, task) in zip(src.list_refs(), arrays, EPISODES):
        check_droid_episode(src, ref, a, task)


def test_image_feature_and_depth_keys(tmp_path):
    write_v21(tmp_path / "d", extras=True)
    src = make_source("lerobot", {"input": str(tmp_path / "d"), "cameras": ["top", "wrist_left"],
                                  "depth_keys": {"wrist_left": "observation.depth.wrist_left"}})
    for e, ref in enumerate(src.list_refs()):
        ep = src.read(ref)
        assert validate_episode(ep) == []
        top, depth_mm = extra_frames(e, ep.num_steps)
        np.testing.assert_array_equal(np.asarray(ep.cameras["top"].rgb), top)  # PNG: lossless
        np.testing.assert_allclose(np.asarray(ep.cameras["wrist_left"].depth), depth_mm * 0.001, rtol=1e-6)
        assert ep.cameras["top"].depth is None
    with pytest.raises(SourceError, match=r"depth_keys name cameras \['top'\] that are not read"):
        make_source("lerobot", {"input": str(tmp_path / "d"), "cameras": ["wrist_left"],
                                "depth_keys": {"top": "observation.depth.wrist_left"}})
    # by default, every image/video feature is a camera
    assert sorted(make_source("lerobot", {"input": str(tmp_path / "d")}).cameras) == sorted([*CAMERAS, "top"])


def test_camera_choice_and_user_calibration(tmp_path):
    write_v21(tmp_path / "d")
    K = [[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]
    src = make_source("lerobot", {"input": str(tmp_path / "d"), "cameras": ["wrist_left"],
                                  "intrinsics": {"wrist_left": K}, "extrinsics": {"wrist_left": np.eye(4).tolist()}})
    ep = src.read(src.list_refs()[0])
    assert list(ep.cameras) == ["wrist_left"]
    np.testing.assert_array_equal(ep.cameras["wrist_left"].intrinsics, K)
    np.testing.assert_array_equal(ep.cameras["wrist_left"].T_base_cam, np.eye(4))
    with pytest.raises(SourceError, match="cameras"):
        make_source("lerobot", {"input": str(tmp_path / "d"), "cameras": ["top"]})


# ----------------------------------------------------------------------------------------------
# Dirty cases: SourceError naming file, episode and field


def test_missing_video(tmp_path):
    write_v21(tmp_path / "d")
    video = tmp_path / "d/videos/chunk-000/observation.images.wrist_left/episode_000001.mp4"
    video.unlink()
    src = make_source("lerobot", {"input": str(tmp_path / "d")})
    with pytest.raises(SourceError) as e:
        src.read(src.list_refs()[1])
    assert str(video) in str(e.value) and "episode_000001" in str(e.value)
    assert "observation.images.wrist_left" in str(e.value)


def test_frame_index_beyond_video(tmp_path):
    write_v21(tmp_path / "d", video_frames={1: 5})
    src = make_source("lerobot", {"input": str(tmp_path / "d")})
    src.read(src.list_refs()[0])  # the clean episode still reads
    with pytest.raises(SourceError, match=r"frame index beyond the video.*file has 5.*episode=episode_000001"):
        src.read(src.list_refs()[1])


def test_length_mismatch(tmp_path):
    write_v21(tmp_path / "d")
    eps = tmp_path / "d/meta/episodes.jsonl"
    eps.write_text(eps.read_text().replace('"length": 9', '"length": 10'))
    src = make_source("lerobot", {"input": str(tmp_path / "d")})
    with pytest.raises(SourceError, match=r"episode table says 10 frames.*9 rows.*episode_000001\.parquet.*"
                                          r"episode=episode_000001, field=frame_index"):
        src.read(src.list_refs()[1])


@pytest.mark.parametrize("key", ["fps", "features", "codebase_version", "data_path"])
def test_missing_info_key(tmp_path, key):
    write_v21(tmp_path / "d")
    info_path = tmp_path / "d/meta/info.json"
    info = json.loads(info_path.read_text())
    del info[key]
    info_path.write_text(json.dumps(info))
    with pytest.raises(SourceError, match=rf"required key missing.*file={info_path}.*field={key}"):
        make_source("lerobot", {"input": str(tmp_path / "d")})


def test_unknown_layout_is_explained(tmp_path):
    write_v21(tmp_path / "d")
    info_path = tmp_path / "d/meta/info.json"
    info = json.loads(info_path.read_text())
    info["features"].pop("observation.state.cartesian_position")
    info_path.write_text(json.dumps(info))
    with pytest.raises(SourceError, match="state_layout"):
        make_source("lerobot", {"input": str(tmp_path / "d")})


@requires_lerobot
def test_hub_id_fetches_files_through_huggingface_hub(v30, monkeypatch):
    """A Hub id goes through huggingface_hub (snapshot_download for the episode table, then
    hf_hub_download file by file). The Hub cannot be reached in tests: fakes of those two
    functions serve the lerobot-written fixture with their keyword interface."""
    import huggingface_hub

    root, arrays = v30
    asked: list[tuple[str, dict]] = []

    def fake_hf_hub_download(**kw):
        asked.append(("file", kw))
        return str(root / kw["filename"])

    def fake_snapshot_download(**kw):
        asked.append(("snapshot", kw))
        return str(root)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    src = make_source("lerobot", {"input": "someone/droid_fixture@0123abcd", **DROID_OPTIONS})
    refs = src.list_refs()
    assert [r.dataset for r in refs] == ["droid_fixture"] * 2
    check_droid_episode(src, refs[1], arrays[1], EPISODES[1][1])
    assert {kw["repo_id"] for _, kw in asked} == {"someone/droid_fixture"}
    assert {kw["revision"] for _, kw in asked} == {"0123abcd"}
    assert {kw["repo_type"] for _, kw in asked} == {"dataset"}
    assert ("snapshot", "meta/episodes/*/*.parquet") in {(k, (kw.get("allow_patterns") or [""])[0]) for k, kw in asked}
    fetched = {kw["filename"] for k, kw in asked if k == "file"}
    assert {"meta/info.json", "meta/tasks.parquet", "data/chunk-000/file-000.parquet"} <= fetched
    with pytest.raises(SourceError, match="neither an existing folder nor a Hub dataset id"):
        make_source("lerobot", {"input": "/no/such/dir"})


def test_registered(capsys):
    from appf.launch.cli import main

    assert main(["sources"]) == 0
    assert "lerobot" in capsys.readouterr().out


def test_video_slice_seeks_on_the_fps_grid_and_falls_back_off_it(tmp_path):
    """Frames of a packed file are found by seeking (pts on the fps grid); a file whose timestamps
    are off the grid is read by counting frames in decode order instead: same frames either way."""
    import av
    from fractions import Fraction

    from appf.pipelines.sources._lerobot_video import VideoSlice
    from fixtures_lerobot import frame_image

    frames = np.stack([frame_image(0, t, 0) for t in range(40)])

    def encode(path, pts_of):
        with av.open(str(path), "w") as c:
            s = c.add_stream("libsvtav1", rate=FPS, options={"g": "8", "crf": "20", "preset": "12"})
            s.width, s.height, s.pix_fmt, s.time_base = frames.shape[2], frames.shape[1], "yuv420p", Fraction(1, 1000)
            for t, rgb in enumerate(frames):
                f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                f.pts = pts_of(t)
                for p in s.encode(f):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)

    encode(tmp_path / "grid.mp4", lambda t: round(t * 1000 / FPS))
    encode(tmp_path / "off.mp4", lambda t: t * 71)  # ~14 fps: not on the 15 fps grid
    for name in ("grid.mp4", "off.mp4"):
        loader = VideoSlice(tmp_path / name, 17, FPS, "episode_000003", "observation.images.x")
        got = np.concatenate([loader(0, 5), loader(5, 12), loader(2, 4)])  # sequential, then backwards
        want = np.concatenate([frames[17:22], frames[22:29], frames[19:21]])
        assert_frames_match(got[:12], want[:12])
        assert np.abs(got.astype(float) - want).mean() < MAX_MEAN_ABS_ERR
    with pytest.raises(SourceError, match=r"frame.*file=.*grid.mp4, episode=episode_000003"):
        VideoSlice(tmp_path / "grid.mp4", 35, FPS, "episode_000003", "observation.images.x")(0, 10)
