"""SADNet (issue 7): deformable-convolution blocks, gray and colour denoising, one real training
step with the denoising task's trainer on real BSD images, checkpoint round trip."""
from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from asapnet.checkpoint import load_generator
from asapnet.config import DiscriminatorConfig, TrainConfig
from asapnet.data import list_images
from asapnet.data.blur import load_rgb
from asapnet.data.denoise import DenoisePatchDataset, add_noise
from asapnet.tasks.denoise.train import DenoiseTrainer
from asapnet.tasks.denoise.evaluate import evaluate_denoiser
from asapnet.models import create_model
from asapnet.models.sadnet import ModulatedDeformConv, SADNet
from asapnet.training.trainer import Trainer
from asapnet.training.loop import train

torch.set_num_threads(1)
TINY = dict(n_channel=8, offset_channel=8)


def _cfg(**kw) -> TrainConfig:
    base = dict(steps=1, batch_size=2, crop=None, lr_g=1e-3, beta1=0.9, beta2=0.999, lambda_vgg=0.0,
                lambda_l2=1.0, gan=False, flip=False, checkpoint_every=1, sample_every=1, log_every=1)
    base.update(kw)
    return TrainConfig(**base)


def test_zero_offsets_give_half_a_plain_convolution():
    """At initialisation the offset/mask predictor outputs 0: offsets 0, masks sigmoid(0) = 0.5,
    so the modulated deformable conv is 0.5 x the regular 3x3 conv (+ bias)."""
    dcn = ModulatedDeformConv(8, 4, offset_channels=5, groups=8)
    x, feat = torch.randn(2, 8, 9, 11), torch.randn(2, 5, 9, 11)
    ref = F.conv2d(0.5 * x, dcn.weight, dcn.bias, padding=1)
    assert torch.allclose(dcn(x, feat), ref, atol=1e-5)


def test_integer_offsets_shift_the_sampling():
    """A (dy, dx) = (0, 1) offset on every tap samples one pixel to the right."""
    dcn = ModulatedDeformConv(8, 4, offset_channels=1, groups=8)
    n_off = 8 * 2 * 9
    with torch.no_grad():
        dcn.offset_mask.bias[1:n_off:2] = 1.0  # dx of every tap and group
        dcn.offset_mask.bias[n_off:] = 20.0  # masks ~ 1
    x = torch.randn(1, 8, 7, 10)
    y = dcn(x, torch.zeros(1, 1, 7, 10))
    ref = F.conv2d(x, dcn.weight, dcn.bias, padding=1)
    assert torch.allclose(y[..., :-2], ref[..., 1:-1], atol=1e-4)


@pytest.mark.parametrize("c", [1, 3])
def test_gray_and_colour_any_size(c):
    m = create_model("sadnet", in_channels=c, **TINY).eval()
    x = torch.rand(1, c, 37, 50)
    assert m(x).shape == x.shape
    assert isinstance(m, SADNet) and m.residual
    with pytest.raises(ValueError, match="expects"):
        m(torch.rand(1, 4 - c if c == 1 else 1, 16, 16))


def test_label_input_for_bench_gives_rgb():
    m = create_model("sadnet", in_channels=36, **TINY)
    assert m(torch.rand(1, 36, 16, 16)).shape == (1, 3, 16, 16) and not m.residual


def test_gray_training_step_with_the_denoising_trainer(tmp_path, data_root):
    """One real L2 step on noisy Set12 patches (σ = 25) with :class:`DenoiseTrainer`, then the
    checkpoint is scored on a real BSD68 image by :func:`evaluate_denoiser`."""
    d = data_root / "denoise"
    ds = DenoisePatchDataset(d / "Set12", patch_size=32, sigma=25.0, scales=(1.0,), patches_per_image=1)
    cfg = {"in_channels": 1, **TINY}
    model = create_model("sadnet", **cfg)
    tr = DenoiseTrainer(model, "sadnet", cfg, DiscriminatorConfig(in_channels=2), _cfg(), tmp_path,
                        extra_meta={"task": "denoise", "sigma": 25.0})
    before = [p.detach().clone() for p in model.parameters()]
    train(tr, ds, progress=False)
    assert tr.step == 1 and any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # the offset predictor gets gradients too (the DCNs are trained, not frozen at zero offsets)
    assert model.rsab[0].dcn.offset_mask.weight.abs().sum() > 0
    net, meta = load_generator(tmp_path / "generator.safetensors")
    assert meta["model"] == "sadnet"
    one = tmp_path / "bsd1"
    one.mkdir()
    shutil.copy(list_images(d / "BSD68")[0], one)
    (r,) = evaluate_denoiser(net, one, [25.0])
    assert r["images"] == 1 and 5 < r["psnr"] < 40 and 0 < r["ssim"] < 1


def test_colour_training_step_on_real_photos(tmp_path, data_root):
    """One L2 step of colour SADNet on noisy crops of real CBSD68 photos ([0, 1] scale, σ = 25)."""
    files = list_images(data_root / "denoise_color" / "CBSD68")[:2]
    clean = torch.stack([(load_rgb(f)[:, :48, :48] + 1) / 2 for f in files])
    batch = {"input": add_noise(clean, 25.0, torch.Generator().manual_seed(0)), "target": clean}
    model = create_model("sadnet", in_channels=3, **TINY)
    tr = Trainer(model, "sadnet", {"in_channels": 3, **TINY}, DiscriminatorConfig(in_channels=6), _cfg(), tmp_path)
    loss0 = F.mse_loss(model(batch["input"]), clean).item()
    logs = tr.train_step(batch)
    assert logs["G/l2"] == pytest.approx(loss0, rel=1e-4) and "G/l1" not in logs
    tr.save()
    assert load_generator(tmp_path / "generator.safetensors")[0].in_channels == 3
