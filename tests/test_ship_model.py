"""scripts/ship_model.py: the metadata of a model shipped as a continuation of a shipped model."""
import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "ship_model", Path(__file__).resolve().parents[1] / "scripts" / "ship_model.py")
ship_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ship_model)


def test_chain_metadata_extends_a_chain():
    prev = {"step": 7775, "total_steps": 19504, "command": "train A; then train B", "note": "A, then B",
            "wall_time_min": 477.0}
    got = ship_model.chain_metadata(prev, {"step": 100}, ref="git show abc:w.safetensors", command="train C",
                                    note="C", wall_time_min=20.0)
    assert got == {"total_steps": 19604, "init_from": {"path": "git show abc:w.safetensors", "step": 19504},
                   "command": "train A; then train B; then train C", "note": "A, then B, then C",
                   "wall_time_min": 497.0}


def test_chain_metadata_starts_a_chain_from_a_single_run():
    got = ship_model.chain_metadata({"step": 650, "command": "train A"}, {"step": 50}, ref="r", command="",
                                    note="", wall_time_min=None)
    assert got["total_steps"] == 700 and got["init_from"]["step"] == 650
    assert got["command"] == "train A" and got["note"] == "" and got["wall_time_min"] is None


def test_continues_needs_a_reference(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["ship_model.py", "--run", str(tmp_path), "--name", "x",
                                     "--continues", str(tmp_path / "w.safetensors")])
    with pytest.raises(SystemExit):
        ship_model.main()
    assert "--continues-ref" in capsys.readouterr().err
