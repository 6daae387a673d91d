"""Winograd F(2x2, 3x3) convolution (issue #5) against float64 ``F.conv2d`` and the plain models."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils import spectral_norm

from asapnet import create_model
from asapnet.bench.inputs import random_label_input
from asapnet.inference.optimize import optimize_for_inference, prepare_for_inference
from asapnet.inference.winograd import WinogradConv2d, convert_winograd, winograd_conv3x3, winograd_filter


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 9), k=st.integers(1, 9), h=st.integers(1, 11), w=st.integers(1, 11),
       padding=st.sampled_from([0, 1]), bias=st.booleans(), seed=st.integers(0, 1000))
def test_matches_float64_convolution_for_any_shape(n, c, k, h, w, padding, bias, seed):
    if padding == 0 and (h < 3 or w < 3):
        return  # no valid output
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    wt = torch.randn(k, c, 3, 3, generator=g)
    b = torch.randn(k, generator=g) if bias else None
    ref = F.conv2d(x.double(), wt.double(), None if b is None else b.double(), padding=padding)
    y = winograd_conv3x3(x, winograd_filter(wt), b, padding)
    assert y.shape == ref.shape and y.dtype == torch.float32 and y.is_contiguous()
    assert (y.double() - ref).abs().max().item() < 1e-4 * max(1.0, ref.abs().max().item())


def test_wide_layer_is_as_accurate_as_the_direct_fp32_convolution():
    torch.manual_seed(0)
    conv = nn.Conv2d(256, 256, 3, padding=1)
    x = torch.randn(1, 256, 16, 32)
    ref = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
    with torch.inference_mode():
        err_direct = (conv(x).double() - ref).abs().max().item()
        err_wino = (WinogradConv2d(conv)(x).double() - ref).abs().max().item()
    assert err_wino < 1e-5 and err_wino < 4 * err_direct


def test_convert_replaces_only_wide_3x3_stride1_convolutions():
    m = nn.Sequential(nn.Conv2d(256, 256, 3, padding=1),           # converted
                      nn.Conv2d(256, 256, 3, stride=2, padding=1),  # strided: kept
                      nn.Conv2d(256, 64, 3, padding=1),             # narrow output: kept
                      nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(256, 256, 3)),  # nested, padding 0: converted
                      nn.Conv2d(256, 256, 3, padding=1, padding_mode="reflect"),     # not zero padding: kept
                      nn.Conv2d(256, 256, 1),                       # 1x1: kept
                      spectral_norm(nn.Conv2d(256, 256, 3, padding=1)))  # old-style SN hook: weight is recomputed
    convert_winograd(m)
    kinds = [type(m[i]).__name__ for i in range(len(m))]
    assert kinds == ["WinogradConv2d", "Conv2d", "Conv2d", "Sequential", "Conv2d", "Conv2d", "Conv2d"]
    assert type(m[3][1]) is WinogradConv2d and m[3][1].padding == 0
    sn = nn.Sequential(torch.nn.utils.parametrizations.spectral_norm(nn.Conv2d(256, 256, 3, padding=1)))
    assert not isinstance(convert_winograd(sn)[0], WinogradConv2d)  # parametrised (SN not folded): kept
    assert convert_winograd(nn.Conv2d(64, 64, 3, padding=1)).__class__ is nn.Conv2d  # a bare module is not replaced


def test_asap_lr_stream_by_winograd_computes_the_same_image():
    torch.manual_seed(0)
    x = random_label_input(35, 70, 98, block=8, generator=torch.Generator().manual_seed(1))

    def model():
        torch.manual_seed(0)
        return create_model("asap", preset="tiny", in_channels=36, s1=2, lr_max_width=256, lr_depth=2)

    with torch.inference_mode():
        ref = prepare_for_inference(model())(x)
        fast = optimize_for_inference(model(), winograd=True)
        y = fast(x)
    converted = [m for m in fast.lr.body.modules() if isinstance(m, WinogradConv2d)]
    assert len(converted) == 2  # the two 256-wide blocks; the narrow and strided convs stay
    assert (y - ref).abs().max().item() < 1e-5


def test_pix2pixhd_residual_blocks_by_winograd_compute_the_same_image():
    torch.manual_seed(0)
    x = random_label_input(35, 64, 64, block=8, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    model = create_model("pix2pixhd", in_channels=36, ngf=16, n_blocks=1).eval()
    with torch.inference_mode():
        ref = model(x)
        convert_winograd(model)
        y = model(x)
    assert sum(isinstance(m, WinogradConv2d) for m in model.modules()) == 2  # ngf*16 = 256-wide block
    assert (y - ref).abs().max().item() < 1e-5


def test_bad_inputs_are_clear_errors():
    u = winograd_filter(torch.randn(8, 4, 3, 3))
    with pytest.raises(ValueError, match="5 channels, the filters expect 4"):
        winograd_conv3x3(torch.randn(1, 5, 8, 8), u)
    with pytest.raises(ValueError, match="too small"):
        winograd_conv3x3(torch.randn(1, 4, 2, 8), u, padding=0)
    with pytest.raises(ValueError, match=r"\(K, C, 3, 3\)"):
        winograd_filter(torch.randn(8, 4, 5, 5))
    with pytest.raises(ValueError, match="stride-1"):
        WinogradConv2d(nn.Conv2d(4, 4, 3, stride=2))
