"""Denoising (issue 4): noise model, metrics, deterministic test noise, training and evaluation
on the real BSD images of ``<data-root>/denoise``."""
from __future__ import annotations

import json
import math
import os
import time

import pytest
import torch

from asapnet.checkpoint import load_generator, save_generator
from asapnet.config import TrainConfig
from asapnet.data.datasets import data_root
from asapnet.data.denoise import (DenoisePatchDataset, NoisyTestDataset, add_noise, augment8, deterministic_noisy,
                                  noise_seed, read_gray)
from asapnet.tasks.denoise.config import DenoiseDataConfig
from asapnet.tasks.denoise.evaluate import evaluate_denoiser, measure
from asapnet.tasks.denoise.train import lr_at, train_denoiser
from asapnet.tasks.denoise.build import build_denoiser
from asapnet.models import create_model
from asapnet.denoise import main

torch.set_num_threads(1)

DENOISE = data_root() / "denoise"
needs_data = pytest.mark.skipif(not (DENOISE / "Train400").is_dir() or not (DENOISE / "BSD68").is_dir(),
                                reason=f"denoising data not found under {DENOISE} (set $ASAPNET_DATA)")


# -- noise model ------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [15.0, 25.0, 50.0])
def test_awgn_statistics_on_01_scale(sigma):
    clean = torch.full((1, 512, 512), 0.5)
    noisy = add_noise(clean, sigma, torch.Generator().manual_seed(1))
    n = noisy - clean
    std = sigma / 255.0
    assert abs(n.mean().item()) < 4 * std / math.sqrt(n.numel())  # mean ~ 0
    assert n.std().item() == pytest.approx(std, rel=0.01)  # std ~ sigma / 255


def test_noise_is_not_clipped():
    noisy = add_noise(torch.zeros(1, 64, 64), 50.0, torch.Generator().manual_seed(0))
    assert noisy.min() < 0 and noisy.max() > 0


def test_negative_sigma_raises():
    with pytest.raises(ValueError, match="sigma"):
        add_noise(torch.zeros(1, 4, 4), -1.0)


def test_augment8_gives_eight_distinct_transforms():
    x = torch.arange(9.0).reshape(1, 3, 3)
    outs = {tuple(augment8(x, m).flatten().tolist()) for m in range(8)}
    assert len(outs) == 8
    assert torch.equal(augment8(x, 0), x)


# -- metrics ----------------------------------------------------------------------------------


def test_psnr_of_a_constant_offset():
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(10, 240, (1, 64, 80), generator=g).float() / 255
    psnr, ssim = measure(clean + 5 / 255, clean)  # MSE = 25 on the 0-255 scale
    assert psnr == pytest.approx(10 * math.log10(255 ** 2 / 25), abs=1e-3)  # 34.15 dB
    assert 0.9 < ssim < 1.0
    assert measure(clean, clean)[1] == pytest.approx(1.0)


def test_output_is_clipped_before_measuring():
    clean = torch.ones(1, 32, 32)
    psnr_clip, _ = measure(clean + 0.5, clean)  # 1.5 is clipped to 1.0: a perfect image
    assert math.isinf(psnr_clip) or psnr_clip > 90


# -- deterministic test noise -----------------------------------------------------------------


@needs_data
def test_test_noise_is_deterministic_per_name_sigma_seed():
    files = sorted((DENOISE / "Set12").glob("*.png"))[:2]
    a, b = NoisyTestDataset(None, 25, seed=0, files=files), NoisyTestDataset(None, 25, seed=0, files=files)
    assert torch.equal(a[0]["input"], b[0]["input"])
    assert a[0]["target"].shape == (1, 256, 256) and 0 <= a[0]["target"].min() and a[0]["target"].max() <= 1
    other_seed = NoisyTestDataset(None, 25, seed=1, files=files)[0]["input"]
    assert not torch.equal(a[0]["input"], other_seed)
    other_sigma = NoisyTestDataset(None, 15, seed=0, files=files)[0]["input"]
    assert not torch.equal(a[0]["input"], other_sigma)
    # the noise depends on the image name, not on its position or folder
    clean = read_gray(files[0])
    assert torch.equal(deterministic_noisy(clean, files[0].stem, 25, 0), a[0]["input"])
    assert noise_seed("01", 25, 0) != noise_seed("02", 25, 0)
    n = a[0]["input"] - a[0]["target"]
    assert n.std().item() == pytest.approx(25 / 255, rel=0.02)


# -- training data ----------------------------------------------------------------------------


@needs_data
def test_patch_dataset_on_train400():
    ds = DenoisePatchDataset(DENOISE / "Train400", patch_size=40, sigma=25.0, patches_per_image=2)
    assert len(ds) == 800
    item = ds[3]
    assert item["input"].shape == item["target"].shape == (1, 40, 40)
    assert item["sigma"] == 25.0 and 0 <= item["target"].min() and item["target"].max() <= 1
    items = [ds[i] for i in range(32)]
    noise = torch.stack([it["input"] - it["target"] for it in items])
    assert noise.std().item() == pytest.approx(25 / 255, rel=0.05)
    blind = DenoisePatchDataset(DENOISE / "Train400", patch_size=48, sigma=None, patches_per_image=1)
    sigmas = [blind[i]["sigma"] for i in range(50)]
    assert all(10 <= s <= 55 for s in sigmas) and len(set(sigmas)) == 50


# -- models -----------------------------------------------------------------------------------


def test_dncnn_variants_and_residual_learning():
    s = create_model("dncnn")
    b = create_model("dncnn", depth=20)
    convs = lambda m: sum(isinstance(x, torch.nn.Conv2d) for x in m.modules())  # noqa: E731
    assert convs(s) == 17 and convs(b) == 20
    s.eval()
    x = torch.rand(1, 1, 23, 31)
    with torch.no_grad():
        assert torch.allclose(s(x), x - s.noise(x))
    with pytest.raises(ValueError, match="expects"):
        s(torch.rand(1, 3, 8, 8))


def test_asap_denoise_preset_fits_the_size_budget():
    model, cfg = build_denoiser("asap", "denoise-gray")
    assert cfg["in_channels"] == cfg["out_channels"] == 1 and cfg["residual"] and cfg["output_activation"] == "none"
    assert sum(p.numel() for p in model.parameters()) * 4 <= 20e6  # <= 20 MB of float32
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 30, 41)).shape == (1, 1, 30, 41)


def test_asap_denoiser_starts_near_identity_with_pixelwise_residual():
    torch.manual_seed(0)
    model, _ = build_denoiser("asap", "denoise-gray")
    model.eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        r = model(x) - x
    assert r.abs().mean() < 0.02  # starts close to the identity (residual output)
    assert r.std() > 1e-3  # ... with a residual that depends on the pixel, not one constant per tile


def test_lr_schedule_holds_then_decays():
    assert lr_at(0, 100, 1e-3) == lr_at(50, 100, 1e-3) == 1e-3
    assert lr_at(75, 100, 1e-3) < 1e-3
    assert lr_at(100, 100, 1e-3) == pytest.approx(5e-5)


# -- training and evaluation on real files ----------------------------------------------------


@needs_data
def test_one_training_step_on_train400_changes_weights_and_resumes(tmp_path):
    model, mcfg = build_denoiser("dncnn", depth=4, channels=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = DenoiseDataConfig(sigma=25.0, patch_size=40, patches_per_image=1, val_images=1)
    cfg = TrainConfig(steps=1, batch_size=4, crop=None, lr_g=1e-3, beta1=0.9, beta2=0.999, lambda_vgg=0.0,
                      lambda_l2=1.0, gan=False, checkpoint_every=1, sample_every=1, num_threads=1)
    t0 = time.time()
    trainer = train_denoiser(model, "dncnn", mcfg, data, cfg, tmp_path, resume=True, progress=False)
    observed = time.time() - t0
    assert trainer.step == 1
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert "body.0.weight" in changed and f"body.{len(model.body) - 1}.weight" in changed
    assert (tmp_path / "generator.safetensors").is_file() and (tmp_path / "samples" / "step_000001.png").is_file()
    val = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert 10 < val["val/psnr"] < 40
    loaded, meta = load_generator(tmp_path / "generator.safetensors")
    assert meta["model"] == "dncnn" and meta["sigma"] == 25.0 and meta["value_range"] == "0,1"
    # wall time written by train() itself: within the time this call was observed to take (not a speed bound)
    assert 0 < meta["train_seconds_last_call"] <= observed + 1e-3
    # resume: a second run to 2 steps continues from step 1
    model2, _ = build_denoiser("dncnn", depth=4, channels=8)
    cfg.steps = 2
    assert train_denoiser(model2, "dncnn", mcfg, data, cfg, tmp_path, resume=True, progress=False).step == 2


@needs_data
def test_evaluate_json_on_two_bsd68_images(tmp_path, capsys):
    folder = tmp_path / "BSD68"
    folder.mkdir()
    for name in ("test001.png", "test002.png"):
        os.symlink((DENOISE / "BSD68" / name).resolve(), folder / name)
    # an identity denoiser (DnCNN whose noise head is zero) must score the PSNR of the noisy input
    model, mcfg = build_denoiser("dncnn", depth=3, channels=4)
    torch.nn.init.zeros_(model.body[-1].weight)
    torch.nn.init.zeros_(model.body[-1].bias)
    ckpt = tmp_path / "identity.safetensors"
    save_generator(ckpt, model, "dncnn", mcfg)
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(folder), "--sigma", "15,25",
                 "--json", "--threads", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [set(r) for r in rows] == [{"dataset", "sigma", "psnr", "ssim", "ms"}] * 2
    assert [(r["dataset"], r["sigma"]) for r in rows] == [("BSD68", 15.0), ("BSD68", 25.0)]
    for r in rows:  # clipping the noisy image only removes error: PSNR >= 20 log10(255 / sigma)
        expected = 20 * math.log10(255 / r["sigma"])
        assert expected - 0.05 < r["psnr"] < expected + 1.0
        assert 0 < r["ssim"] < 1 and r["ms"] > 0
    # the library function gives the same numbers
    lib = evaluate_denoiser(load_generator(ckpt)[0], folder, [25.0])
    assert lib[0]["psnr"] == pytest.approx(rows[1]["psnr"]) and lib[0]["images"] == 2


@needs_data
def test_denoise_command_with_synthetic_noise(tmp_path, capsys):
    model, mcfg = build_denoiser("asap", "tiny")
    ckpt = tmp_path / "tiny.safetensors"
    save_generator(ckpt, model, "asap", mcfg)
    src = DENOISE / "Set12" / "01.png"
    assert main(["denoise", str(src), "-o", str(tmp_path / "out"), "--checkpoint", str(ckpt), "--sigma", "25",
                 "--threads", "1"]) == 0
    assert (tmp_path / "out" / "01.png").is_file() and (tmp_path / "out" / "01_noisy.png").is_file()
    assert "PSNR" in capsys.readouterr().err  # one log line per file, on stderr
    assert main(["denoise", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o2"), "--checkpoint", str(ckpt)]) == 2


@needs_data
def test_train_init_from_checkpoint_starts_from_its_weights(tmp_path, capsys):
    from asapnet.cli import main as cli_main
    from asapnet.checkpoint import init_from_checkpoint

    src, mcfg = build_denoiser("dncnn", depth=17)
    with torch.no_grad():
        src.body[0].weight.add_(0.5)  # weights a fresh model cannot have
    # a shipped file that continued a chain: its total_steps (not its last run's step) is where we start
    save_generator(tmp_path / "start.safetensors", src, "dncnn", mcfg, {"step": 7, "total_steps": 19})
    out = tmp_path / "run"
    rc = cli_main(["train", "--task", "denoise", "--model", "dncnn", "--sigma", "25", "--init",
                   str(tmp_path / "start.safetensors"), "--steps", "1", "--batch-size", "2", "--lr-g", "0",
                   "--patches-per-image", "1", "--val-images", "0", "--threads", "1", "--quiet", "--out", str(out)])
    assert rc == 0 and "step 19" in capsys.readouterr().err
    trained, meta = load_generator(out / "generator.safetensors")
    assert torch.equal(trained.body[0].weight, src.body[0].weight)  # learning rate 0: still the init weights
    assert meta["init_from"]["step"] == 19 and meta["step"] == 1
    # a checkpoint of another architecture: one clear error naming the file
    small, small_cfg = build_denoiser("dncnn", depth=4, channels=8)
    save_generator(tmp_path / "small.safetensors", small, "dncnn", small_cfg)
    with pytest.raises(ValueError, match="small.safetensors.*do not fit"):
        init_from_checkpoint(build_denoiser("dncnn", depth=17)[0], tmp_path / "small.safetensors")
    rc = cli_main(["train", "--task", "denoise", "--model", "dncnn", "--init", str(tmp_path / "small.safetensors"),
                   "--resume", "--out", str(out)])
    assert rc == 2 and "either --init" in capsys.readouterr().err


@needs_data
@pytest.mark.parametrize("name", ["dncnn-s-sigma25", "sadnet-sigma25"])
def test_shipped_sigma25_denoisers_remove_noise_on_a_real_crop(name):
    from asapnet.tasks.denoise.build import shipped_checkpoint
    from torchmetrics.functional import peak_signal_noise_ratio as psnr

    model, meta = load_generator(shipped_checkpoint(f"{name}.safetensors"))
    assert meta["sigma"] == 25.0 and meta["task"] == "denoise"
    clean = read_gray(DENOISE / "Set12" / "05.png")[None, :, 64:160, 64:160]  # (1, 1, 96, 96) in [0, 1]
    noisy = deterministic_noisy(clean, "05.png", 25.0, 0)
    with torch.no_grad():
        out = model(noisy).clamp(0, 1)
    gain = psnr(out * 255, clean * 255, data_range=255.0) - psnr(noisy.clamp(0, 1) * 255, clean * 255, data_range=255.0)
    assert gain > 5.0  # noisy input is ~20.2 dB; a trained σ=25 denoiser lands near 28-30 dB
