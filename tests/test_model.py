import math

import pytest
import torch
import torch.nn.functional as F

from asapnet import ASAPConfig, asap_preset, create_model, list_models
from asapnet.models.asap import HRStream, neighborhood, positional_encoding


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_registry_lists_asap_and_rejects_unknown():
    assert "asap" in list_models()
    with pytest.raises(KeyError, match="unknown model"):
        create_model("no-such-model")


def test_cityscapes_256x512_has_reference_parameter_count():
    # released reference model: about 83.2 M parameters with 35 labels + instance edges
    m = create_model("asap", preset="cityscapes-256x512")
    assert abs(n_params(m) - 83.2e6) / 83.2e6 < 0.005
    assert m.S == 16 and m.cfg.pe_channels == 16


def test_presets_S_and_shipping_size():
    assert asap_preset("cityscapes-512x1024").S == 32
    assert asap_preset("cityscapes-1024x2048").S == 64
    assert asap_preset("facades-512").S == 32
    small = create_model("asap", preset="cityscapes-cpu")
    assert n_params(small) * 4 <= 20e6  # fp32 safetensors must stay <= 20 MB


def test_output_shape_and_range_for_odd_size():
    m = create_model("asap", preset="cityscapes-256x512").eval()
    labels = torch.randint(0, 35, (1, 250, 333))
    x = torch.zeros(1, 36, 250, 333).scatter_(1, labels[:, None], 1.0)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (1, 3, 250, 333)
    assert y.min() >= -1 and y.max() <= 1 and y.std() > 0


@pytest.mark.parametrize("hw", [(17, 23), (64, 64), (40, 101)])
def test_any_size_tiny(hw):
    m = create_model("asap", preset="tiny", in_channels=3).eval()
    x = torch.rand(2, 3, *hw) * 2 - 1
    with torch.no_grad():
        y = m(x)
    assert y.shape == (2, 3, *hw)
    assert torch.isfinite(y).all() and y.abs().max() <= 1


def test_wrong_channel_count_is_a_clear_error():
    m = create_model("asap", preset="tiny", in_channels=3)
    with pytest.raises(ValueError, match="expects 3 input channels, got 4"):
        m(torch.zeros(1, 4, 8, 8))


def test_positional_encoding_values():
    pe = positional_encoding(5, 7, 3)
    assert pe.shape == (1, 12, 5, 7)
    y, x = 3, 5
    for k in range(1, 4):
        c = 4 * (k - 1)
        assert pe[0, c, y, x].item() == pytest.approx(math.sin(2 * math.pi * x / 2 ** k), abs=1e-6)
        assert pe[0, c + 1, y, x].item() == pytest.approx(math.cos(2 * math.pi * x / 2 ** k), abs=1e-6)
        assert pe[0, c + 2, y, x].item() == pytest.approx(math.sin(2 * math.pi * y / 2 ** k), abs=1e-6)
        assert pe[0, c + 3, y, x].item() == pytest.approx(math.cos(2 * math.pi * y / 2 ** k), abs=1e-6)


def test_positional_encoding_is_per_shape_not_first_shape():
    a = positional_encoding(4, 4, 2)
    b = positional_encoding(8, 12, 2)
    assert a.shape[-2:] == (4, 4) and b.shape[-2:] == (8, 12)
    assert torch.equal(b[..., :4, :4], a)


def naive_pixel_mlp(cfg: ASAPConfig, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Per-pixel loop straight from Eq. (1)-(2): y_p = MLP(x_p, PE(p); phi_{floor(p/S)})."""
    N, C, H, W = x.shape
    S, K = cfg.S, cfg.num_frequencies
    widths = [C + 4 * K] + [cfg.hr_width] * (cfg.hr_depth - 1) + [cfg.out_channels]
    out = torch.zeros(N, cfg.out_channels, H, W, dtype=torch.float64)
    for n in range(N):
        for i in range(H):
            for j in range(W):
                pe = []
                for k in range(1, K + 1):
                    pe += [math.sin(2 * math.pi * j / 2 ** k), math.cos(2 * math.pi * j / 2 ** k),
                           math.sin(2 * math.pi * i / 2 ** k), math.cos(2 * math.pi * i / 2 ** k)]
                h = torch.cat([x[n, :, i, j].double(), torch.tensor(pe, dtype=torch.float64)])
                phi = params[n, :, i // S, j // S].double()
                off = 0
                for layer, (ci, co) in enumerate(zip(widths[:-1], widths[1:])):
                    w = phi[off:off + ci * co].view(ci, co) / math.sqrt(ci)
                    off += ci * co
                    b = phi[off:off + co]
                    off += co
                    h = h @ w + b
                    if layer < len(widths) - 2:
                        h = torch.nn.functional.leaky_relu(h, cfg.hr_slope)
                out[n, :, i, j] = h
    return out


def test_hr_stream_matches_naive_per_pixel_loop():
    cfg = asap_preset("tiny", in_channels=2, out_channels=3)
    hr = HRStream(cfg)
    torch.manual_seed(0)
    x = torch.randn(2, 2, 8, 12)
    params = torch.randn(2, hr.num_params, 2, 3)
    fast = hr(x, params)
    ref = naive_pixel_mlp(cfg, x, params)
    assert torch.allclose(fast.double(), ref, atol=1e-4), (fast.double() - ref).abs().max()
    # parameters really vary per tile: changing one tile's params changes only that tile
    p2 = params.clone()
    p2[0, :, 1, 2] += 1
    diff = (hr(x, p2) - fast).abs().sum(1)[0]
    assert diff[4:, 8:].sum() > 0 and diff[:4].sum() == 0 and diff[:, :8].sum() == 0


@pytest.mark.parametrize("pe", [True, False])
def test_hr_stream_fast_inference_path_matches_reference(pe):
    cfg = asap_preset("tiny", in_channels=5, positional_encoding=pe)
    hr = HRStream(cfg)
    torch.manual_seed(1)
    x, params = torch.randn(2, 5, 16, 20), torch.randn(2, hr.num_params, 4, 5)
    with torch.no_grad():
        fast = hr.forward_fast(x, params)
        ref = hr.forward_reference(x, params)
        assert torch.equal(hr(x, params), fast)  # inference dispatches to the fast path
    assert (fast - ref).abs().max() < 1e-5  # stated bound: fp32 reassociation only


@pytest.mark.parametrize("fast_pixels", [4096, 32, 8, 4, 1])
def test_hr_stream_fast_path_in_tile_bands_matches_reference(fast_pixels):
    # fast_pixels < S*S cuts every tile into row bands that share the tile's weights
    cfg = asap_preset("tiny", in_channels=3, s1=1, s2=8)
    hr = HRStream(cfg)
    hr.fast_pixels = fast_pixels
    torch.manual_seed(2)
    x, params = torch.randn(2, 3, 24, 40), torch.randn(2, hr.num_params, 3, 5)
    with torch.no_grad():
        fast = hr.forward_fast(x, params)
        ref = hr.forward_reference(x, params)
    assert (fast - ref).abs().max() < 1e-5


@pytest.mark.parametrize("hr_window", [1, 3])
def test_region_forward_equals_crop_of_full_forward(hr_window):
    m = create_model("asap", preset="tiny", in_channels=3, hr_window=hr_window).eval()
    x = torch.rand(1, 3, 30, 41) * 2 - 1
    with torch.no_grad():
        full = m(x)
        part = m(x, region=(8, 12, 16, 20))
    assert torch.allclose(part, full[..., 8:24, 12:32], atol=1e-6)
    with pytest.raises(ValueError, match="multiples of S"):
        m(x, region=(1, 0, 4, 4))


def test_spatially_uniform_ablation_uses_one_mlp_per_image():
    m = create_model("asap", preset="tiny", in_channels=3, spatially_uniform=True, positional_encoding=False).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        params = m.predict_params(m.pad(x))
    assert torch.allclose(params, params[..., :1, :1].expand_as(params))
    # with the same pixel value everywhere, the output is then constant
    with torch.no_grad():
        y = m(torch.full((1, 3, 16, 16), 0.3))
    assert torch.allclose(y, y[..., :1, :1].expand_as(y), atol=1e-6)


def test_neighborhood_channels_are_shifted_replicate_padded_copies():
    x = torch.randn(2, 3, 7, 9)
    n = neighborhood(x, 3)
    assert n.shape == (2, 27, 7, 9)
    assert torch.equal(neighborhood(x, 1), x)
    assert torch.equal(neighborhood(x, 3, region=(2, 3, 4, 5)), n[..., 2:6, 3:8])
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    for c in range(3):
        for i in range(3):
            for j in range(3):
                assert torch.equal(n[:, c * 9 + i * 3 + j], xp[:, c, i:i + 7, j:j + 9])


def test_hr_window_feeds_the_neighbourhood_to_the_pixel_mlps():
    cfg = asap_preset("tiny", in_channels=1, out_channels=1, hr_window=3)
    m = create_model("asap", cfg=cfg).eval()
    assert m.hr.dims[0][0] == 9 + cfg.pe_channels
    torch.manual_seed(3)
    x = torch.rand(1, 1, 21, 26)
    with torch.no_grad():
        y = m(x)
        xp = m.pad(x)
        params = m.predict_params(xp)
        ref = torch.tanh(naive_pixel_mlp(cfg, neighborhood(xp, 3), params)[..., :21, :26])  # tiny: tanh output
        m.hr.fast = False
        assert (m(x) - y).abs().max() < 1e-5  # fast path == reference path
    assert torch.allclose(y.double(), ref, atol=1e-4)
    # a pixel's output depends on its neighbours only through the window (and the LR stream):
    # the HR stream output at (10, 10) changes when (10, 11) changes, with the params held fixed
    x2 = x.clone()
    x2[..., 10, 11] += 0.5
    with torch.no_grad():
        d = (m.hr(neighborhood(m.pad(x2), 3), params) - m.hr(neighborhood(xp, 3), params)).abs()[0, 0]
    assert d[10, 10] > 0 and d[10, 13] == 0
    with pytest.raises(ValueError, match="hr_window"):
        ASAPConfig(hr_window=4)


def test_no_positional_encoding_changes_mlp_input_width():
    with_pe = create_model("asap", preset="tiny", in_channels=3)
    without = create_model("asap", preset="tiny", in_channels=3, positional_encoding=False)
    assert with_pe.hr.dims[0][0] == 3 + 4 * 2 and without.hr.dims[0][0] == 3


def test_config_validation():
    with pytest.raises(ValueError, match="power of two"):
        ASAPConfig(s2=12)
    with pytest.raises(KeyError, match="unknown ASAP preset"):
        asap_preset("nope")


def test_prepare_for_inference_folds_spectral_norm_without_changing_outputs():
    from torch.nn.utils import parametrize

    from asapnet.inference.optimize import prepare_for_inference
    m = create_model("asap", preset="tiny", in_channels=3)
    x = torch.rand(1, 3, 20, 28) * 2 - 1
    m.train()
    m(x)  # one power iteration so sigma is not the initial estimate
    m.eval()
    with torch.no_grad():
        before = m(x)
        prepare_for_inference(m)
        after = m(x)
    assert not any(parametrize.is_parametrized(mod) for mod in m.modules())
    assert (before - after).abs().max() < 1e-6


@pytest.mark.parametrize("workers,fast_pixels,threads", [(2, 4096, 2), (3, 32, 2), (2, 8, 4), (None, 4096, 3)])
def test_hr_stream_tile_workers_match_reference_and_restore_threads(workers, fast_pixels, threads):
    # CPU tile workers: groups of tiles split among threads, each with threads // workers
    # intra-op threads
    cfg = asap_preset("tiny", in_channels=3, s1=1, s2=8)
    hr = HRStream(cfg)
    hr.workers, hr.fast_pixels = workers, fast_pixels
    torch.manual_seed(3)
    x, params = torch.randn(2, 3, 24, 40), torch.randn(2, hr.num_params, 3, 5)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():  # inference tensors must be writable in the worker threads
            fast = hr.forward_fast(x, params)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    with torch.no_grad():
        ref = hr.forward_reference(x, params)
    assert (fast - ref).abs().max() < 1e-5  # stated bound: fp32 reassociation only
    hr.workers = 1
    with torch.no_grad():
        assert torch.equal(hr.forward_fast(x, params), fast)  # same products, any split


def test_flop_counter_sees_the_hr_stream_with_tile_workers():
    # FlopCounterMode is thread-local: the fast path must not hide its products in workers
    from asapnet.bench.inputs import count_gflops
    m = create_model("asap", preset="tiny", in_channels=3).eval()
    x = torch.rand(1, 3, 32, 48) * 2 - 1
    m.hr.workers = 2
    with_workers = count_gflops(m, x)
    m.hr.fast = False
    assert with_workers == pytest.approx(count_gflops(m, x))


def test_lr_head_batched_and_single_image_products_agree():
    # one image: weight-major addmm; a batch (or a traced graph): matmul + bias
    m = create_model("asap", preset="tiny", in_channels=3).eval()
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        both = m.lr(x)
        single = torch.cat([m.lr(x[:1]), m.lr(x[1:])])
    assert both.shape == (2, m.hr.num_params, 32 // m.S, 48 // m.S)
    assert (both - single).abs().max() < 1e-5
    w, b = m.lr.head.weight, m.lr.head.bias  # the head is the 1x1 convolution it stands for
    with torch.no_grad():
        assert (F.conv2d(m.lr.body(x), w, b) - both).abs().max() < 1e-4


@pytest.mark.parametrize("r", [2, 4])
def test_finer_grid_encoding_interpolates_the_training_scale_encoding(r):
    # a model trained at one scale only ever saw the encoding at integer pixel positions: on an r
    # times finer grid every channel is the linear interpolation of those values
    coarse = positional_encoding(16, 16, 4, dtype=torch.float64)
    fine = positional_encoding(16 * r, 16 * r, 4, dtype=torch.float64, scale=r)
    ref = F.interpolate(coarse, scale_factor=r, mode="bilinear", align_corners=False)
    inner = slice(r, -r)  # F.interpolate clamps at the border; the encoding continues periodically
    assert torch.allclose(fine[..., inner, inner], ref[..., inner, inner], atol=1e-12)
    # the period-2 sine is 0 at every integer position, so it stays 0 in between
    assert fine[0, 0].abs().max() < 1e-12 and fine[0, 2].abs().max() < 1e-12
    # and the encoding of a 16-px tile continues into the next tile without a jump (period 16)
    wide = positional_encoding(16 * r, 32 * r, 4, dtype=torch.float64, scale=r)
    assert torch.allclose(wide[..., :16 * r], wide[..., 16 * r:], atol=1e-12)
