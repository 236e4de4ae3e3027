"""`appf eval masks`: ground truth scores 1, injected corruption is scored and the tracking stage's
recovery shown; bad arguments give clear errors; `appf models list` shows the mask weights."""

from __future__ import annotations

import json

import pytest

from appf.launch.cli import main

SMALL = ["--source-option", "steps=80", "--source-option", "height=72",
         "--source-option", "width=96", "--source-option", "stereo=false", "--episodes", "1"]


def _json(capsys, argv):
    assert main(["eval", "masks", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["rows"]


def test_ground_truth_backend_scores_one(capsys):
    rows = _json(capsys, ["--backend", "ground_truth", *SMALL])
    assert {r["object"] for r in rows} == {"robot", "task_object"}
    for r in rows:
        assert r["iou_mean"] == 1.0 and r["boundary_f"] == 1.0
        assert r["flicker"] == pytest.approx(r["flicker_gt"])


def test_inject_shows_what_tracking_recovers(capsys):
    rows = _json(capsys, ["--inject", "dropout=0.2,flicker=0.2", *SMALL])
    by = {(r["object"], r["stage"]): r for r in rows}
    for obj in ("robot", "task_object"):
        injected, tracked = by[(obj, "injected")], by[(obj, "tracked")]
        assert injected["corrupted_frames"] == 32
        assert tracked["iou_mean"] > injected["iou_mean"] + 0.15
        assert tracked["flicker"] < injected["flicker"]
        assert tracked["corrupted_kept"] <= 2


def test_table_and_errors(capsys):
    assert main(["eval", "masks", "--inject", "shift=0.3", *SMALL]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["stage", "object", "iou_mean"]
    assert main(["eval", "masks", *SMALL]) != 0
    assert "give --backend NAME, --inject SPEC" in capsys.readouterr().err
    assert main(["eval", "masks", "--inject", "wobble=1", *SMALL]) != 0


def test_models_list_shows_mask_weights_and_roboengine_checkout(capsys, monkeypatch):
    monkeypatch.delenv("APPF_ROBOENGINE_CODE", raising=False)
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("sam2.1-hiera-large", "sam2.1-hiera-tiny", "roboengine-sam",
                 "evf-sam2-multitask", "APPF_ROBOENGINE_CODE=<unset>: not set"):
        assert name in out
