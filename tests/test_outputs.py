"""No command overwrites its inputs, an instance map, or another input's output."""
import hashlib
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from asapnet.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "cityscapes"


def _png(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 48), dtype=np.uint8)).save(path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line(capsys, cmd: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err and "Traceback" not in "\n".join(err), err
    assert err[-1].startswith(f"asapnet {cmd}: error:"), err
    return err[-1]


def test_denoise_into_the_input_folder_is_refused_and_the_input_kept(tmp_path, capsys):
    img = _png(tmp_path / "a" / "img.png", 0)
    before = _digest(img)
    assert main(["-q", "denoise", str(img), "-o", str(tmp_path / "a")]) == 2
    assert "would overwrite an input file" in _one_line(capsys, "denoise")
    assert _digest(img) == before
    # with synthetic noise the _noisy copy must not land on an input either
    noisy = _png(tmp_path / "b" / "img_noisy.png", 1)
    src = _png(tmp_path / "b" / "img2.png", 2)
    shutil.copy(src, tmp_path / "b" / "img.png")
    digests = {p: _digest(p) for p in (noisy, src)}
    assert main(["-q", "denoise", str(tmp_path / "b" / "img.png"), str(noisy), "--sigma", "25",
                 "-o", str(tmp_path / "b")]) == 2
    _one_line(capsys, "denoise")
    assert all(_digest(p) == d for p, d in digests.items())


def test_two_inputs_with_one_name_are_refused_before_anything_is_written(tmp_path, capsys):
    a, b = _png(tmp_path / "a" / "img.png", 0), _png(tmp_path / "b" / "img.png", 1)
    out = tmp_path / "out"
    assert main(["-q", "denoise", str(a), str(b), "-o", str(out)]) == 2
    assert "two inputs with the same name" in _one_line(capsys, "denoise")
    assert not out.exists() or not any(out.iterdir())


def test_translate_never_writes_over_an_instance_map(tmp_path, capsys):
    from asapnet.checkpoint import save_generator
    from asapnet.models import create_model

    g = create_model("asap", preset="tiny", in_channels=36, lr_only_channels=1)
    ckpt = tmp_path / "g.safetensors"
    save_generator(ckpt, g, "asap", g.cfg.to_dict(), {"num_classes": 35, "use_instance": True})
    labels, inst = tmp_path / "labels", tmp_path / "inst"
    labels.mkdir(), inst.mkdir()
    lab = Image.open(EXAMPLES / "frankfurt_000000_000576_gtFine_labelIds.png").resize((64, 32), Image.NEAREST)
    lab.save(labels / "x_gtFine_labelIds.png")
    ins = Image.open(EXAMPLES / "frankfurt_000000_000576_gtFine_instanceIds.png").resize((64, 32), Image.NEAREST)
    ins.save(inst / "x.png")  # the output name of x_gtFine_labelIds.png is x.png
    before = _digest(inst / "x.png")
    rc = main(["-q", "translate", str(labels / "x_gtFine_labelIds.png"), "--instance-dir", str(inst),
               "-o", str(inst), "--checkpoint", str(ckpt)])
    assert rc == 2 and "would overwrite an input file" in _one_line(capsys, "translate")
    assert _digest(inst / "x.png") == before
