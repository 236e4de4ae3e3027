"""The `appf` command line: reannotate -> validate -> inspect, and the error paths."""

from __future__ import annotations

import json

import pytest
import yaml

from appf.launch.cli import main


def test_reannotate_validate_inspect(tmp_path, capsys):
    out = tmp_path / "out"
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump({"source_options": {"steps": 16, "height": 96, "width": 128},
                                   "n_points": 128, "progress_every_s": 0.05}))
    assert main(["reannotate", "--source", "synthetic", "--episodes", "2", "--out", str(out),
                 "--config", str(cfg), "--zarr-format", "2"]) == 0
    captured = capsys.readouterr()
    assert "appf summary: 2/2 episodes written" in captured.out
    assert "beam metrics:" in captured.out and "points_written=4096" in captured.out
    assert "[appf] episodes 2/2" in captured.err and "ETA" in captured.err
    assert json.loads((out / "manifest.json").read_text())["config"]["zarr_format"] == 2

    assert main(["validate", str(out)]) == 0
    png = tmp_path / "frame.png"
    assert main(["inspect", str(out), "--png", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "episodes 2/2" in capsys.readouterr().out

    (out / "sft/records-00000.parquet").write_bytes(b"not parquet")
    assert main(["validate", str(out)]) == 1
    assert "records-00000.parquet" in capsys.readouterr().err


def test_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["reannotate", "--source", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown source 'nope'" in capsys.readouterr().err
    assert main(["validate", str(tmp_path)]) == 1
    assert "manifest.json: missing" in capsys.readouterr().err


def test_sources_lists_synthetic(capsys):
    assert main(["sources"]) == 0
    assert "synthetic" in capsys.readouterr().out


def test_source_option_pairs_are_read_as_yaml():
    from appf.launch.cli import _source_option_pairs
    from appf.schemas import ConfigError

    got = _source_option_pairs(["cameras=[agentview, robot0_eye_in_hand]", "stop=40",
                                "replay=actions", "reflections=false"])
    assert got == {"cameras": ["agentview", "robot0_eye_in_hand"], "stop": 40,
                   "replay": "actions", "reflections": False}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        _source_option_pairs(["height"])
