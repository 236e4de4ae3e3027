"""The replay worker's wire format (version 1), used by both sides; stdlib + numpy only.

A message is one JSON header line (UTF-8, newline-terminated) followed by `nbytes` bytes of
payload: an uncompressed .npz of the message's arrays (nbytes 0 = no arrays). Every header
carries `"v": PROTOCOL_VERSION`; a side that sees another version refuses the message.

Requests: {"op": "hello"} -> {"ok": true, "versions": {...}};
{"op": "replay", "request": {...}} -> {"ok": true, "meta": {...}} + arrays (see
robosuite_replay.replay_episode); {"op": "bye"} -> the worker exits.
Errors: {"ok": false, "error_type": "...", "error": "..."}.
"""

from __future__ import annotations

import io
import json
from typing import Any, BinaryIO

import numpy as np

PROTOCOL_VERSION = 1


class ProtocolError(RuntimeError):
    """The other side sent something this version cannot read (or went away)."""


def encode_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    if not arrays:
        return b""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode_arrays(payload: bytes) -> dict[str, np.ndarray]:
    if not payload:
        return {}
    with np.load(io.BytesIO(payload), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_message(stream: BinaryIO, header: dict[str, Any],
                  arrays: dict[str, np.ndarray] | None = None) -> None:
    payload = encode_arrays(arrays or {})
    line = json.dumps({**header, "v": PROTOCOL_VERSION, "nbytes": len(payload)})
    stream.write(line.encode() + b"\n")
    stream.write(payload)
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise ProtocolError(f"stream ended {left} bytes before the end of a {n}-byte payload")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(stream: BinaryIO) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of the next message; ProtocolError at end of stream or on a version
    mismatch."""
    line = stream.readline()
    if not line:
        raise ProtocolError("stream ended (the other side exited)")
    try:
        header = json.loads(line)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"not a protocol header line: {line[:200]!r}") from e
    if header.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {header.get('v')!r} received, this side speaks "
                            f"{PROTOCOL_VERSION}: rebuild the sim venv (make setup-sim)")
    return header, decode_arrays(_read_exact(stream, int(header.get("nbytes", 0))))
