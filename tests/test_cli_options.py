"""The command line's shared options and plumbing: ``--device`` on every command that runs a model,
``--precision`` (translate, train), log messages on stderr with ``-v`` / ``-q``, progress bars, and
parsers that import no torch.

There is no GPU here: the device plumbing is checked on PyTorch's ``meta`` device, where every
tensor has a shape and no data. A model moved there runs its forward pass (shapes only) when its
inputs were moved there too (a CPU input to a meta model fails at once), and the first attempt to
bring an output back to the CPU for saving or scoring raises "Cannot copy out of meta tensor": so
that error, after a forward pass on meta, shows the model, the inputs and the outputs all take the
path they would take on a GPU. CUDA itself (and fp16) stays unmeasured here.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from asapnet import cli
from asapnet.cli import parsers, task_args
from asapnet.options import check_precision
from asapnet.tasks.translate.run import cmd_translate
from asapnet.checkpoint import load_generator, save_generator
from asapnet.cli import build_parser, main
from asapnet.config import DiscriminatorConfig, TrainConfig, asap_preset
from asapnet.console import cli_logging, progress
from asapnet.models import create_model
from asapnet.inference.optimize import CastInference
from asapnet.training.trainer import Trainer

META_COPY = "Cannot copy out of meta tensor"


# ---------------------------------------------------------------------------------------------
# fixtures: tiny checkpoints and small files
# ---------------------------------------------------------------------------------------------


def _ids(h=40, w=60) -> np.ndarray:
    ids = np.zeros((h, w), np.uint8)
    ids[:, w // 2:] = 7
    ids[h // 4: h // 2, w // 4: 3 * w // 4] = 26
    return ids


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny translator (35 classes; one trained at 32x48), denoiser and deblurrer checkpoints, a
    label map, a gray photo, an RGB photo."""
    d = tmp_path_factory.mktemp("opts")
    torch.manual_seed(0)
    cfg = asap_preset("tiny", in_channels=35)
    asap = create_model("asap", cfg=cfg)
    save_generator(d / "asap.safetensors", asap, "asap", cfg.to_dict(), {"num_classes": 35, "use_instance": False})
    save_generator(d / "asap_32x48.safetensors", asap, "asap", cfg.to_dict(),
                   {"num_classes": 35, "use_instance": False, "train_size": [32, 48]})
    dn_cfg = {"depth": 3, "channels": 4, "in_channels": 1}
    save_generator(d / "dncnn.safetensors", create_model("dncnn", **dn_cfg), "dncnn", dn_cfg,
                   {"task": "denoise"})
    db_cfg = {"ngf": 4, "n_blocks": 1, "dropout": 0.0, "in_channels": 3, "out_channels": 3}
    save_generator(d / "deblurgan.safetensors", create_model("deblurgan", **db_cfg), "deblurgan", db_cfg,
                   {"task": "deblur"})
    Image.fromarray(_ids()).save(d / "x_gtFine_labelIds.png")
    Image.fromarray(_ids(64, 96)).save(d / "big_gtFine_labelIds.png")
    rng = np.random.default_rng(0)
    (d / "gray").mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 32), dtype=np.uint8)).save(d / "gray" / "g.png")
    (d / "rgb").mkdir()
    Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(d / "rgb" / "c.png")
    return d


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# 1. --device on every command that runs a model
# ---------------------------------------------------------------------------------------------

MODEL_COMMANDS = [
    ["translate", "x.png", "-o", "o"],
    ["evaluate", "--task", "translate"],
    ["evaluate", "--task", "denoise"],
    ["evaluate", "--task", "deblur"],
    ["denoise", "x.png", "-o", "o"],
    ["deblur", "x.png", "-o", "o", "--checkpoint", "c.safetensors"],
    ["demo"],
    ["bench"],
    ["train", "--task", "translate"],
    ["train", "--task", "denoise"],
    ["train", "--task", "deblur"],
    ["train", "--task", "segment"],
]


@pytest.mark.parametrize("args", MODEL_COMMANDS, ids=[" ".join(a[:3]) for a in MODEL_COMMANDS])
def test_model_commands_accept_device_cpu_and_refuse_tpu(args, capsys):
    assert build_parser().parse_args([*args, "--device", "cpu"]).device == "cpu"
    assert build_parser().parse_args(args).device == "cpu"  # the default
    with pytest.raises(SystemExit) as e:
        main([*args, "--device", "tpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"asapnet {args[0]}: error: argument --device: must be cpu, cuda, cuda:N or mps"), err


def test_stand_alone_evaluate_builders_take_device_too():
    for add in (task_args.add_evaluate_translate_args, task_args.add_evaluate_deblur_args):
        p = argparse.ArgumentParser()
        add(p)
        assert p.parse_args(["--checkpoint", "c", "--device", "cpu"]).device == "cpu"
    p = argparse.ArgumentParser()
    task_args.add_evaluate_denoise_args(p)
    assert p.parse_args(["--checkpoint", "c", "--data", "d", "--device", "cpu"]).device == "cpu"


def test_export_has_no_device_option():
    """export traces on the CPU and verifies with onnxruntime's CPU provider (see parsers.py)."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["export", "-o", "m.onnx", "--device", "cpu"])


def test_translate_runs_model_inputs_and_outputs_through_the_device(files, tmp_path):
    a = build_parser().parse_args(["translate", str(files / "x_gtFine_labelIds.png"), "-o", str(tmp_path / "o"),
                                   "--checkpoint", str(files / "asap.safetensors")])
    a.device = "meta"  # argparse only takes real devices; the command itself takes any
    with pytest.raises(NotImplementedError, match=META_COPY):  # the forward ran on meta, the copy back failed
        cmd_translate(a)
    assert not (tmp_path / "o").exists()


class Spy(nn.Module):
    """Records the device and dtype of every input; returns zeros on the input's device."""

    def __init__(self, out_channels: int = 3):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.out_channels = out_channels
        self.seen = []

    def forward(self, x):
        self.seen.append((x.device.type, x.dtype))
        return (x[:, :1] * 0 + self.w.to(x.dtype)).expand(-1, self.out_channels, -1, -1)


def test_translate_files_moves_inputs_and_casts_them_for_a_low_precision_model(files, tmp_path):
    from asapnet.tasks.translate.run import translate_files

    spy = Spy().to("meta")
    with pytest.raises(NotImplementedError, match=META_COPY):
        translate_files(spy, {"num_classes": 35}, [files / "x_gtFine_labelIds.png"], tmp_path / "m")
    assert spy.seen == [("meta", torch.float32)]  # the device of the model's weights by default
    spy = Spy()
    done = translate_files(CastInference(spy, torch.bfloat16), {"num_classes": 35},
                           [files / "x_gtFine_labelIds.png"], tmp_path / "c", device="cpu")
    assert spy.seen == [("cpu", torch.bfloat16)] and len(done) == 1
    assert Image.open(done[0][0]).size == (60, 40)


def test_denoise_deblur_and_their_evaluations_use_the_device(files, tmp_path):
    from asapnet.tasks.deblur.config import DeblurEvaluateOptions, DeblurRunOptions
    from asapnet.tasks.deblur.run import cmd_deblur
    from asapnet.tasks.deblur.evaluate import cmd_evaluate_deblur
    from asapnet.tasks.denoise.config import DenoiseEvaluateOptions, DenoiseRunOptions
    from asapnet.tasks.denoise.run import cmd_denoise
    from asapnet.tasks.denoise.evaluate import cmd_evaluate_denoise

    with pytest.raises(NotImplementedError, match=META_COPY):
        cmd_denoise(DenoiseRunOptions(inputs=[str(files / "gray" / "g.png")], out=str(tmp_path / "d"),
                                      checkpoint=str(files / "dncnn.safetensors"), sigma=25.0, seed=0, device="meta"))
    with pytest.raises(NotImplementedError, match=META_COPY):
        cmd_evaluate_denoise(DenoiseEvaluateOptions(checkpoint=str(files / "dncnn.safetensors"),
                                                    data=[str(files / "gray")], sigma=[25.0], json=True, device="meta"))
    with pytest.raises(NotImplementedError, match=META_COPY):
        cmd_deblur(DeblurRunOptions(inputs=[str(files / "rgb" / "c.png")], out=str(tmp_path / "b"),
                                    checkpoint=str(files / "deblurgan.safetensors"), device="meta"))
    with pytest.raises(NotImplementedError, match=META_COPY):
        cmd_evaluate_deblur(DeblurEvaluateOptions(checkpoint=[str(files / "deblurgan.safetensors")],
                                                  data=[str(files / "rgb")], json=True, device="meta"))
    assert not (tmp_path / "d").exists() and not (tmp_path / "b").exists()


def test_denoise_on_the_cpu_device_writes_its_output(files, tmp_path, capsys):
    assert main(["denoise", str(files / "gray" / "g.png"), "-o", str(tmp_path), "--checkpoint",
                 str(files / "dncnn.safetensors"), "--sigma", "25", "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "g.png").size == (32, 24)
    captured = capsys.readouterr()
    assert captured.out == "" and "PSNR" in captured.err  # one log line per file, on stderr


def test_translation_evaluation_and_demo_use_the_device(files, tmp_path):
    from asapnet.data.datasets import Pair
    from asapnet.apps.demo import DemoApp, DemoConfig
    from asapnet.tasks.translate.evaluate import evaluate_translation
    from asapnet.tasks.translate.scoring import generate

    lab = files / "x_gtFine_labelIds.png"
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "x.png")
    model, meta = load_generator(files / "asap.safetensors")
    with pytest.raises(NotImplementedError, match=META_COPY):
        generate(model.to("meta"), meta, [Pair("x", lab, None, tmp_path / "x.png")], None)
    for split in ("train_label", "train_img"):
        (tmp_path / "cs" / split).mkdir(parents=True)
    Image.fromarray(_ids()).save(tmp_path / "cs" / "train_label" / "a.png")
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "cs" / "train_img" / "a.png")
    with pytest.raises(NotImplementedError, match=META_COPY):
        evaluate_translation(files / "asap.safetensors", tmp_path / "cs", ["psnr"], which="all", dataset="cityscapes",
                             device="meta")
    # and on the CPU the same call scores
    r = evaluate_translation(files / "asap.safetensors", tmp_path / "cs", ["psnr"], which="all",
                             dataset="cityscapes", device="cpu")
    assert r[0]["metric"] == "psnr" and r[0]["images"] == 1
    model, meta = load_generator(files / "asap.safetensors")
    app = DemoApp(model, meta, DemoConfig(), device="meta")
    assert next(app.model.parameters()).device.type == "meta"
    with pytest.raises(NotImplementedError, match=META_COPY):
        app.translate_files(lab)


def _tiny_gan_trainer(tmp_path, **cfg) -> Trainer:
    torch.manual_seed(0)
    g = create_model("asap", cfg=asap_preset("tiny", in_channels=3, out_channels=3))
    d = DiscriminatorConfig(in_channels=6, ndf=4, n_layers=1, num_scales=1)
    base = dict(steps=1, batch_size=1, crop=None, lambda_vgg=0.0, lambda_l1=1.0, checkpoint_every=1,
                sample_every=1, log_every=1)
    return Trainer(g, "asap", {}, d, TrainConfig(**{**base, **cfg}), tmp_path)


def test_trainer_builds_generator_and_discriminator_on_the_device(tmp_path):
    t = _tiny_gan_trainer(tmp_path, device="meta")
    assert {p.device.type for p in t.G.parameters()} == {"meta"}
    assert {p.device.type for p in t.D.parameters()} == {"meta"}


@pytest.mark.parametrize("task", ["denoise", "deblur"])
def test_denoise_and_deblur_training_get_device_and_precision(task, tmp_path, monkeypatch):
    """The command builds its TrainConfig from --device / --precision (training itself mocked)."""
    import importlib

    mod = importlib.import_module(f"asapnet.tasks.{task}.train")
    seen = {}

    def fake_train(model, name, mcfg, data, cfg, *rest, **kw):
        seen["cfg"] = cfg
        return argparse.Namespace(step=0)

    monkeypatch.setattr(mod, f"train_{'denoiser' if task == 'denoise' else 'deblur'}", fake_train)
    extra = ["--model", "dncnn", "--depth", "3"] if task == "denoise" else ["--model", "deblurgan", "--ngf", "4",
                                                                          "--n-blocks", "1"]
    a = build_parser().parse_args(["train", "--task", task, *extra, "--precision", "bf16", "--quiet",
                                   "--out", str(tmp_path / "run")])
    a.device = "meta"
    assert cli.cmd_train(a) == 0
    assert (seen["cfg"].device, seen["cfg"].precision) == ("meta", "bf16")


def test_segment_training_refuses_other_devices_and_precisions(tmp_path, capsys):
    assert main(["train", "--task", "segment", "--precision", "bf16", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fp32 only" in err[0]


# ---------------------------------------------------------------------------------------------
# 2. --precision
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["translate", "x.png", "-o", "o"], ["train"]], ids=["translate", "train"])
def test_precision_choices(args, capsys):
    for p in ("fp32", "bf16", "fp16"):
        assert build_parser().parse_args([*args, "--precision", p]).precision == p
    assert build_parser().parse_args(args).precision == "fp32"
    with pytest.raises(SystemExit) as e:
        main([*args, "--precision", "fp8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "argument --precision: invalid choice: 'fp8'" in err[0]


def test_check_precision():
    for p in ("fp32", "bf16"):
        for d in ("cpu", "cuda", "cuda:1", "mps"):
            check_precision(p, d, training=True)
    check_precision("fp16", "cuda:0", training=True)
    check_precision("fp16", "mps")  # inference: fine
    with pytest.raises(ValueError, match="fp16 training needs --device cuda"):
        check_precision("fp16", "mps", training=True)
    with pytest.raises(ValueError, match="on the CPU use --precision bf16"):
        check_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="fp32, bf16 or fp16"):
        check_precision("int8", "cpu")


@pytest.mark.parametrize("args", [["translate", "x.png", "-o", "OUT"], ["train", "--out", "OUT"],
                                  ["train", "--task", "denoise", "--out", "OUT"],
                                  ["train", "--task", "deblur", "--out", "OUT"]],
                         ids=["translate", "train", "train-denoise", "train-deblur"])
def test_fp16_on_the_cpu_is_one_clear_error(args, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main([a.replace("OUT", str(out)) for a in args] + ["--precision", "fp16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"asapnet {args[0]}: error: --precision fp16 needs --device cuda"), err
    assert not out.exists()


def test_trainer_refuses_fp16_on_the_cpu(tmp_path):
    with pytest.raises(ValueError, match="fp16 needs --device cuda"):
        _tiny_gan_trainer(tmp_path, precision="fp16")


def test_translate_bf16_is_close_to_fp32(files, tmp_path, capsys):
    """``--precision bf16`` runs the whole generator in bfloat16 (optimize_for_inference): the
    PNGs stay within about a gray level of fp32 on average (measured: ~0.3-0.4 mean, a few levels
    at most), also in ASAP-Net's pixelwise mode (a label map 2x the training size)."""
    import asapnet.tasks.translate.run as tr

    labels = [str(files / "x_gtFine_labelIds.png"), str(files / "big_gtFine_labelIds.png")]
    for ckpt, name in (("asap.safetensors", "native"), ("asap_32x48.safetensors", "pixelwise")):
        for prec in ("fp32", "bf16"):
            assert main(["translate", *labels, "-o", str(tmp_path / name / prec), "--checkpoint", str(files / ckpt),
                         "--precision", prec]) == 0
        for stem in ("x", "big"):
            a, b = _png(tmp_path / name / "fp32" / f"{stem}.png"), _png(tmp_path / name / "bf16" / f"{stem}.png")
            assert a.shape == b.shape and a.std() > 1
            assert np.abs(a - b).mean() < 1.5, (name, stem, np.abs(a - b).mean())
            assert np.abs(a - b).max() < 40
    assert "bf16" in capsys.readouterr().err  # the model line names the precision
    # the bf16 wrapper keeps ASAP-Net's pixelwise mode (run_generator gets the ASAP generator itself)
    seen = []
    real = tr.run_generator

    def spy(model, x, train_hw=None, mode="auto"):
        seen.append((type(model).__name__, x.dtype, tuple(train_hw or ())))
        return real(model, x, train_hw, mode)

    tr.run_generator, saved = spy, tr.run_generator
    try:
        assert main(["translate", labels[1], "-o", str(tmp_path / "spy"), "--checkpoint",
                     str(files / "asap_32x48.safetensors"), "--precision", "bf16"]) == 0
    finally:
        tr.run_generator = saved
    assert seen == [("ASAPGenerator", torch.bfloat16, (32, 48))]


def _step(trainer, channels=3, size=16):
    torch.manual_seed(1)
    batch = {"input": torch.rand(1, channels, size, size) * 2 - 1, "target": torch.rand(1, 3, size, size) * 2 - 1}
    return trainer.train_step(batch)


def test_bf16_training_runs_the_forward_passes_under_autocast(tmp_path):
    for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        t = _tiny_gan_trainer(tmp_path / prec, precision=prec)
        dtypes = []
        t.G.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
        t.D.register_forward_hook(lambda m, i, o: dtypes.append(o[-1][-1].dtype))
        before = [p.detach().clone() for p in t.G.parameters()]
        logs = _step(t)
        assert dtypes and set(dtypes) == {dtype}, (prec, dtypes)
        assert all(np.isfinite(v) for v in logs.values()) and {"D/hinge", "G/hinge", "G/l1"} <= set(logs)
        assert all(p.dtype == torch.float32 for p in t.G.parameters())  # weights stay float32
        assert any(not torch.equal(a, b) for a, b in zip(before, t.G.parameters()))  # and were updated
        assert t._last[1].dtype == torch.float32


def test_bf16_training_of_the_deblurring_gans(tmp_path):
    from asapnet.training.gan_variants import MSGTrainer, WGANGPConfig, WGANGPTrainer
    from asapnet.tasks.deblur.build import build_deblur_model

    cfg = dict(steps=1, batch_size=1, crop=None, lr_g=1e-3, lr_d=1e-3, lambda_vgg=0.0, lambda_l1=1.0,
               precision="bf16")
    torch.manual_seed(0)
    g, mcfg = build_deblur_model("deblurgan", ngf=4, n_blocks=1)
    t = WGANGPTrainer(g, "deblurgan", mcfg, TrainConfig(**cfg), WGANGPConfig(critic_iters=2, lambda_content=0.0, ndf=4,
                                                                              lambda_l1=1.0), tmp_path / "w")
    logs = _step(t, size=32)
    assert all(np.isfinite(v) for v in logs.values()) and "D/gp" in logs
    g, mcfg = build_deblur_model("msg_unet", ngf=4)
    t = MSGTrainer(g, "msg_unet", mcfg, TrainConfig(**{**cfg, "beta1": 0.0, "beta2": 0.9}), tmp_path / "m",
                   in_channels=3, ndf=4, n_layers=1)
    logs = _step(t, size=32)
    assert all(np.isfinite(v) for v in logs.values()) and "D/hinge" in logs


# ---------------------------------------------------------------------------------------------
# 3.-4. messages on stderr (-v / -q), results on stdout, progress bars
# ---------------------------------------------------------------------------------------------


def test_info_goes_to_stderr_and_quiet_silences_it(files, tmp_path, capsys):
    lab = str(files / "x_gtFine_labelIds.png")
    ckpt = str(files / "asap.safetensors")
    assert main(["translate", lab, "-o", str(tmp_path / "a"), "--checkpoint", ckpt]) == 0
    c = capsys.readouterr()
    assert c.out == ""
    assert c.err.splitlines()[0].startswith("model: ") and c.err.splitlines()[-1] == f"wrote 1 image(s) to {tmp_path / 'a'}"
    assert main(["-q", "translate", lab, "-o", str(tmp_path / "b"), "--checkpoint", ckpt]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["-v", "translate", lab, "-o", str(tmp_path / "c"), "--checkpoint", ckpt]) == 0
    assert "wrote 1 image(s)" in capsys.readouterr().err
    # an error under -q is still its one line
    assert main(["-q", "translate", str(tmp_path / "nope.png"), "-o", str(tmp_path / "d"), "--checkpoint", ckpt]) == 2
    c = capsys.readouterr()
    lines = c.err.strip().splitlines()
    assert c.out == "" and len(lines) == 1 and lines[0].startswith("asapnet translate: error: ") and "nope.png" in lines[0]
    with pytest.raises(SystemExit):
        main(["-q", "-v", "translate", lab, "-o", "x"])  # one or the other
    capsys.readouterr()
    # main leaves the logging configuration as it found it
    assert logging.getLogger("asapnet").handlers == [] and logging.getLogger("asapnet").level == logging.NOTSET


def test_results_stay_on_stdout(files, tmp_path, capsys):
    assert main(["evaluate", "--task", "denoise", "--checkpoint", str(files / "dncnn.safetensors"), "--data",
                 str(files / "gray"), "--sigma", "25", "--json"]) == 0
    c = capsys.readouterr()
    assert json.loads(c.out.strip())["sigma"] == 25.0
    assert main(["-q", "evaluate", "--task", "denoise", "--checkpoint", str(files / "dncnn.safetensors"), "--data",
                 str(files / "gray"), "--sigma", "25"]) == 0
    c = capsys.readouterr()
    assert "PSNR (dB)" in c.out and c.err == ""


def test_log_records_reach_caplog(files, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="asapnet")
    assert main(["translate", str(files / "x_gtFine_labelIds.png"), "-o", str(tmp_path), "--checkpoint",
                 str(files / "asap.safetensors")]) == 0
    assert any(r.name == "asapnet.tasks.translate.run" and r.getMessage().startswith("wrote 1 image(s)")
               for r in caplog.records)
    assert any(r.name == "asapnet.tasks.translate.run" and "x_gtFine_labelIds.png ->" in r.getMessage()
               for r in caplog.records)


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bars_are_off_with_quiet_or_without_a_terminal(monkeypatch):
    with cli_logging(logging.INFO):
        assert progress(range(3)).disable  # pytest's stderr is no terminal
        monkeypatch.setattr(sys, "stderr", _Tty())
        bar = progress(range(3), desc="x")
        assert not bar.disable and list(bar) == [0, 1, 2]
        assert "x:   0%" in sys.stderr.getvalue()  # drawn (then cleared: leave=False)
    with cli_logging(logging.WARNING):
        assert progress(range(3)).disable  # -q, even on a terminal
    monkeypatch.undo()


def test_log_lines_do_not_tear_an_open_bar(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Tty())
    with cli_logging(logging.INFO):
        bar = progress(total=2, desc="bar")
        bar.update(1)
        logging.getLogger("asapnet.test").info("hello")
        bar.close()
    text = sys.stderr.getvalue()
    monkeypatch.undo()
    assert "hello\n" in text and "bar:" in text


# ---------------------------------------------------------------------------------------------
# 5. fast start: the parser needs no torch
# ---------------------------------------------------------------------------------------------


def _modules_after(code: str) -> list:
    probe = code + "\nimport sys; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_importing_the_cli_and_parsing_import_neither_torch_nor_torchvision():
    assert _modules_after("import asapnet.cli") == []
    assert _modules_after("import asapnet.cli as c\nc.build_parser().parse_args(['translate', 'x.png', '-o', 'o', "
                          "'--precision', 'bf16'])") == []
    assert _modules_after("import asapnet.cli as c\ntry:\n    c.main(['--help'])\nexcept SystemExit:\n    pass") == []
    assert _modules_after("import asapnet.cli as c\ntry:\n    c.main(['train', '--help'])\nexcept SystemExit:\n"
                          "    pass") == []


def test_models_import_torchvision_ops_only_when_sadnet_runs():
    assert "torchvision" not in _modules_after("import asapnet.models")


def test_package_attributes_still_resolve():
    import asapnet

    assert asapnet.create_model is create_model and "asap" in asapnet.list_models()
    assert asapnet.TrainConfig is TrainConfig and callable(asapnet.Translator.from_pretrained)
    assert set(asapnet.__all__) <= set(dir(asapnet))
    with pytest.raises(AttributeError):
        asapnet.no_such_name


def test_parser_constants_are_the_modules_constants():
    from asapnet import options
    from asapnet.bench import benchmark as bench
    from asapnet.convert import options as convert
    from asapnet.inference import onnx as export
    from asapnet.tasks.segment import build as segment
    from asapnet.tasks.translate import evaluate

    assert options.CONVERT_DATASETS == convert.DATASETS and options.CONVERT_SOURCES == convert.SOURCES
    assert evaluate.DATASETS == options.EVALUATE_DATASETS and evaluate.ALL_METRICS == options.ALL_METRICS
    assert bench.VARIANTS == options.BENCH_VARIANTS and segment.ARCHITECTURES == options.SEGMENT_ARCHITECTURES
    assert export.DEFAULT_OPSET == options.ONNX_DEFAULT_OPSET
    # one definition: the parsers name the library's constants
    assert parsers.CONVERT_SOURCES is options.CONVERT_SOURCES and parsers.BENCH_VARIANTS is options.BENCH_VARIANTS
    assert task_args.SEGMENT_ARCHITECTURES is options.SEGMENT_ARCHITECTURES
