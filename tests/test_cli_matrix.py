"""The hostile-input matrix over every command, through the real ``asapnet`` process.

The project's rule for bad user input: exit status 2 (1 when ``--on-error skip`` skipped some
inputs and wrote the rest), exactly one line on stderr (with ``-q``) naming the offending file or
value and the problem, no traceback, and every input and existing file left as it was (bytes,
mtime, folder listings). Each case runs ``python -m asapnet -q <command> ...`` in a subprocess on
real tiny files; checkpoints are tiny models written with the library (plus the shipped DnCNN).

A case the code does not meet yet may be marked ``xfail(strict=True)`` with a reason that says what
fails and where to fix it (it turns into a failure the moment the fix lands: then drop its mark).

Also here: :func:`asapnet.data.io.write_image` (atomic output image writes).
"""
from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import pytest
import torch
from PIL import Image

from asapnet.checkpoint import save_generator
from asapnet.config import DiscriminatorConfig, TrainConfig, asap_preset
from asapnet.data.io import DataError, write_image
from asapnet.models import create_model

REPO = Path(__file__).resolve().parents[1]
SHIPPED_DNCNN = REPO / "src" / "asapnet" / "weights" / "dncnn-s-sigma25.safetensors"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
#: run a command without the capabilities that let root write into a read-only folder
DROP_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def _can_drop_dac() -> bool:
    if not shutil.which("setpriv"):
        return False
    try:
        return subprocess.run([*DROP_DAC, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


#: a 0o555 folder stops this process's commands (as root: through DROP_DAC)
READ_ONLY_WORKS = not IS_ROOT or _can_drop_dac()


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _label(path: Path, value: int = 7, size=(12, 20)) -> Path:
    return _png(path, np.full(size, value, np.uint8))


def _photo(path: Path, size=(12, 16), gray=False, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    return _png(path, rng.integers(0, 255, size if gray else (*size, 3), dtype=np.uint8))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A 100-byte 8-bit gray PNG whose header claims width x height (nothing behind it)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + _chunk(b"IEND", b""))
    return path


def _corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    return path


# ---------------------------------------------------------------------------------------------
# checkpoints and a run folder, written once with the library
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, tiny_checkpoints) -> Dict[str, Any]:
    """The session's tiny checkpoints (tests/conftest.py; the restorers are ASAP-Net: building them
    on the meta device, as load_generator does, does not import torch._dynamo, unlike DnCNN /
    DeblurGAN, 1.5 s per process), plus broken ones and a run folder."""
    d = tmp_path_factory.mktemp("ckpts")
    out: Dict[str, Any] = {"dncnn": SHIPPED_DNCNN, **tiny_checkpoints}
    torch.manual_seed(0)
    cfg = asap_preset("tiny", in_channels=35)
    g = create_model("asap", cfg=cfg)
    meta = {"num_classes": 35, "use_instance": False}
    save_generator(d / "unknown.safetensors", g, "nosuchnet", cfg.to_dict(), meta)
    out["unknown"] = d / "unknown.safetensors"
    with torch.no_grad():
        next(iter(g.parameters())).fill_(float("nan"))
    save_generator(d / "nan.safetensors", g, "asap", cfg.to_dict(), meta)
    out["nan"] = d / "nan.safetensors"
    # two 32 x 64 label/photo pairs for `train --dataset folders`, and a translate run at step 0
    # of preset 'tiny' on them, as `asapnet train ... --preset tiny --no-gan --no-vgg` writes it
    import json

    from asapnet.training.trainer import Trainer

    pairs = d / "pairs"
    for i in range(2):
        _label(pairs / "labels" / f"p{i}.png", value=7 + i, size=(32, 64))
        _photo(pairs / "images" / f"p{i}.png", size=(32, 64), seed=i)
    out["train_data"] = ["--dataset", "folders", "--label-dir", pairs / "labels", "--image-dir", pairs / "images",
                         "--no-instance"]
    rcfg = asap_preset("tiny", in_channels=35)
    tcfg = TrainConfig(steps=1, batch_size=1, lambda_vgg=0.0, lambda_l1=1.0, gan=False, num_threads=1)
    run = d / "run_tiny"
    trainer = Trainer(create_model("asap", cfg=rcfg), "asap", rcfg.to_dict(), DiscriminatorConfig(in_channels=38),
                      tcfg, run, num_classes=35, extra_meta={"num_classes": 35, "use_instance": False})
    trainer.save()
    (run / "run.json").write_text(json.dumps(trainer.meta(), indent=2, default=str))
    out["run"] = run
    return out


# ---------------------------------------------------------------------------------------------
# the cases: each builds its files in tmp (a fresh folder) and returns
#   args: the command line after `asapnet -q`
#   rc: the expected exit status
#   names: substrings the one stderr line must hold (the offending file / value, the problem)
#   protect: files / folders that must be unchanged (bytes, mtime; folder listings)
#   absent: paths that must still not exist afterwards
#   written: files that must exist afterwards (--on-error skip: the good inputs' outputs)
# ---------------------------------------------------------------------------------------------

Spec = Dict[str, Any]
TRAIN_CHEAP = ["--preset", "tiny", "--no-gan", "--no-vgg", "--lambda-l1", "1", "--steps", "1", "--threads", "1",
               "--crop", "none", "--load-size", "32x64", "--sample-every", "1000", "--checkpoint-every", "1000"]


def t_out_is_file(tmp: Path, c) -> Spec:
    lab, out = _label(tmp / "in" / "a.png"), tmp / "out.png"
    _photo(out)
    return dict(args=["translate", lab, "-o", out, "--checkpoint", c["tiny"], "--threads", "1"],
                names=["out.png"], protect=[lab, out])


def t_out_below_file(tmp: Path, c) -> Spec:  # unwritable output folder, also for root
    lab = _label(tmp / "in" / "a.png")
    (tmp / "notes.txt").write_text("a regular file\n")
    return dict(args=["translate", lab, "-o", tmp / "notes.txt" / "out", "--checkpoint", c["tiny"], "--threads", "1"],
                names=["notes.txt"], protect=[lab, tmp / "notes.txt"])


def t_out_readonly(tmp: Path, c) -> Spec:
    lab = _label(tmp / "in" / "a.png")
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return dict(args=["translate", lab, "-o", ro, "--checkpoint", c["tiny"], "--threads", "1"],
                names=[str(ro), "Permission denied"], protect=[lab, ro], drop_dac=True)


def t_jpeg_label(tmp: Path, c) -> Spec:
    f = tmp / "in" / "labels.jpg"
    f.parent.mkdir()
    Image.fromarray(np.full((12, 20), 7, np.uint8)).save(f, "JPEG")
    return dict(args=["translate", f, "-o", tmp / "out", "--checkpoint", c["tiny"], "--threads", "1"],
                names=["labels.jpg", "JPEG"], protect=[tmp / "in"], absent=[tmp / "out"])


def t_ids_exceed_classes(tmp: Path, c) -> Spec:
    lab = _label(tmp / "in" / "big_ids.png", value=200)
    return dict(args=["translate", lab, "-o", tmp / "out", "--checkpoint", c["tiny"], "--threads", "1"],
                names=["big_ids.png", "200"], protect=[tmp / "in"], absent=[tmp / "out"])


def t_denoiser_ckpt(tmp: Path, c) -> Spec:
    lab = _label(tmp / "in" / "a.png")
    return dict(args=["translate", lab, "-o", tmp / "out", "--checkpoint", c["dncnn"], "--threads", "1"],
                names=[c["dncnn"].name, "denois"], protect=[tmp / "in", c["dncnn"]], absent=[tmp / "out"])


def t_nan_ckpt(tmp: Path, c) -> Spec:
    lab = _label(tmp / "in" / "a.png")
    return dict(args=["translate", lab, "-o", tmp / "out", "--checkpoint", c["nan"], "--threads", "1"],
                names=["nan.safetensors", "non-finite"], protect=[tmp / "in", c["nan"]], absent=[tmp / "out"])


def t_unknown_model(tmp: Path, c) -> Spec:
    lab = _label(tmp / "in" / "a.png")
    return dict(args=["translate", lab, "-o", tmp / "out", "--checkpoint", c["unknown"], "--threads", "1"],
                names=["unknown.safetensors", "nosuchnet"], protect=[tmp / "in", c["unknown"]], absent=[tmp / "out"])


def t_huge_label(tmp: Path, c) -> Spec:  # 9000 x 9000 > the default limit of 8192 x 8192 (header only)
    lab = _png_claiming(tmp / "in" / "huge.png", 9000, 9000)
    return dict(args=["translate", lab, "-o", tmp / "out", "--checkpoint", c["tiny"], "--threads", "1"],
                names=["huge.png", "too large"], protect=[tmp / "in"], absent=[tmp / "out"])


def t_huge_label_env_limit(tmp: Path, c) -> Spec:  # ASAPNET_MAX_PIXELS lowers the limit
    lab = _label(tmp / "in" / "wide.png", size=(40, 60))
    return dict(args=["translate", lab, "-o", tmp / "out", "--checkpoint", c["tiny"], "--threads", "1"],
                env={"ASAPNET_MAX_PIXELS": "1000"}, names=["wide.png", "too large", "2,400"],
                protect=[tmp / "in"], absent=[tmp / "out"])


def t_instance_dir_is_label_dir(tmp: Path, c) -> Spec:
    lab = _label(tmp / "in" / "a.png")
    return dict(args=["translate", lab, "-o", tmp / "out", "--checkpoint", c["tiny_inst"], "--instance-dir",
                      tmp / "in", "--threads", "1"],
                names=["a.png", "instance"], protect=[tmp / "in"], absent=[tmp / "out"])


def t_out_is_input_folder(tmp: Path, c) -> Spec:
    lab = _label(tmp / "in" / "a.png")
    return dict(args=["translate", lab, "-o", tmp / "in", "--checkpoint", c["tiny"], "--threads", "1"],
                names=["a.png", "overwrite"], protect=[tmp / "in"])


def t_skip_corrupt(tmp: Path, c) -> Spec:
    good, bad = _label(tmp / "in" / "a.png"), _corrupt(tmp / "in" / "b.png")
    return dict(args=["translate", good, bad, "-o", tmp / "out", "--checkpoint", c["tiny"], "--on-error", "skip",
                      "--threads", "1"],
                rc=1, names=["b.png", "cannot read"], protect=[tmp / "in"], written=[tmp / "out" / "a.png"],
                absent=[tmp / "out" / "b.png"])


def _restore_cases(cmd: str):
    """The same four cases for denoise (gray) and deblur (RGB), with tiny ASAP-Net checkpoints."""
    def ckpt(c):
        return ["--checkpoint", c[cmd], "--threads", "1"]

    def out_is_input_folder(tmp: Path, c) -> Spec:
        f = _photo(tmp / "in" / "a.png", gray=cmd == "denoise")
        return dict(args=[cmd, f, "-o", tmp / "in", *ckpt(c)], names=["a.png", "overwrite"], protect=[tmp / "in"])

    def same_stem(tmp: Path, c) -> Spec:  # denoise: x/img.png + y/img.png; deblur: x/img.png + x/img.jpg
        a = _photo(tmp / "x" / "img.png", gray=cmd == "denoise", seed=1)
        b = _photo(tmp / ("y" if cmd == "denoise" else "x") / ("img.png" if cmd == "denoise" else "img.jpg"),
                   gray=cmd == "denoise", seed=2)
        return dict(args=[cmd, a, b, "-o", tmp / "out", *ckpt(c)], names=[b.name, "same name"],
                    protect=[tmp / "x", tmp / "y"], absent=[tmp / "out"])

    def skip_corrupt(tmp: Path, c) -> Spec:
        good, bad = _photo(tmp / "in" / "a.png", gray=cmd == "denoise"), _corrupt(tmp / "in" / "b.png")
        return dict(args=[cmd, good, bad, "-o", tmp / "out", "--on-error", "skip", *ckpt(c)],
                    rc=1, names=["b.png", "cannot read"], protect=[tmp / "in"], written=[tmp / "out" / "a.png"],
                    absent=[tmp / "out" / "b.png"])

    def translator_ckpt(tmp: Path, c) -> Spec:
        f = _photo(tmp / "in" / "a.png", gray=cmd == "denoise")
        return dict(args=[cmd, f, "-o", tmp / "out", "--checkpoint", c["tiny"], "--threads", "1"],
                    names=["tiny.safetensors", "translat"], protect=[tmp / "in"], absent=[tmp / "out"])

    cases = out_is_input_folder, same_stem, skip_corrupt, translator_ckpt
    for f in cases:
        f.__name__ = f"{cmd[0] if cmd == 'denoise' else 'b'}_{f.__name__}"
    return cases


d_out_is_input_folder, d_same_stem, d_skip_corrupt, d_translator_ckpt = _restore_cases("denoise")
b_out_is_input_folder, b_same_stem, b_skip_corrupt, b_translator_ckpt = _restore_cases("deblur")


def d_sigma_nan(tmp: Path, c) -> Spec:
    f = _photo(tmp / "in" / "a.png", gray=True)
    return dict(args=["denoise", f, "-o", tmp / "out", "--sigma", "nan", "--checkpoint", c["denoise"]],
                names=["--sigma", "nan"], protect=[tmp / "in"], absent=[tmp / "out"])


def tr_holdout_negative(tmp: Path, c) -> Spec:
    return dict(args=["train", *c["train_data"], "--out", tmp / "run", "--holdout", "-1", *TRAIN_CHEAP],
                names=["--holdout", "-1"], absent=[tmp / "run"])


def tr_preset_nosuch(tmp: Path, c) -> Spec:
    args = ["train", *c["train_data"], "--out", tmp / "run", *TRAIN_CHEAP]
    args[args.index("tiny")] = "nosuch"
    return dict(args=args, names=["nosuch", "preset"], absent=[tmp / "run"])


def tr_num_classes_zero(tmp: Path, c) -> Spec:
    return dict(args=["train", *c["train_data"], "--out", tmp / "run", "--num-classes", "0", *TRAIN_CHEAP],
                names=["--num-classes", "0"], absent=[tmp / "run"])


def tr_no_loss(tmp: Path, c) -> Spec:  # --no-gan --no-vgg and the translate default --lambda-l1 0
    return dict(args=["train", *c["train_data"], "--out", tmp / "run", *TRAIN_CHEAP, "--lambda-l1", "0"],
                names=["--lambda-l1", "--no-gan", "--no-vgg"], absent=[tmp / "run"])


def tr_existing_run(tmp: Path, c) -> Spec:
    run = tmp / "run"
    shutil.copytree(c["run"], run)
    return dict(args=["train", *c["train_data"], "--out", run, *TRAIN_CHEAP], names=[str(run), "--resume"],
                protect=[run])


def tr_resume_other_preset(tmp: Path, c) -> Spec:
    run = tmp / "run"
    shutil.copytree(c["run"], run)
    args = ["train", *c["train_data"], "--out", run, "--resume", *TRAIN_CHEAP]
    args[args.index("tiny")] = "cityscapes-cpu"
    return dict(args=args, names=["state.safetensors"], protect=[run])


def tr_resume_other_param_upsampling(tmp: Path, c) -> Spec:  # same weight shapes, another generator
    run = tmp / "run"
    shutil.copytree(c["run"], run)
    return dict(args=["train", *c["train_data"], "--out", run, "--resume", "--param-upsampling", "bilinear",
                      *TRAIN_CHEAP], names=["state.safetensors", "param_upsampling"], protect=[run])


def tr_resume_other_hr_weight_scale(tmp: Path, c) -> Spec:  # same weight shapes, another generator
    run = tmp / "run"
    shutil.copytree(c["run"], run)
    return dict(args=["train", *c["train_data"], "--out", run, "--resume", "--hr-weight-scale", "none",
                      *TRAIN_CHEAP], names=["state.safetensors", "hr_weight_scale"], protect=[run])


def e_out_is_dir(tmp: Path, c) -> Spec:
    (tmp / "onnx").mkdir()
    (tmp / "onnx" / "keep.txt").write_text("keep\n")
    return dict(args=["export", "--checkpoint", c["tiny"], "-o", tmp / "onnx", "--no-verify", "--threads", "1"],
                names=[str(tmp / "onnx"), "directory"], protect=[tmp / "onnx"])


def e_opset_99(tmp: Path, c) -> Spec:
    return dict(args=["export", "--checkpoint", c["tiny"], "-o", tmp / "g.onnx", "--opset", "99", "--no-verify",
                      "--threads", "1"],
                names=["--opset", "99"], absent=[tmp / "g.onnx"])


def bench_device_tpu(tmp: Path, c) -> Spec:
    return dict(args=["bench", "--device", "tpu", "--models", "asap", "--sizes", "16x16", "--repeats", "1"],
                names=["--device", "tpu"])


CASES: List[Any] = [
    t_out_is_file, t_out_below_file,
    pytest.param(t_out_readonly, marks=pytest.mark.skipif(not READ_ONLY_WORKS, reason="root writes into a 0o555 "
                                                          "folder and setpriv cannot drop CAP_DAC_OVERRIDE here; "
                                                          "t_out_below_file covers an unwritable -o for root")),
    t_jpeg_label, t_ids_exceed_classes, t_denoiser_ckpt, t_nan_ckpt, t_unknown_model, t_huge_label,
    t_huge_label_env_limit, t_instance_dir_is_label_dir, t_out_is_input_folder,
    t_skip_corrupt,
    d_out_is_input_folder, d_same_stem, d_skip_corrupt,
    d_translator_ckpt, d_sigma_nan,
    b_out_is_input_folder, b_same_stem, b_skip_corrupt,
    b_translator_ckpt,
    tr_holdout_negative, tr_preset_nosuch, tr_num_classes_zero,
    tr_no_loss, tr_existing_run,
    tr_resume_other_preset,
    tr_resume_other_param_upsampling, tr_resume_other_hr_weight_scale,
    e_out_is_dir, e_opset_99, bench_device_tpu,
]


# ---------------------------------------------------------------------------------------------
# the one test
# ---------------------------------------------------------------------------------------------


def _snapshot(paths) -> Dict[str, Any]:
    """Bytes + mtime of every file, and the listing of every folder, under ``paths``."""
    snap: Dict[str, Any] = {}
    for p in map(Path, paths):
        for q in [p, *(sorted(p.rglob("*")) if p.is_dir() else [])]:
            if q.is_dir():
                snap[str(q)] = ("dir", sorted(x.name for x in q.iterdir()), q.stat().st_mtime_ns)
            elif q.is_file():
                snap[str(q)] = ("file", q.read_bytes(), q.stat().st_mtime_ns)
            else:
                snap[str(q)] = None
    return snap


def _run(args, env=None, cwd=None, drop_dac=False) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "ASAPNET_MAX_PIXELS"}
    full_env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env or {})})
    prefix = DROP_DAC if drop_dac and IS_ROOT else []
    return subprocess.run([*prefix, sys.executable, "-m", "asapnet", "-q", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=180)


#: subprocesses run at once (env MATRIX_WORKERS): each case spends most of its ~2 s importing torch
WORKERS = int(os.environ.get("MATRIX_WORKERS", "2"))


@pytest.fixture(scope="module")
def launched(request, ckpts, tmp_path_factory):
    """Start the selected cases' commands in the background, WORKERS at a time, as soon as the
    first case runs: case -> (work folder, spec, snapshot before, future of CompletedProcess).
    Every case has its own folder, and its files are built and snapshotted before anything runs."""
    selected = []
    for item in request.session.items:
        case = getattr(item, "callspec", None) and item.callspec.params.get("case")
        if item.originalname == "test_hostile_input" and case is not None and case not in selected:
            if not any(m.name == "skipif" and m.args and m.args[0] for m in item.iter_markers()):
                selected.append(case)
    jobs = {}
    pool = ThreadPoolExecutor(max_workers=WORKERS)
    for case in selected:
        work = tmp_path_factory.mktemp(case.__name__) / "w"
        work.mkdir()
        spec = case(work, ckpts)
        before = _snapshot(spec.get("protect", []))
        future = pool.submit(_run, spec["args"], spec.get("env"), work, spec.get("drop_dac", False))
        jobs[case] = (work, spec, before, future)
    yield jobs
    pool.shutdown(wait=True)


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__)
def test_hostile_input(case: Callable[[Path, Dict[str, Path]], Spec], launched):
    work, spec, before, future = launched[case]
    try:
        r = future.result()
    finally:
        for p in [work, *work.rglob("*")]:  # undo chmod so that pytest can clean up
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
    err, out = r.stderr.strip(), r.stdout.strip()
    where = f"rc={r.returncode}\nstderr:\n{r.stderr[-3000:]}\nstdout:\n{r.stdout[-1000:]}"
    print(where)  # shown with pytest -rP
    assert "Traceback" not in err + out, where
    assert r.returncode == spec.get("rc", 2), where
    lines = err.splitlines()
    assert len(lines) == 1, where
    if r.returncode == 2:
        assert lines[0].startswith(f"asapnet {spec['args'][0]}: error: "), where
    for name in spec["names"]:
        assert str(name) in lines[0], f"{name!r} not in the error line\n{where}"
    assert _snapshot(spec.get("protect", [])) == before, f"a protected file or folder changed\n{where}"
    for p in spec.get("absent", []):
        assert not Path(p).exists(), f"{p} was created\n{where}"
    for p in spec.get("written", []):
        assert Image.open(p).size[0] > 0, where
    leftovers = [str(p) for p in work.rglob("*.tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}\n{where}"


# ---------------------------------------------------------------------------------------------
# write_image: atomic output image writes
# ---------------------------------------------------------------------------------------------


def _leftovers(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("name,shape,mode", [("g.png", (5, 7), "L"), ("g1.png", (5, 7, 1), "L"),
                                             ("c.png", (5, 7, 3), "RGB"), ("c.JPG", (16, 16, 3), "RGB"),
                                             ("g.jpeg", (16, 16), "L")])
def test_write_image_writes_png_and_jpeg(tmp_path, name, shape, mode):
    arr = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = write_image(tmp_path / "new" / name, arr)  # the folder is created
    assert out == tmp_path / "new" / name and _leftovers(out.parent) == []
    with Image.open(out) as img:
        assert img.format == ("PNG" if name.endswith(".png") else "JPEG") and img.mode == mode
        if img.format == "PNG":
            assert np.array_equal(np.asarray(img), arr.reshape(shape[:2] if mode == "L" else shape))
        else:
            assert img.size == (shape[1], shape[0])
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_image_replaces_and_keeps_permissions(tmp_path):
    f = write_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    f.chmod(0o600)
    write_image(f, np.full((3, 2, 3), 200, np.uint8))
    assert np.asarray(Image.open(f)).shape == (3, 2, 3) and f.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


@pytest.mark.parametrize("bad,exc,match", [
    (np.zeros((4, 4), np.float32), TypeError, "uint8"),
    ([[0, 1], [2, 3]], TypeError, "uint8"),
    (np.zeros((4, 4, 4), np.uint8), ValueError, r"\(4, 4, 4\)"),
    (np.zeros((0, 4), np.uint8), ValueError, r"\(0, 4\)"),
    (np.zeros((2, 2, 2, 3), np.uint8), ValueError, "shape"),
])
def test_write_image_refuses_bad_arrays(tmp_path, bad, exc, match):
    with pytest.raises(exc, match=match):
        write_image(tmp_path / "x.png", bad)
    assert list(tmp_path.iterdir()) == []


def _old_file(folder: Path):
    old = write_image(folder / "out.png", np.full((4, 4), 9, np.uint8))
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    return old, old.read_bytes()


def test_write_image_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    old, data = _old_file(tmp_path)
    real_save = Image.Image.save

    def full_disk(self, fp, *a, **k):
        real_save(self, fp, *a, **k)  # bytes reach the temporary file, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(DataError) as e:
        write_image(old, np.zeros((64, 64, 3), np.uint8))
    assert str(e.value) == f"{old}: cannot write image: No space left on device"
    assert old.read_bytes() == data and old.stat().st_mtime_ns == 1_000_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_write_image_crash_mid_write_leaves_no_partial_file(tmp_path, monkeypatch):
    old, data = _old_file(tmp_path)

    def crash(self, fp, *a, **k):
        fp.write(b"\x89PNG\r\n\x1a\n partial")
        raise KeyboardInterrupt  # not an OSError: propagates as is, the temporary file is still removed

    monkeypatch.setattr(Image.Image, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "new.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(KeyboardInterrupt):
        write_image(old, np.zeros((4, 4), np.uint8))
    assert old.read_bytes() == data and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_write_image_folder_vanishes(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    real_save = Image.Image.save

    def save_then_vanish(self, fp, *a, **k):
        real_save(self, fp, *a, **k)
        shutil.rmtree(folder)  # e.g. removed by another process, or an unmounted drive

    monkeypatch.setattr(Image.Image, "save", save_then_vanish)
    with pytest.raises(DataError, match=rf"^{folder / 'x.png'}: cannot write image: No such file or directory$"):
        write_image(folder / "x.png", np.zeros((4, 4), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_write_image_unwritable_destinations(tmp_path):
    (tmp_path / "notes.txt").write_text("x\n")
    (tmp_path / "dir.png").mkdir()
    img = np.zeros((4, 4), np.uint8)
    for path, reason in [(tmp_path / "notes.txt" / "a.png", "is a regular file"),
                         (tmp_path / "notes.txt" / "sub" / "a.png", "is a regular file"),
                         (tmp_path / "dir.png", "Is a directory"),
                         (tmp_path / "a.gif", "unsupported suffix '.gif'")]:
        with pytest.raises(DataError) as e:
            write_image(path, img)
        assert str(e.value).startswith(f"{path}: cannot write image: ") and reason in str(e.value)
        assert "\n" not in str(e.value)
    assert (tmp_path / "notes.txt").read_text() == "x\n" and list((tmp_path / "dir.png").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "notes.txt"]
