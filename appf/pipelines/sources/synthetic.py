"""The `synthetic` source: seeded tabletop pick-and-place episodes rendered by appf itself.

Demo data and the geometry oracle of the tests: every array comes from the analytic scene of
`appf.transforms.synthetic_scene` (see its docstring for the scene, frames and ids).

Episode k of the dataset is rendered from seed k and is called `synthetic-{k:06d}`; a source
built with `seed=s, episodes=n` lists episodes s .. s + n - 1 (index 0 .. n - 1), so an id names
the same content in every run (given the same steps / resolution options, carried in the ref).

One camera, "front": rgb, rectified rgb_right + baseline_m (with stereo=True), ground-truth
depth (camera z, metres, 0 = invalid), segmentation with the id table background(0, "background"),
table(1, "background" category), robot(2), cube(3, task_object), K from a 60 degree horizontal
field of view with the principal point at the image centre, per-episode T_base_cam.
Pixels are rendered eagerly in `read` (a 40-step 320x240 stereo episode takes ~0.3 s).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from appf.pipelines.sources.base import SourceInfo
from appf.schemas import (
    CameraStream,
    ConfigError,
    Episode,
    EpisodeRef,
    RobotInfo,
    Segment,
    SegmentCategory,
    Steps,
)
from appf.transforms import synthetic_scene as scene

DATASET = "synthetic"
CAMERA = "front"

ACTION_SPACE = (
    "action[t] (8,) = absolute target for the next step: ee_pose[t + 1] as TCP xyz (m, base "
    "frame) + quaternion xyzw (7), then the gripper command gripper[t + 1] in [0, 1] "
    "(0 = open, 1 = closed); the last step repeats its own state."
)
JOINT_NOTE = (
    "joint_positions are SYNTHETIC: 7 smooth deterministic functions of the TCP pose "
    "(plausible ranges, rad), not a kinematic chain"
)

SEGMENTS = (
    Segment(scene.BACKGROUND_ID, "background", SegmentCategory.BACKGROUND),
    Segment(scene.TABLE_ID, "table", SegmentCategory.BACKGROUND),
    Segment(scene.ROBOT_ID, "robot", SegmentCategory.ROBOT),
    Segment(scene.CUBE_ID, "cube", SegmentCategory.TASK_OBJECT),
)


def episode_id(seed: int) -> str:
    return f"{DATASET}-{int(seed):06d}"


class SyntheticSource:
    """Deterministic, seeded synthetic tabletop episodes (see the module docstring)."""

    selection_options = ("episodes",)  # episode i is the same for every count above i

    info = SourceInfo(
        name=DATASET,
        description="seeded tabletop pick-and-place rendered by appf (analytic ray caster): "
                    "stereo RGB, exact depth and segmentation, gripper keyframes in metadata",
        stereo=True,
        sensor_depth=False,
        ground_truth_depth=True,
        segmentation=True,
        calibration=True,
        arms="1",
        default_depth="ground_truth",
        default_masks="ground_truth",
        # The workspace around the cube's start and place positions, table top included.
        default_crop=((0.15, -0.45, -0.005), (0.85, 0.45, 0.45)),
    )

    def __init__(self, episodes: int = 8, steps: int = 40, height: int = 240, width: int = 320,
                 seed: int = 0, stereo: bool = True, control_hz: float = 10.0,
                 **unused: Any) -> None:
        if episodes < 0:
            raise ConfigError(f"episodes must be >= 0, got {episodes}")
        if steps < scene.MIN_STEPS:
            raise ConfigError(f"steps must be >= {scene.MIN_STEPS}, got {steps}")
        if height < 8 or width < 8:
            raise ConfigError(f"image size must be at least 8x8, got {height}x{width}")
        if control_hz <= 0:
            raise ConfigError(f"control_hz must be > 0, got {control_hz}")
        if seed < 0:
            raise ConfigError(f"seed must be >= 0, got {seed}")
        self.episodes = int(episodes)
        self.steps = int(steps)
        self.height = int(height)
        self.width = int(width)
        self.seed = int(seed)
        self.stereo = bool(stereo)
        self.control_hz = float(control_hz)

    def list_refs(self) -> list[EpisodeRef]:
        refs = []
        for i in range(self.episodes):
            s = self.seed + i
            options = (("seed", s), ("steps", self.steps), ("height", self.height),
                       ("width", self.width), ("stereo", self.stereo),
                       ("control_hz", self.control_hz))
            refs.append(EpisodeRef(DATASET, episode_id(s), i, uri=f"synthetic://{s}",
                                   options=options))
        return refs

    def read(self, ref: EpisodeRef) -> Episode:
        seed, steps, H, W, stereo, hz = self._episode_options(ref)
        script = scene.make_script(seed, steps)
        K = scene.intrinsics_from_fov(W, H, scene.HFOV_DEG)
        rgb, depth, seg, rgb_r = _render_frames(script, K, steps, H, W, stereo)
        cam = CameraStream(
            name=CAMERA, rgb=rgb, intrinsics=K, T_base_cam=script.T_base_cam.copy(),
            rgb_right=rgb_r, baseline_m=scene.BASELINE_M if stereo else None,
            depth=depth, segmentation=seg, segments=SEGMENTS,
            depth_provenance="ground_truth",
        )
        return _assemble_episode(ref, seed, script, _convert_steps(script, steps, hz), hz, cam)

    def _episode_options(self, ref: EpisodeRef) -> tuple[int, int, int, int, bool, float]:
        """(seed, steps, height px, width px, stereo, control_hz) from the ref, else the source's."""
        seed = int(ref.option("seed", self.seed + ref.index))
        steps = int(ref.option("steps", self.steps))
        H = int(ref.option("height", self.height))
        W = int(ref.option("width", self.width))
        stereo = bool(ref.option("stereo", self.stereo))
        hz = float(ref.option("control_hz", self.control_hz))
        return seed, steps, H, W, stereo, hz


def _render_frames(script: scene.EpisodeScript, K: np.ndarray, steps: int, H: int, W: int, stereo: bool
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(rgb (T, H, W, 3) uint8, depth_m (T, H, W) float32, segmentation (T, H, W) int32,
    rgb_right or None) rendered for every step of the script."""
    left = scene.SceneRenderer(K, script.T_base_cam, H, W)
    right = (scene.SceneRenderer(K, scene.right_camera_pose(script.T_base_cam,
                                                            scene.BASELINE_M), H, W)
             if stereo else None)
    rgb = np.empty((steps, H, W, 3), np.uint8)
    depth = np.empty((steps, H, W), np.float32)
    seg = np.empty((steps, H, W), np.int32)
    rgb_r = np.empty((steps, H, W, 3), np.uint8) if stereo else None
    for t in range(steps):
        state = script.state(t)
        rgb[t], depth[t], seg[t] = left.render(state)
        if right is not None:
            rgb_r[t] = right.render(state)[0]
    return rgb, depth, seg, rgb_r


def _convert_steps(script: scene.EpisodeScript, steps: int, hz: float) -> Steps:
    """TCP pose, gripper, synthetic joints and the next-step absolute action (ACTION_SPACE)."""
    ee = script.ee_pose()
    grip = script.gripper.astype(np.float64)
    nxt = np.minimum(np.arange(steps) + 1, steps - 1)
    action = np.concatenate([ee[nxt], grip[nxt, None]], axis=1)
    return Steps(
        timestamp=np.arange(steps, dtype=np.float64) / hz,
        ee_pose=ee[:, None, :],
        gripper=grip[:, None],
        joint_positions=scene.synthetic_joint_positions(ee),
        action=action,
    )


def _assemble_episode(ref: EpisodeRef, seed: int, script: scene.EpisodeScript, steps: Steps, hz: float,
                      cam: CameraStream) -> Episode:
    return Episode(
        dataset=DATASET,
        episode_id=ref.episode_id,
        language_instruction=script.instruction,
        robot=RobotInfo("synthetic_gripper", 1),
        control_hz=hz,
        steps=steps,
        cameras={CAMERA: cam},
        action_space=ACTION_SPACE,
        conversions=[],
        metadata={
            "seed": seed,
            "gripper_close_step": script.close_step,
            "gripper_open_step": script.open_step,
            "gripper_threshold": scene.GRIPPER_THRESHOLD,
            "grasp_step": script.grasp_step,
            "release_step": script.release_step,
            "cube_color": script.cube_color,
            "cube_size_m": scene.CUBE_SIZE,
            "place_direction": script.place_direction,
            "texture_seed": script.texture_seed,
            "hfov_deg": scene.HFOV_DEG,
            "phases": {k: list(v) for k, v in script.phases.items()},
            "joint_positions": JOINT_NOTE,
            "segmentation_ids": {str(k): v for k, v in scene.SEGMENT_NAMES.items()},
        },
    )
