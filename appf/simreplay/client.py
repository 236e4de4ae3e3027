"""Main-venv side of the replay worker: start it lazily (one per process), send requests.

The worker is `python -m appf.simreplay.worker` run by the sim venv's interpreter:
$APPF_SIM_PYTHON if set, else `.venv-sim/bin/python` beside the appf package (what
`make setup-sim` creates). Each Beam worker process gets its own replay worker (`shared_worker`),
started on the first episode it reads and stopped when the process exits.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from appf.simreplay.protocol import ProtocolError, read_message, write_message

REPO_ROOT = Path(__file__).resolve().parents[2]


class SimUnavailableError(RuntimeError):
    """The simulator environment is missing or its worker died; the message says how to fix it."""


class ReplayFailed(RuntimeError):
    """The worker answered a request with an error (it stays usable)."""

    def __init__(self, error_type: str, message: str):
        self.error_type = error_type
        super().__init__(message)


def sim_python() -> Path:
    """The interpreter of the simulator venv."""
    override = os.environ.get("APPF_SIM_PYTHON")
    python = Path(override) if override else REPO_ROOT / ".venv-sim" / "bin" / "python"
    if not python.exists():
        raise SimUnavailableError(
            f"simulator venv interpreter {python} not found: run `make setup-sim` in {REPO_ROOT} "
            "(robosuite 1.4.0, mujoco, numpy 1.26 in .venv-sim) or set APPF_SIM_PYTHON")
    return python


class ReplayWorker:
    """One replay worker process; `request` is thread-safe (one request at a time)."""

    def __init__(self, python: Path | None = None, mujoco_gl: str = "osmesa"):
        self.python = python or sim_python()
        self.mujoco_gl = os.environ.get("MUJOCO_GL", mujoco_gl)
        self._proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()
        self._lock = threading.Lock()
        self.versions: dict[str, str] = {}

    def _start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "MUJOCO_GL": self.mujoco_gl,
               "PYOPENGL_PLATFORM": self.mujoco_gl}
        self._proc = subprocess.Popen([str(self.python), "-m", "appf.simreplay.worker"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, env=env, cwd=str(REPO_ROOT))
        self.versions = self._exchange({"op": "hello"})[0]["versions"]

    def _log_tail(self, n: int = 2000) -> str:
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - n))
        return self._log.read().decode(errors="replace")

    def _exchange(self, header: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        try:
            write_message(self._proc.stdin, header)
            reply, arrays = read_message(self._proc.stdout)
        except (ProtocolError, BrokenPipeError, OSError) as e:
            self.close()
            raise SimUnavailableError(f"replay worker ({self.python}) failed: {e}; its last "
                                      f"output:\n{self._log_tail()}") from e
        if not reply.get("ok"):
            raise ReplayFailed(reply.get("error_type", "Error"), reply.get("error", "unknown"))
        return reply, arrays

    def request(self, header: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            return self._exchange(header)

    def replay(self, request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(meta, arrays) of one replayed demo (see robosuite_replay.replay_episode)."""
        reply, arrays = self.request({"op": "replay", "request": request})
        return reply["meta"], arrays

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                write_message(proc.stdin, {"op": "bye"})
                proc.wait(timeout=10)
        except (OSError, ProtocolError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()


_shared: ReplayWorker | None = None
_shared_lock = threading.Lock()


def shared_worker() -> ReplayWorker:
    """This process's replay worker (created on first use, closed at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ReplayWorker()
            atexit.register(_shared.close)
        return _shared


def shipped_demos_dir() -> Path:
    """The human demonstrations shipped in the sim venv's robosuite 1.4.0 wheel
    (lift/, wipe/panda/, handover/panda_panda/ demo.hdf5), found without importing robosuite."""
    code = ("import importlib.util, os; "
            "print(os.path.dirname(importlib.util.find_spec('robosuite').origin))")
    out = subprocess.run([str(sim_python()), "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SimUnavailableError(f"robosuite is not installed in {sim_python()}: {out.stderr[-500:]}"
                                  " (run `make setup-sim`)")
    return Path(out.stdout.strip()) / "models" / "assets" / "demonstrations"
