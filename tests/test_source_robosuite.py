"""The `robosuite` source on the human demos shipped in the robosuite 1.4.0 wheel, replayed in
.venv-sim. Checks against the model and the stored states, not against our own conversions.

Skipped where .venv-sim is absent, except under `make test` (APPF_REQUIRE_SIM=1).
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from appf.schemas import SegmentCategory, SourceError
from appf.simreplay.client import SimUnavailableError, shipped_demos_dir, sim_python
from appf.transforms.geometry import invert_rigid, pose_to_matrix, transform_points, unproject
from appf.transforms.keyframes import keyframes

try:
    sim_python()
    HAVE_SIM = True
except SimUnavailableError:
    HAVE_SIM = False
pytestmark = pytest.mark.skipif(not HAVE_SIM and os.environ.get("APPF_REQUIRE_SIM") != "1",
                                reason=".venv-sim missing (make setup-sim)")

CAMERAS = ["agentview", "robot0_eye_in_hand"]
# demo_1 closes the gripper command at state 408 (the cube is then lifted): a window around it.
START, STOP = 400, 424


@pytest.fixture(scope="module")
def demos():
    return shipped_demos_dir()


@pytest.fixture(scope="module")
def lift(demos):
    from appf.pipelines.sources.robosuite import RobosuiteSource

    src = RobosuiteSource(input=str(demos / "lift" / "demo.hdf5"), cameras=CAMERAS, height=96,
                          width=96, demos=["demo_1"], start=START, stop=STOP)
    refs = src.list_refs()
    assert [r.episode_id for r in refs] == ["lift_demo.demo_1"]
    return src.read(refs[0])


@pytest.fixture(scope="module")
def lift_states(demos):
    with h5py.File(demos / "lift" / "demo.hdf5", "r") as f:
        return np.asarray(f["data/demo_1/states"]), np.asarray(f["data/demo_1/actions"])


def _base_points(cam, t: int) -> np.ndarray:
    pts = unproject(np.asarray(cam.depth[t], dtype=np.float64), cam.intrinsics)
    return transform_points(cam.T_base_cam_at(t), pts.reshape(-1, 3)).reshape(pts.shape)


def _segment_id(cam, name: str) -> int:
    return next(s.id for s in cam.segments if s.name == name)


def test_shapes_intrinsics_extrinsics_and_validity(lift):
    from appf.schemas.validation import validate_episode

    assert validate_episode(lift) == []
    assert lift.num_steps == STOP - START and lift.control_hz == 20.0
    np.testing.assert_array_equal(lift.metadata["state_indices"], np.arange(START, STOP))
    agent, hand = lift.cameras["agentview"], lift.cameras["robot0_eye_in_hand"]
    assert agent.rgb.shape == (STOP - START, 96, 96, 3) and agent.depth.dtype == np.float32
    assert agent.intrinsics[0, 0] == pytest.approx(48 / np.tan(np.radians(22.5)))
    assert hand.intrinsics[0, 0] == pytest.approx(48 / np.tan(np.radians(37.5)))
    assert np.asarray(agent.T_base_cam).shape == (4, 4)  # fixed camera
    assert np.asarray(hand.T_base_cam).shape == (STOP - START, 4, 4)  # moves with the hand
    np.testing.assert_allclose(lift.steps.timestamp[:3], [0, 0.05, 0.1], atol=1e-9)


def test_table_pixels_unproject_to_the_model_table_height(lift):
    top = lift.metadata["table_top_center_base_m"]
    assert top[2] == pytest.approx(0.8 - 0.912)  # TableArena top 0.8 m, Panda base at 0.912 m
    for cam in lift.cameras.values():
        table = _segment_id(cam, "table_visual")
        for t in (0, len(lift.steps.timestamp) - 1):
            mask = binary_erosion(np.asarray(cam.segmentation[t]) == table, iterations=1)
            z = _base_points(cam, t)[mask][:, 2]
            assert mask.sum() > 20, (cam.name, t)
            assert np.abs(z - top[2]).max() < 1e-3, (cam.name, t, np.abs(z - top[2]).max())


def test_cube_pixels_lie_inside_the_cube_box_from_the_state(lift, lift_states):
    states, _ = lift_states
    objects = lift.metadata["object_geoms"]
    assert objects["names"] == ["cube_g0_vis"]
    half = objects["half_size_m"][0]
    T_base_world = invert_rigid(lift.metadata["T_world_base"])
    for i, s in enumerate(range(START, STOP, 6)):
        t = s - START
        qpos = states[s, 1:17]  # cube_joint0: qpos[9:16] = xyz + quaternion wxyz
        cube_world = pose_to_matrix(np.r_[qpos[9:12], qpos[13:16], qpos[12]])
        T_cube_base = invert_rigid(T_base_world @ cube_world)
        for cam in lift.cameras.values():
            mask = np.asarray(cam.segmentation[t]) == objects["segment_ids"][0]
            if mask.sum() < 5:
                continue
            local = transform_points(T_cube_base, _base_points(cam, t)[mask])
            outside = np.abs(local) - half > 1e-3
            assert not outside.any(), (cam.name, s, np.abs(local).max(axis=0), half)


def test_segmentation_categories(lift):
    cam = lift.cameras["agentview"]
    cats = {s.name: s.category for s in cam.segments}
    assert cats["cube_g0_vis"] == SegmentCategory.TASK_OBJECT
    assert cats["table_visual"] == cats["floor"] == SegmentCategory.BACKGROUND
    assert cats["gripper0_finger1_visual"] == cats["robot0_g0_vis"] == SegmentCategory.ROBOT
    assert cats["mount0_pedestal_vis"] == SegmentCategory.ROBOT
    seen = np.unique(np.asarray(cam.segmentation))
    assert set(cam.ids_of(SegmentCategory.ROBOT)) & set(seen)
    assert set(cam.ids_of(SegmentCategory.TASK_OBJECT)) & set(seen)
    # Sites stay out of the images: the grip-site cylinder under the fingers would otherwise
    # show up as geom 2 (a wall) right below the gripper. Every wall pixel is far from the TCP.
    walls = [s.id for s in cam.segments if s.name.startswith("wall")]
    for t in range(0, lift.num_steps, 6):
        mask = np.isin(np.asarray(cam.segmentation[t]), walls)
        if mask.any():
            d = np.linalg.norm(_base_points(cam, t)[mask] - lift.steps.ee_pose[t, 0, :3], axis=-1)
            assert d.min() > 0.3, (t, d.min())


def test_robot_state_and_keyframe_at_the_recorded_close(lift, lift_states):
    _, actions = lift_states
    assert lift.metadata["gripper_close_command_steps"] == [408 - START]
    np.testing.assert_array_equal(lift.steps.action, actions[START:STOP])
    g = lift.steps.gripper[:, 0]
    assert g[0] == pytest.approx(0.0, abs=0.05) and g[-1] == pytest.approx(1.0)
    kf = keyframes(lift.steps.gripper)
    close = [e.step for e in kf.events if e.kind == "close"]
    # The keyframe falls inside the recorded closing: after the command (states[t] precede
    # actions[t], the fingers first move at t + 1) and no later than the step at which the
    # stored finger width settles (within 1 mm of its final value).
    states, _ = lift_states
    width = states[START:STOP, 8] - states[START:STOP, 9]
    settled = int(np.flatnonzero(np.abs(width - width[-1]) < 1e-3)[0])
    assert len(close) == 1 and 408 - START < close[0] <= settled, (close, settled)
    # While grasping, the TCP (base frame) is at the cube (from the stored state).
    cube = lift.metadata["object_geoms"]["T_base_geom"][-1, 0, :3, 3]
    assert np.linalg.norm(lift.steps.ee_pose[-1, 0, :3] - cube) < 0.02
    q = lift.steps.ee_pose[..., 3:]
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-9)


def test_action_replay_reproduces_the_stored_states(demos, lift):
    from appf.pipelines.sources.robosuite import RobosuiteSource

    src = RobosuiteSource(input=str(demos / "lift" / "demo.hdf5"), cameras=CAMERAS, height=96,
                          width=96, demos=["demo_1"], start=START, stop=STOP, replay="actions")
    ep = src.read(src.list_refs()[0])
    assert ep.metadata["replay"] == "actions" and ep.metadata["versions"]["mujoco"] == "2.3.7"
    assert ep.metadata["qpos_drift_max"] < 1e-9  # mujoco 2.3.7 re-executes the demo exactly
    # Same scene: renders agree except for a few edge pixels (measured 0.1-0.6 %).
    for name, cam in ep.cameras.items():
        differ = np.any(cam.rgb != lift.cameras[name].rgb, axis=-1)
        assert differ.mean() < 0.02, (name, differ.mean())
        assert np.median(np.abs(cam.depth - lift.cameras[name].depth)) < 1e-6


def test_demos_that_cannot_replay_fail_with_file_episode_field(demos, tmp_path):
    from appf.pipelines.sources.robosuite import RobosuiteSource

    src = RobosuiteSource(input=str(demos / "wipe" / "panda" / "demo.hdf5"), height=32, width=32)
    ref = src.list_refs()[0]
    with pytest.raises(SourceError, match="model_file") as e:
        src.read(ref)
    assert e.value.path.endswith("wipe/panda/demo.hdf5") and e.value.episode_id == ref.episode_id
    bad_cam = RobosuiteSource(input=str(demos / "lift" / "demo.hdf5"), cameras=["nope"],
                              demos=1, stop=2, height=32, width=32)
    with pytest.raises(SourceError, match=r"field=cameras: \['nope'\] not in the model"):
        bad_cam.read(bad_cam.list_refs()[0])
    # TwoArmHandover's stored model predates robosuite 1.4's geom names: a clear error, and the
    # worker (whose env the failed load dropped) goes on replaying.
    handover = RobosuiteSource(input=str(demos / "handover"), demos=1, stop=2, height=32, width=32)
    with pytest.raises(SourceError, match="robot0_g0_vis") as e:
        handover.read(handover.list_refs()[0])
    assert e.value.episode_id == "panda_panda_demo.demo_0" and e.value.path.endswith("demo.hdf5")
    good = RobosuiteSource(input=str(demos / "lift" / "demo.hdf5"), cameras=["agentview"],
                           demos=1, stop=2, height=32, width=32)
    assert good.read(good.list_refs()[0]).num_steps == 2
    (tmp_path / "broken.hdf5").write_bytes(b"not hdf5")
    folder = RobosuiteSource(input=str(tmp_path))
    (ref,) = folder.list_refs()
    with pytest.raises(SourceError, match="cannot open as HDF5") as e:
        folder.read(ref)
    assert e.value.path == str(tmp_path / "broken.hdf5")


def test_reannotate_job_end_to_end(demos, tmp_path):
    from appf.launch.cli import main

    out = tmp_path / "out"
    args = ["reannotate", "--source", "robosuite", "--input", str(demos / "lift"), "--out", str(out),
            "--n-points", "256"]
    for option in ("demos=[demo_1, demo_2]", "start=396", "stop=416", "height=64", "width=64"):
        args += ["--source-option", option]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["episodes"] == 2
    assert main(["validate", str(out)]) == 0
    import zarr

    shard = out / "pointclouds" / "shard-00000.zarr"
    root = zarr.open_group(str(shard), mode="r")
    assert list(root["meta/episode_ends"][:]) == [20, 40]
    # the close of demo_1 at 408 (396 + 12 < k <= 396 + 19) + the last frame of each episode
    assert root["data/keyframe"][:].sum() == 3


def test_eval_depth_scores_backends_against_the_simulator_depth(demos, capsys):
    from appf.launch.cli import main

    lift = demos / "lift" / "demo.hdf5"
    assert main(["eval", "depth", "--robosuite", str(lift), "--frames", "2", "--height", "48",
                 "--width", "48", "--backend", "ground_truth,sensor_fill", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cases"] == ["demo.hdf5 demo_1 agentview state 0",
                               "demo.hdf5 demo_1 agentview state 241"]
    exact, filled = report["mean"]["ground_truth"], report["mean"]["sensor_fill"]
    # ground truth passes the holed "sensor" depth through: exact where it has depth, holes left
    assert exact["abs_rel"] == 0.0 and exact["delta1"] == 1.0 and 0.5 < exact["coverage"] < 1.0
    assert filled["coverage"] > exact["coverage"] and filled["abs_rel"] < 0.1  # 0.053 measured


def test_eval_depth_runs_a_learned_backend_on_simulator_rgb(demos, tmp_path, monkeypatch, capsys):
    # The "no reliable depth" variant: MoGe-2 on simulator RGB, scored against the exact depth.
    # Tiny random weights (tests are offline), so only the plumbing and the metrics are checked.
    torch = pytest.importorskip("torch")
    v2 = pytest.importorskip("moge.model.v2")
    from test_depth_learned import _tiny_moge_config

    from appf.launch.cli import main

    torch.manual_seed(0)
    model = v2.MoGeModel(**_tiny_moge_config()).eval()
    torch.save({"model_config": _tiny_moge_config(), "model": model.state_dict()},
               tmp_path / "model.pt")
    monkeypatch.setenv("APPF_WEIGHTS_MOGE_2_VITL_NORMAL", str(tmp_path))
    assert main(["eval", "depth", "--robosuite", str(demos / "lift" / "demo.hdf5"), "--frames", "1",
                 "--height", "56", "--width", "56", "--backend", "moge2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["results"]["moge2"]
    assert 0 < row["coverage"] <= 1 and np.isfinite(row["abs_rel"]) and 0 <= row["delta1"] <= 1
