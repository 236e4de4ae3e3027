"""Writes tiny RLDS/TFDS datasets in the exact on-disk layout of the real releases, rendered
from the synthetic scene so every pose and pixel has a known answer:

    <root>/<name>/<version>/dataset_info.json      (tfds.folder_dataset.write_metadata)
    <root>/<name>/<version>/features.json          (a tfds FeaturesDict with the real specs)
    <root>/<name>/<version>/<name>-<split>.tfrecord-NNNNN-of-MMMMM

Feature specs: DROID from the official builder (kylehsu-tri/droid_dataset_builder droid.py) plus
language_instruction_2/_3 (droid_100 1.0.0 dump) and the 1.0.1 episode_metadata fields
(lerobot port_droid.py; their dtypes -- 6-vectors float64, scene_id int64 -- are [inferred]);
Bridge `bridge_dataset` from kpertsch/bridge_rlds_builder (256x256 release layout, formats-real.md
§3.4); OXE `bridge` 0.1.0 from the TFDS catalog dump. Images are given as encoded JPEG bytes (no
TensorFlow needed to serialize); shards are written with the source's own TFRecord writer.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from scipy.spatial.transform import Rotation

from appf.pipelines.sources._tfrecord import write_records
from appf.pipelines.sources.bridge_raw import DEFAULT_ROT
from appf.transforms import synthetic_scene as scene
from tests.fixtures_droid import WRIST_OFFSET, euler6

F = tfds.features
DROID_HW = (180, 320)
RAIL_HW = (256, 256)
OXE_HW = (480, 640)


# ----------------------------------------------------------------------------------------------
# Feature specs (the real ones)


def _img(hw, doc="", fmt="jpeg"):
    return F.Image(shape=(*hw, 3), dtype=np.uint8, encoding_format=fmt, doc=doc)


def _t(shape, dtype=np.float64, doc=""):
    return F.Tensor(shape=shape, dtype=dtype, doc=doc)


def droid_features(version: str = "1.0.1", hw=DROID_HW, drop: tuple[str, ...] = ()) -> F.FeaturesDict:
    """`drop`: observation keys left out (to test schema errors)."""
    step = {
        "observation": F.FeaturesDict({
            "exterior_image_1_left": _img(hw, "Exterior camera 1 left viewpoint"),
            "exterior_image_2_left": _img(hw, "Exterior camera 2 left viewpoint"),
            "wrist_image_left": _img(hw, "Wrist camera RGB left viewpoint"),
            "cartesian_position": _t((6,), doc="Robot Cartesian state"),
            "gripper_position": _t((1,), doc="Gripper position statae"),
            "joint_position": _t((7,), doc="Joint position state"),
        }),
        "action_dict": F.FeaturesDict({
            "cartesian_position": _t((6,), doc="Commanded Cartesian position"),
            "cartesian_velocity": _t((6,), doc="Commanded Cartesian velocity"),
            "gripper_position": _t((1,), doc="Commanded gripper position"),
            "gripper_velocity": _t((1,), doc="Commanded gripper velocity"),
            "joint_position": _t((7,), doc="Commanded joint position"),
            "joint_velocity": _t((7,), doc="Commanded joint velocity"),
        }),
        "action": _t((7,), doc="Robot action, consists of [6x joint velocities, 1x gripper position]."),
        "discount": F.Scalar(dtype=np.float32, doc="Discount if provided, default to 1."),
        "reward": F.Scalar(dtype=np.float32, doc="Reward if provided, 1 on final step for demos."),
        "is_first": F.Scalar(dtype=np.bool_, doc="True on first step of the episode."),
        "is_last": F.Scalar(dtype=np.bool_, doc="True on last step of the episode."),
        "is_terminal": F.Scalar(dtype=np.bool_, doc="True on last step of the episode if it is a terminal step."),
        "language_instruction": F.Text(doc="Language Instruction."),
        "language_instruction_2": F.Text(doc="Alternative Language Instruction."),
        "language_instruction_3": F.Text(doc="Alternative Language Instruction."),
    }
    step["observation"] = F.FeaturesDict({k: v for k, v in step["observation"].items() if k not in drop})
    meta = {"file_path": F.Text(doc="Path to the original data file."),
            "recording_folderpath": F.Text(doc="Path to the folder of recordings.")}
    if version == "1.0.1":
        meta.update({
            "building": F.Text(), "collector_id": F.Text(), "date": F.Text(), "task_category": F.Text(),
            "scene_id": F.Scalar(dtype=np.int64),
            "extrinsics_exterior_cam_1": _t((6,)), "extrinsics_exterior_cam_2": _t((6,)),
            "extrinsics_wrist_cam": _t((6,)),
        })
    return F.FeaturesDict({"steps": F.Dataset(step), "episode_metadata": F.FeaturesDict(meta)})


def bridge_rail_features(hw=RAIL_HW) -> F.FeaturesDict:
    obs = {f"image_{i}": _img(hw, d) for i, d in enumerate((
        "Main camera RGB observation (fixed position).", "Side camera RGB observation (varied position).",
        "Side camera RGB observation (varied position)", "Wrist camera RGB observation."))}
    obs["state"] = _t((7,), np.float32, "Robot state, consists of [7x robot joint angles, 2x gripper "
                      "position, 1x door opening angle].")  # the builder's (wrong) template doc
    step = {
        "observation": F.FeaturesDict(obs),
        "action": _t((7,), np.float32, "Robot action, consists of [7x joint velocities, 2x gripper "
                     "velocities, 1x terminate episode]."),
        "discount": F.Scalar(dtype=np.float32), "reward": F.Scalar(dtype=np.float32),
        "is_first": F.Scalar(dtype=np.bool_), "is_last": F.Scalar(dtype=np.bool_),
        "is_terminal": F.Scalar(dtype=np.bool_),
        "language_instruction": F.Text(doc="Language Instruction."),
        "language_embedding": _t((512,), np.float32, "Kona language embedding."),
    }
    meta = {"file_path": F.Text(doc="Path to the original data file."),
            "episode_id": F.Scalar(dtype=np.int32, doc="ID of episode in file_path."),
            **{f"has_image_{i}": F.Scalar(dtype=np.bool_) for i in range(4)},
            "has_language": F.Scalar(dtype=np.bool_)}
    return F.FeaturesDict({"steps": F.Dataset(step), "episode_metadata": F.FeaturesDict(meta)})


def bridge_oxe_features(hw=OXE_HW) -> F.FeaturesDict:
    step = {
        "action": F.FeaturesDict({
            "open_gripper": F.Scalar(dtype=np.bool_),
            "rotation_delta": _t((3,), np.float32),
            "terminate_episode": F.Scalar(dtype=np.float32),
            "world_vector": _t((3,), np.float32),
        }),
        "is_first": F.Scalar(dtype=np.bool_), "is_last": F.Scalar(dtype=np.bool_),
        "is_terminal": F.Scalar(dtype=np.bool_),
        "observation": F.FeaturesDict({
            "image": _img(hw),
            "natural_language_embedding": _t((512,), np.float32),
            "natural_language_instruction": F.Text(),
            "state": _t((7,), np.float32, "numpy array of shape (7,). Contains the robot joint states "
                        "(as absolute joint angles) at each timestep"),
        }),
        "reward": F.Scalar(dtype=np.float32),
    }
    return F.FeaturesDict({"steps": F.Dataset(step)})


# ----------------------------------------------------------------------------------------------
# Writing


def jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_rlds(version_dir: Path, name: str, version: str, features: F.FeaturesDict,
               splits: dict[str, list[list[dict]]]) -> dict[str, list[Path]]:
    """splits: split -> shards -> episode example dicts. Returns split -> shard paths."""
    from tensorflow_datasets.core import naming

    version_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {}
    infos = []
    for split, shards in splits.items():
        tmpl = naming.ShardedFileTemplate(data_dir=version_dir, dataset_name=name, split=split,
                                          filetype_suffix="tfrecord",
                                          template=naming.DEFAULT_FILENAME_TEMPLATE)
        paths, nbytes = [], 0
        for i, episodes in enumerate(shards):
            p = tmpl.sharded_filepath(shard_index=i, num_shards=len(shards))
            recs = [features.serialize_example(ep) for ep in episodes]
            write_records(Path(p), recs)
            nbytes += sum(map(len, recs))
            paths.append(Path(p))
        out[split] = paths
        infos.append(tfds.core.SplitInfo(name=split, shard_lengths=[len(s) for s in shards],
                                         num_bytes=nbytes, filename_template=tmpl))
    tfds.folder_dataset.write_metadata(data_dir=version_dir, features=features, split_infos=infos,
                                       version=version, filename_template=infos[0].filename_template,
                                       check_data=False)
    return out


@lru_cache(maxsize=64)
def _render(seed: int, steps: int, view: str, H: int, W: int) -> np.ndarray:
    """(steps, H, W, 3) frames of episode `seed` seen by `view` (cached across fixtures)."""
    script = scene.make_script(seed, steps)
    return np.stack([scene.render_view(script.state(t), scene.intrinsics_from_fov(W, H),
                                       camera_poses(script)[view][t], H, W)[0] for t in range(steps)])


def camera_poses(script) -> dict[str, np.ndarray]:
    """(T, 4, 4) camera-to-base per view: ext1 = the script camera, ext2 = moved 0.3 m sideways
    and re-aimed, wrist = TCP @ WRIST_OFFSET (as tests/fixtures_droid.py)."""
    T = script.steps
    T1 = script.T_base_cam
    T2 = scene.look_at(T1[:3, 3] + [0.0, 0.3, 0.0], [0.45, 0.0, 0.02])
    return {"ext1": np.broadcast_to(T1, (T, 4, 4)), "ext2": np.broadcast_to(T2, (T, 4, 4)),
            "wrist": np.stack([P @ WRIST_OFFSET for P in script.tcp_poses])}


Tamper = Callable[[int, dict], None]


@dataclass
class RldsFixture:
    dir: Path  # the version folder (the source's `input`)
    name: str
    version: str
    features: F.FeaturesDict
    shards: dict[str, list[Path]]
    scripts: list = field(default_factory=list)  # per episode, in (split, shard, record) order
    examples: list = field(default_factory=list)
    K: dict[str, np.ndarray] = field(default_factory=dict)  # per view, at the stored size
    T_base_cam: list = field(default_factory=list)  # per episode: view -> (T, 4, 4)


# ----------------------------------------------------------------------------------------------
# DROID


def droid_example(seed: int, version: str, steps: int = 16, hw=DROID_HW) -> dict:
    script = scene.make_script(seed, steps)
    T = steps
    cart = np.stack([euler6(P) for P in script.tcp_poses])
    g = script.gripper.astype(np.float64)
    joints = scene.synthetic_joint_positions(script.ee_pose())
    nxt = np.minimum(np.arange(T) + 1, T - 1)
    frames = {v: _render(seed, steps, v, *hw) for v in ("ext1", "ext2", "wrist")}
    lang = (script.instruction, "alt " + script.instruction, "")
    step_list = []
    for t in range(T):
        step_list.append({
            "observation": {"exterior_image_1_left": jpeg(frames["ext1"][t]),
                            "exterior_image_2_left": jpeg(frames["ext2"][t]),
                            "wrist_image_left": jpeg(frames["wrist"][t]),
                            "cartesian_position": cart[t], "gripper_position": g[t:t + 1],
                            "joint_position": joints[t]},
            "action_dict": {"cartesian_position": cart[nxt[t]], "cartesian_velocity": np.zeros(6),
                            "gripper_position": g[nxt[t]:nxt[t] + 1], "gripper_velocity": np.zeros(1),
                            "joint_position": joints[nxt[t]], "joint_velocity": np.zeros(7)},
            "action": np.concatenate([cart[nxt[t]], g[nxt[t]:nxt[t] + 1]]),
            "discount": 1.0, "reward": float(t == T - 1), "is_first": t == 0, "is_last": t == T - 1,
            "is_terminal": t == T - 1, "language_instruction": lang[0],
            "language_instruction_2": lang[1], "language_instruction_3": lang[2],
        })
    folder = f"gs://xembodiment_data/r2d2/r2d2-data-full/TESTLAB/success/2024-02-13/Tue_Feb_13_10:46:{seed:02d}_2024"
    meta = {"file_path": folder + "/trajectory.h5", "recording_folderpath": folder + "/recordings/MP4"}
    if version == "1.0.1":
        poses = camera_poses(script)
        meta.update({"building": "B1", "collector_id": "c0ffee", "date": "2024-02-13",
                     "task_category": "pick and place", "scene_id": 7 + seed,
                     "extrinsics_exterior_cam_1": euler6(poses["ext1"][0]),
                     "extrinsics_exterior_cam_2": euler6(poses["ext2"][0]),
                     "extrinsics_wrist_cam": euler6(poses["wrist"][0])})
    return {"steps": step_list, "episode_metadata": meta}


def write_droid_rlds(root: Path, name: str = "droid", version: str = "1.0.1",
                     shards: tuple[int, ...] = (2, 1), steps: int = 16, hw=DROID_HW,
                     tamper: Tamper | None = None) -> RldsFixture:
    """Episodes seeded 0..sum(shards)-1 in one `train` split; `tamper(k, example)` may edit
    episode k's example before it is serialized."""
    features = droid_features(version, hw)
    fix = RldsFixture(root / name / version, name, version, features, {},
                      K={v: scene.intrinsics_from_fov(hw[1], hw[0]) for v in ("ext1", "ext2", "wrist")})
    k = 0
    shard_eps = []
    for n in shards:
        eps = []
        for _ in range(n):
            ex = droid_example(k, version, steps, hw)
            if tamper:
                tamper(k, ex)
            eps.append(ex)
            script = scene.make_script(k, steps)
            fix.scripts.append(script)
            fix.examples.append(ex)
            fix.T_base_cam.append(camera_poses(script))
            k += 1
        shard_eps.append(eps)
    fix.shards = write_rlds(fix.dir, name, version, features, {"train": shard_eps})
    return fix


# ----------------------------------------------------------------------------------------------
# Bridge


def bridge_state(script) -> np.ndarray:
    """(T, 7) full_state: TCP xyz, Euler of R_eef relative to DEFAULT_ROT, gripper 1 = open
    (the WidowX tool frame as tests/fixtures_bridge.py builds it)."""
    R_eef = script.tcp_poses[:, :3, :3] @ scene._rot_x(np.pi).T @ DEFAULT_ROT
    rpy = Rotation.from_matrix(R_eef @ DEFAULT_ROT.T).as_euler("xyz")
    return np.concatenate([script.tcp_poses[:, :3, 3], rpy, 1.0 - script.gripper[:, None]], 1)


def bridge_eef(script) -> np.ndarray:
    """(T, 4, 4) absolute WidowX EE pose in base that bridge_state encodes."""
    eef = script.tcp_poses.copy()
    eef[:, :3, :3] = script.tcp_poses[:, :3, :3] @ scene._rot_x(np.pi).T @ DEFAULT_ROT
    return eef


def _bridge_arrays(seed: int, steps: int):
    """T = steps observations (states 0..T-1 of a T+1-step script) and their T actions
    [delta xyz, delta rpy, next gripper (1 = open)] -- the numpy converter's alignment."""
    script = scene.make_script(seed, steps + 1)
    full = bridge_state(script)
    acts = np.concatenate([np.diff(full[:, :6], axis=0), full[1:, 6:7]], 1)
    return script, full[:steps], acts


def bridge_rail_example(seed: int, steps: int = 16, hw=RAIL_HW, index: int = 0) -> dict:
    script, state, acts = _bridge_arrays(seed, steps)
    frames = {v: _render(seed, steps + 1, v, *hw) for v in ("ext1", "ext2", "wrist")}
    black = jpeg(np.zeros((*hw, 3), np.uint8))
    step_list = []
    for t in range(steps):
        step_list.append({
            "observation": {"image_0": jpeg(frames["ext1"][t]), "image_1": jpeg(frames["ext2"][t]),
                            "image_2": black, "image_3": jpeg(frames["wrist"][t]),
                            "state": state[t].astype(np.float32)},
            "action": acts[t].astype(np.float32), "discount": 1.0, "reward": float(t == steps - 1),
            "is_first": t == 0, "is_last": t == steps - 1, "is_terminal": t == steps - 1,
            "language_instruction": script.instruction,
            "language_embedding": np.full(512, 0.01, np.float32),
        })
    meta = {"file_path": "/nfs/bridge/numpy_256/toysink2/pnp/train/out.npy", "episode_id": index,
            # The released builder computes these with a check that is always False (pitfall 4).
            **{f"has_image_{i}": False for i in range(4)}, "has_language": True}
    return {"steps": step_list, "episode_metadata": meta}


def bridge_oxe_example(seed: int, steps: int = 16, hw=OXE_HW) -> dict:
    script, state, acts = _bridge_arrays(seed, steps)
    frames = _render(seed, steps + 1, "ext1", *hw)
    step_list = []
    for t in range(steps):
        step_list.append({
            "action": {"open_gripper": bool(acts[t, 6] > 0.5),
                       "rotation_delta": acts[t, 3:6].astype(np.float32),
                       "terminate_episode": float(t == steps - 1),
                       "world_vector": acts[t, :3].astype(np.float32)},
            "is_first": t == 0, "is_last": t == steps - 1, "is_terminal": t == steps - 1,
            "observation": {"image": jpeg(frames[t]),
                            "natural_language_embedding": np.full(512, 0.01, np.float32),
                            "natural_language_instruction": script.instruction,
                            "state": state[t].astype(np.float32)},
            "reward": float(t == steps - 1),
        })
    return {"steps": step_list}


def write_bridge_rlds(root: Path, schema: str = "bridge_dataset", steps: int = 16,
                      tamper: Tamper | None = None) -> RldsFixture:
    """schema "bridge_dataset" (rail 1.0.0: train 2 episodes in 1 shard, val 1 episode) or "oxe"
    (bridge 0.1.0: train 1 episode, test 1 episode, same seed)."""
    if schema == "bridge_dataset":
        name, version, hw, features = "bridge_dataset", "1.0.0", RAIL_HW, bridge_rail_features()
        layout = {"train": [[0, 1]], "val": [[2]]}
        make = lambda seed, i: bridge_rail_example(seed, steps, hw, index=i)  # noqa: E731
        views = {"image_0": "ext1", "image_1": "ext2", "image_3": "wrist"}
    else:
        name, version, hw, features = "bridge", "0.1.0", OXE_HW, bridge_oxe_features()
        layout = {"train": [[0]], "test": [[0]]}
        make = lambda seed, i: bridge_oxe_example(seed, steps, hw)  # noqa: E731
        views = {"image": "ext1"}
    fix = RldsFixture(root / name / version, name, version, features, {},
                      K={v: scene.intrinsics_from_fov(hw[1], hw[0]) for v in views})
    splits: dict[str, list[list[dict]]] = {}
    k = 0
    for split in sorted(layout):  # the source lists refs sorted by split name
        splits[split] = []
        for shard in layout[split]:
            eps = []
            for i, seed in enumerate(shard):
                ex = make(seed, i)
                if tamper:
                    tamper(k, ex)
                script = scene.make_script(seed, steps + 1)
                fix.scripts.append(script)
                fix.examples.append(ex)
                fix.T_base_cam.append({name_: camera_poses(script)[v][:steps] for name_, v in views.items()})
                eps.append(ex)
                k += 1
            splits[split].append(eps)
    fix.shards = write_rlds(fix.dir, name, version, features, splits)
    return fix


# ----------------------------------------------------------------------------------------------
# A depth backend for end-to-end jobs on sources without depth or calibration

PLANE_DEPTH_M = 1.0


class PlaneDepth:
    """DepthAnnotator fake honouring the monocular contract (MoGe's role): every pixel at
    PLANE_DEPTH_M camera z; K kept when given, else "estimated" as the 60 deg-HFOV pinhole.
    Deterministic and fast (random-weight MoGe is neither); register with `use_plane_depth`."""

    name = "test_plane"
    weights_id = ""
    revision = ""

    def load(self) -> None:
        return None

    def annotate(self, batch):
        from appf.annotators.protocols import DepthResult

        B, H, W = batch.rgb.shape[:3]
        K = batch.K if batch.K is not None else scene.intrinsics_from_fov(W, H)
        return DepthResult(depth_m=np.full((B, H, W), PLANE_DEPTH_M, np.float32), K=np.asarray(K, np.float64))



def use_plane_depth(monkeypatch) -> str:
    """Register PlaneDepth for this test (the in-process FnApiRunner sees the registry)."""
    from appf.annotators import registry

    monkeypatch.setitem(registry.DEPTH_BACKENDS, PlaneDepth.name, PlaneDepth)
    return PlaneDepth.name


def run_job_local(source, opts, out, depth, **kw):
    """run_job with the brief's small config on the in-process runner."""
    from appf.launch.runners import local_options
    from appf.pipelines.config import JobConfig
    from appf.pipelines.job import run_job

    cfg = JobConfig.from_dict(dict(source=source, source_options=opts, out=str(out), n_points=128,
                                   progress_every_s=0, masks="none", depth=depth, **kw))
    return run_job(cfg, local_options(1))


def failure_rows(out):
    import pyarrow.parquet as pq

    rows = []
    for f in sorted((out / "failures").glob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows
