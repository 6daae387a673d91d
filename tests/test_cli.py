import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from asapnet.cli import main
from asapnet.losses import PretrainedWeightsUnavailable, VGGPerceptualLoss
from asapnet.tasks.translate.run import default_checkpoint

from conftest import EXAMPLES

EXAMPLE = EXAMPLES / "frankfurt_000000_000576_gtFine_labelIds.png"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("run")
    rc = main(["train", "--data", str(data_root / "cityscapes_samples"), "--preset", "tiny", "--load-size", "64x128",
               "--crop", "32x64", "--steps", "2", "--ndf", "8", "--n-layers-d", "3", "--no-vgg", "--holdout", "1",
               "--out", str(out), "--quiet", "--checkpoint-every", "1"])
    assert rc == 0
    return out / "generator.safetensors"


def test_cli_train_then_translate_full_resolution(tiny_checkpoint, tmp_path, capsys):
    rc = main(["translate", str(EXAMPLE), "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint)])
    assert rc == 0
    out = tmp_path / "out" / "frankfurt_000000_000576.png"
    im = Image.open(out)
    assert im.size == (2048, 1024) and im.mode == "RGB"
    assert "frankfurt_000000_000576_gtFine_labelIds.png ->" in capsys.readouterr().err  # progress: stderr
    assert np.asarray(im).std() > 0


def test_translate_missing_instance_map_uses_label_edges_and_skip(tiny_checkpoint, tmp_path, capsys):
    lonely = tmp_path / "in" / "x_gtFine_labelIds.png"
    lonely.parent.mkdir()
    ids = np.zeros((40, 60), np.uint8)
    ids[:, 30:] = 7
    Image.fromarray(ids).save(lonely)
    rc = main(["translate", str(lonely), "-o", str(tmp_path / "o"), "--checkpoint", str(tiny_checkpoint)])
    err = capsys.readouterr().err
    assert rc == 0 and err.count("no instance map found; using the label boundaries") == 1
    assert Image.open(tmp_path / "o" / "x.png").size == (60, 40)
    bad = tmp_path / "in" / "y_gtFine_labelIds.png"
    bad.write_bytes(b"not a png")
    rc = main(["translate", str(bad), str(EXAMPLE), "-o", str(tmp_path / "o2"), "--checkpoint", str(tiny_checkpoint),
               "--on-error", "skip"])
    assert rc == 1 and (tmp_path / "o2" / "frankfurt_000000_000576.png").is_file()  # 1: something was skipped
    assert "skipped" in capsys.readouterr().err


def test_translate_nonexistent_input_is_one_line_error(tiny_checkpoint, tmp_path):
    r = subprocess.run([sys.executable, "-m", "asapnet", "translate", str(tmp_path / "nope.png"), "-o", str(tmp_path),
                        "--checkpoint", str(tiny_checkpoint)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "nope.png: file not found" in r.stderr and "Traceback" not in r.stderr


def test_shipped_default_model_translates_example(tmp_path):
    assert default_checkpoint().is_file(), "the default Cityscapes model must ship inside the package"
    assert default_checkpoint().stat().st_size <= 20e6
    rc = main(["translate", str(EXAMPLE), "-o", str(tmp_path)])
    assert rc == 0
    assert Image.open(tmp_path / "frankfurt_000000_000576.png").size == (2048, 1024)


def test_vgg_loss_offline_gives_clear_error(monkeypatch, tmp_path):
    def no_net(*a, **k):
        raise OSError("network unreachable")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_net)
    with pytest.raises(PretrainedWeightsUnavailable, match="--no-vgg"):
        VGGPerceptualLoss()


def test_vgg_loss_with_injected_features():
    from torchvision.models import vgg19
    loss = VGGPerceptualLoss(features=vgg19(weights=None).features)
    a = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(a, a).item() == 0
    assert loss(a, -a).item() > 0


def test_every_command_has_its_function():
    """Each lazily imported command names a module that defines ``cmd_<command>`` (and its options class)."""
    import importlib

    from asapnet.cli import commands

    for command, (module, options) in commands.COMMAND_MODULES.items():
        assert callable(commands.command_function(command)), command
        if options is not None:
            config = importlib.import_module(f"asapnet.{module.rpartition('.')[0]}.config")
            assert hasattr(config, options), (command, options)
