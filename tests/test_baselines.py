"""Baseline generators: pix2pixHD global generator, SPADE, pix2pix U-Net."""
import pytest
import torch

from asapnet import create_model, list_models


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def one_hot_labels(n, h, w, classes=35, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, classes, (n, 1, h, w), generator=g)
    x = torch.zeros(n, classes + 1, h, w).scatter_(1, ids, 1.0)
    x[:, -1] = (torch.rand(n, h, w, generator=g) < 0.1).float()  # instance-edge channel
    return x


# Small widths so forward/backward passes take milliseconds on one thread.
SMALL = {"pix2pixhd": dict(ngf=4, n_blocks=2), "spade": dict(ngf=2, spade_hidden=8), "pix2pix": dict(ngf=4)}


def test_registry_lists_every_baseline():
    assert {"asap", "pix2pixhd", "spade", "pix2pix"} <= set(list_models())


@pytest.mark.parametrize("name, expected", [
    ("pix2pixhd", 182.5e6),  # pix2pixHD --netG global, 35 labels + instance edges
    ("spade", 93.0e6),       # SPADE Cityscapes generator, 35 labels + instance edges
])
def test_reference_parameter_counts_with_cityscapes_input(name, expected):
    m = create_model(name, in_channels=36)
    assert abs(n_params(m) - expected) / expected < 0.01


def test_pix2pix_unet256_parameter_count_matches_reference():
    # pytorch-CycleGAN-and-pix2pix prints 54.414 M for unet_256 with 3 input channels.
    m = create_model("pix2pix", in_channels=3)
    assert abs(n_params(m) - 54.414e6) / 54.414e6 < 0.001


@pytest.mark.parametrize("name", ["pix2pixhd", "spade", "pix2pix"])
@pytest.mark.parametrize("hw", [(64, 128), (50, 70)])
def test_output_shape_and_range_any_size(name, hw):
    m = create_model(name, in_channels=36, **SMALL[name]).eval()
    with torch.no_grad():
        y = m(one_hot_labels(2, *hw))
    assert y.shape == (2, 3, *hw)
    assert torch.isfinite(y).all() and y.min() >= -1 and y.max() <= 1 and y.std() > 0


@pytest.mark.parametrize("name", ["pix2pixhd", "spade", "pix2pix"])
def test_gradient_step_changes_every_weight(name):
    torch.manual_seed(0)
    m = create_model(name, in_channels=36, out_channels=1, **SMALL[name]).train()
    # Weights only: a conv bias followed by a parameter-free norm gets zero gradient in exact math.
    before = {k: v.detach().clone() for k, v in m.named_parameters() if k.endswith("weight") or "original" in k}
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    y = m(one_hot_labels(2, 64, 64))
    assert y.shape == (2, 1, 64, 64)
    (y - 0.5).pow(2).mean().backward()
    opt.step()
    params = dict(m.named_parameters())
    assert before and all(not torch.equal(params[k], v) for k, v in before.items())


@pytest.mark.parametrize("name", ["pix2pixhd", "spade", "pix2pix"])
def test_wrong_channel_count_is_a_clear_error(name):
    m = create_model(name, in_channels=36, **SMALL[name])
    with pytest.raises(ValueError, match="expects 36 input channels, got 3"):
        m(torch.zeros(1, 3, 32, 32))


def test_spade_starts_from_label_map_downsampled_32x():
    # Reference Cityscapes 256x512: sw, sh = 16, 8 ('normal' = 5 upsamplings).
    m = create_model("spade", in_channels=36, **SMALL["spade"]).eval()
    seen = []
    m.fc.register_forward_hook(lambda mod, inp, out: seen.append(tuple(out.shape[-2:])))
    with torch.no_grad():
        m(one_hot_labels(1, 256, 512))
    assert seen == [(8, 16)]


def test_pix2pixhd_bottleneck_is_16x_smaller_and_16x_wider():
    m = create_model("pix2pixhd", in_channels=36, **SMALL["pix2pixhd"]).eval()
    block = m.model[16]  # first residual block after the 7x7 conv and 4 downsamplings
    seen = []
    block.register_forward_hook(lambda mod, inp, out: seen.append(tuple(out.shape[1:])))
    with torch.no_grad():
        m(one_hot_labels(1, 32, 64))
    assert seen == [(16 * SMALL["pix2pixhd"]["ngf"], 2, 4)]


def test_pix2pix_dropout_is_noise_in_train_mode_only():
    m = create_model("pix2pix", in_channels=36, **SMALL["pix2pix"])
    assert sum(isinstance(mod, torch.nn.Dropout) for mod in m.modules()) == 3  # unet_256: 8 - 5 levels
    x = one_hot_labels(2, 64, 64)
    with torch.no_grad():
        m.train()
        assert not torch.equal(m(x), m(x))
        m.eval()
        assert torch.equal(m(x), m(x))
