"""How the LR stream's MLP parameters reach every pixel (ASAPConfig.param_upsampling): bilinear
parameter upsampling and bilinear blending of the tile MLPs' outputs."""
import math

import pytest
import torch
import torch.nn.functional as F

from asapnet import asap_preset, create_model
from asapnet.checkpoint import load_generator, save_generator
from asapnet.metrics.tiles import tile_seam_ratio
from asapnet.models.asap import HRStream, positional_encoding


def per_pixel_reference(hr: HRStream, x: torch.Tensor, params: torch.Tensor, scale: int = 1) -> torch.Tensor:
    """The paper's general form (Fig. 1): parameters upsampled to every pixel with
    F.interpolate(bilinear), then one MLP per pixel (each pixel a batch of one)."""
    N, _, H, W = x.shape
    T = hr.S * scale
    per_pixel = F.interpolate(params.double(), scale_factor=T, mode="bilinear", align_corners=False)
    feats = x.double()
    if hr.num_frequencies:
        pe = positional_encoding(T, T, hr.num_frequencies, dtype=torch.float64, scale=scale)
        feats = torch.cat([feats, pe.repeat(1, 1, H // T, W // T).expand(N, -1, -1, -1)], 1)
    f = feats.permute(0, 2, 3, 1).reshape(N * H * W, 1, -1)
    p = per_pixel.permute(0, 2, 3, 1).reshape(N * H * W, -1)
    return hr.mlp(f, p).reshape(N, H, W, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("pe", [True, False])
def test_bilinear_hr_stream_equals_per_pixel_mlps_with_interpolated_parameters(scale, pe):
    cfg = asap_preset("tiny", in_channels=3, param_upsampling="bilinear", positional_encoding=pe)
    hr = HRStream(cfg)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4 * 3 * scale, 4 * 5 * scale)
    params = torch.randn(2, hr.num_params, 3, 5)
    ref = per_pixel_reference(hr, x, params, scale)
    with torch.no_grad():  # inference: one row of dual tiles at a time
        y_inf = hr(x, params, scale)
    y_train = hr(x, params.requires_grad_(), scale)  # autograd: all dual tiles at once
    assert (y_inf.double() - ref).abs().max() < 1e-5
    assert (y_train.double() - ref).abs().max() < 1e-5
    y_train.square().sum().backward()
    assert torch.isfinite(params.grad).all() and params.grad.abs().sum() > 0
    # a tile's parameters reach the pixels of its neighbours (nearest: only its own tile)
    assert params.grad[0, :, 1, 2].abs().sum() > 0


def test_bilinear_and_nearest_agree_for_a_uniform_parameter_grid_and_differ_otherwise():
    near, bil = (HRStream(asap_preset("tiny", in_channels=2, param_upsampling=m)) for m in ("nearest", "bilinear"))
    torch.manual_seed(1)
    x = torch.randn(1, 2, 8, 12)
    one = torch.randn(1, near.num_params, 1, 1)
    uniform = one.expand(1, -1, 2, 3).contiguous()
    assert torch.allclose(near(x, uniform), bil(x, uniform), atol=1e-5)
    varying = torch.randn(1, near.num_params, 2, 3)
    assert (near(x, varying) - bil(x, varying)).abs().max() > 1e-2


def blend_reference(hr: HRStream, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Output blending written pixel by pixel: sum over the four tiles whose centres surround the
    pixel (align_corners=False, borders clamped) of weight * that tile's MLP on the pixel."""
    N, _, H, W = x.shape
    S = hr.S
    gh, gw = params.shape[-2:]
    feats = x.double()
    if hr.num_frequencies:
        feats = torch.cat([feats, positional_encoding(H, W, hr.num_frequencies, dtype=torch.float64).expand(N, -1, -1, -1)], 1)
    out = torch.zeros(N, hr.dims[-1][1], H, W, dtype=torch.float64)
    for i in range(H):
        for j in range(W):
            cy, cx = (i + 0.5) / S - 0.5, (j + 0.5) / S - 0.5
            y0, x0 = math.floor(cy), math.floor(cx)
            for ty, wy in ((y0, 1 - (cy - y0)), (y0 + 1, cy - y0)):
                for tx, wx in ((x0, 1 - (cx - x0)), (x0 + 1, cx - x0)):
                    p = params[:, :, min(max(ty, 0), gh - 1), min(max(tx, 0), gw - 1)].double()
                    out[:, :, i, j] += wy * wx * hr.mlp(feats[:, None, :, i, j], p)[:, 0]
    return out


def test_blend_hr_stream_equals_the_weighted_sum_of_the_four_tile_mlps():
    hr = HRStream(asap_preset("tiny", in_channels=3, s2=4, param_upsampling="blend"))
    torch.manual_seed(4)
    x = torch.randn(2, 3, 12, 16)
    params = torch.randn(2, hr.num_params, 3, 4)
    ref = blend_reference(hr, x, params)
    with torch.no_grad():
        y_inf = hr(x, params)
    y_train = hr(x, params.requires_grad_())
    assert (y_inf.double() - ref).abs().max() < 1e-5
    assert (y_train.double() - ref).abs().max() < 1e-5
    y_train.square().sum().backward()
    assert params.grad[0, :, 1, 2].abs().sum() > 0
    # blending outputs is not blending parameters: the MLPs are nonlinear
    bil = HRStream(asap_preset("tiny", in_channels=3, s2=4, param_upsampling="bilinear"))
    with torch.no_grad():
        assert (bil(x, params) - y_inf).abs().max() > 1e-2


@pytest.mark.parametrize("mode", ["bilinear", "blend"])
def test_blended_modes_remove_tile_seams_that_nearest_has(mode):
    torch.manual_seed(2)
    x = torch.full((1, 2, 64, 64), 0.5)
    seams = {}
    for m in ("nearest", mode):
        hr = HRStream(asap_preset("tiny", in_channels=2, s2=8, param_upsampling=m))
        params = torch.randn(1, hr.num_params, 8, 8, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            seams[m] = tile_seam_ratio(torch.tanh(hr(x, params)), 8)
    assert seams["nearest"] > 2.0 and seams[mode] < 1.5, seams


@pytest.mark.parametrize("mode", ["bilinear", "blend"])
def test_blended_region_forward_equals_crop_of_full_forward(mode):
    m = create_model("asap", preset="tiny", in_channels=3, param_upsampling=mode).eval()
    x = torch.rand(1, 3, 32, 44) * 2 - 1
    with torch.no_grad():
        full = m(x)
        for region in [(8, 12, 16, 20), (0, 0, 8, 8), (24, 36, 8, 8)]:  # inside, top-left and bottom-right corners
            t, l, h, w = region
            part = m(x, region=region)
            assert torch.allclose(part, full[..., t:t + h, l:l + w], atol=1e-6), region


def test_bilinear_upscaled_forward_runs_at_sub_tile_positions():
    m = create_model("asap", preset="tiny", in_channels=3, param_upsampling="bilinear").eval()
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.allclose(m.forward_upscaled(x, 1), m(x), atol=1e-6)
        y = m.forward_upscaled(x, 4)
    assert y.shape == (1, 3, 32, 48) and torch.isfinite(y).all()


def test_param_upsampling_is_validated_and_kept_in_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="param_upsampling"):
        asap_preset("tiny", param_upsampling="bicubic")
    m = create_model("asap", preset="tiny", in_channels=3, param_upsampling="bilinear")
    save_generator(tmp_path / "g.safetensors", m, "asap", m.cfg.to_dict())
    g, meta = load_generator(tmp_path / "g.safetensors")
    assert g.cfg.param_upsampling == "bilinear" and g.hr.upsampling == "bilinear"
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(g(x), m.eval()(x), atol=1e-6)


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "blend"])
def test_off_cpu_the_hr_stream_runs_all_tiles_at_once(monkeypatch, mode):
    """On a GPU the HR stream must not loop over tiles in Python: off the CPU (here the meta
    device) the CPU tile-worker path and the row-by-row dual tiles are not used."""
    import asapnet.inference.tiles as tiles

    hr = HRStream(asap_preset("tiny", in_channels=3, param_upsampling=mode))
    calls = []
    monkeypatch.setattr(tiles, "hr_forward_fast", lambda *a, **k: calls.append("fast"))
    cat = torch.cat
    monkeypatch.setattr(torch, "cat", lambda ts, *a, **k: calls.append(len(ts)) or cat(ts, *a, **k))
    x = torch.empty(1, 3, 4 * 6, 4 * 8, device="meta")
    params = torch.empty(1, hr.num_params, 6, 8, device="meta")
    with torch.no_grad():
        y = hr(x, params)
    assert y.shape == (1, 3, 24, 32) and y.device.type == "meta"
    assert "fast" not in calls
    # dual-tile modes: no concatenation of per-row outputs (7 rows of dual tiles would give a cat of 7)
    assert 7 not in calls
