"""Hostile inputs: every bad file gives one clear DataError naming it, or is handled.

All files are real files written to tmp dirs; nothing is mocked. Property tests (hypothesis) cover
the label loader and the generator's size handling.
"""
import io
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from asapnet.checkpoint import save_generator
from asapnet.cli import main
from asapnet.config import asap_preset
from asapnet.data import DataError, LabelPhotoDataset, Pair, cityscapes_pairs, one_hot, pairs_from_folders, read_image, read_label
from asapnet.data.io import list_images
from asapnet.models import create_model
from asapnet.tasks.translate.run import label_to_input

PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _png(path, arr, mode=None):
    (Image.fromarray(arr, mode) if mode else Image.fromarray(arr)).save(path)
    return Path(path)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_claiming(path, width, height) -> Path:
    """A valid-looking 8-bit gray PNG whose header claims width x height but holds one tiny IDAT:
    a decompression bomb as far as the header is concerned."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")
    Path(path).write_bytes(data)
    return Path(path)


def _jpeg_bytes(h=32, w=32) -> bytes:
    b = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(b, "JPEG")
    return b.getvalue()


# ---------------------------------------------------------------------------------------------
# unreadable files: one DataError naming the file, for both readers
# ---------------------------------------------------------------------------------------------


def _bad_files(d: Path):
    good_png = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(good_png, "PNG")
    png, jpg = good_png.getvalue(), _jpeg_bytes()
    bad_sof = bytearray(jpg)
    sof = bad_sof.index(b"\xff\xc0")
    bad_sof[sof + 5:sof + 9] = b"\0\0\0\0"  # zero height and width in the frame header
    files = {
        "zero_byte.png": (b"", "empty file"),
        "truncated.png": (png[: len(png) // 2], "cannot read image"),
        "header_only.png": (png[:8], "cannot read image"),
        "garbage.png": (b"\x89PNG\r\n\x1a\n" + os.urandom(200), "cannot read image"),
        "text.png": (b"this is not an image\n" * 10, "cannot read image"),
        "truncated.jpg": (jpg[: len(jpg) // 2], "cannot read image"),
        "bad_frame.jpg": (bytes(bad_sof), "cannot read image"),
    }
    out = []
    for name, (data, msg) in files.items():
        (d / name).write_bytes(data)
        out.append((d / name, msg))
    return out


@pytest.mark.parametrize("reader", [read_image, read_label])
def test_corrupt_truncated_and_empty_files(tmp_path, reader):
    for path, msg in _bad_files(tmp_path):
        with pytest.raises(DataError) as e:
            reader(path)
        assert str(e.value).startswith(f"{path}: {msg}"), str(e.value)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("reader", [read_image, read_label])
def test_directory_and_missing_file(tmp_path, reader):
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(DataError, match="dir.png: is a directory"):
        reader(tmp_path / "dir.png")
    with pytest.raises(DataError, match="gone.png: file not found"):
        reader(tmp_path / "gone.png")


@pytest.mark.parametrize("side", [12000, 40000])  # 1.6x and 18x Image.MAX_IMAGE_PIXELS (89.5 M)
def test_decompression_bomb_header_is_refused_without_decoding(tmp_path, side):
    bomb = _png_claiming(tmp_path / f"bomb{side}.png", side, side)
    assert bomb.stat().st_size < 200
    for reader in (read_image, read_label):
        # refused from the header: more than asapnet's limit (ASAPNET_MAX_PIXELS) and Pillow's
        with pytest.raises(DataError, match=rf"bomb{side}.png: image too large: .*{side * side:,} pixels, more than "
                                            r"the limit of [\d,]+ pixels; to read it, set "):
            reader(bomb)


def test_oversized_header_within_limit_is_a_truncation_error(tmp_path):
    f = _png_claiming(tmp_path / "liar.png", 3000, 3000)  # 9 M pixels claimed, 64 bytes of data
    with pytest.raises(DataError, match="liar.png: cannot read image"):
        read_label(f)


# ---------------------------------------------------------------------------------------------
# unusual but valid files are handled
# ---------------------------------------------------------------------------------------------


def test_16bit_label_and_instance_ids_are_exact(tmp_path):
    ids = np.array([[0, 33], [26001, 65535]], np.uint16)
    f = _png(tmp_path / "inst16.png", ids)
    assert Image.open(f).mode.startswith("I")
    assert read_label(f).tolist() == ids.tolist()


def test_16bit_image_scaled_to_8bit(tmp_path):
    ramp = (np.arange(16, dtype=np.uint16) * 4369).reshape(4, 4)  # 0 .. 65535
    img = read_image(_png(tmp_path / "g16.png", ramp))
    assert img.dtype == np.uint8 and img.shape == (4, 4, 3)
    assert img[0, 0, 0] == 0 and img[-1, -1, 0] == 255 and (np.diff(img[..., 0].ravel().astype(int)) >= 0).all()


def test_palette_png_as_label_gives_indices_and_as_image_gives_colours(tmp_path):
    p = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "L").convert("P")
    p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    p.save(tmp_path / "pal.png")
    assert read_label(tmp_path / "pal.png").tolist() == [[0, 1], [2, 1]]
    rgb = read_image(tmp_path / "pal.png")
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[1, 0].tolist() == [0, 0, 255]


def test_rgba_image_drops_alpha_and_rgba_gray_label_reads_ids(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., :3] = 7
    rgba[..., 3] = np.arange(5) * 60  # varying alpha must not matter
    f = _png(tmp_path / "rgba.png", rgba)
    assert read_image(f).shape == (4, 5, 3) and (read_image(f) == 7).all()
    assert (read_label(f) == 7).all()
    rgba[0, 0, :3] = (200, 10, 30)
    with pytest.raises(DataError, match="rgba2.png: is an RGB colour image"):
        read_label(_png(tmp_path / "rgba2.png", rgba))


def test_gray_alpha_and_bilevel_label_maps(tmp_path):
    la = np.stack([np.full((3, 3), 4, np.uint8), np.full((3, 3), 128, np.uint8)], -1)
    assert (read_label(_png(tmp_path / "la.png", la, "LA")) == 4).all()
    Image.fromarray(np.eye(3, dtype=bool)).save(tmp_path / "bits.png")
    assert read_label(tmp_path / "bits.png").tolist() == np.eye(3, dtype=int).tolist()


def test_float_and_cmyk_label_maps_are_rejected_with_the_mode(tmp_path):
    Image.fromarray(np.zeros((3, 3), np.float32), "F").save(tmp_path / "float.tiff")
    with pytest.raises(DataError, match=r"float.tiff: unsupported label-map mode 'F'"):
        read_label(tmp_path / "float.tiff")
    Image.new("CMYK", (3, 3)).save(tmp_path / "cmyk.tiff")
    with pytest.raises(DataError, match=r"cmyk.tiff: unsupported label-map mode 'CMYK'"):
        read_label(tmp_path / "cmyk.tiff")
    Image.new("CMYK", (3, 3)).save(tmp_path / "cmyk.jpg")
    with pytest.raises(DataError, match=r"cmyk.jpg: is a JPEG image, not a lossless label map"):
        read_label(tmp_path / "cmyk.jpg")  # any JPEG label map is refused (test_validation.py)
    assert read_image(tmp_path / "cmyk.jpg").shape == (3, 3, 3)


def test_rgb_photo_given_as_label_map(tmp_path):
    photo = _png(tmp_path / "photo.png", np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="photo.png: is an RGB colour image, not a label map"):
        read_label(photo)
    with pytest.raises(DataError, match="photo.png: is an RGB colour image"):
        label_to_input(photo, 35, use_instance=False)
    jpeg = tmp_path / "photo.jpg"  # a JPEG photo is refused as a JPEG first
    jpeg.write_bytes(_jpeg_bytes())
    for read in (read_label, lambda f: label_to_input(f, 35, use_instance=False)):
        with pytest.raises(DataError, match="photo.jpg: is a JPEG image, not a lossless label map"):
            read(jpeg)


def test_label_ids_out_of_range_name_the_file(tmp_path):
    f = _png(tmp_path / "ids.png", np.array([[0, 1], [35, 2]], np.uint8))
    with pytest.raises(DataError, match=r"ids.png: label id 35 out of range \[0, 35\)"):
        label_to_input(f, 35, use_instance=False)
    assert label_to_input(f, 36, use_instance=False).shape == (1, 36, 2, 2)


def test_mismatched_label_and_instance_sizes(tmp_path):
    lab = _png(tmp_path / "a_gtFine_labelIds.png", np.zeros((8, 8), np.uint8))
    inst = _png(tmp_path / "a_gtFine_instanceIds.png", np.zeros((8, 9), np.uint16))
    with pytest.raises(DataError, match=r"a_gtFine_instanceIds.png: size 9x8 does not match label map .*a_gtFine_labelIds"):
        label_to_input(lab, 35, use_instance=True, instance_path=inst)
    ds = LabelPhotoDataset([Pair("a", lab, inst, None)], num_classes=35, use_instance=True)
    with pytest.raises(DataError, match="a_gtFine_instanceIds.png: size 9x8"):
        ds[0]


def test_empty_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "only_txt").mkdir()
    (tmp_path / "only_txt" / "readme.txt").write_text("no images here")
    for d in ("empty", "only_txt"):
        with pytest.raises(DataError, match=f"{d}: no image files"):
            list_images(tmp_path / d)
    with pytest.raises(DataError, match="train_label: folder not found"):
        cityscapes_pairs(tmp_path / "empty", "train")
    with pytest.raises(DataError, match="dataset is empty"):
        LabelPhotoDataset([], num_classes=35)


def test_train_cli_on_empty_folder_is_one_line_error(tmp_path, capsys):
    (tmp_path / "train_label").mkdir()
    rc = main(["train", "--data", str(tmp_path), "--preset", "tiny", "--steps", "1", "--no-vgg", "--quiet",
               "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "train_label: no image files" in err and len(err.strip().splitlines()) == 1


def test_non_utf8_file_names(tmp_path):
    d = os.fsencode(tmp_path)
    name = b"lab\xff\xfe_gtFine_labelIds.png"  # not valid UTF-8
    with open(os.path.join(d, name), "wb") as f:
        Image.fromarray(np.full((4, 6), 3, np.uint8)).save(f, "PNG")
    bad = b"bad\xe9.png"
    open(os.path.join(d, bad), "wb").close()
    files = list_images(tmp_path)
    assert len(files) == 2
    good = next(f for f in files if f.name.startswith("lab"))
    assert (read_label(good) == 3).all()
    with pytest.raises(DataError) as e:
        read_label(next(f for f in files if f.name.startswith("bad")))
    assert os.fsdecode(bad) in str(e.value)  # named with the surrogate escapes of os.fsdecode
    pairs = pairs_from_folders(tmp_path)
    assert os.fsencode(pairs[0].name) in (b"bad\xe9", b"lab\xff\xfe")


# ---------------------------------------------------------------------------------------------
# batch translation: --on-error skip|stop, outputs already written are kept
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """Randomly initialised tiny generator (35 classes, no instance maps; S = 4)."""
    torch.manual_seed(0)
    cfg = asap_preset("tiny", in_channels=35)
    m = create_model("asap", cfg=cfg)
    path = tmp_path_factory.mktemp("ckpt") / "g.safetensors"
    save_generator(path, m, "asap", cfg.to_dict(), {"num_classes": 35, "use_instance": False})
    return path


def _labels(d: Path):
    d.mkdir()
    ok1 = _png(d / "a.png", np.full((12, 20), 7, np.uint8))
    bad = d / "b.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    ok2 = _png(d / "c.png", np.full((9, 13), 26, np.uint8))
    return ok1, bad, ok2


def test_translate_stop_keeps_outputs_already_written(tiny_ckpt, tmp_path, capsys):
    ok1, bad, ok2 = _labels(tmp_path / "in")
    out = tmp_path / "out"
    rc = main(["translate", str(ok1), str(bad), str(ok2), "-o", str(out), "--checkpoint", str(tiny_ckpt)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{bad}: cannot read image" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]
    assert Image.open(out / "a.png").size == (20, 12)


def test_translate_skip_reports_bad_file_and_translates_the_rest(tiny_ckpt, tmp_path, capsys):
    ok1, bad, ok2 = _labels(tmp_path / "in")
    (tmp_path / "in" / "photo.png").write_bytes(_jpeg_bytes())  # a JPEG photo with a .png name
    out = tmp_path / "out"
    rc = main(["translate", str(ok1), str(bad), str(tmp_path / "in" / "photo.png"), str(ok2), "-o", str(out),
               "--checkpoint", str(tiny_ckpt), "--on-error", "skip"])
    text = capsys.readouterr().err  # log messages: stderr
    assert rc == 1  # went on, but two inputs were skipped
    assert "skipped 2 of 4 input(s)" in text
    assert f"skipped {bad}: cannot read image" in text
    assert "photo.png: is a JPEG image" in text  # the format Pillow reports, not the extension
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    assert Image.open(out / "c.png").size == (13, 9) and Image.open(out / "c.png").mode == "RGB"


def test_translate_non_utf8_name_with_strict_stdout(tiny_ckpt, tmp_path, monkeypatch):
    """A UTF-8 terminal outside the C locale has a strict stdout and stderr: printing a file name
    that is not UTF-8 (the per-file log lines go to stderr) must not stop the batch (here: after
    the first of two files)."""
    d = os.fsencode(tmp_path)
    os.mkdir(os.path.join(d, b"in"))
    names = [b"str\xe4\xdfe.png", b"zz.png"]  # latin-1 'strasse' with sharp s, then a plain name
    for n in names:
        with open(os.path.join(d, b"in", n), "wb") as f:
            Image.fromarray(np.full((8, 8), 1, np.uint8)).save(f, "PNG")
    out, err = io.BytesIO(), io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, encoding="utf-8", errors="strict", write_through=True))
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, encoding="utf-8", errors="strict", write_through=True))
    rc = main(["translate", *(os.fsdecode(os.path.join(d, b"in", n)) for n in names), "-o", str(tmp_path / "out"),
               "--checkpoint", str(tiny_ckpt)])
    assert sorted(os.listdir(os.path.join(d, b"out"))) == sorted(names)
    assert rc == 0 and b"wrote 2 image(s)" in err.getvalue() and b"str\\udce4\\udcdfe.png ->" in err.getvalue()


def test_translate_same_stem_does_not_overwrite_outputs(tiny_ckpt, tmp_path, capsys):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a = _png(tmp_path / "a" / "x.png", np.full((8, 8), 1, np.uint8))
    b = _png(tmp_path / "b" / "x.png", np.full((8, 8), 30, np.uint8))
    rc = main(["translate", str(a), str(b), "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_ckpt)])
    outputs = sorted((tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
    # either both outputs are kept under distinct names, or the clash is refused before writing
    assert len(outputs) == 2 or (rc == 2 and "x.png" in capsys.readouterr().err and not outputs)


def test_translate_tiny_label_map(tiny_ckpt, tmp_path):
    f = _png(tmp_path / "dot.png", np.full((3, 2), 5, np.uint8))  # S = 4
    rc = main(["translate", str(f), "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_ckpt)])
    assert rc == 0 and Image.open(tmp_path / "out" / "dot.png").size == (2, 3)


# ---------------------------------------------------------------------------------------------
# property tests
# ---------------------------------------------------------------------------------------------


@PROPS
@given(h=st.integers(1, 24), w=st.integers(1, 24), num_classes=st.sampled_from([2, 35, 300]),
       seed=st.integers(0, 2 ** 31 - 1))
def test_label_png_roundtrip_to_one_hot(tmp_path, h, w, num_classes, seed):
    ids = np.random.default_rng(seed).integers(0, num_classes, (h, w))
    arr = ids.astype(np.uint8 if num_classes <= 256 else np.uint16)
    f = _png(tmp_path / f"lab_{h}x{w}_{num_classes}.png", arr)
    lab = read_label(f)
    assert lab.dtype == np.int64 and np.array_equal(lab, ids)
    x = one_hot(torch.from_numpy(lab)[None], num_classes)
    assert x.shape == (1, num_classes, h, w)
    assert torch.equal(x.sum(1), torch.ones(1, h, w)) and torch.equal(x.argmax(1)[0], torch.from_numpy(ids))
    via_translate = label_to_input(f, num_classes, use_instance=False)
    assert torch.equal(via_translate, x)


_TINY = create_model("asap", cfg=asap_preset("tiny", in_channels=5)).eval()  # S = 4


@PROPS
@given(h=st.integers(1, 70), w=st.integers(1, 70), seed=st.integers(0, 2 ** 31 - 1))
def test_generator_any_size_gives_same_size_in_range(h, w, seed):
    if h <= _TINY.S and w <= _TINY.S:
        h += _TINY.S  # a single S x S tile: see test_generator_single_tile_input (known bug)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 5, (1, h, w), generator=g)
    x = one_hot(ids, 5)
    with torch.no_grad():
        y = _TINY(x)
    assert y.shape == (1, 3, h, w)
    assert torch.isfinite(y).all() and y.min() >= -1 and y.max() <= 1
    with torch.no_grad():  # the reference (training) path computes the same values
        _TINY.hr.fast = False
        try:
            y_ref = _TINY(x)
        finally:
            _TINY.hr.fast = True
    assert torch.allclose(y, y_ref, atol=1e-5)


@pytest.mark.parametrize("hw", [(1, 1), (4, 4), (2, 3)])
def test_generator_single_tile_input(hw):
    with torch.no_grad():
        y = _TINY(one_hot(torch.zeros(1, *hw, dtype=torch.long), 5))
    assert y.shape == (1, 3, *hw) and y.abs().max() <= 1
