"""SFT records (SFT_SCHEMA, DESIGN §4) as chat samples in the common vision-language format.

A sample is ``{"messages": [...], "images": [PIL.Image]}`` where each message is
``{"role": "user" | "assistant", "content": [{"type": "image"} | {"type": "text", "text": str}]}``
(the format of transformers' chat templates and TRL's vision SFT). The records' ``messages``
column is two turns: (image + instruction -> anchor pixel "(u, v)"), then
((u, v, d) anchor -> JSON {"waypoints": [[x, y, z] m ...], "target_pose": [x, y, z, qx, qy, qz, qw],
"gripper": g} in the camera frame). The parsers below read the numbers back from the text.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image
from torch.utils.data import Dataset

from appf.schemas import SFT_SCHEMA
from appf.schemas.tables import image_bytes
from appf.storage import Location, MarkerError, StorageError, is_url, layout
from appf.storage.commits import committed_entries
from appf.training.errors import TrainingError

_NUM = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_ANCHOR = re.compile(rf"^\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*$")
_UVD = re.compile(rf"\(u, v, d\)\s*=\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\)")


def find_record_files(path: str | Path) -> list[Path | str]:
    """The SFT ``records-*.parquet`` files of a job output (local folder or URL such as
    s3://bucket/run: only committed shard units, from the commit markers or the manifest), an sft
    folder, or one file. Local results are Paths, remote ones URLs."""
    if not is_url(path) and Path(path).is_file():
        return [Path(path)]
    try:
        loc = Location(path)
        committed = committed_entries(loc)
    except (StorageError, MarkerError, ValueError, KeyError, TypeError, OSError) as e:
        raise TrainingError(f"cannot read SFT records at {path}: {e}") from e
    if committed is not None:
        keys = [e["sft_path"] for e in committed]
    else:
        folder = layout.SFT_DIR if loc.children(layout.SFT_DIR) else ""
        keys = [k for k in loc.children(folder) if k.endswith(".parquet")]
    if not keys:
        raise TrainingError(f"no SFT records (*.parquet) in {loc.url}; write them with `appf reannotate` "
                            "or point --records at <out>/sft")
    return [loc.local_path(k) if loc.is_local else loc.url_of(k) for k in keys]


def _read_table(f: Path | str) -> pa.Table:
    if is_url(f):
        return pq.read_table(io.BytesIO(Location(f).read_bytes("")))
    return pq.read_table(f)


def read_records(files: Sequence[str | Path]) -> pa.Table:
    tables = []
    for f in files:
        t = _read_table(f)
        missing = [n for n in ("image", "messages", "anchor_in_view") if n not in t.column_names]
        if missing:
            raise TrainingError(f"{f} is not an SFT records file: columns {missing} missing "
                                f"(expected the SFT_SCHEMA columns {SFT_SCHEMA.names})")
        tables.append(t.select([n for n in SFT_SCHEMA.names if n in t.column_names]))
    return pa.concat_tables(tables, promote_options="default")


def _content_item(item: dict[str, Any], where: str) -> dict[str, Any]:
    kind = item.get("type")
    if kind == "image":
        return {"type": "image"}
    if kind == "text" and isinstance(item.get("text"), str):
        return {"type": "text", "text": item["text"]}
    raise TrainingError(f"{where}: content item {item!r} is neither an image nor a text item")


def chat_sample(record: dict[str, Any]) -> dict[str, Any]:
    """One SFT record (a row as a dict) -> ``{"messages", "images"}`` (images decoded to RGB)."""
    where = f"SFT record {record.get('episode_id')}#{record.get('keyframe_index')}"
    raw = record.get("messages") or []
    if not raw:
        raise TrainingError(f"{where} has no messages; rewrite the records with this appf version")
    messages = [{"role": m["role"], "content": [_content_item(c, where) for c in m["content"]]}
                for m in raw]
    n_images = sum(c["type"] == "image" for m in messages for c in m["content"])
    if n_images != 1:
        raise TrainingError(f"{where}: expected 1 image placeholder in the messages, found {n_images}")
    image = Image.open(io.BytesIO(image_bytes(record["image"]))).convert("RGB")
    return {"messages": messages, "images": [image]}


def parse_anchor_answer(text: str) -> tuple[float, float]:
    """``"(u, v)"`` -> (u, v) pixels."""
    m = _ANCHOR.match(text)
    if not m:
        raise ValueError(f"not an anchor answer '(u, v)': {text!r}")
    return float(m.group(1)), float(m.group(2))


def parse_plan_prompt(text: str) -> tuple[float, float, float]:
    """The plan question's ``(u, v, d) = (u, v, d)`` -> (u px, v px, d m)."""
    m = _UVD.search(text)
    if not m:
        raise ValueError(f"no '(u, v, d) = (...)' in {text!r}")
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


def parse_plan_answer(text: str) -> dict[str, Any]:
    """The plan answer (JSON) -> waypoints (K x 3 m), target_pose (7), gripper (0 open .. 1 closed)."""
    try:
        plan = json.loads(text)
        return {"waypoints": [[float(x) for x in w] for w in plan["waypoints"]],
                "target_pose": [float(x) for x in plan["target_pose"]],
                "gripper": float(plan["gripper"])}
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"not a plan answer (JSON with waypoints, target_pose, gripper): {text!r}") from e


def _texts(message: dict[str, Any]) -> str:
    return "".join(c["text"] for c in message["content"] if c["type"] == "text")


def sample_targets(sample: dict[str, Any]) -> dict[str, Any]:
    """The numbers a chat sample teaches, read back from its text (for checks and evaluation)."""
    msgs = sample["messages"]
    roles = [m["role"] for m in msgs]
    if roles != ["user", "assistant", "user", "assistant"]:
        raise ValueError(f"expected user/assistant/user/assistant turns, got {roles}")
    return {"anchor_uv": parse_anchor_answer(_texts(msgs[1])),
            "anchor_uvd": parse_plan_prompt(_texts(msgs[2])),
            **parse_plan_answer(_texts(msgs[3]))}


class SFTChatDataset(Dataset):
    """Chat samples from SFT record files; records whose anchor is out of view are skipped unless
    ``include_out_of_view``."""

    def __init__(self, path: str | Path, include_out_of_view: bool = False):
        self.files = find_record_files(path)
        table = read_records(self.files)
        total = table.num_rows
        if not include_out_of_view:
            table = table.filter(pc.equal(table["anchor_in_view"], True))
        self.skipped = total - table.num_rows
        if table.num_rows == 0:
            raise TrainingError(f"no usable SFT record in {path} ({self.skipped} with the anchor out of "
                                "view); pass include_out_of_view=True to use them")
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    def record(self, i: int) -> dict[str, Any]:
        return self.table.slice(i, 1).to_pylist()[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return chat_sample(self.record(i))
