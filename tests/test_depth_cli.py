"""`appf eval stereo|depth`: the depth-quality harness from the command line, on synthetic
scenes, on files (PNG / PFM / NPZ), and on the real Middlebury 2014 Motorcycle pair."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from appf.annotators.depth.units import depth_m_to_disparity
from appf.annotators.weights import WEIGHTS
from appf.launch.cli import main
from appf.pipelines.sources.synthetic import SyntheticSource
from appf.transforms.stereo_io import encode_pfm


def run_json(capsys, argv: list[str]) -> dict:
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_stereo_synthetic(capsys):
    out = run_json(capsys, ["eval", "stereo", "--synthetic", "--frames", "2", "--height", "120",
                            "--width", "160", "--seed", "4"])
    assert set(out["results"]) == {"sgbm", "plain_sgbm"} and len(out["cases"]) == 2
    ours, plain = out["mean"]["sgbm"], out["mean"]["plain_sgbm"]
    for key in ("coverage", "bad1", "bad2", "bad2_all", "epe_px", "abs_rel", "rmse_m", "delta1"):
        assert 0 <= ours[key] < float("inf"), key
    assert ours["coverage"] > plain["coverage"]
    assert ours["abs_rel"] < 0.05 and ours["delta1"] > 0.95


def test_eval_stereo_files(tmp_path, capsys):
    src = SyntheticSource(episodes=1, steps=16, height=96, width=128, seed=5)
    cam = src.read(src.list_refs()[0]).cameras["front"]
    fx, B = float(cam.intrinsics[0, 0]), float(cam.baseline_m)
    gt = depth_m_to_disparity(cam.depth[3], fx, B)
    gt[:4] = np.inf  # unknown rows, Middlebury style
    cv2.imwrite(str(tmp_path / "l.png"), cam.rgb[3][..., ::-1])
    cv2.imwrite(str(tmp_path / "r.png"), cam.rgb_right[3][..., ::-1])
    (tmp_path / "gt.pfm").write_bytes(encode_pfm(gt))
    np.savez(tmp_path / "gt.npz", disparity=gt)
    files = ["eval", "stereo", "--left", str(tmp_path / "l.png"), "--right", str(tmp_path / "r.png")]
    metric = run_json(capsys, files + ["--gt-disparity", str(tmp_path / "gt.pfm"), "--fx", str(fx),
                                       "--baseline-m", str(B), "--no-baseline"])
    row = metric["results"]["sgbm"][0]
    assert row["n_gt"] == int(np.isfinite(gt).sum())
    assert row["coverage"] > 0.8 and row["abs_rel"] < 0.05
    disp_only = run_json(capsys, files + ["--gt-disparity", str(tmp_path / "gt.npz")])
    assert "abs_rel" not in disp_only["results"]["sgbm"][0]
    assert disp_only["results"]["sgbm"][0]["bad2"] == pytest.approx(row["bad2"], abs=1e-9)


def test_eval_stereo_middlebury_motorcycle(capsys):
    """The goal of the classical stereo backend on the real Middlebury 2014 Motorcycle pair:
    bad-2 <= 4 % of covered pixels at >= 90 % coverage, measured next to plain SGBM."""
    pytest.importorskip("skimage")
    out = run_json(capsys, ["eval", "stereo", "--motorcycle"])
    ours, plain = out["results"]["sgbm"][0], out["results"]["plain_sgbm"][0]
    assert ours["coverage"] >= 0.90, ours
    assert ours["bad2"] <= 0.04, ours
    assert ours["bad2_all"] < plain["bad2_all"]


def test_eval_depth_synthetic_and_files(tmp_path, capsys):
    out = run_json(capsys, ["eval", "depth", "--synthetic", "--frames", "1", "--height", "192",
                            "--width", "256"])
    row = out["results"]["sensor_fill"][0]
    assert row["coverage"] > row["sensor_coverage"]
    assert row["holes_abs_rel"] < 0.05 and row["holes_delta1"] > 0.95
    src = SyntheticSource(episodes=1, steps=16, height=64, width=80, seed=6)
    cam = src.read(src.list_refs()[0]).cameras["front"]
    gt_mm = np.round(cam.depth[0] * 1000).astype(np.uint16)
    sensor_mm = gt_mm.copy()
    sensor_mm[20:30, 30:45] = 0
    cv2.imwrite(str(tmp_path / "rgb.png"), cam.rgb[0][..., ::-1])
    cv2.imwrite(str(tmp_path / "sensor.png"), sensor_mm)
    cv2.imwrite(str(tmp_path / "gt.png"), gt_mm)
    out = run_json(capsys, ["eval", "depth", "--rgb", str(tmp_path / "rgb.png"), "--sensor-depth",
                            str(tmp_path / "sensor.png"), "--gt-depth", str(tmp_path / "gt.png")])
    row = out["results"]["sensor_fill"][0]
    assert row["coverage"] == pytest.approx(1.0) and row["holes_coverage"] == pytest.approx(1.0)
    assert row["holes_abs_rel"] < 0.05


def test_eval_errors_are_clear(monkeypatch, tmp_path, capsys):
    assert main(["eval", "stereo", "--left", "a.png"]) == 2
    assert "needs --right and --gt-disparity" in capsys.readouterr().err
    for spec in WEIGHTS.values():
        monkeypatch.delenv(spec.env_var, raising=False)
    monkeypatch.setenv("APPF_WEIGHTS_DIR", str(tmp_path))
    assert main(["eval", "depth", "--synthetic", "--frames", "1", "--height", "32", "--width", "48",
                 "--backend", "promptda"]) == 2
    err = capsys.readouterr().err
    assert "appf models fetch promptda-vitl" in err or "needs the Python module" in err
