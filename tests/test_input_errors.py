"""Library-level and in-process checks behind the hostile-input matrix (tests/test_cli_matrix.py):
resuming a run with another generator, training without a loss term, atomic output writes on a full
disk in every command that writes images, the instance map that is the label map itself, restorer
checkpoints, ``--on-error skip`` for denoise / deblur, the ONNX opset bound, and refusals that come
before any model work."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asapnet.cli import build_parser, main
from asapnet.config import DiscriminatorConfig, TrainConfig, asap_preset
from asapnet.data.io import DataError
from asapnet.models import create_model


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _label(path: Path, value: int = 7) -> Path:
    return _png(path, np.full((12, 20), value, np.uint8))


def _photo(path: Path, gray: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    return _png(path, rng.integers(0, 255, (12, 16) if gray else (12, 16, 3), dtype=np.uint8))


def _err_lines(capsys) -> list:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out, captured.err
    return [line for line in captured.err.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def ckpts(tiny_checkpoints):
    return dict(tiny_checkpoints)


# ---------------------------------------------------------------------------------------------
# Trainer: resume with another generator, no loss term
# ---------------------------------------------------------------------------------------------


def _trainer(out: Path, **overrides):
    from asapnet.training.trainer import Trainer

    cfg = asap_preset("tiny", in_channels=35, **overrides)
    tcfg = TrainConfig(steps=1, batch_size=1, lambda_vgg=0.0, lambda_l1=1.0, gan=False, num_threads=1)
    return Trainer(create_model("asap", cfg=cfg), "asap", cfg.to_dict(), DiscriminatorConfig(in_channels=38), tcfg,
                   out, num_classes=35)


@pytest.mark.parametrize("overrides,key", [({"param_upsampling": "bilinear"}, "param_upsampling"),
                                           ({"hr_weight_scale": "none"}, "hr_weight_scale"),
                                           ({"lr_width": 16}, "lr_width")])
def test_trainer_resume_with_another_generator_config_raises_before_loading(tmp_path, overrides, key):
    torch.manual_seed(0)
    first = _trainer(tmp_path)
    first.step = 3
    first.save()
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    torch.manual_seed(1)
    other = _trainer(tmp_path, **overrides)
    weights = {k: v.clone() for k, v in other.G.state_dict().items()}
    rng = torch.get_rng_state()
    with pytest.raises(ValueError) as e:
        other.load()
    msg = str(e.value)
    assert "state.safetensors" in msg and key in msg and "\n" not in msg
    assert other.step == 0 and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, other.G.state_dict()[k]) for k, v in weights.items())
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == files
    # the same config resumes
    same = _trainer(tmp_path)
    assert same.load() and same.step == 3


def test_config_differences_fills_asap_defaults_and_names_the_model():
    from asapnet.training.run_dir import config_differences

    cfg = asap_preset("tiny", in_channels=35).to_dict()
    assert config_differences("asap", cfg, "asap", dict(cfg)) == ""
    assert config_differences("asap", {**cfg, "hr_depth": cfg["hr_depth"] + 1}, "asap", cfg) == \
        f"hr_depth is {cfg['hr_depth'] + 1} there, {cfg['hr_depth']} here"
    # a key missing from an older state is not a difference where it is the default
    assert config_differences("asap", {k: v for k, v in cfg.items() if k != "param_upsampling"}, "asap", cfg) == ""
    assert "model is 'pix2pix' there, 'asap' here" == config_differences("pix2pix", {}, "asap", cfg)
    assert config_differences(None, None, "asap", cfg) == ""


def test_train_without_a_loss_term_raises_before_writing(tmp_path):
    from asapnet.training.loop import train
    from asapnet.training.trainer import Trainer

    cfg = asap_preset("tiny", in_channels=35)
    tcfg = TrainConfig(steps=1, batch_size=1, lambda_vgg=0.0, lambda_l1=0.0, gan=False, num_threads=1)
    trainer = Trainer(create_model("asap", cfg=cfg), "asap", cfg.to_dict(), DiscriminatorConfig(in_channels=38), tcfg,
                      tmp_path / "run", num_classes=35)
    with pytest.raises(ValueError, match="no loss term"):
        train(trainer, [], resume=False, progress=False)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# atomic output writes: a full disk in each command that writes images
# ---------------------------------------------------------------------------------------------


def _full_disk(monkeypatch):
    real_save = Image.Image.save

    def full_disk(self, fp, *a, **k):
        if isinstance(fp, (str, os.PathLike)):  # not write_image (it hands over an open temporary file)
            return real_save(self, fp, *a, **k)
        real_save(self, fp, *a, **k)  # bytes reach the temporary file, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", full_disk)


@pytest.mark.parametrize("cmd", ["translate", "denoise", "deblur"])
def test_full_disk_is_one_line_and_leaves_no_partial_output(tmp_path, ckpts, capsys, monkeypatch, cmd):
    if cmd == "translate":
        f = _label(tmp_path / "in" / "a.png")
    else:
        f = _photo(tmp_path / "in" / "a.png", gray=cmd == "denoise")
    before = f.read_bytes()
    ckpt = ckpts["tiny" if cmd == "translate" else cmd]
    _full_disk(monkeypatch)
    out = tmp_path / "out"
    assert main(["-q", cmd, str(f), "-o", str(out), "--checkpoint", str(ckpt), "--threads", "1"]) == 2
    lines = _err_lines(capsys)
    assert len(lines) == 1, lines
    assert lines[0] == f"asapnet {cmd}: error: {out / 'a.png'}: cannot write image: No space left on device"
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []
    assert f.read_bytes() == before


def test_full_disk_keeps_the_previous_output(tmp_path, ckpts, capsys, monkeypatch):
    lab = _label(tmp_path / "in" / "a.png")
    old = _photo(tmp_path / "out" / "a.png", seed=3)
    data = old.read_bytes()
    _full_disk(monkeypatch)
    assert main(["-q", "translate", str(lab), "-o", str(tmp_path / "out"), "--checkpoint", str(ckpts["tiny"]),
                 "--threads", "1"]) == 2
    assert len(_err_lines(capsys)) == 1
    assert old.read_bytes() == data and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


# ---------------------------------------------------------------------------------------------
# translate: instance maps, warnings with -q, refusals before model work
# ---------------------------------------------------------------------------------------------


def test_find_instance_map_never_returns_the_label_map(tmp_path):
    from asapnet.tasks.translate.run import find_instance_map

    lab = _label(tmp_path / "a.png")
    with pytest.raises(DataError, match="instance-dir.*own folder"):
        find_instance_map(lab, tmp_path)
    # a Cityscapes folder holding both maps: the instance map, whichever sorts first
    lab = _label(tmp_path / "cs" / "x_gtFine_labelIds.png")
    inst = _label(tmp_path / "cs" / "x_gtFine_instanceIds.png", 1)
    assert find_instance_map(lab, tmp_path / "cs") == inst
    assert find_instance_map(lab) == inst
    # an instance map given as the label map
    with pytest.raises(DataError, match="its own instance map"):
        find_instance_map(inst)


def test_missing_instance_map_warning_shows_with_quiet(tmp_path, ckpts, capsys):
    lab = _label(tmp_path / "in" / "a.png")
    assert main(["-q", "translate", str(lab), "-o", str(tmp_path / "out"), "--checkpoint", str(ckpts["tiny_inst"]),
                 "--threads", "1"]) == 0
    lines = _err_lines(capsys)
    assert len(lines) == 1 and "a.png" in lines[0] and "no instance map found" in lines[0], lines
    assert (tmp_path / "out" / "a.png").is_file()


def test_translate_skip_reports_each_file_and_the_count_is_info(tmp_path, ckpts, capsys):
    good = _label(tmp_path / "in" / "a.png")
    bad = tmp_path / "in" / "b.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    args = ["translate", str(good), str(bad), "-o", str(tmp_path / "out"), "--checkpoint", str(ckpts["tiny"]),
            "--on-error", "skip", "--threads", "1"]
    assert main(["-q", *args]) == 1
    lines = _err_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"skipped {bad}: cannot read"), lines
    assert main(args) == 1  # INFO: the count as well
    assert any(line == "skipped 1 of 2 input(s)" for line in _err_lines(capsys))


@pytest.mark.parametrize("cmd", ["translate", "denoise", "deblur"])
def test_out_file_is_refused_before_any_model_work(tmp_path, ckpts, capsys, monkeypatch, cmd):
    import asapnet.checkpoint as checkpoint

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before -o was checked")

    monkeypatch.setattr(checkpoint, "load_generator", no_model)
    f = _label(tmp_path / "in" / "a.png") if cmd == "translate" else _photo(tmp_path / "in" / "a.png")
    out = _photo(tmp_path / "out.png", seed=5)
    data = out.read_bytes()
    ckpt = ckpts["tiny" if cmd == "translate" else cmd]
    assert main(["-q", cmd, str(f), "-o", str(out), "--checkpoint", str(ckpt)]) == 2
    lines = _err_lines(capsys)
    assert len(lines) == 1 and str(out) in lines[0] and "existing file" in lines[0], lines
    assert out.read_bytes() == data
    assert main(["-q", cmd, str(f), "-o", str(out / "sub"), "--checkpoint", str(ckpt)]) == 2
    lines = _err_lines(capsys)
    assert len(lines) == 1 and "is a regular file" in lines[0], lines


# ---------------------------------------------------------------------------------------------
# denoise / deblur: checkpoints of another task, --on-error
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cmd,ckpt,words", [
    ("denoise", "tiny", ["tiny.safetensors", "translator", "asapnet translate"]),
    ("deblur", "tiny", ["tiny.safetensors", "translator", "asapnet translate"]),
    ("deblur", "denoise", ["denoise.safetensors", "denoise checkpoint", "asapnet denoise"]),
    ("denoise", "deblur", ["deblur.safetensors", "deblur checkpoint", "asapnet deblur"]),
])
def test_restore_refuses_a_checkpoint_of_another_task(tmp_path, ckpts, capsys, cmd, ckpt, words):
    f = _photo(tmp_path / "in" / "a.png", gray=cmd == "denoise")
    assert main(["-q", cmd, str(f), "-o", str(tmp_path / "out"), "--checkpoint", str(ckpts[ckpt]),
                 "--threads", "1"]) == 2
    lines = _err_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"asapnet {cmd}: error: "), lines
    assert all(w in lines[0] for w in words), lines
    assert not (tmp_path / "out").exists()


def test_require_restorer_checks_the_channels(ckpts):
    from asapnet.checkpoint import load_generator
    from asapnet.tasks.restore import require_restorer

    model, meta = load_generator(ckpts["deblur"])
    meta = {k: v for k, v in meta.items() if k != "task"}  # an RGB model without a task
    require_restorer(model, meta, "rgb.safetensors", "deblur", 3)
    with pytest.raises(ValueError, match=r"rgb.safetensors: .* reads 3 channel\(s\); 'asapnet denoise' needs a gray"):
        require_restorer(model, meta, "rgb.safetensors", "denoise", 1)


@pytest.mark.parametrize("cmd", ["denoise", "deblur"])
def test_restore_on_error(tmp_path, ckpts, capsys, cmd):
    help_text = build_parser()._subparsers._group_actions[0].choices[cmd].format_help()
    assert "--on-error {stop,skip}" in help_text and "exit 1" in help_text
    good = _photo(tmp_path / "in" / "a.png", gray=cmd == "denoise")
    bad = tmp_path / "in" / "b.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    good2 = _photo(tmp_path / "in" / "c.png", gray=cmd == "denoise", seed=2)
    base = [cmd, str(good), str(bad), str(good2), "--checkpoint", str(ckpts[cmd]), "--threads", "1"]
    # stop (the default): exit 2 at the bad file, the output written before it is kept
    assert main(["-q", *base, "-o", str(tmp_path / "stop")]) == 2
    lines = _err_lines(capsys)
    assert len(lines) == 1 and "b.png" in lines[0] and "cannot read" in lines[0], lines
    assert (tmp_path / "stop" / "a.png").is_file() and not (tmp_path / "stop" / "c.png").exists()
    # skip: exit 1, every good input written, one warning line per skipped file (the count is INFO)
    assert main(["-q", *base, "-o", str(tmp_path / "skip"), "--on-error", "skip"]) == 1
    lines = _err_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"skipped {bad}: cannot read"), lines
    assert sorted(p.name for p in (tmp_path / "skip").iterdir()) == ["a.png", "c.png"]
    # skip with nothing to skip: exit 0
    assert main(["-q", cmd, str(good), "-o", str(tmp_path / "ok"), "--on-error", "skip", "--checkpoint",
                 str(ckpts[cmd]), "--threads", "1"]) == 0


def test_restore_files_rejects_an_unknown_on_error(tmp_path, ckpts):
    from asapnet.checkpoint import load_generator
    from asapnet.tasks.denoise.run import denoise_files

    model, _ = load_generator(ckpts["denoise"])
    with pytest.raises(ValueError, match="on_error"):
        denoise_files(model, [], tmp_path, on_error="ignore")


# ---------------------------------------------------------------------------------------------
# train --preset, export --opset / -o
# ---------------------------------------------------------------------------------------------


def test_preset_names_are_checked_when_parsed(capsys):
    with pytest.raises(SystemExit) as e:
        main(["-q", "train", "--preset", "nosuch"])
    assert e.value.code == 2
    lines = _err_lines(capsys)
    assert len(lines) == 1 and "--preset" in lines[0] and "'nosuch'" in lines[0] and "tiny" in lines[0], lines
    args = build_parser().parse_args(["train", "--preset", "tiny"])
    assert args.preset == "tiny"


def test_export_opset_is_bounded_by_the_installed_torch(tmp_path):
    from asapnet.inference.onnx import MIN_OPSET, check_opset, export_onnx, max_opset

    assert max_opset() >= MIN_OPSET and max_opset(dynamo=True) >= max_opset()
    check_opset(MIN_OPSET)
    check_opset(max_opset())
    for bad in (MIN_OPSET - 1, max_opset() + 1, 99):
        with pytest.raises(ValueError, match=rf"^--opset {bad}: .* {MIN_OPSET} .* to {max_opset()}"):
            check_opset(bad, option="--opset")
    cfg = asap_preset("tiny", in_channels=35)
    with pytest.raises(ValueError, match="opset 99"):
        export_onnx(create_model("asap", cfg=cfg), tmp_path / "g.onnx", opset=99)
    assert list(tmp_path.iterdir()) == []


def test_export_refusals_come_before_the_export(tmp_path, ckpts, capsys, monkeypatch):
    from asapnet.tasks.translate import export

    def no_export(*a, **k):
        raise AssertionError("exported before the options were checked")

    monkeypatch.setattr(export, "export_onnx", no_export)
    (tmp_path / "onnx").mkdir()
    (tmp_path / "notes.txt").write_text("x\n")
    for extra, words in ((["-o", str(tmp_path / "onnx")], [str(tmp_path / "onnx"), "directory"]),
                         (["-o", str(tmp_path / "notes.txt" / "g.onnx")], ["notes.txt", "regular file"]),
                         (["-o", str(tmp_path / "g.onnx"), "--opset", "99"], ["--opset 99"]),
                         (["-o", str(tmp_path / "g.onnx"), "--opset", "16"], ["--opset 16"])):
        assert main(["-q", "export", "--checkpoint", str(ckpts["tiny"]), "--no-verify", *extra]) == 2
        lines = _err_lines(capsys)
        assert len(lines) == 1 and lines[0].startswith("asapnet export: error: "), lines
        assert all(w in lines[0] for w in words), lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "onnx"]
    assert list((tmp_path / "onnx").iterdir()) == []
