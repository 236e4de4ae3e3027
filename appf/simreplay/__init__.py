"""Simulator replay in a separate environment (.venv-sim, robosuite 1.4.0 + numpy 1.26).

`client` (main venv) starts `worker` (sim venv) and speaks `protocol` with it; `robosuite_replay`
runs only inside the worker. Nothing here may import appf modules that need the main venv.
"""
