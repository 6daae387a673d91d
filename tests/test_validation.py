"""Validate before allocating, and one error path ("nothing silent, no tracebacks").

Every case runs the real command line (``main([...])`` in process, or ``python -m asapnet`` in a
subprocess) on real small files written to tmp_path, and checks: exit status 2, exactly one stderr
line ``asapnet <command>: error: ...`` naming the problem, no traceback, inputs unchanged.
"""
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import asapnet.data.io as io_mod
from asapnet import cli
from asapnet.checkpoint import load_generator, require_translator, save_generator
from asapnet.cli import main
from asapnet.config import ASAPConfig, asap_preset
from asapnet.data import DataError, read_image, read_label
from asapnet.models import create_model

from conftest import EXAMPLES

EXAMPLE = EXAMPLES / "frankfurt_000000_000576_gtFine_labelIds.png"  # a 2048x1024 Cityscapes frame
WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "asapnet" / "weights"


# ---------------------------------------------------------------------------------------------
# helpers: real files, one-line errors, unchanged inputs
# ---------------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bilevel_png(path, width, height) -> Path:
    """A complete, valid 1-bit PNG of width x height (all black): a 9000x9000 one is ~45 KB and
    takes a few milliseconds to write (no 81 M pixel array is ever made)."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(row * height, 1)) + \
        _chunk(b"IEND", b"")
    Path(path).write_bytes(data)
    return Path(path)


def _png_claiming(path, width, height) -> Path:
    """A PNG whose header claims width x height with 64 bytes of pixel data (a decompression bomb
    as far as the header goes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
                           + _chunk(b"IEND", b""))
    return Path(path)


def _png(path, arr) -> Path:
    Image.fromarray(arr).save(path)
    return Path(path)


def _digest(*paths) -> dict:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def _one_error_line(err: str, command: str) -> str:
    """The error line of a refused command: one line, the last on stderr, no traceback. The lines
    before it can only be the command's progress messages (e.g. ``model: ...``, logged before the
    bad input was reached; ``-q`` leaves the error alone, see tests/test_cli_options.py), none of
    them an error or a warning."""
    assert "Traceback" not in err, err
    *before, last = err.strip("\n").split("\n")
    assert last.startswith(f"asapnet {command}: error: ") or last.startswith("asapnet: error: "), err
    assert not any("error" in line.lower() or "warning" in line.lower() for line in before), err
    return last


def _run_main(args, capsys) -> tuple:
    """main(args) in process -> (exit status, stderr); parse errors raise SystemExit(2)."""
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


def _run_subprocess(args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asapnet", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env}, timeout=300)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """Randomly initialised tiny translator (35 classes, no instance maps; S = 4)."""
    torch.manual_seed(0)
    cfg = asap_preset("tiny", in_channels=35)
    path = tmp_path_factory.mktemp("ckpt") / "g.safetensors"
    save_generator(path, create_model("asap", cfg=cfg), "asap", cfg.to_dict(), {"num_classes": 35, "use_instance": False})
    return path


@pytest.fixture(scope="module")
def tiny_inst_ckpt(tmp_path_factory):
    """Tiny translator with an instance-edge channel (35 classes + 1)."""
    torch.manual_seed(0)
    cfg = asap_preset("tiny", in_channels=36, lr_only_channels=1)
    path = tmp_path_factory.mktemp("ckpt") / "gi.safetensors"
    save_generator(path, create_model("asap", cfg=cfg), "asap", cfg.to_dict(), {"num_classes": 35, "use_instance": True})
    return path


@pytest.fixture(autouse=True)
def _default_limit(monkeypatch):
    monkeypatch.delenv("ASAPNET_MAX_PIXELS", raising=False)
    monkeypatch.setattr(io_mod, "MAX_PIXELS", None)


# ---------------------------------------------------------------------------------------------
# 1. image size limits, read from the header before decoding
# ---------------------------------------------------------------------------------------------


def test_default_limit_accepts_cityscapes_and_4096_and_refuses_9000(tmp_path, monkeypatch):
    assert 4096 * 4096 <= io_mod.max_pixels() < 9000 * 9000
    assert read_label(EXAMPLE).shape == (1024, 2048)
    big = _bilevel_png(tmp_path / "ok4096.png", 4096, 4096)
    assert read_label(big).shape == (4096, 4096)
    huge = _bilevel_png(tmp_path / "huge.png", 9000, 9000)
    assert huge.stat().st_size < 200_000
    from PIL import ImageFile

    decoded = []
    real_load = ImageFile.ImageFile.load

    def load(self):  # records every decode
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    for reader in (read_label, read_image):
        with pytest.raises(DataError) as e:
            reader(huge)
        assert decoded == []  # refused from the header, nothing decoded
        msg = str(e.value)
        assert msg.startswith(f"{huge}: image too large: 9000x9000 = 81,000,000 pixels, more than the limit of "
                              "67,108,864 pixels") and "ASAPNET_MAX_PIXELS" in msg and "\n" not in msg


def test_limit_is_raised_by_env_var_or_module_setting(tmp_path, monkeypatch):
    f = _png(tmp_path / "40x40.png", np.full((40, 40), 3, np.uint8))  # 1600 pixels
    monkeypatch.setenv("ASAPNET_MAX_PIXELS", "1000")
    with pytest.raises(DataError, match=r"40x40.png: image too large: 40x40 = 1,600 pixels, more than the limit "
                                        r"of 1,000 pixels; to read it, set the environment variable ASAPNET_MAX_PIXELS"):
        read_label(f)
    monkeypatch.setenv("ASAPNET_MAX_PIXELS", "1600")
    assert (read_label(f) == 3).all() and read_image(f).shape == (40, 40, 3)
    monkeypatch.setattr(io_mod, "MAX_PIXELS", 1599)  # the Python setting wins over the variable
    with pytest.raises(DataError, match=r"limit of 1,599 pixels; to read it, set asapnet.data.io.MAX_PIXELS"):
        read_image(f)
    monkeypatch.setattr(io_mod, "MAX_PIXELS", None)
    monkeypatch.setenv("ASAPNET_MAX_PIXELS", "lots")
    with pytest.raises(DataError, match=r"ASAPNET_MAX_PIXELS: expected a positive number of pixels"):
        read_label(f)


def test_pillow_decompression_bomb_warning_and_error_become_the_same_data_error(tmp_path, monkeypatch):
    warn = _png_claiming(tmp_path / "warn.png", 9500, 9500)  # 90.25 M: Pillow's warning (> 89.5 M)
    err = _png_claiming(tmp_path / "err.png", 40000, 40000)  # 1.6 G: Pillow's error (> 179 M)
    with pytest.raises(DataError, match=r"warn.png: image too large: 9500x9500 = 90,250,000 pixels"):
        read_label(warn)
    with pytest.raises(DataError, match=r"err.png: image too large: 1,600,000,000 pixels, more than the limit"):
        read_image(err)
    monkeypatch.setenv("ASAPNET_MAX_PIXELS", str(10 ** 10))  # above Pillow's own limits
    with pytest.raises(DataError, match=r"warn.png: cannot read image"):  # size accepted, data truncated
        read_label(warn)
    with pytest.raises(DataError, match=r"err.png: image too large for Pillow's decompression-bomb limit "
                                        r"\(PIL.Image.MAX_IMAGE_PIXELS"):
        read_label(err)


def test_translate_cli_refuses_huge_label_and_instance_maps(tiny_ckpt, tiny_inst_ckpt, tmp_path, capsys):
    huge = _bilevel_png(tmp_path / "huge.png", 9000, 9000)
    before = _digest(huge, tiny_ckpt)
    rc, err = _run_main(["translate", huge, "-o", tmp_path / "out", "--checkpoint", tiny_ckpt], capsys)
    line = _one_error_line(err, "translate")
    assert rc == 2 and f"{huge}: image too large: 9000x9000" in line and "ASAPNET_MAX_PIXELS" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # an instance map goes through the same check
    (tmp_path / "inst").mkdir()
    lab = _png(tmp_path / "x.png", np.full((8, 8), 7, np.uint8))
    inst = _bilevel_png(tmp_path / "inst" / "x.png", 9000, 9000)
    rc, err = _run_main(["translate", lab, "-o", tmp_path / "out2", "--checkpoint", tiny_inst_ckpt,
                         "--instance-dir", tmp_path / "inst"], capsys)
    line = _one_error_line(err, "translate")
    assert rc == 2 and f"{inst}: image too large: 9000x9000" in line
    assert _digest(huge, tiny_ckpt) == before


def test_denoise_cli_refuses_huge_photo_in_a_subprocess(tmp_path):
    huge = _bilevel_png(tmp_path / "photo.png", 9000, 9000)
    before = _digest(huge)
    r = _run_subprocess(["denoise", huge, "-o", tmp_path / "out"])
    line = _one_error_line(r.stderr, "denoise")
    assert r.returncode == 2 and f"{huge}: image too large: 9000x9000" in line
    assert _digest(huge) == before


def test_invalid_max_pixels_variable_is_one_line(tiny_ckpt, tmp_path):
    lab = _png(tmp_path / "x.png", np.full((8, 8), 7, np.uint8))
    r = _run_subprocess(["translate", lab, "-o", tmp_path / "out", "--checkpoint", tiny_ckpt], ASAPNET_MAX_PIXELS="-5")
    line = _one_error_line(r.stderr, "translate")
    assert r.returncode == 2 and "ASAPNET_MAX_PIXELS: expected a positive number of pixels" in line and "got '-5'" in line


# ---------------------------------------------------------------------------------------------
# 2. JPEG label maps are refused (the format Pillow reports, not the extension)
# ---------------------------------------------------------------------------------------------


def test_jpeg_label_maps_are_refused_whatever_their_name(tmp_path):
    ids = np.zeros((16, 16), np.uint8)
    ids[:, 8:] = 26
    for name in ("lab.jpg", "lab_disguised.png"):
        Image.fromarray(ids).save(tmp_path / name, "JPEG")
        with pytest.raises(DataError, match=rf"{name}: is a JPEG image, not a lossless label map: JPEG compression "
                                            r"changes label ids .*save label and instance maps as PNG"):
            read_label(tmp_path / name)
        assert read_image(tmp_path / name).shape == (16, 16, 3)  # photos may be JPEG
    Image.fromarray(ids).save(tmp_path / "lab.png")
    assert (read_label(tmp_path / "lab.png") == ids).all()


def test_translate_cli_refuses_jpeg_label_map(tiny_ckpt, tmp_path, capsys):
    lab = tmp_path / "labelIds.png"
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(lab, "JPEG")
    before = _digest(lab)
    rc, err = _run_main(["translate", lab, "-o", tmp_path / "out", "--checkpoint", tiny_ckpt], capsys)
    line = _one_error_line(err, "translate")
    assert rc == 2 and f"{lab}: is a JPEG image" in line and "PNG" in line
    assert _digest(lab) == before


def test_pix2pix_jpeg_pairs_still_load(tmp_path):
    from asapnet.data.cityscapes import Pix2PixCityscapes

    ab = np.zeros((32, 64, 3), np.uint8)
    ab[:, 32:] = (128, 64, 128)  # road colour on the label half
    Image.fromarray(ab).save(tmp_path / "1.jpg", quality=90)
    item = Pix2PixCityscapes(tmp_path, size=(32, 64))[0]
    assert item["input"].shape == (35, 32, 64) and int(item["label"].max()) == 7  # road


# ---------------------------------------------------------------------------------------------
# 3. checkpoint metadata and tensors validated before the model is built
# ---------------------------------------------------------------------------------------------


def _tiny_parts():
    torch.manual_seed(0)
    cfg = asap_preset("tiny", in_channels=35)
    tensors = {k: v.clone() for k, v in create_model("asap", cfg=cfg).state_dict().items()}
    return tensors, {"model": "asap", "config": cfg.to_dict(), "num_classes": 35, "use_instance": False}


def _write(path, tensors, meta) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"asapnet": json.dumps(meta)})
    return Path(path)


def _bad_checkpoints():
    t, m = _tiny_parts()
    first = next(k for k, v in t.items() if v.is_floating_point() and v.dim() > 1)
    cases = {
        "unknown_model": (t, {**m, "model": "nosuchnet"}, r"unknown model 'nosuchnet' in its metadata"),
        "model_not_string": (t, {**m, "model": 7}, r"unknown model '7'"),
        "null_config": (t, {**m, "config": None}, r"config in its metadata must be a JSON object, got null"),
        "list_config": (t, {**m, "config": [1, 2]}, r"must be a JSON object, got list"),
        "string_int": (t, {**m, "config": {**m["config"], "in_channels": "35"}},
                       r"'in_channels' must be an integer in \[1, 10000\), got '35' \(str\)"),
        "zero_classes": (t, {**m, "config": {**m["config"], "in_channels": 0}}, r"'in_channels' must be an integer"),
        "huge_channels": (t, {**m, "config": {**m["config"], "in_channels": 20000}}, r"in \[1, 10000\)"),
        "huge_width": (t, {**m, "config": {**m["config"], "lr_max_width": 10 ** 6}}, r"'lr_max_width' must be an integer"),
        "bool_as_int": (t, {**m, "config": {**m["config"], "hr_depth": True}}, r"'hr_depth' must be an integer"),
        "nan_float": (t, {**m, "config": {**m["config"], "hr_slope": float("nan")}}, r"'hr_slope' must be a finite number"),
        "unknown_key": (t, {**m, "config": {**m["config"], "wings": 2}}, r"unknown config keys \['wings'\]"),
        "int64_weights": ({**t, first: t[first].to(torch.int64)}, m, rf"tensor '{first}' has dtype int64"),
        "bool_weights": ({**t, first: t[first] > 0}, m, rf"tensor '{first}' has dtype bool"),
        "nan_weights": ({**t, first: t[first].clone().fill_(float("nan"))}, m, rf"tensor '{first}' holds \d+ non-finite"),
        "inf_weights": ({**t, first: t[first].clone().index_fill_(0, torch.tensor([0]), math.inf)}, m,
                        r"non-finite value\(s\) \(NaN or inf\)"),
        "no_weights": ({}, m, r"holds no generator weights"),
        "wrong_shapes": (t, {**m, "config": {**m["config"], "hr_width": 16}}, r"weights do not match the stored config"),
        # a config describing a ~90 G-parameter model: refused on the meta device, nothing allocated
        "huge_model": (t, {**m, "config": {**m["config"], "lr_max_width": 99_999, "lr_depth": 999}},
                       r"weights do not match the stored config"),
        "dncnn_string": ({"x": torch.zeros(1)}, {"model": "dncnn", "config": {"depth": "17"}},
                         r"'dncnn' model: 'depth' must be an integer"),
        "dncnn_unknown_key": ({"x": torch.zeros(1)}, {"model": "dncnn", "config": {"width": 3}},
                              r"'dncnn' model: unknown config keys \['width'\]"),
    }
    return cases


@pytest.mark.parametrize("case", list(_bad_checkpoints()))
def test_bad_checkpoint_is_one_value_error_naming_the_file(case, tmp_path):
    tensors, meta, pattern = _bad_checkpoints()[case]
    path = _write(tmp_path / f"{case}.safetensors", tensors, meta)
    with pytest.raises(ValueError) as e:  # (a hang would be stopped by pytest-timeout)
        load_generator(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    assert __import__("re").search(pattern, msg), msg


def test_good_checkpoints_still_load(tmp_path):
    tensors, meta = _tiny_parts()
    model, got = load_generator(_write(tmp_path / "ok.safetensors", {k: v.half() for k, v in tensors.items()}, meta))
    assert got["model"] == "asap" and isinstance(model.cfg, ASAPConfig)
    for name in ("cityscapes.safetensors", "dncnn-s-sigma25.safetensors"):  # fp16; int64 num_batches_tracked
        load_generator(WEIGHTS / name)


@pytest.mark.parametrize("case", ["null_config", "nan_weights", "huge_model"])
def test_translate_cli_bad_checkpoint_is_one_line(case, tmp_path, capsys):
    tensors, meta, _ = _bad_checkpoints()[case]
    ckpt = _write(tmp_path / f"{case}.safetensors", tensors, meta)
    lab = _png(tmp_path / "x.png", np.full((8, 8), 7, np.uint8))
    before = _digest(ckpt, lab)
    rc, err = _run_main(["translate", lab, "-o", tmp_path / "out", "--checkpoint", ckpt], capsys)
    line = _one_error_line(err, "translate")
    assert rc == 2 and f"{ckpt}: " in line
    assert _digest(ckpt, lab) == before and not (tmp_path / "out").exists()


def test_require_translator_refuses_denoisers_and_accepts_translators():
    for name in ("dncnn-s-sigma25.safetensors", "asap-denoise-blind.safetensors", "sadnet-sigma25.safetensors"):
        model, meta = load_generator(WEIGHTS / name)
        with pytest.raises(ValueError, match=rf"{name}: is a denoise checkpoint \(\w+\), not a label-map-to-photo "
                                             r"translator; use 'asapnet denoise'"):
            require_translator(model, meta, WEIGHTS / name)
    model, meta = load_generator(WEIGHTS / "cityscapes.safetensors")
    assert require_translator(model, meta, "cityscapes.safetensors") == (35, False)
    with pytest.raises(ValueError, match=r"x.safetensors: is not a label-map-to-photo translator"):
        require_translator(create_model("dncnn"), {"model": "dncnn", "config": {}}, "x.safetensors")
    with pytest.raises(ValueError, match=r"reads 35 input channels, not the 35 label classes \+ 1 instance-edge"):
        require_translator(model, {**meta, "use_instance": True}, "y.safetensors")


def test_translate_cli_with_a_denoiser_is_one_line(tmp_path, capsys):
    lab = _png(tmp_path / "x.png", np.full((8, 8), 7, np.uint8))
    try:
        rc, err = _run_main(["translate", lab, "-o", tmp_path / "out", "--checkpoint",
                             WEIGHTS / "dncnn-s-sigma25.safetensors"], capsys)
    except AttributeError as e:  # the crash this guards against
        pytest.fail(f"traceback: {e}")
    line = _one_error_line(err, "translate")
    assert rc == 2 and "is a denoise checkpoint" in line


# ---------------------------------------------------------------------------------------------
# 4. one error path in main; numbers checked when the command line is parsed
# ---------------------------------------------------------------------------------------------


BAD_ARGS = [
    (["train", "--holdout", "-1"], "argument --holdout: must be an integer >= 0, got '-1'"),
    (["train", "--num-classes", "0"], "argument --num-classes: must be a positive integer, got '0'"),
    (["train", "--steps", "0"], "argument --steps: must be a positive integer, got '0'"),
    (["train", "--threads", "0"], "argument --threads: must be a positive integer, got '0'"),
    (["train", "--lr-g", "inf"], "argument --lr-g: must be a finite number, got 'inf'"),
    (["train", "--task", "denoise", "--sigma", "nan"], "argument --sigma: must be a finite number, got 'nan'"),
    (["train", "--device", "tpu"], "argument --device: must be cpu, cuda, cuda:N or mps, got 'tpu'"),
    (["translate", "x.png", "-o", "o", "--threads", "0"], "argument --threads: must be a positive integer"),
    (["denoise", "x.png", "-o", "o", "--sigma", "nan"], "argument --sigma: must be a finite number, got 'nan'"),
    (["evaluate", "--task", "denoise", "--sigma", "15,nan"], "sigma list must hold finite values >= 0"),
    (["bench", "--device", "tpu"], "argument --device: must be cpu, cuda, cuda:N or mps, got 'tpu'"),
    (["bench", "--repeats", "0"], "argument --repeats: must be a positive integer"),
    (["bench", "--num-classes", "abc"], "argument --num-classes: must be a positive integer, got 'abc'"),
]


@pytest.mark.parametrize("args,expected", BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_numbers_are_refused_at_parse_time(args, expected, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    line = _one_error_line(err, args[0])
    assert e.value.code == 2 and expected in line and "usage:" not in err


def test_bad_numbers_in_a_subprocess():
    for args, expected in [(["train", "--holdout", "-1"], "must be an integer >= 0"),
                           (["bench", "--device", "tpu"], "must be cpu, cuda, cuda:N or mps")]:
        r = _run_subprocess(args)
        line = _one_error_line(r.stderr, args[0])
        assert r.returncode == 2 and expected in line and r.stdout == ""


def test_unavailable_cuda_is_refused_at_parse_time(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine with CUDA: no skip
    with pytest.raises(SystemExit) as e:
        main(["bench", "--device", "cuda"])
    assert e.value.code == 2 and "CUDA is not available" in _one_error_line(capsys.readouterr().err, "bench")


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    lab = _png(tmp_path / "x.png", np.full((8, 8), 7, np.uint8))
    rc, err = _run_main(["translate", lab, "-o", tmp_path / "out", "--checkpoint", tmp_path / "nope.safetensors"], capsys)
    assert rc == 2 and "nope.safetensors: checkpoint not found" in _one_error_line(err, "translate")


def test_output_folder_that_is_a_file_is_one_line(tiny_ckpt, tmp_path, capsys):
    lab = _png(tmp_path / "x.png", np.full((8, 8), 7, np.uint8))
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    before = _digest(lab, blocker)
    rc, err = _run_main(["translate", lab, "-o", blocker, "--checkpoint", tiny_ckpt], capsys)
    line = _one_error_line(err, "translate")
    assert rc == 2 and str(blocker) in line and "Errno" not in line
    assert _digest(lab, blocker) == before


def test_output_file_that_is_a_directory_is_one_line(tiny_ckpt, tmp_path, capsys):
    lab = _png(tmp_path / "x.png", np.full((8, 8), 7, np.uint8))
    (tmp_path / "out" / "x.png").mkdir(parents=True)  # translate writes out/x.png
    rc, err = _run_main(["translate", lab, "-o", tmp_path / "out", "--checkpoint", tiny_ckpt], capsys)
    line = _one_error_line(err, "translate")
    assert rc == 2 and str(tmp_path / "out" / "x.png") in line and "Is a directory" in line


def _without_root_file_override():
    """preexec_fn for a child of a root process: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from
    the capability bounding set, so that the child (still uid 0, owner of the test's files)
    obeys permission bits like any user; a no-op for other users."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        return
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_read_only_output_folder_is_one_line_in_a_subprocess(tiny_ckpt, tmp_path):
    lab = _png(tmp_path / "x.png", np.full((8, 8), 7, np.uint8))
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        try:
            r = subprocess.run([sys.executable, "-m", "asapnet", "translate", str(lab), "-o", str(out),
                                "--checkpoint", str(tiny_ckpt)], capture_output=True, text=True, timeout=300,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=_without_root_file_override)
        except subprocess.SubprocessError as e:  # root without CAP_SETPCAP cannot drop the override
            pytest.skip(f"root cannot drop CAP_DAC_OVERRIDE here, so it writes into read-only folders ({e})")
    finally:
        out.chmod(0o755)
    line = _one_error_line(r.stderr, "translate")
    assert r.returncode == 2 and "Permission denied" in line and not any(out.iterdir())


def test_command_refusal_by_system_exit_message_is_one_line(monkeypatch, capsys):
    def refuse(a):
        raise SystemExit("asapnet bench: model 'x' is not benchmarkable\n(second line)")

    monkeypatch.setitem(cli.COMMANDS, "bench", refuse)
    rc, err = _run_main(["bench"], capsys)
    assert rc == 2 and _one_error_line(err, "bench") == \
        "asapnet bench: error: model 'x' is not benchmarkable (second line)"


def test_unexpected_exceptions_keep_their_traceback(monkeypatch):
    def bug(a):
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setitem(cli.COMMANDS, "bench", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["bench"])
    monkeypatch.setitem(cli.COMMANDS, "bench", lambda a: [][1])
    with pytest.raises(IndexError):
        main(["bench"])
