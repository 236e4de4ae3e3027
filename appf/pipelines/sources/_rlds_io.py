"""Reading TFDS/RLDS releases without TensorFlow (beam-zarr-hub.md §3): shared by the
`droid_rlds` and `bridge_rlds` sources.

- The dataset directory (`dataset_info.json` + `features.json` + TFRecord shards) is opened with
  `tfds.builder_from_directory`, which rebuilds the FeaturesDict from `features.json` and the
  split/shard file names from `dataset_info.json` (shard files are named after the builder,
  e.g. `r2d2_faceblur-train.tfrecord-00000-of-00031` for `droid_100`, so never guessed).
- Records are read by `_tfrecord` (a TF-free TFRecord reader checking both CRCs; listing a shard
  reads only the record headers).
- One record = one serialized episode (`tf.train.Example`), decoded with
  `features.deserialize_example_np` with every Image feature left undecoded
  (`tfds.decode.SkipDecoding`): the source keeps the encoded JPEG/PNG bytes in a picklable
  `EncodedFrames` loader and pixels are decoded only when a stage asks (LazyFrames). Memory is
  bounded by one episode's record.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from appf.pipelines.sources._tfrecord import read_record, scan_records
from appf.schemas import EpisodeRef, LazyFrames, SourceError


# ----------------------------------------------------------------------------------------------
# Dataset directory


@dataclass
class RldsDir:
    """An opened TFDS dataset directory: builder name/version, features, split shard files."""

    path: Path
    name: str
    version: str
    features: Any  # tfds.features.FeaturesDict
    splits: dict[str, list[tuple[Path, int | None]]]  # split -> [(shard file, declared episodes)]

    @property
    def features_json(self) -> str:
        return str(self.path / "features.json")


def find_dataset_dir(input: str | os.PathLike, version: str | None = None) -> Path:
    """`input` itself when it holds dataset_info.json, else its one `<version>/` child holding
    one (or the child named `version`)."""
    root = Path(input)
    if not root.is_dir():
        raise SourceError("input folder does not exist", path=str(root))
    if (root / "dataset_info.json").is_file() and (version is None or root.name == str(version)):
        return root
    cands = sorted(p.parent for p in root.glob("*/dataset_info.json"))
    if version is not None:
        cands = [p for p in cands if p.name == str(version)]
    if len(cands) == 1:
        return cands[0]
    if not cands:
        raise SourceError("no TFDS dataset here: expected dataset_info.json + features.json in the "
                          "folder or in one <version>/ subfolder"
                          + (f" named {version!r}" if version else ""), path=str(root))
    raise SourceError(f"several dataset versions {[p.name for p in cands]}; pass the `version` "
                      "option or the version folder as input", path=str(root))


def open_dataset_dir(input: str | os.PathLike, version: str | None = None) -> RldsDir:
    """Open a TFDS dataset directory without TensorFlow (features.json + dataset_info.json)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise SourceError("reading RLDS needs the tensorflow-datasets package (4.9.10 tested; "
                          "TensorFlow itself is NOT needed): pip install tensorflow-datasets") from e

    d = find_dataset_dir(input, version)
    if not (d / "features.json").is_file():
        raise SourceError("features.json missing (needed to decode the records)", path=str(d))
    try:
        builder = tfds.builder_from_directory(str(d))
        info = builder.info
        features = info.features
    except Exception as e:  # noqa: BLE001 - tfds raises many types for a bad directory
        raise SourceError(f"cannot open the TFDS dataset directory: {type(e).__name__}: {e}",
                          path=str(d)) from e
    fmt = str(getattr(info.file_format, "value", info.file_format) or "tfrecord")
    if fmt != "tfrecord":
        raise SourceError(f"file format {fmt!r} is not supported (TFRecord only)",
                          path=str(d / "dataset_info.json"), field="fileFormat")
    splits: dict[str, list[tuple[Path, int | None]]] = {}
    for name, split in info.splits.items():
        lengths = list(split.shard_lengths or [])
        files = [d / f for f in split.filenames]
        splits[name] = [(f, lengths[i] if i < len(lengths) else None) for i, f in enumerate(files)]
    return RldsDir(d, str(info.name), str(info.version), features, splits)


def list_episode_refs(ds: RldsDir, dataset: str, splits: Sequence[str] | None = None,
                      id_prefix: str | None = None) -> list[EpisodeRef]:
    """One ref per record of the chosen splits' shard files, sorted by episode id
    `<name>-<version>-<split>-<shard:05d>-<record:05d>`; ref.uri = the shard file, options =
    (split, shard, record, offset, length). Record counts are checked against dataset_info."""
    names = list(splits) if splits else sorted(ds.splits)
    unknown = [s for s in names if s not in ds.splits]
    if unknown:
        raise SourceError(f"unknown split(s) {unknown}; the dataset has {sorted(ds.splits)}",
                          path=str(ds.path / "dataset_info.json"), field="splits")
    prefix = id_prefix or f"{ds.name}-{ds.version}"
    found = []
    for split in names:
        for shard, (path, declared) in enumerate(ds.splits[split]):
            if not path.is_file():
                raise SourceError("shard file listed in dataset_info.json is missing",
                                  path=str(path), field=f"splits[{split}]")
            recs = scan_records(path)
            if declared is not None and len(recs) != declared:
                raise SourceError(f"shard holds {len(recs)} records, dataset_info.json declares "
                                  f"{declared}", path=str(path), field=f"splits[{split}].shardLengths")
            for i, (offset, length) in enumerate(recs):
                eid = f"{prefix}-{split}-{shard:05d}-{i:05d}"
                found.append((eid, str(path), (("split", split), ("shard", shard), ("record", i),
                                               ("offset", offset), ("length", length))))
    found.sort()
    return [EpisodeRef(dataset, eid, k, uri=uri, options=opts) for k, (eid, uri, opts) in enumerate(found)]


# ----------------------------------------------------------------------------------------------
# Decoding


def image_feature_keys(features: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Key paths (inside one step) of every Image feature of `features` (a FeaturesDict)."""
    import tensorflow_datasets as tfds

    out: list[tuple[str, ...]] = []
    for k, f in features.items():
        if isinstance(f, tfds.features.Image):
            out.append((*prefix, k))
        elif isinstance(f, tfds.features.FeaturesDict):
            out += image_feature_keys(f, (*prefix, k))
    return out


def skip_image_decoders(step_features: Any) -> dict:
    """`decoders` for deserialize_example_np that keep every step Image as encoded bytes."""
    import tensorflow_datasets as tfds

    dec: dict = {}
    for path in image_feature_keys(step_features):
        d = dec
        for k in path[:-1]:
            d = d.setdefault(k, {})
        d[path[-1]] = tfds.decode.SkipDecoding()
    return {"steps": dec}


def feature_at(features: Any, path: str) -> Any:
    """The feature at a "/"-separated path ("steps/observation/state"), or None."""
    import tensorflow_datasets as tfds

    f = features
    for k in path.split("/"):
        if isinstance(f, tfds.features.Dataset):
            f = f.feature
        if not isinstance(f, tfds.features.FeaturesDict) or k not in f:
            return None
        f = f[k]
    return f


def decode_episode(ds: RldsDir, ref: EpisodeRef, decoders: dict, verify_crc: bool = True
                   ) -> tuple[dict, list[dict]]:
    """(episode-level fields, list of per-step dicts) of one record; step images stay bytes."""
    raw = read_record(Path(ref.uri), int(ref.option("offset")), ref.option("length"),
                      verify=verify_crc, episode_id=ref.episode_id, index=ref.option("record"))
    try:
        ex = ds.features.deserialize_example_np(raw, decoders=decoders)
        steps = ex["steps"]
        step_list = [steps[i] for i in range(len(steps))]
    except Exception as e:  # noqa: BLE001 - protobuf / tfds errors of a bad record
        raise SourceError(f"cannot decode the record with features.json: {type(e).__name__}: {e}",
                          path=ref.uri, episode_id=ref.episode_id,
                          field=f"record {ref.option('record')}") from e
    if not step_list:
        raise SourceError("episode has no steps", path=ref.uri, episode_id=ref.episode_id, field="steps")
    return ex, step_list


def text(v: Any) -> str:
    """A decoded tfds Text value (bytes) as str."""
    if isinstance(v, np.ndarray):
        v = v.item() if v.shape == () else v.tolist()
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)


def stack_field(step_list: list[dict], path: str, ref: EpisodeRef, shape: tuple[int, ...] | None = None,
                dtype: Any = np.float64) -> np.ndarray:
    """(T, *shape) array of one per-step field ("observation/state"), checked: present, the
    declared trailing shape, finite."""
    keys = path.split("/")
    try:
        rows = []
        for s in step_list:
            v = s
            for k in keys:
                v = v[k]
            rows.append(np.asarray(v, dtype=dtype))
        a = np.stack(rows)
    except (KeyError, TypeError, ValueError) as e:
        raise SourceError(f"cannot read step field: {type(e).__name__}: {e}", path=ref.uri,
                          episode_id=ref.episode_id, field=f"steps/{path}") from e
    if shape is not None and a.shape[1:] != shape:
        raise SourceError(f"expected per-step shape {shape}, found {a.shape[1:]}", path=ref.uri,
                          episode_id=ref.episode_id, field=f"steps/{path}")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        t = int(np.argwhere(~np.isfinite(a.reshape(len(a), -1)))[0, 0])
        raise SourceError(f"NaN/inf values (first at step {t})", path=ref.uri,
                          episode_id=ref.episode_id, field=f"steps/{path}")
    return a


def decode_image(blob: bytes) -> np.ndarray | None:
    """Encoded JPEG/PNG -> RGB uint8 (H, W, 3) with OpenCV (as TFDS decodes), None if invalid."""
    import cv2

    a = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    return None if a is None else cv2.cvtColor(a, cv2.COLOR_BGR2RGB)


class EncodedFrames:
    """Picklable LazyFrames loader over one camera's encoded frames (bytes per step): decodes
    frames [start, stop) on call. Holds the bytes, so it is self-contained after a shuffle."""

    def __init__(self, blobs: Sequence[bytes], hw: tuple[int, int], path: str, episode_id: str,
                 field: str):
        self.blobs, self.hw = [bytes(b) for b in blobs], tuple(hw)
        self.path, self.episode_id, self.field = path, episode_id, field

    def __call__(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((max(0, stop - start), *self.hw, 3), np.uint8)
        for i, t in enumerate(range(start, stop)):
            a = decode_image(self.blobs[t])
            if a is None:
                raise SourceError(f"cannot decode the image of step {t}", path=self.path,
                                  episode_id=self.episode_id, field=self.field)
            if a.shape[:2] != self.hw:
                raise SourceError(f"step {t} image is {a.shape[:2]}, step 0 is {self.hw}",
                                  path=self.path, episode_id=self.episode_id, field=self.field)
            out[i] = a
        return out


def image_size(blob: bytes) -> tuple[int, int] | None:
    """(H, W) from an encoded image's header (no pixel decode), None if unreadable."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob)) as im:
            w, h = im.size
    except OSError:
        return None
    return h, w


def lazy_encoded(blobs: Sequence[bytes], declared: tuple | None, ref: EpisodeRef, field: str
                 ) -> LazyFrames:
    """LazyFrames over encoded step images; the size comes from the first frame's header and
    must match the feature's declared (H, W) when it declares one."""
    if not blobs or any(not isinstance(b, (bytes, bytearray)) for b in blobs):
        raise SourceError("expected encoded image bytes per step", path=ref.uri,
                          episode_id=ref.episode_id, field=field)
    hw = image_size(blobs[0])
    if hw is None:
        raise SourceError("cannot read the image header of step 0", path=ref.uri,
                          episode_id=ref.episode_id, field=field)
    if declared and len(declared) >= 2 and None not in declared[:2] and tuple(declared[:2]) != hw:
        raise SourceError(f"images are {hw}, features.json declares {tuple(declared[:2])}",
                          path=ref.uri, episode_id=ref.episode_id, field=field)
    return LazyFrames(shape=(len(blobs), *hw, 3), dtype=np.dtype(np.uint8),
                      loader=EncodedFrames(blobs, hw, ref.uri, ref.episode_id, field),
                      description=f"{ref.uri}#{ref.option('record')}:{field}")


# ----------------------------------------------------------------------------------------------
# User calibration given in the source options


def user_matrix(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.shape != shape or not np.isfinite(a).all():
        raise SourceError(f"{what}: expected a finite {shape} array, found shape {a.shape}",
                          field=what)
    return a


def user_pose(value: Any, what: str) -> np.ndarray:
    """A user-given pose: 4x4, or [x, y, z, rx, ry, rz] (metres, scipy 'xyz' Euler radians,
    DROID's 6-vector form) -> 4x4."""
    from appf.pipelines.sources._real_io import xyz_euler_to_matrix

    a = np.asarray(value, dtype=np.float64)
    if a.shape == (6,) and np.isfinite(a).all():
        return xyz_euler_to_matrix(a)
    M = user_matrix(a, (4, 4), what)
    if not np.allclose(M[3], [0, 0, 0, 1]) or not np.allclose(M[:3, :3] @ M[:3, :3].T, np.eye(3), atol=1e-6):
        raise SourceError(f"{what}: not a rigid 4x4 transform", field=what)
    return M
