"""The replay worker: `python -m appf.simreplay.worker` inside .venv-sim.

Reads protocol messages on stdin, answers on stdout (see protocol.py). robosuite and its
dependencies print to stdout, so the protocol keeps a private copy of the original stdout and
fd 1 is pointed at stderr before anything else is imported. MUJOCO_GL defaults to osmesa and is
set before robosuite is imported (robosuite reads it once, at import).
"""

from __future__ import annotations

import os
import sys


def _protocol_stream():
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


def serve(stdin, proto) -> None:
    from appf.simreplay.protocol import ProtocolError, read_message, write_message

    while True:
        try:
            header, _ = read_message(stdin)
        except ProtocolError:
            return
        op = header.get("op")
        if op == "bye":
            write_message(proto, {"ok": True})
            return
        try:
            if op == "hello":
                import mujoco
                import numpy
                import robosuite
                write_message(proto, {"ok": True, "versions": {
                    "robosuite": robosuite.__version__, "mujoco": mujoco.__version__,
                    "numpy": numpy.__version__, "python": sys.version.split()[0]}})
            elif op == "replay":
                from appf.simreplay.robosuite_replay import replay_episode
                meta, arrays = replay_episode(header["request"])
                write_message(proto, {"ok": True, "meta": meta}, arrays)
            else:
                write_message(proto, {"ok": False, "error_type": "ProtocolError",
                                      "error": f"unknown op {op!r}"})
        except Exception as e:  # noqa: BLE001 - reported to the client, the worker lives on
            write_message(proto, {"ok": False, "error_type": type(e).__name__, "error": str(e)})


def main() -> int:
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    proto = _protocol_stream()
    serve(sys.stdin.buffer, proto)
    return 0


if __name__ == "__main__":
    sys.exit(main())
