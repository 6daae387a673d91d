"""Deblurring (issue 7): motion-blur kernels and data, DeblurGAN / ASAP / MSG U-Net training steps
with real blurred photos, evaluation, inference and the CLI glue. Tiny widths and crops; no
downloads (the VGG content loss is tested with an injected feature net)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from asapnet.checkpoint import load_generator
from asapnet.config import TrainConfig
from asapnet.data import cityscapes_pairs, list_images
from asapnet.data.blur_kernels import BlurConfig, motion_trajectory, random_kernel, trajectory_kernel
from asapnet.data.blur import (BlurTestDataset, PairedBlurDataset, SyntheticBlurDataset, blur, blur_seed,
                               deterministic_blur, gopro_pairs, load_rgb)
from asapnet.data.datasets import LabelPhotoDataset
from asapnet.data.io import DataError
from asapnet.training.gan_variants import MSGTrainer, WGANGPConfig, WGANGPTrainer
from asapnet.tasks.deblur.build import build_deblur_model
from asapnet.tasks.deblur.run import deblur_files
from asapnet.tasks.deblur.evaluate import evaluate_deblur, time_models
from asapnet.losses.perceptual import VGGContentLoss
from asapnet.losses.gan import gradient_penalty
from asapnet.models import create_model, list_models
from asapnet.models.msg_unet import MSGUNet
from asapnet.training.loop import train
from asapnet.deblur import main

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def kodak(data_root) -> list:
    d = data_root / "denoise_color" / "Kodak24"
    if not d.is_dir():
        pytest.skip(f"{d} not found")
    return list_images(d)[:2]


@pytest.fixture(scope="module")
def blurred_batch(kodak):
    """A batch of 2 real blurred/sharp 32x32 crops (strong blur kernels)."""
    torch.manual_seed(0)
    np.random.seed(0)
    import random
    random.seed(0)
    cfg = BlurConfig(fractions=(1.0,))
    ds = SyntheticBlurDataset(kodak, crop=32, cfg=cfg, scale=0.25, crops_per_image=1)
    items = [ds[0], ds[1]]
    return {k: torch.stack([it[k] for it in items]) for k in ("input", "target")}


def _cfg(**kw) -> TrainConfig:
    base = dict(steps=1, batch_size=2, crop=None, lr_g=1e-3, lr_d=1e-3, beta1=0.5, beta2=0.999, lambda_vgg=0.0,
                gan=True, checkpoint_every=1, sample_every=1, log_every=1)
    base.update(kw)
    return TrainConfig(**base)


# -- blur kernels --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_random_kernel_sums_to_one_nonnegative_odd(seed):
    k = random_kernel(np.random.default_rng(seed))
    assert k.dtype == np.float32 and k.ndim == 2 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert (k >= 0).all()
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-5)
    # centred on its centre of mass (so the blurred image is not shifted against the sharp one)
    c = k.shape[0] // 2
    idx = np.arange(k.shape[0])
    assert abs(float((k.sum(1) * idx).sum()) - c) <= 0.5 and abs(float((k.sum(0) * idx).sum()) - c) <= 0.5


def test_trajectory_has_the_requested_length_and_fits_the_canvas():
    x = motion_trajectory(np.random.default_rng(3), canvas=64, iters=2000, max_len=60, expl=0.005)
    assert x.shape == (2000,)
    assert np.abs(np.diff(x)).sum() == pytest.approx(60.0, rel=1e-6)
    assert x.real.min() >= 0 and x.imag.min() >= 0 and x.real.max() <= 64 and x.imag.max() <= 64


def test_short_exposure_gives_a_small_kernel():
    x = motion_trajectory(np.random.default_rng(1), expl=0.005)
    assert trajectory_kernel(x, 64, 1 / 1000).shape[0] <= 5 < trajectory_kernel(x, 64, 1.0).shape[0]


def test_blur_with_delta_is_identity_and_matches_conv2d(kodak):
    img = load_rgb(kodak[0], scale=0.125)  # real photo, 96x64
    delta = np.zeros((5, 5), np.float32)
    delta[2, 2] = 1
    assert torch.allclose(blur(img, delta), img, atol=1e-6)
    k = random_kernel(np.random.default_rng(0), BlurConfig(canvas=15, max_len=12))
    r = k.shape[0] // 2
    ref = F.conv2d(F.pad(img[None], (r,) * 4, mode="reflect"),
                   torch.from_numpy(k).flip(0, 1)[None, None].expand(3, 1, -1, -1).contiguous(), groups=3)[0]
    assert torch.allclose(blur(img, k), ref, atol=1e-5)
    with pytest.raises(ValueError, match="odd"):
        blur(img, np.ones((4, 4)) / 16)


def test_deterministic_blur_per_name_and_seed(kodak):
    sharp = load_rgb(kodak[0], scale=0.25)
    a, ka = deterministic_blur(sharp, "kodim01", seed=0)
    b, kb = deterministic_blur(sharp, "kodim01", seed=0)
    c, kc = deterministic_blur(sharp, "kodim01", seed=1)
    assert torch.equal(a, b) and np.array_equal(ka, kb)
    assert not np.array_equal(ka, kc) or not torch.equal(a, c)
    assert blur_seed("kodim01", 0) == blur_seed("kodim01", 0) != blur_seed("kodim02", 0)
    # 8-bit values, brightness kept (kernel sums to 1), less edge energy than the sharp photo
    assert torch.allclose((a + 1) * 127.5, ((a + 1) * 127.5).round(), atol=1e-3)
    assert abs(a.mean().item() - sharp.mean().item()) < 0.01
    grad = lambda x: (x[:, 1:] - x[:, :-1]).abs().mean() + (x[:, :, 1:] - x[:, :, :-1]).abs().mean()  # noqa
    if kc.shape[0] > 3:
        assert grad(c) < grad(sharp)


def test_test_dataset_is_the_same_every_time(kodak):
    d1 = BlurTestDataset(kodak, seed=0, scale=0.25, multiple=8)
    d2 = BlurTestDataset(kodak, seed=0, scale=0.25, multiple=8)
    assert torch.equal(d1[1]["input"], d2[1]["input"])
    assert d1[0]["input"].shape[-1] % 8 == 0 and d1[0]["kernel"].sum().item() == pytest.approx(1, abs=1e-5)


def test_synthetic_dataset_items(kodak):
    ds = SyntheticBlurDataset(kodak, crop=48, scale=0.25, crops_per_image=3)
    assert len(ds) == 6
    it = ds[0]
    assert it["input"].shape == it["target"].shape == (3, 48, 48)
    assert it["input"].min() >= -1 and it["input"].max() <= 1
    with pytest.raises(DataError, match="smaller than"):
        SyntheticBlurDataset(kodak, crop=4096)


def test_gopro_folder_pairs(tmp_path, kodak):
    for seq in ("GOPR0001", "GOPR0002"):
        for sub in ("blur", "sharp"):
            (tmp_path / seq / sub).mkdir(parents=True)
        for f in kodak:
            shutil.copy(f, tmp_path / seq / "sharp" / f.name)
            im = Image.open(f)
            im.resize((im.width // 4, im.height // 4)).resize(im.size).save(tmp_path / seq / "blur" / f.name)
    pairs = gopro_pairs(tmp_path)
    assert len(pairs) == 4 and all(b.name == s.name and b.parent.name == "blur" for b, s in pairs)
    ds = PairedBlurDataset(tmp_path, crop=64)
    it = ds[0]
    assert it["input"].shape == it["target"].shape == (3, 64, 64)
    assert gopro_pairs(tmp_path / "GOPR0001")  # a single sequence folder works too
    (tmp_path / "GOPR0002" / "sharp" / kodak[0].name).unlink()
    with pytest.raises(DataError, match="no sharp partner"):
        gopro_pairs(tmp_path)
    with pytest.raises(DataError, match="GoPro"):
        gopro_pairs(tmp_path / "GOPR0001" / "blur")


# -- models ----------------------------------------------------------------------------------------


def test_models_are_registered_and_keep_the_size():
    assert {"deblurgan", "msg_unet", "sadnet"} <= set(list_models())
    x = torch.rand(1, 3, 30, 45) * 2 - 1
    g = create_model("deblurgan", ngf=4, n_blocks=1).eval()
    assert g(x).shape == x.shape and g.residual and g(x).abs().max() <= 1
    m = create_model("msg_unet", in_channels=3, ngf=4, n_down=3, num_outputs=3).eval()
    outs = m.forward_multiscale(x)
    assert [o.shape[-2:] for o in outs] == [(30, 45), (15, 23), (8, 12)]
    assert torch.equal(m(x), outs[0])
    lab = create_model("deblurgan", in_channels=36, ngf=4, n_blocks=1)
    assert lab(torch.rand(1, 36, 16, 16)).shape == (1, 3, 16, 16) and not lab.residual
    with pytest.raises(ValueError, match="expects"):
        g(torch.rand(1, 1, 8, 8))


def test_bench_builds_the_new_models_for_label_input():
    from asapnet.bench.benchmark import benchmark
    rows = benchmark(["deblurgan", "msg_unet", "sadnet"], [(32, 64)], repeats=1,
                     model_kwargs={"deblurgan": dict(ngf=4, n_blocks=1), "msg_unet": dict(ngf=4, n_down=3),
                                   "sadnet": dict(n_channel=8, offset_channel=8)})
    assert [r["model"] for r in rows] == ["deblurgan", "msg_unet", "sadnet"]


# -- losses ----------------------------------------------------------------------------------------


def test_gradient_penalty_of_a_unit_gradient_critic_is_zero():
    real, fake = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)
    w = torch.randn(1, 3, 8, 8)
    w = w / w.norm()
    assert gradient_penalty(lambda x: (x * w).sum((1, 2, 3)), real, fake).item() == pytest.approx(0, abs=1e-10)
    assert gradient_penalty(lambda x: (x * 2 * w).sum((1, 2, 3)), real, fake).item() == pytest.approx(1, rel=1e-5)


def test_content_loss_with_injected_features():
    loss = VGGContentLoss(features=nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)))
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert loss(x, x).item() == 0 and loss(x, -x).item() > 0
    assert not any(p.requires_grad for p in loss.features.parameters())


# -- training steps on real blurred photos -------------------------------------------------------


def _params(m):
    return [p.detach().clone() for p in m.parameters()]


def _changed(before, m):
    return any(not torch.equal(a, b) for a, b in zip(before, m.parameters()))


@pytest.mark.parametrize("name,kw", [("deblurgan", dict(ngf=4, n_blocks=2)),
                                     ("asap", dict(lr_width=8, lr_max_width=16, lr_depth=1, hr_width=8, hr_depth=3))])
def test_one_wgan_gp_step(tmp_path, blurred_batch, name, kw):
    model, mcfg = build_deblur_model(name, **kw)
    gp = WGANGPConfig(critic_iters=2, ndf=4, lambda_content=1.0, lambda_l1=1.0)
    content = VGGContentLoss(features=nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()))
    tr = WGANGPTrainer(model, name, mcfg, _cfg(), gp, tmp_path, content=content)
    g0, d0 = _params(tr.G), _params(tr.D)
    logs = tr.train_step(blurred_batch)
    assert {"D/wasserstein", "D/gp", "G/adv", "G/content", "G/l1", "G/total"} <= set(logs)
    assert all(np.isfinite(v) for v in logs.values())
    assert _changed(g0, tr.G) and _changed(d0, tr.D)
    tr.save()
    g, meta = load_generator(tmp_path / "generator.safetensors")
    assert meta["model"] == name
    with torch.no_grad():
        assert torch.allclose(g(blurred_batch["input"]), tr.G.eval()(blurred_batch["input"]), atol=1e-5)


def test_wgan_gp_training_resumes(tmp_path, kodak):
    ds = SyntheticBlurDataset(kodak, crop=32, scale=0.25, crops_per_image=2)
    make = lambda steps: WGANGPTrainer(build_deblur_model("deblurgan", ngf=4, n_blocks=1)[0], "deblurgan",  # noqa
                                       {}, _cfg(steps=steps, batch_size=1), WGANGPConfig(critic_iters=1, ndf=4,
                                       lambda_content=0.0, lambda_l1=1.0), tmp_path)
    train(make(1), ds, progress=False)
    t2 = train(make(2), ds, resume=True, progress=False)
    assert t2.step == 2 and t2.D is not None
    assert json.loads((tmp_path / "run.json").read_text())["critic"]["critic_iters"] == 1


def test_msg_unet_step_image_to_image(tmp_path, blurred_batch):
    model, mcfg = build_deblur_model("msg_unet", ngf=4, n_down=3, num_outputs=3)
    tr = MSGTrainer(model, "msg_unet", mcfg, _cfg(beta1=0.0, beta2=0.9, lambda_l1=1.0), tmp_path, in_channels=3,
                    ndf=4, n_layers=2)
    g0, d0 = _params(tr.G), _params(tr.D)
    logs = tr.train_step(blurred_batch)
    assert {"D/hinge", "G/hinge", "G/feat", "G/l1"} <= set(logs) and _changed(g0, tr.G) and _changed(d0, tr.D)
    assert len(tr.D.scales) == 3


def test_msg_unet_step_label_to_photo(tmp_path, data_root):
    pairs = cityscapes_pairs(data_root / "cityscapes_samples")[:1]
    ds = LabelPhotoDataset(pairs, 35, use_instance=True, load_size=(64, 128))
    batch = {k: v[None] for k, v in ds[0].items() if k in ("input", "target")}
    model = MSGUNet(in_channels=36, ngf=4, n_down=3, num_outputs=3)
    tr = MSGTrainer(model, "msg_unet", {"in_channels": 36, "ngf": 4, "n_down": 3, "num_outputs": 3},
                    _cfg(batch_size=1, crop=(32, 64)), tmp_path, in_channels=36, ndf=4, n_layers=2, num_classes=35)
    g0 = _params(tr.G)
    logs = tr.train_step(batch)
    assert np.isfinite(logs["G/total"]) and _changed(g0, tr.G)
    assert tr._last[1].shape == (1, 3, 32, 64)
    tr.save()
    assert load_generator(tmp_path / "generator.safetensors")[1]["model"] == "msg_unet"


# -- evaluation, inference, CLI ----------------------------------------------------------------


class _Identity(nn.Module):
    def forward(self, x):
        return x


def test_evaluate_identity_equals_blurred_row(kodak):
    ds = BlurTestDataset(kodak, seed=0, scale=0.25)
    rows = evaluate_deblur({"identity": _Identity()}, ds)
    assert [r["model"] for r in rows] == ["blurred input", "identity"]
    assert rows[0]["psnr"] == pytest.approx(rows[1]["psnr"]) and rows[0]["images"] == 2
    assert 15 < rows[0]["psnr"] < 60 and 0 < rows[0]["ssim"] <= 1 and rows[0]["fid"] is None


def test_time_models_reports_all():
    r = time_models({"a": create_model("deblurgan", ngf=4, n_blocks=1)}, size=(16, 32), repeats=2)
    assert r["a"]["ms_min"] <= r["a"]["ms"] <= r["a"]["ms_max"]


def test_cli_train_evaluate_deblur(tmp_path, kodak, capsys):
    sharp = tmp_path / "sharp"
    sharp.mkdir()
    for f in kodak:
        Image.open(f).resize((128, 128)).save(sharp / f.name)
    out = tmp_path / "run"
    rc = main(["train", "--model", "deblurgan", "--ngf", "4", "--n-blocks", "1", "--steps", "1", "--no-vgg",
               "--lambda-l1", "10", "--critic-iters", "1", "--critic-ndf", "4", "--crop-size", "32",
               "--sharp-dir", str(sharp), "--out", str(out), "--quiet"])
    assert rc == 0 and (out / "generator.safetensors").is_file()
    ckpt = out / "generator.safetensors"
    assert main(["train", "--model", "asap", "--no-gan", "--no-vgg", "--lambda-l1", "1", "--steps", "1",
                 "--hr-window", "3", "--lr-norm", "none",
                 "--crop-size", "32", "--sharp-dir", str(sharp), "--out", str(tmp_path / "l1"), "--quiet"]) == 0
    asap, meta = load_generator(tmp_path / "l1" / "generator.safetensors")
    assert meta["model"] == "asap" and asap.cfg.hr_window == 3 and asap.cfg.norm == "none"
    capsys.readouterr()
    assert main(["train", "--model", "deblurgan", "--hr-window", "3", "--steps", "1", "--out", str(tmp_path / "x")]) != 0
    assert "--hr-window/--lr-norm apply to asap" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", f"tiny={ckpt}", "--data", str(sharp), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["model"] for r in rows] == ["blurred input", "tiny"] and rows[0]["images"] == 2
    res = main(["deblur", str(kodak[0]), "-o", str(tmp_path / "o"), "--checkpoint", str(ckpt), "--blur-seed", "0"])
    assert res == 0 and (tmp_path / "o" / f"{kodak[0].stem}.png").is_file() \
        and (tmp_path / "o" / f"{kodak[0].stem}_blurred.png").is_file()
    assert main(["deblur", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o"), "--checkpoint", str(ckpt)]) == 2


def test_deblur_files_report_psnr(tmp_path, kodak):
    rows = deblur_files(_Identity(), kodak[:1], tmp_path, blur_seed=0)
    assert rows[0]["psnr"] == pytest.approx(rows[0]["psnr_blurred"], abs=1e-6)
    assert Image.open(tmp_path / f"{kodak[0].stem}.png").size == Image.open(kodak[0]).size


def test_evaluate_args_compose_with_the_denoise_parser():
    import argparse
    from asapnet.cli.task_args import add_evaluate_deblur_args, add_evaluate_denoise_args
    p = argparse.ArgumentParser()
    add_evaluate_denoise_args(p)
    add_evaluate_deblur_args(p, shared=False)  # no duplicate options
    a = p.parse_args(["--checkpoint", "x.safetensors", "--data", "d", "--scale", "0.5", "--fid"])
    assert a.scale == 0.5 and a.fid and a.checkpoint == "x.safetensors"
