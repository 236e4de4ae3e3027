"""The worker image's pins are the project's: every `name==version` in the Dockerfile equals the
pin of the same package in pyproject.toml or the Makefile's main-venv installs, the Beam SDK image
matches the apache-beam pin, the Python version satisfies requires-python, and every extra it
installs exists. (The image itself is not built here: no Docker daemon in CI.)"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"(?<![\w.-])([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[\w,]+\])?==([\w.+-]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dockerfile_text() -> str:
    return "\n".join(line for line in (ROOT / "Dockerfile").read_text().splitlines()
                     if not line.lstrip().startswith("#"))


def project_pins() -> dict[str, str]:
    """Package -> pinned version, from pyproject (dependencies and every extra) and the lines of
    the Makefile that install into the main venv ($(PIP))."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + [r for extra in meta["optional-dependencies"].values()
                                         for r in extra]
    pins: dict[str, str] = {}
    for text in reqs:
        req = Requirement(text)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            pins[_norm(req.name)] = exact[0]
    makefile = (ROOT / "Makefile").read_text()
    for line in re.findall(r"\$\(PIP\) install[^\n]*(?:\\\n[^\n]*)*", makefile):
        if "--target" in line:
            continue  # zarr-python 2 beside the venv, not in the image
        for name, version in PIN.findall(line):
            pins.setdefault(_norm(name), version)
    return pins


def test_every_dockerfile_pin_is_the_projects():
    docker_pins = {_norm(n): v for n, v in PIN.findall(dockerfile_text())}
    assert {"torch", "dlr-moge", "dlr-utils3d"} <= set(docker_pins)  # the parse found them
    pins = project_pins()
    mismatched = {n: (v, pins.get(n)) for n, v in docker_pins.items() if pins.get(n) != v}
    assert mismatched == {}, f"Dockerfile pin (left) differs from the project's (right): {mismatched}"


def test_beam_sdk_image_python_and_extras_match_the_project():
    text = dockerfile_text()
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    py, beam = re.search(r"FROM apache/beam_python(\d+\.\d+)_sdk:([\w.]+)", text).groups()
    assert beam == project_pins()["apache-beam"]
    assert py in SpecifierSet(meta["requires-python"])
    assert re.search(rf"uv python install {re.escape(py)}\b", text)
    installed = re.search(r'uv pip install "\.\[([\w,]+)\]"', text).group(1).split(",")
    assert set(installed) <= set(meta["optional-dependencies"])
    assert "test" not in installed  # the image carries no test tooling


def test_pin_check_catches_a_drift(tmp_path):
    drifted = dockerfile_text().replace("torch==2.13.0", "torch==2.12.0")
    docker_pins = {_norm(n): v for n, v in PIN.findall(drifted)}
    assert docker_pins["torch"] != project_pins()["torch"]
