"""Known values of every loss and metric, computed by hand on tiny tensors.

Each expected number is worked out in the comment next to it, so that flipping a sign, using the
0-1 instead of the 0-255 scale, or a sum instead of a mean changes the result. (Segmentation mIoU
and pixel accuracy on hand-made maps are in tests/test_metrics.py; FID's uint8 mapping too.)
"""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from asapnet.losses import VGGPerceptualLoss, feature_matching_loss, hinge_d_loss, hinge_g_loss
from asapnet.metrics.image import psnr_ssim, to_255
from asapnet.metrics.tiles import class_block_std, tile_health, tile_seam_ratio, within_tile_contrast
from asapnet.metrics.translation import SetScores, TileStats, TrivialColours, nanmean


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def gray(values):
    """Gray levels (0-255) -> the [-1, 1] scale the metrics take."""
    return torch.as_tensor(values, dtype=torch.float32) / 127.5 - 1


# --------------------------------------------------------------------------- losses
# Discriminator outputs: per scale a list of features, the last one the score map.
REAL = [[t(9.0, 9.0), t(2.0, -0.5)], [t(-7.0), t([0.5])]]
FAKE = [[t(-9.0, 9.0), t(-3.0, 1.0)], [t(7.0), t([0.0])]]


def test_hinge_d_loss_known_value():
    # scale 1: mean relu(1 - [2, -0.5]) = mean [0, 1.5] = 0.75; mean relu(1 + [-3, 1]) = mean [0, 2] = 1
    # scale 2: relu(1 - 0.5) = 0.5;                               relu(1 + 0) = 1
    # mean over the 2 scales: (0.75 + 1 + 0.5 + 1) / 2 = 1.625 (the features before the scores are unused)
    assert hinge_d_loss(REAL, FAKE).item() == pytest.approx(1.625)
    # real and fake are not interchangeable: scale 1 relu(1 - [-3, 1]) -> 2, relu(1 + [2, -0.5]) -> 1.75;
    # scale 2: relu(1 - 0) = 1, relu(1 + 0.5) = 1.5; (2 + 1.75 + 1 + 1.5) / 2 = 3.125
    assert hinge_d_loss(FAKE, REAL).item() == pytest.approx(3.125)
    # a confident discriminator (real >= 1, fake <= -1) has zero loss
    assert hinge_d_loss([[t(1.0, 3.0)]], [[t(-1.0, -4.0)]]).item() == 0.0


def test_hinge_g_loss_known_value():
    # -E[D(fake)]: scale 1 -mean[-3, 1] = 1, scale 2 -0 = 0 -> mean over scales 0.5
    assert hinge_g_loss(FAKE).item() == pytest.approx(0.5)
    # -mean[2, -0.5] = -0.75 and -0.5: (-0.75 - 0.5) / 2 = -0.625 (fooled D: negative loss)
    assert hinge_g_loss(REAL).item() == pytest.approx(-0.625)
    fake = [[t(1.0, 3.0).requires_grad_()]]
    hinge_g_loss(fake).backward()
    # d/dx of -mean(x) over 2 elements, 1 scale: -0.5 each (G pushes D(fake) up)
    assert fake[0][0].grad.tolist() == [-0.5, -0.5]


def test_feature_matching_loss_known_value():
    real = [[t(0.0, 0.0), t(1.0, 2.0, 3.0), t(100.0)], [t(2.0), t(100.0)]]
    fake = [[t(1.0, -3.0), t(1.0, 2.0, 0.0), t(-100.0)], [t(0.0), t(-100.0)]]
    for s in fake:
        for f in s:
            f.requires_grad_()
    for s in real:
        for f in s:
            f.requires_grad_()
    # scale 1: L1 mean |[1, -3] - [0, 0]| = 2, plus mean |[0, 0, -3]| = 1 -> 3 (summed over layers)
    # scale 2: |0 - 2| = 2; the score maps (100 vs -100) are left out
    # mean over scales: (3 + 2) / 2 = 2.5
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(2.5)
    loss.backward()
    assert all(f.grad is None for s in real for f in s)  # real features are detached
    # d/d fake of |fake - real| / n / 2 scales: sign / (2 n); the score map gets no gradient
    assert fake[0][0].grad.tolist() == [0.25, -0.25] and fake[1][0].grad.tolist() == [-0.5]
    assert fake[0][2].grad is None


class _Scale(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return self.c * x


class _Boom(nn.Module):
    def forward(self, x):
        raise AssertionError("layers after relu5_1 (index 29) must be cut off")


def _fake_vgg():
    """30 layers as indexed in torchvision's vgg19().features: identity except layer 2 (between
    relu1_1 at index 1 and relu2_1 at 6), which doubles; a 31st layer that must never run."""
    layers = [nn.Identity() for _ in range(30)]
    layers[2] = _Scale(2.0)
    layers[3] = nn.Conv2d(3, 3, 1, bias=False)  # has a parameter, to check it gets frozen
    with torch.no_grad():
        layers[3].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    return nn.Sequential(*layers, _Boom())


def test_vgg_perceptual_loss_known_value_with_a_fake_feature_extractor():
    loss = VGGPerceptualLoss(features=_fake_vgg())
    assert len(loss.features) == 30 and not any(p.requires_grad for p in loss.features.parameters())
    real = torch.zeros(1, 3, 2, 2)
    fake = torch.zeros(1, 3, 2, 2)
    fake[:, 0] = 2 * 0.229  # red +0.458 on [-1, 1] = +0.229 on [0, 1] = +1 ImageNet std of red
    # features: relu1_1 = x_n, relu2_1 .. relu5_1 = 2 x_n (x_n the ImageNet-normalised image);
    # |x_n(fake) - x_n(real)| is 1 on the 4 red pixels and 0 on the other 8: L1 mean 1/3
    # sum_i w_i * L1_i = (1/32 * 1 + (1/16 + 1/8 + 1/4 + 1) * 2) / 3 = (0.03125 + 2.875) / 3 = 0.96875
    assert loss(fake, real).item() == pytest.approx(0.96875, rel=1e-5)
    assert loss(real, real).item() == 0.0


# --------------------------------------------------------------------------- PSNR / SSIM (0-255 scale)
def test_to_255_known_values():
    assert to_255(torch.tensor([-1.5, -1.0, 0.0, 0.2, 1.0, 2.0])).tolist() == pytest.approx(
        [0.0, 0.0, 127.5, 153.0, 255.0, 255.0])


def test_psnr_on_the_0_255_scale_per_image_then_averaged():
    real = torch.zeros(2, 3, 16, 16)  # 127.5 gray
    fake = real.clone()
    fake[0] += 0.2  # 153: error 25.5 gray levels, MSE 650.25 -> PSNR 10 log10(255^2 / 650.25) = 10 log10(100) = 20 dB
    fake[1] += 0.02  # error 2.55, MSE 6.5025 -> 10 log10(10^4) = 40 dB
    psnr, ssim = psnr_ssim(fake, real)
    # mean of the per-image values: (20 + 40) / 2 = 30 dB (one MSE over the batch would give
    # 10 log10(65025 / 328.37625) = 22.97 dB)
    assert psnr == pytest.approx(30.0, abs=1e-3)
    # SSIM of constant images: only the luminance term, C1 = (0.01 * 255)^2 = 6.5025:
    # image 0: (2 * 127.5 * 153 + C1) / (127.5^2 + 153^2 + C1) = 39021.5025 / 39671.7525 = 0.983609
    # image 1: (2 * 127.5 * 130.05 + C1) / (127.5^2 + 130.05^2 + C1) = 33169.2525 / 33175.7550 = 0.999804
    s0 = (2 * 127.5 * 153 + 6.5025) / (127.5 ** 2 + 153 ** 2 + 6.5025)
    s1 = (2 * 127.5 * 130.05 + 6.5025) / (127.5 ** 2 + 130.05 ** 2 + 6.5025)
    assert s0 == pytest.approx(0.983609, abs=1e-6) and s1 == pytest.approx(0.999804, abs=1e-6)
    # (torchmetrics computes the variances as E[x^2] - mu^2 in float32, which at the 0-255 scale is
    # off by ~4e-4 here: 0.99142 instead of 0.99171; the 0-1 scale would give ~0.9993)
    assert ssim == pytest.approx((s0 + s1) / 2, abs=1e-3)
    # the same images given on the 0-255 scale
    p255, s255 = psnr_ssim(to_255(fake), to_255(real), value_range="0,255")
    assert p255 == pytest.approx(30.0, abs=1e-3) and s255 == pytest.approx(ssim, abs=1e-6)
    with pytest.raises(ValueError, match="value_range"):
        psnr_ssim(fake, real, value_range="0,1")


# --------------------------------------------------------------------------- tile metrics
def test_within_tile_contrast_known_value():
    # 4 x 14 image, tile 4: three whole tiles (columns 0-3, 4-7, 8-11) and a ragged 2-px border
    labels = torch.zeros(4, 14, dtype=torch.int64)
    img = torch.full((3, 4, 14), -1.0)  # gray 0 everywhere
    # tile A: class 0 in columns 0-1 (gray 0), class 1 in columns 2-3 with colour (127.5, 255, 0)
    labels[:, 2:4] = 1
    img[:, :, 2:4] = gray([127.5, 255.0, 0.0]).view(3, 1, 1)
    # -> |(127.5, 255, 0) - (0, 0, 0)| averaged over channels = 127.5
    # tile B: class 0 and a single class-2 pixel (1/16 < min_share 0.1): left out
    labels[0, 4] = 2
    img[:, 0, 4] = 1.0
    # tile C: class 1 on 12 px at gray 191.25, class 2 on 4 px (share 0.25) at gray 127.5 -> 63.75
    labels[:, 8:12] = 1
    labels[:, 8] = 2
    img[:, :, 8:12] = gray(191.25)
    img[:, :, 8] = gray(127.5)
    # ragged border (columns 12-13): a strong two-class pattern that must not count
    labels[:, 12] = 3
    img[:, :, 12] = 1.0
    # mean over the two counted tiles: (127.5 + 63.75) / 2 = 95.625 gray levels
    assert within_tile_contrast(img, labels, 4) == pytest.approx(95.625, abs=1e-3)
    assert within_tile_contrast(img[None], labels[None], 4) == pytest.approx(95.625, abs=1e-3)
    # one class per tile: undefined
    assert math.isnan(within_tile_contrast(img, torch.zeros_like(labels), 4))


def test_tile_seam_ratio_known_value():
    # gray rows [0, 10, 40, 50] and [0, 10, 40, 60], tile 2: the border pairs are columns (1, 2)
    img = gray([[[0.0, 10.0, 40.0, 50.0], [0.0, 10.0, 40.0, 60.0]]])
    # horizontal jumps: row 0 [10, 30, 10], row 1 [10, 30, 20]; vertical: [0, 0, 0, 10]
    # (the one row pair (0, 1) lies inside a tile). Border mean 30; the 8 other jumps
    # [10, 10, 10, 20, 0, 0, 0, 10] have mean 60 / 8 = 7.5 -> ratio 4
    assert tile_seam_ratio(img, 2) == pytest.approx(4.0, rel=1e-5)
    # three channels: the jumps are averaged over the channels first (here the same image three
    # times plus a flat channel scales both means by 2/3) and the ratio of the means stays 4
    three = torch.cat([img, img, torch.zeros_like(img)])
    assert tile_seam_ratio(three, 2) == pytest.approx(4.0, rel=1e-5)
    assert math.isnan(tile_seam_ratio(torch.zeros(1, 2, 4), 2))  # flat: undefined


def test_class_block_std_known_value():
    # 2 x 4 image, blocks of 2: block 0 all class 0 with gray [0, 10; 20, 30];
    # block 1 only 3/4 class 1 (< min_share 0.9): left out
    img = gray([[[0.0, 10.0, 7.0, 7.0], [20.0, 30.0, 7.0, 99.0]]]).expand(3, 2, 4)
    labels = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 5]])
    # sample std (n - 1) of [0, 10, 20, 30]: mean 15, squares 225 + 25 + 25 + 225 = 500 -> sqrt(500 / 3) = 12.910
    out = class_block_std(img, labels, [0, 1], block=2)
    assert set(out) == {0} and out[0] == pytest.approx(math.sqrt(500 / 3), rel=1e-5)


def test_tile_health_and_tile_stats_averages():
    img = gray([[[0.0, 10.0, 40.0, 50.0], [0.0, 10.0, 40.0, 60.0]]])
    labels = torch.tensor([[0, 1, 0, 1], [0, 1, 0, 1]])
    # contrast per 2x2 tile: tile 0 |10 - 0| = 10, tile 1 |55 - 40| = 15 -> 12.5; seam ratio 4 (above)
    h = tile_health(img, labels, 2, real=img)
    assert h == pytest.approx({"tile_contrast": 12.5, "seam_ratio": 4.0, "tile_contrast_real": 12.5,
                               "seam_ratio_real": 4.0}, rel=1e-5)
    stats = TileStats(2, {"a": 0, "b": 1}, block=2)
    flat = torch.zeros(1, 3, 2, 4)  # contrast 0, seam ratio NaN (flat): skipped in the mean
    stats.update(torch.cat([img.expand(1, 3, 2, 4), flat]), labels.expand(2, 2, 4))
    r = stats.result()
    assert r["tile_contrast"] == pytest.approx((12.5 + 0) / 2, rel=1e-5)
    assert r["seam_ratio"] == pytest.approx(4.0, rel=1e-5)
    # blocks of 2x2 are never >= 90 % one class here
    assert r["block_std"] == {"a": None, "b": None}


# --------------------------------------------------------------------------- translation set scores
def test_nanmean_known_values():
    assert nanmean([1.0, float("nan"), 3.0, float("inf"), -float("inf")]) == 2.0
    assert nanmean([float("nan")]) is None and nanmean([]) is None


class _FixedSegmenter:
    """Returns the prediction it was given, for the image count it is asked about."""

    def __init__(self, preds):
        self.preds = list(preds)
        self.cfg = SimpleNamespace(num_classes=2)

    def predict(self, fake):
        return self.preds.pop(0)


def test_set_scores_known_values_over_two_chunks():
    real = torch.zeros(2, 3, 16, 16)
    fake = real.clone()
    fake[0] += 0.2  # 20 dB (see test_psnr_on_the_0_255_scale_per_image_then_averaged)
    fake[1] += 0.02  # 40 dB
    labels = torch.zeros(2, 16, 16, dtype=torch.int64)
    s = SetScores(["psnr", "segscore"], 4, {})
    # image 1: target [0, 0, 1, 1], prediction the same -> confusion [[2, 0], [0, 2]]
    # image 2: target [0, 0, 0, 0], prediction [0, 1, 1, 1] -> [[1, 3], [0, 0]]
    seg = _FixedSegmenter([torch.tensor([[[0, 0, 1, 1]]]), torch.tensor([[[0, 1, 1, 1]]])])
    s.update(fake[:1], real[:1], labels[:1], segmenter=seg, seg_target=torch.tensor([[[0, 0, 1, 1]]]))
    s.update(fake[1:], real[1:], labels[1:], segmenter=seg, seg_target=torch.tensor([[[0, 0, 0, 0]]]))
    r = s.result(["a", "b"])
    # PSNR: image mean (20 + 40) / 2 = 30 dB, whatever the chunking
    assert r["psnr"] == pytest.approx(30.0, abs=1e-3)
    # one pooled confusion matrix [[3, 3], [0, 2]]: IoU_a = 3 / (3 + 3) = 0.5, IoU_b = 2 / (2 + 3) = 0.4,
    # mIoU 0.45, pixel accuracy 5 / 8 (the mean of per-image mIoUs would be (1 + 0.125) / 2 = 0.5625)
    assert r["miou"] == pytest.approx(0.45) and r["pixel_accuracy"] == pytest.approx(0.625)
    assert r["per_class_iou"] == pytest.approx({"a": 0.5, "b": 0.4})


def test_trivial_colours_known_values():
    colour = torch.tensor([1.0, -1.0, 0.5])  # every pixel's colour is v * colour: channels stay apart
    p1 = (torch.tensor([[-1.0, 1.0]]) * colour.view(3, 1, 1))  # (3, 1, 2), labels [0, 1]
    p2 = (torch.tensor([[0.0, 0.5, 0.5]]) * colour.view(3, 1, 1))  # (3, 1, 3), labels [0, 0, 0]
    tc = TrivialColours.fit([(p1, torch.tensor([[0, 1]])), (p2, torch.tensor([[0, 0, 0]]))], num_classes=3)
    # every pixel weighs the same: mean v = (-1 + 1 + 0 + 0.5 + 0.5) / 5 = 0.2
    # (averaging the two photo means would give (0 + 1/3) / 2 = 0.1667)
    # class 0: (-1 + 0 + 0.5 + 0.5) / 4 = 0; class 1: 1; class 2 (never seen): the mean colour
    assert tc.images == 2
    assert tc.mean.tolist() == pytest.approx((0.2 * colour).tolist())
    expected = torch.stack([torch.zeros(3), colour, 0.2 * colour])
    torch.testing.assert_close(tc.class_means, expected, atol=1e-6, rtol=0)
    lab = torch.tensor([[[2, 1]]])
    assert tc.per_class(lab)[0, :, 0, 1].tolist() == pytest.approx(colour.tolist())
    assert tc.constant(lab).shape == (1, 3, 1, 2)
