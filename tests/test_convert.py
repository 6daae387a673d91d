"""Converting reference checkpoints (ASAP-Net, SPADE, pix2pixHD): outputs equal to the reference
forward, refusal of mismatching checkpoints, safe loading, CLI convert -> translate.

No internet: every test builds a state dict with the reference's key names and shapes (random
weights) and checks the converted model against a functional forward written here from the
reference semantics, independent of asapnet's model code.
"""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from asapnet.checkpoint import load_generator
from asapnet.cli import main
from asapnet.convert.options import ReferenceOptions, reference_options
from asapnet.convert.reference import convert_checkpoint, convert_state_dict
from asapnet.convert.state_dict import load_reference_state_dict

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "cityscapes"
TOL = 1e-4  # outputs in [-1, 1]; different float32 summation orders give ~1e-6

# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------


def ref_edges(inst: torch.Tensor) -> torch.Tensor:
    """pix2pixHD / SPADE / ASAP-Net ``get_edges``: (N, 1, H, W) ids -> 4-neighbour boundary map."""
    e = torch.zeros_like(inst, dtype=torch.bool)
    dx = inst[..., :, 1:] != inst[..., :, :-1]
    dy = inst[..., 1:, :] != inst[..., :-1, :]
    e[..., :, 1:] |= dx
    e[..., :, :-1] |= dx
    e[..., 1:, :] |= dy
    e[..., :-1, :] |= dy
    return e.float()


def label_input(nc: int, h: int, w: int, instance: bool, seed: int = 0) -> torch.Tensor:
    """A blocky random label map as one-hot (1, nc [+1 edge], h, w)."""
    g = torch.Generator().manual_seed(seed)
    lab = torch.randint(0, nc, (1, 1, (h + 7) // 8, (w + 7) // 8), generator=g)
    lab = F.interpolate(lab.float(), size=(h, w), mode="nearest").long()
    x = torch.zeros(1, nc, h, w).scatter_(1, lab, 1.0)
    if instance:
        inst = lab * 1000 + torch.randint(0, 3, lab.shape, generator=g)
        x = torch.cat([x, ref_edges(inst)], 1)
    return x


def check_close(y, y_ref):
    assert y.shape == y_ref.shape
    # a meaningful comparison needs outputs away from tanh saturation
    assert 0.02 < y_ref.std() and y_ref.abs().mean() < 0.9, (y_ref.std(), y_ref.abs().mean())
    d = (y - y_ref).abs().max().item()
    assert d <= TOL, d
    return d


# ---------------------------------------------------------------------------------------------
# ASAP-Net: reference-format state dict and functional forward (tamarott/ASAPNet semantics)
# ---------------------------------------------------------------------------------------------


def asap_ref_layout(n_in, S, ds, lr_width, lr_max_width, lr_depth, norm, pad=False):
    """[(conv prefix, norm prefix, cin, cout, stride)], head prefix of ASAPNetsLRStream. ``pad``:
    --reflection_pad / --replicate_pad, a parameter-free padding module before every 3x3 conv."""
    plain = norm.replace("spectral", "") == "none"
    blk = (lambda p: (p, None)) if plain else (lambda p: (p + ".0", p + ".1"))
    out, idx, width, p = [], 0, lr_width, int(pad)
    idx += p
    out.append((*blk(f"lowres_stream.model.{idx}"), n_in, lr_width, 1))
    idx += 2
    nds = int(math.log2(ds))
    for i in range(nds):
        idx += p
        cout = lr_max_width if i == nds - 1 else width
        out.append((*blk(f"lowres_stream.model.{idx}"), width, cout, 2))
        width, idx = cout, idx + 2
    for _ in range(lr_depth):
        out.append((*blk(f"lowres_stream.model.{idx}.conv_block.{p}"), width, width, 1))
        idx += 1
    return out, f"lowres_stream.model.{idx}", width


def hr_channels(n_hr, S, hr_width, hr_depth, out=3, pe=True):
    return [n_hr + (4 * int(math.log2(S)) if pe else 0)] + [hr_width] * (hr_depth - 1) + [out]


def rand_conv(sd, prefix, cin, cout, k, g, bias, spectral, scale=1.0):
    w = torch.randn(cout, cin, k, k, generator=g) * scale / math.sqrt(cin * k * k)
    if spectral:
        # stored u, v of a power iteration: v ~ a right vector, u = W v / |W v| (sigma = |W v| > 0)
        v = F.normalize(torch.randn(cin * k * k, generator=g), dim=0)
        sd[prefix + ".weight_orig"] = w * 3.0
        sd[prefix + ".weight_u"] = F.normalize(w.flatten(1) @ v, dim=0)
        sd[prefix + ".weight_v"] = v
    else:
        sd[prefix + ".weight"] = w
    if bias:
        sd[prefix + ".bias"] = 0.1 * torch.randn(cout, generator=g)


def rand_norm(sd, prefix, c, norm, g):
    sub = norm.replace("spectral", "")
    if sub in ("instanceaffine", "batch", "sync_batch"):
        sd[prefix + ".weight"] = 1 + 0.2 * torch.randn(c, generator=g)
        sd[prefix + ".bias"] = 0.2 * torch.randn(c, generator=g)
    if sub in ("batch", "sync_batch"):
        sd[prefix + ".running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[prefix + ".running_var"] = 0.5 + torch.rand(c, generator=g)
        sd[prefix + ".num_batches_tracked"] = torch.tensor(1000)


def asap_ref_state_dict(n_in, n_hr, S, ds=16, lr_width=64, lr_max_width=1024, lr_depth=7, hr_width=64, hr_depth=5,
                        norm="instanceaffine", pe=True, seed=0, pad=False):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    layers, head, width = asap_ref_layout(n_in, S, ds, lr_width, lr_max_width, lr_depth, norm, pad)
    spectral, plain = norm.startswith("spectral"), norm.replace("spectral", "") == "none"
    for conv, nrm, cin, cout, _ in layers:
        rand_conv(sd, conv, cin, cout, 3, g, bias=plain, spectral=spectral, scale=1.4)
        if nrm:
            rand_norm(sd, nrm, cout, norm, g)
    chans = hr_channels(n_hr, S, hr_width, hr_depth, pe=pe)
    # head rows in the reference layout [b, W] per layer; W rows ~ 1/sqrt(c_in) so the MLPs stay unsaturated
    rows = []
    for ci, co in zip(chans[:-1], chans[1:]):
        rows += [torch.full((co,), 0.3), torch.full((ci * co,), 1.2 / math.sqrt(ci))]
    rows = torch.cat(rows)
    w_scale = (rows / math.sqrt(width)).view(-1, 1, 1, 1)
    sd[head + ".weight"] = torch.randn(len(rows), width, 1, 1, generator=g) * w_scale
    sd[head + ".bias"] = torch.randn(len(rows), generator=g) * rows
    return sd


def sn_weight(sd, prefix):
    """Eval-time weight of torch.nn.utils.spectral_norm: weight_orig / (u^T W v) with the stored u, v."""
    if prefix + ".weight_orig" not in sd:
        return sd[prefix + ".weight"]
    w = sd[prefix + ".weight_orig"]
    sigma = torch.dot(sd[prefix + ".weight_u"], w.flatten(1) @ sd[prefix + ".weight_v"])
    return w / sigma


def ref_norm(h, sd, prefix, norm):
    sub = norm.replace("spectral", "")
    if sub in ("batch", "sync_batch"):
        return F.batch_norm(h, sd[prefix + ".running_mean"], sd[prefix + ".running_var"], sd[prefix + ".weight"],
                            sd[prefix + ".bias"], training=False, eps=1e-5)
    if sub == "instanceaffine":
        return F.instance_norm(h, weight=sd[prefix + ".weight"], bias=sd[prefix + ".bias"], eps=1e-5)
    if sub == "instance":
        return F.instance_norm(h, eps=1e-5)
    return h


def tent_downsample(x, s):
    """Reference MySeparableBilinearDownsample: taps [1, 3, ..., 2s-1, 2s-1, ..., 1] / sum,
    reflection padding s/2, stride s, separable."""
    k = torch.arange(1, 2 * s + 1, 2, dtype=torch.float64)
    k = torch.cat([k, k.flip(0)])
    k = (k / k.sum()).float()
    C = x.shape[1]
    xp = F.pad(x, [s // 2] * 4, mode="reflect")
    y = F.conv2d(xp, k.view(1, 1, 1, -1).repeat(C, 1, 1, 1), stride=(1, s), groups=C)
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(C, 1, 1, 1), stride=(s, 1), groups=C)


def ref_coords(h, w, S):
    """Reference _get_coords('cosine'): for f = S, S/2, ..., 2: cos x, sin x, cos y, sin y of 2 pi (x mod f) / f."""
    chans, f = [], S
    x, y = torch.arange(w).float(), torch.arange(h).float()
    while f > 1:
        ax, ay = 2 * math.pi * torch.remainder(x, f) / f, 2 * math.pi * torch.remainder(y, f) / f
        chans += [torch.cos(ax).view(1, w).expand(h, w), torch.sin(ax).view(1, w).expand(h, w),
                  torch.cos(ay).view(h, 1).expand(h, w), torch.sin(ay).view(h, 1).expand(h, w)]
        f //= 2
    return torch.stack(chans)[None]


def asap_ref_forward(sd, x, S, ds=16, lr_depth=7, hr_width=64, hr_depth=5, lr_width=64, lr_max_width=1024,
                     lr_instance=True, norm="instanceaffine", pe=True, downsample="tent", padding="zeros"):
    """Reference ASAPNetsGenerator.forward in eval mode. ``padding`` "reflect" / "replicate":
    --reflection_pad / --replicate_pad (pad by 1, then a conv without padding)."""
    N, C, H, W = x.shape
    s1 = S // ds
    low = x if s1 == 1 else (tent_downsample(x, s1) if downsample == "tent" else
                             F.interpolate(x, size=(H // s1, W // s1), mode="bilinear", antialias=True))
    layers, head, _ = asap_ref_layout(C, S, ds, lr_width, lr_max_width, lr_depth, norm, padding != "zeros")
    h = low
    for conv, nrm, _, _, stride in layers:
        if padding != "zeros":
            h = F.conv2d(F.pad(h, [1] * 4, mode=padding), sn_weight(sd, conv), sd.get(conv + ".bias"), stride=stride)
        else:
            h = F.conv2d(h, sn_weight(sd, conv), sd.get(conv + ".bias"), stride=stride, padding=1)
        h = F.relu(ref_norm(h, sd, nrm, norm) if nrm else h)
    p = F.conv2d(h, sd[head + ".weight"], sd[head + ".bias"])  # (N, P, H/S, W/S)
    hr = x[:, :-1] if lr_instance else x
    feats = torch.cat([hr, ref_coords(H, W, S).expand(N, -1, H, W)], 1) if pe else hr
    chans = hr_channels(hr.shape[1], S, hr_width, hr_depth, pe=pe)
    nci = feats.shape[1]
    hl, wl = H // S, W // S
    out = feats.unfold(2, S, S).unfold(3, S, S).permute(0, 2, 3, 4, 5, 1).reshape(N, hl, wl, S * S, nci)
    off = 0
    for i, (ci, co) in enumerate(zip(chans[:-1], chans[1:])):
        b = p[:, off:off + co].permute(0, 2, 3, 1).reshape(N, hl, wl, 1, co)
        w = p[:, off + co:off + co + ci * co].permute(0, 2, 3, 1).reshape(N, hl, wl, ci, co)
        off += co + ci * co
        out = out @ w + b
        out = F.leaky_relu(out, 0.01) if i < len(chans) - 2 else torch.tanh(out)
    co = chans[-1]
    return out.reshape(N, hl, wl, S, S, co).permute(0, 5, 1, 3, 2, 4).reshape(N, co, H, W)


# ---------------------------------------------------------------------------------------------
# ASAP-Net tests
# ---------------------------------------------------------------------------------------------


def test_asap_cityscapes_256x512_converts_exactly():
    """The released Cityscapes setting: 35 labels + edges to the LR stream only, S = 16 (S1 = 1),
    full widths (83,201,411 parameters); evaluated on a 64x128 input to stay fast."""
    sd = asap_ref_state_dict(36, 35, 16)
    opts = reference_options("asapnet", "cityscapes")
    model, name, cfg = convert_state_dict(sd, opts)
    assert name == "asap" and cfg["s1"] == 1 and cfg["s2"] == 16 and cfg["lr_only_channels"] == 1
    assert sum(p.numel() for p in model.parameters()) == sum(v.numel() for v in sd.values()) == 83_201_411
    x = label_input(35, 64, 128, instance=True)
    with torch.no_grad():
        check_close(model(x), asap_ref_forward(sd, x, 16))


SMALL = dict(lr_width=8, lr_max_width=16, lr_depth=2, hr_width=16, hr_depth=3)


@pytest.mark.parametrize("norm", ["instanceaffine", "spectralinstance", "batch", "none"])
def test_asap_small_widths_and_norms_convert_exactly(norm):
    """Any widths / depths / --norm_G: 20 labels + don't-care + edges, S = 8 from crop 256 / aspect 2."""
    o = dict(label_nc=20, contain_dontcare_label=True, crop_size=256, aspect_ratio=2.0, learned_ds_factor=8,
             norm_g=norm, **SMALL)
    opts = reference_options("asapnet", "cityscapes", **o)
    sd = asap_ref_state_dict(22, 21, 8, ds=8, norm=norm, **SMALL, seed=1)
    model, _, cfg = convert_state_dict(sd, opts)
    x = label_input(21, 32, 48, instance=True, seed=2)  # 4 x 6 tiles, non-square
    with torch.no_grad():
        check_close(model(x), asap_ref_forward(sd, x, 8, ds=8, norm=norm, **SMALL))


def test_asap_without_positional_encoding_converts_exactly():
    opts = reference_options("asapnet", "facades", positional_encoding=False, learned_ds_factor=4, crop_size=64,
                             lr_padding="zeros", **SMALL)
    sd = asap_ref_state_dict(13, 13, 4, ds=4, pe=False, **SMALL, seed=3)
    model, _, cfg = convert_state_dict(sd, opts)
    assert not cfg["positional_encoding"]
    x = label_input(13, 24, 32, instance=False, seed=4)
    with torch.no_grad():
        check_close(model(x), asap_ref_forward(sd, x, 4, ds=4, lr_instance=False, pe=False, **SMALL))


@pytest.mark.parametrize("S", [8, 16])
def test_asap_s1_tent_filter_converts_exactly(S):
    """Facades-like: 13 labels, no instance map, S2 = 4, so S1 = 2 (S = 8) or 4 (S = 16). The
    converted model downsamples with the reference's tent filter (s1_filter="tent")."""
    opts = reference_options("asapnet", "facades", crop_size=16 * S, learned_ds_factor=4, lr_padding="zeros", **SMALL)
    sd = asap_ref_state_dict(13, 13, S, ds=4, **SMALL, seed=5)
    model, _, cfg = convert_state_dict(sd, opts)
    assert (cfg["s1"], cfg["s2"], cfg["lr_only_channels"], cfg["s1_filter"]) == (S // 4, 4, 0, "tent")
    x = label_input(13, 48, 64, instance=False, seed=6)
    kw = dict(ds=4, lr_instance=False, **SMALL)
    with torch.no_grad():
        check_close(model(x), asap_ref_forward(sd, x, S, downsample="tent", **kw))


def test_asap_s1_filter_antialias_is_kept_for_older_checkpoints():
    """A checkpoint converted before ``s1_filter`` existed has no such key: it keeps PyTorch's
    anti-aliased filter, which differs from the tent filter only on the border row / column."""
    from asapnet.config import ASAPConfig
    from asapnet.models import create_model

    opts = reference_options("asapnet", "facades", crop_size=128, learned_ds_factor=4, lr_padding="zeros", **SMALL)
    sd = asap_ref_state_dict(13, 13, 8, ds=4, **SMALL, seed=5)
    model, _, cfg = convert_state_dict(sd, opts)
    old_cfg = {k: v for k, v in cfg.items() if k not in ("s1_filter", "lr_padding")}
    old = create_model("asap", cfg=ASAPConfig.from_dict(old_cfg)).eval()
    assert (old.cfg.s1_filter, old.cfg.lr_padding) == ("antialias", "zeros")
    old.load_state_dict(model.state_dict())
    x = label_input(13, 48, 64, instance=False, seed=6)
    with torch.no_grad():
        check_close(old(x), asap_ref_forward(sd, x, 8, downsample="antialias", ds=4, lr_instance=False, **SMALL))
    r = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    for s1 in (2, 4):
        a = F.interpolate(r, size=(48 // s1, 64 // s1), mode="bilinear", antialias=True)
        t = tent_downsample(r, s1)
        assert (a - t)[..., 1:-1, 1:-1].abs().max() < 1e-6
        assert (a - t)[..., :1, :].abs().max() > 1e-3  # the borders do differ


def test_tent_downsample_is_the_reference_filter():
    """asapnet's tent filter (used by s1_filter="tent") against the functional reference one."""
    from asapnet.models.asap import tent_downsample as ours

    r = torch.rand(2, 5, 32, 48, generator=torch.Generator().manual_seed(1))
    for s1 in (2, 4, 8):
        assert torch.allclose(ours(r, s1), tent_downsample(r, s1), atol=1e-7, rtol=0)
    with pytest.raises(ValueError, match="even integer"):
        ours(r, 3)


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_lr_padding_mode_equals_a_padding_module_then_an_unpadded_conv(mode):
    """``nn.Conv2d(padding=1, padding_mode=...)`` (asapnet's LR stream) computes what the
    reference's ReflectionPad2d(1) / ReplicationPad2d(1) + Conv2d(padding=0) computes, for the
    stride-1 and the stride-2 convolutions, down to 2-pixel maps."""
    g = torch.Generator().manual_seed(2)
    for stride in (1, 2):
        conv = torch.nn.Conv2d(4, 6, 3, stride=stride, padding=1, padding_mode=mode)
        for hw in ((2, 2), (2, 6), (5, 7), (16, 32)):
            x = torch.randn(1, 4, *hw, generator=g)
            ref = F.conv2d(F.pad(x, [1] * 4, mode=mode), conv.weight, conv.bias, stride=stride)
            assert torch.equal(conv(x), ref)


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_asap_reflection_padded_facades_checkpoint_converts_exactly(mode):
    """The released Facades models: --reflection_pad (``--dataset facades`` sets it), 13 labels,
    no instance map, S1 = 2. Small widths, S = 8 (crop 128, S2 = 4)."""
    from asapnet.config import ASAPConfig
    from asapnet.models import create_model

    opts = reference_options("asapnet", "facades", crop_size=128, learned_ds_factor=4,
                             lr_padding=None if mode == "reflect" else mode, **SMALL)
    assert opts.lr_padding == mode
    sd = asap_ref_state_dict(13, 13, 8, ds=4, **SMALL, seed=7, pad=True)
    assert "lowres_stream.model.1.0.weight" in sd and "lowres_stream.model.9.conv_block.1.0.weight" in sd
    model, _, cfg = convert_state_dict(sd, opts)
    assert (cfg["lr_padding"], cfg["s1"], cfg["s1_filter"]) == (mode, 2, "tent")
    x = label_input(13, 48, 64, instance=False, seed=8)
    with torch.no_grad():
        y = model(x)
        check_close(y, asap_ref_forward(sd, x, 8, ds=4, lr_instance=False, padding=mode, **SMALL))
        # the same weights with zero padding give another result: the padding matters
        zeros = create_model("asap", cfg=ASAPConfig(**{**cfg, "lr_padding": "zeros"})).eval()
        zeros.load_state_dict(model.state_dict())
        assert (y - zeros(x)).abs().max() > 1e-3


def test_asap_reflection_padding_refuses_one_pixel_lr_maps():
    """Reflection padding needs 2 pixels per side: an input of at most S pixels on a side gives a
    1-pixel LR grid, which the reference cannot run either; asapnet raises a clear ValueError
    (zero and replicate padding run)."""
    from asapnet.models import create_model

    for mode in ("reflect", "replicate", "zeros"):
        m = create_model("asap", preset="tiny", in_channels=3, lr_padding=mode).eval()  # S = 4
        with torch.no_grad():
            assert m(torch.randn(1, 3, 8, 12)).shape == (1, 3, 8, 12)  # a 2 x 3 grid
            if mode != "reflect":
                assert m(torch.randn(1, 3, 4, 12)).shape == (1, 3, 4, 12)
                continue
            with pytest.raises(ValueError, match=r"padded to 4x12, gives LR-stream feature maps of 1x3.*S = 4"):
                m(torch.randn(1, 3, 4, 12))
            with pytest.raises(ValueError, match="reflection padding"):
                m(torch.randn(1, 3, 3, 12))  # padded to 4x12


def test_asap_padding_mismatch_is_refused_with_a_hint(tmp_path):
    # an unpadded checkpoint given as --reflection_pad (the facades default) and the other way round
    sd = asap_ref_state_dict(13, 13, 8, ds=4, **SMALL, seed=9)
    opts = reference_options("asapnet", "facades", crop_size=128, learned_ds_factor=4, **SMALL)
    msg = r"^f\.pth: .*missing key 'lowres_stream\.model\.1\.0\.weight'.*--lr-padding zeros"
    with pytest.raises(ValueError, match=msg):
        convert_state_dict(sd, opts, "f.pth")
    padded = asap_ref_state_dict(13, 13, 8, ds=4, **SMALL, seed=9, pad=True)
    with pytest.raises(ValueError, match="--lr-padding reflect"):
        convert_state_dict(padded, reference_options("asapnet", "facades", crop_size=128, learned_ds_factor=4,
                                                     lr_padding="zeros", **SMALL), "f.pth")
    # the CLI's --reflection-pad (the reference's option name) on a Cityscapes-layout checkpoint
    sd = asap_ref_state_dict(36, 35, 16, **SMALL, seed=10, pad=True)
    torch.save(sd, tmp_path / "latest_net_G.pth")
    out = tmp_path / "o.safetensors"
    args = ["--lr-width", "8", "--lr-max-width", "16", "--lr-depth", "2", "--hr-width", "16", "--hr-depth", "3"]
    assert main(["convert", str(tmp_path / "latest_net_G.pth"), "-o", str(out), "--from", "asapnet",
                 "--dataset", "cityscapes", "--reflection-pad", *args]) == 0
    model, meta = load_generator(out)
    assert model.cfg.lr_padding == "reflect" and meta["reference_options"]["lr_padding"] == "reflect"
    x = label_input(35, 32, 64, instance=True, seed=11)
    with torch.no_grad():
        check_close(model.eval()(x), asap_ref_forward(sd, x, 16, padding="reflect", **SMALL))


# ---------------------------------------------------------------------------------------------
# SPADE (NVlabs/SPADE semantics)
# ---------------------------------------------------------------------------------------------


def spade_ref_state_dict(sem_nc, ngf, ups="normal", z_dim=0, latent=(1, 2), norm="batch", k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd, nf = {}, ngf
    if z_dim:
        sd["fc.weight"] = torch.randn(16 * nf * latent[0] * latent[1], z_dim, generator=g) / math.sqrt(z_dim)
        sd["fc.bias"] = 0.1 * torch.randn(16 * nf * latent[0] * latent[1], generator=g)
    else:
        rand_conv(sd, "fc", sem_nc, 16 * nf, 3, g, bias=True, spectral=False)

    def spade(prefix, c):
        rand_conv(sd, prefix + ".mlp_shared.0", sem_nc, 128, k, g, bias=True, spectral=False, scale=1.4)
        rand_conv(sd, prefix + ".mlp_gamma", 128, c, k, g, bias=True, spectral=False, scale=0.5)
        rand_conv(sd, prefix + ".mlp_beta", 128, c, k, g, bias=True, spectral=False, scale=0.5)
        if norm == "batch":
            sd[prefix + ".param_free_norm.running_mean"] = 0.1 * torch.randn(c, generator=g)
            sd[prefix + ".param_free_norm.running_var"] = 0.5 + torch.rand(c, generator=g)
            sd[prefix + ".param_free_norm.num_batches_tracked"] = torch.tensor(7)

    def block(name, fin, fout):
        fmid = min(fin, fout)
        rand_conv(sd, name + ".conv_0", fin, fmid, 3, g, bias=True, spectral=True)
        rand_conv(sd, name + ".conv_1", fmid, fout, 3, g, bias=True, spectral=True)
        if fin != fout:
            rand_conv(sd, name + ".conv_s", fin, fout, 1, g, bias=False, spectral=True)
        spade(name + ".norm_0", fin)
        spade(name + ".norm_1", fmid)
        if fin != fout:
            spade(name + ".norm_s", fin)

    for name, fin, fout in [("head_0", 16, 16), ("G_middle_0", 16, 16), ("G_middle_1", 16, 16), ("up_0", 16, 8),
                            ("up_1", 8, 4), ("up_2", 4, 2), ("up_3", 2, 1)]:
        block(name, fin * nf, fout * nf)
    final = nf
    if ups == "most":
        block("up_4", nf, nf // 2)
        final = nf // 2
    rand_conv(sd, "conv_img", final, 3, 3, g, bias=True, spectral=False, scale=0.3)
    return sd


def spade_ref_forward(sd, seg, ngf, ups="normal", z=None, latent=None, norm="batch", k=3, calibrate=False):
    """Reference SPADEGenerator.forward in eval mode (sync batch norm = batch norm with running
    stats). ``calibrate``: first store the batch statistics of this input as the running stats
    (what training leaves there), so that random weights give activations of sane size."""
    n = {"normal": 5, "more": 6, "most": 7}[ups]
    H, W = seg.shape[-2:]

    def spade(x, prefix):
        if calibrate and norm == "batch":
            sd[prefix + ".param_free_norm.running_mean"] = x.mean(dim=(0, 2, 3))
            sd[prefix + ".param_free_norm.running_var"] = x.var(dim=(0, 2, 3), unbiased=False) * 1.3 + 0.05
        if norm == "batch":
            nx = F.batch_norm(x, sd[prefix + ".param_free_norm.running_mean"],
                              sd[prefix + ".param_free_norm.running_var"], training=False, eps=1e-5)
        else:
            nx = F.instance_norm(x, eps=1e-5)
        s = F.interpolate(seg, size=x.shape[-2:], mode="nearest")
        a = F.relu(F.conv2d(s, sd[prefix + ".mlp_shared.0.weight"], sd[prefix + ".mlp_shared.0.bias"], padding=k // 2))
        gamma = F.conv2d(a, sd[prefix + ".mlp_gamma.weight"], sd[prefix + ".mlp_gamma.bias"], padding=k // 2)
        beta = F.conv2d(a, sd[prefix + ".mlp_beta.weight"], sd[prefix + ".mlp_beta.bias"], padding=k // 2)
        return nx * (1 + gamma) + beta

    def block(x, name):
        if name + ".conv_s.weight_orig" in sd or name + ".conv_s.weight" in sd:
            xs = F.conv2d(spade(x, name + ".norm_s"), sn_weight(sd, name + ".conv_s"))
        else:
            xs = x
        dx = F.conv2d(F.leaky_relu(spade(x, name + ".norm_0"), 0.2), sn_weight(sd, name + ".conv_0"),
                      sd[name + ".conv_0.bias"], padding=1)
        dx = F.conv2d(F.leaky_relu(spade(dx, name + ".norm_1"), 0.2), sn_weight(sd, name + ".conv_1"),
                      sd[name + ".conv_1.bias"], padding=1)
        return xs + dx

    up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    if z is not None:
        x = F.linear(z, sd["fc.weight"], sd["fc.bias"]).view(z.shape[0], -1, *latent)
    else:
        x = F.interpolate(seg, size=(H >> n, W >> n), mode="nearest")
        x = F.conv2d(x, sd["fc.weight"], sd["fc.bias"], padding=1)
    x = up(block(x, "head_0"))
    x = block(x, "G_middle_0")
    if ups in ("more", "most"):
        x = up(x)
    x = block(x, "G_middle_1")
    for name in ("up_0", "up_1", "up_2", "up_3"):
        x = block(up(x), name)
    if ups == "most":
        x = block(up(x), "up_4")
    return torch.tanh(F.conv2d(F.leaky_relu(x, 0.2), sd["conv_img.weight"], sd["conv_img.bias"], padding=1))


@pytest.mark.parametrize("ups", ["more", "most"])
def test_spade_cityscapes_upsampling_converts_exactly(ups):
    """SPADE Cityscapes setting ('more' upsampling, spectral norm, sync batch norm) at ngf 2; and
    'most' (one more upsampling + up_4), with 6 labels to keep the 128x256 input cheap."""
    nc, (h, w) = (35, (64, 128)) if ups == "more" else (6, (128, 256))  # a 1 x 2 latent grid
    opts = reference_options("spade", "cityscapes", ngf=2, num_upsampling_layers=ups, label_nc=nc)
    sd = spade_ref_state_dict(nc + 1, 2, ups, seed=7)
    x = label_input(nc, h, w, instance=True, seed=8)
    spade_ref_forward(sd, x, 2, ups, calibrate=True)
    model, name, cfg = convert_state_dict(sd, opts)
    assert name == "spade" and cfg["num_upsampling_layers"] == ups
    with torch.no_grad():
        check_close(model(x), spade_ref_forward(sd, x, 2, ups))


def test_spade_ade20k_instance_norm_5x5_converts_exactly():
    """ADE20K defaults (don't-care class, no instance map) with --norm_G spectralspadeinstance5x5
    (6 labels instead of 150 to stay fast)."""
    opts = reference_options("spade", "ade20k", ngf=2, label_nc=6, norm_g="spectralspadeinstance5x5")
    sd = spade_ref_state_dict(7, 2, "normal", norm="instance", k=5, seed=9)
    model, _, cfg = convert_state_dict(sd, opts)
    assert (cfg["spade_norm"], cfg["spade_kernel"], cfg["in_channels"]) == ("instance", 5, 7)
    x = label_input(7, 64, 64, instance=False, seed=10)
    with torch.no_grad():
        check_close(model(x), spade_ref_forward(sd, x, 2, "normal", norm="instance", k=5))


def test_spade_vae_and_old_spectral_norm_format_convert_exactly():
    """--use_vae: fc is a linear map of z to the latent grid fixed by crop / aspect. Also a
    PyTorch < 1.0 state dict (normalised ``weight`` stored, no ``weight_v``)."""
    opts = reference_options("spade", "coco", ngf=2, use_vae=True, z_dim=8, crop_size=64, aspect_ratio=2.0, label_nc=10)
    sd = spade_ref_state_dict(12, 2, "normal", z_dim=8, latent=(1, 2), seed=11)
    x = label_input(11, 32, 64, instance=True, seed=12)
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(13))
    spade_ref_forward(sd, x, 2, "normal", z=z, latent=(1, 2), calibrate=True)
    old = dict(sd)
    for k in [k for k in sd if k.endswith(".weight_orig")]:
        m = k[: -len(".weight_orig")]
        old[m + ".weight"] = sn_weight(sd, m)
        del old[m + ".weight_v"]
    with torch.no_grad():
        ref = spade_ref_forward(sd, x, 2, "normal", z=z, latent=(1, 2))
        for state in (sd, old):
            model, _, cfg = convert_state_dict(state, opts)
            assert cfg["z_dim"] == 8 and cfg["latent_size"] == [1, 2]
            check_close(model(x, z), ref)


# ---------------------------------------------------------------------------------------------
# pix2pixHD (NVIDIA/pix2pixHD semantics)
# ---------------------------------------------------------------------------------------------


def p2p_global_layers(idx0, in_nc, ngf, n_down, n_blocks, final=True):
    """[(kind, key prefix, cin, cout)] of GlobalGenerator.model: kinds pad3/conv7/down/res/up."""
    layers, i = [], idx0
    layers.append(("conv7", f"model.{i + 1}", in_nc, ngf))
    i += 4
    for d in range(n_down):
        c = ngf * 2 ** d
        layers.append(("down", f"model.{i}", c, 2 * c))
        i += 3
    c = ngf * 2 ** n_down
    for _ in range(n_blocks):
        layers.append(("res", f"model.{i}", c, c))
        i += 1
    for d in range(n_down):
        c = ngf * 2 ** (n_down - d)
        layers.append(("up", f"model.{i}", c, c // 2))
        i += 3
    if final:
        layers.append(("conv7out", f"model.{i + 1}", ngf, 3))
    return layers


def p2p_rand(sd, layers, g):
    for kind, p, cin, cout in layers:
        if kind == "res":
            rand_conv(sd, p + ".conv_block.1", cin, cout, 3, g, True, False)
            rand_conv(sd, p + ".conv_block.5", cin, cout, 3, g, True, False)
        elif kind == "up":  # ConvTranspose2d weight (cin, cout, 3, 3)
            sd[p + ".weight"] = torch.randn(cin, cout, 3, 3, generator=g) / math.sqrt(cin * 9)
            sd[p + ".bias"] = 0.1 * torch.randn(cout, generator=g)
        else:
            rand_conv(sd, p, cin, cout, 7 if kind.startswith("conv7") else 3, g, True, False,
                      scale=3.0 if kind == "conv7out" else 1.0)


def p2p_run(sd, layers, x):
    inorm = lambda t: F.instance_norm(t, eps=1e-5)  # noqa: E731
    for kind, p, _, _ in layers:
        if kind in ("conv7", "conv7out"):
            x = F.conv2d(F.pad(x, [3] * 4, mode="reflect"), sd[p + ".weight"], sd[p + ".bias"])
            x = torch.tanh(x) if kind == "conv7out" else F.relu(inorm(x))
        elif kind == "down":
            x = F.relu(inorm(F.conv2d(x, sd[p + ".weight"], sd[p + ".bias"], stride=2, padding=1)))
        elif kind == "res":
            c1, c5 = p + ".conv_block.1", p + ".conv_block.5"
            y = F.relu(inorm(F.conv2d(F.pad(x, [1] * 4, mode="reflect"), sd[c1 + ".weight"], sd[c1 + ".bias"])))
            y = F.conv2d(F.pad(y, [1] * 4, mode="reflect"), sd[c5 + ".weight"], sd[c5 + ".bias"])
            x = x + inorm(y)
        else:
            x = F.relu(inorm(F.conv_transpose2d(x, sd[p + ".weight"], sd[p + ".bias"], stride=2, padding=1,
                                                output_padding=1)))
    return x


def test_pix2pixhd_global_converts_exactly():
    opts = reference_options("pix2pixhd", "cityscapes", ngf=4, n_downsample_global=2, n_blocks_global=2)
    g = torch.Generator().manual_seed(14)
    layers = p2p_global_layers(0, 36, 4, 2, 2)
    sd = {}
    p2p_rand(sd, layers, g)
    model, name, cfg = convert_state_dict(sd, opts)
    assert name == "pix2pixhd" and cfg["n_local_enhancers"] == 0
    x = label_input(35, 32, 48, instance=True, seed=15)
    with torch.no_grad():
        check_close(model(x), p2p_run(sd, layers, x))


def test_pix2pixhd_local_enhancer_converts_exactly():
    """--netG local (the released label2city_1024p layout) at small widths: G1 of width 2 ngf on
    the 2x average-pooled input, then model1_1 + model1_2."""
    opts = reference_options("pix2pixhd", "cityscapes", netg="local", ngf=4, n_downsample_global=2,
                             n_blocks_global=1, n_local_enhancers=1, n_blocks_local=2)
    g = torch.Generator().manual_seed(16)
    glob = p2p_global_layers(0, 36, 8, 2, 1, final=False)
    sd = {}
    p2p_rand(sd, glob, g)
    rand_conv(sd, "model1_1.1", 36, 4, 7, g, True, False)
    rand_conv(sd, "model1_1.4", 4, 8, 3, g, True, False)
    for b in range(2):
        rand_conv(sd, f"model1_2.{b}.conv_block.1", 8, 8, 3, g, True, False)
        rand_conv(sd, f"model1_2.{b}.conv_block.5", 8, 8, 3, g, True, False)
    sd["model1_2.2.weight"] = torch.randn(8, 4, 3, 3, generator=g) / math.sqrt(72)
    sd["model1_2.2.bias"] = 0.1 * torch.randn(4, generator=g)
    rand_conv(sd, "model1_2.6", 4, 3, 7, g, True, False, scale=3.0)
    model, _, cfg = convert_state_dict(sd, opts)
    assert cfg["n_local_enhancers"] == 1 and cfg["ngf"] == 4
    x = label_input(35, 32, 64, instance=True, seed=17)
    inorm = lambda t: F.instance_norm(t, eps=1e-5)  # noqa: E731
    with torch.no_grad():
        coarse = p2p_run(sd, glob, F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False))
        h = F.relu(inorm(F.conv2d(F.pad(x, [3] * 4, mode="reflect"), sd["model1_1.1.weight"], sd["model1_1.1.bias"])))
        h = F.relu(inorm(F.conv2d(h, sd["model1_1.4.weight"], sd["model1_1.4.bias"], stride=2, padding=1)))
        h = h + coarse
        for b in range(2):
            h = p2p_run(sd, [("res", f"model1_2.{b}", 8, 8)], h)
        h = F.relu(inorm(F.conv_transpose2d(h, sd["model1_2.2.weight"], sd["model1_2.2.bias"], stride=2, padding=1,
                                            output_padding=1)))
        ref = torch.tanh(F.conv2d(F.pad(h, [3] * 4, mode="reflect"), sd["model1_2.6.weight"], sd["model1_2.6.bias"]))
        check_close(model(x), ref)


# ---------------------------------------------------------------------------------------------
# refusals, loading, CLI
# ---------------------------------------------------------------------------------------------

TINY_CS = dict(crop_size=512, aspect_ratio=2.0, **SMALL)  # Cityscapes layout, S = 16, small widths


def _tiny_cs_sd(seed=0):
    return asap_ref_state_dict(36, 35, 16, **SMALL, seed=seed)


def test_mismatching_checkpoint_is_refused_naming_the_key_and_shapes(tmp_path, capsys):
    sd = _tiny_cs_sd()
    path = tmp_path / "latest_net_G.pth"
    torch.save(sd, path)
    # 30 labels instead of 35: the first conv reads 31 channels, the checkpoint's 36
    opts = reference_options("asapnet", "cityscapes", label_nc=30, **TINY_CS)
    with pytest.raises(ValueError) as e:
        convert_checkpoint(path, tmp_path / "o.safetensors", opts)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    assert "'lowres_stream.model.0.0.weight'" in msg and "(8, 31, 3, 3)" in msg and "(8, 36, 3, 3)" in msg
    # a missing and an unexpected key
    for bad, what in ((lambda d: d.pop("lowres_stream.model.2.1.bias"), "missing key 'lowres_stream.model.2.1.bias'"),
                      (lambda d: d.__setitem__("extra.weight", torch.zeros(2)), "unexpected key 'extra.weight'")):
        d = dict(sd)
        bad(d)
        with pytest.raises(ValueError, match=what):
            convert_state_dict(d, reference_options("asapnet", "cityscapes", **TINY_CS), "x.pth")
    # a --reflection_pad checkpoint (its modules shifted by the padding layers) given without --lr-padding
    d = dict(sd)
    d["lowres_stream.model.1.0.weight"] = d.pop("lowres_stream.model.0.0.weight")
    with pytest.raises(ValueError, match="missing key 'lowres_stream.model.0.0.weight'.*--lr-padding reflect"):
        convert_state_dict(d, reference_options("asapnet", "cityscapes", **TINY_CS), "x.pth")
    # through the CLI: exit code 2 and one line on stderr, no traceback
    rc = main(["convert", str(path), "-o", str(tmp_path / "o.safetensors"), "--from", "spade",
               "--dataset", "cityscapes", "--ngf", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("asapnet convert: error: ") and "missing key" in err


def test_checkpoint_loading_is_weights_only_and_finds_nested_state_dicts(tmp_path):
    sd = _tiny_cs_sd()
    nested = tmp_path / "nested.pth"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v.half() for k, v in sd.items()}}, nested)
    got = load_reference_state_dict(nested)
    assert set(got) == set(sd) and all(got[k].dtype == torch.float32 for k in got if sd[k].is_floating_point())
    assert set(load_reference_state_dict(nested, key="state_dict")) == set(sd)
    with pytest.raises(ValueError, match="has no entry 'netG'"):
        load_reference_state_dict(nested, key="netG")

    evil = tmp_path / "evil.pth"  # a pickled object: a plain torch.load would import and build it
    torch.save({"opt": ReferenceOptions("asapnet", 35), "netG": sd}, evil)
    with pytest.raises(ValueError, match="weights_only=True") as e:
        load_reference_state_dict(evil)
    assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError):
        load_reference_state_dict(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="no generator state dict"):
        torch.save({"a": 1, "b": [torch.zeros(1)]}, tmp_path / "odd.pth")
        load_reference_state_dict(tmp_path / "odd.pth")


def test_unknown_dataset_for_a_reference_is_refused():
    with pytest.raises(ValueError, match="no option defaults for dataset 'facades'"):
        reference_options("spade", "facades")


def test_cli_convert_then_translate_a_real_label_map(tmp_path, capsys):
    """Convert a (small-width) Cityscapes-layout ASAP-Net checkpoint with the CLI, translate a
    64x128 crop of the shipped Cityscapes label + instance maps, and compare the PNG with the
    reference forward on the same input."""
    stem = "frankfurt_000000_000576"
    lab = np.asarray(Image.open(EXAMPLES / f"{stem}_gtFine_labelIds.png"))[480:544, 900:1028]
    inst = np.asarray(Image.open(EXAMPLES / f"{stem}_gtFine_instanceIds.png"))[480:544, 900:1028]
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(lab.astype(np.uint8)).save(d / "crop_gtFine_labelIds.png")
    Image.fromarray(inst.astype(np.uint16)).save(d / "crop_gtFine_instanceIds.png")

    sd = _tiny_cs_sd(seed=21)
    torch.save(sd, tmp_path / "latest_net_G.pth")
    out = tmp_path / "asap.safetensors"
    args = ["--lr-width", "8", "--lr-max-width", "16", "--lr-depth", "2", "--hr-width", "16", "--hr-depth", "3"]
    assert main(["convert", str(tmp_path / "latest_net_G.pth"), "-o", str(out), "--from", "asapnet",
                 "--dataset", "cityscapes", *args]) == 0
    printed = capsys.readouterr().err  # log messages: stderr
    assert "asap generator" in printed and "S = 16" in printed and "trained at 256x512" in printed
    _, meta = load_generator(out)
    assert (meta["num_classes"], meta["use_instance"], meta["converted_from"]) == (35, True, "asapnet")
    assert meta["source_checkpoint"] == "latest_net_G.pth"

    assert main(["translate", str(d / "crop_gtFine_labelIds.png"), "-o", str(tmp_path / "out"),
                 "--checkpoint", str(out)]) == 0
    y = np.asarray(Image.open(tmp_path / "out" / "crop.png")).astype(np.int64)
    x = torch.zeros(1, 35, 64, 128).scatter_(1, torch.from_numpy(lab.astype(np.int64))[None, None], 1.0)
    x = torch.cat([x, ref_edges(torch.from_numpy(inst.astype(np.int64))[None, None])], 1)
    with torch.no_grad():
        ref = asap_ref_forward(sd, x, 16, **SMALL)[0]
    ref8 = ((ref.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy().astype(np.int64)
    assert y.shape == (64, 128, 3) and np.abs(y - ref8).max() <= 1


def _real_crop(tmp_path):
    """A 64x128 crop of the shipped Cityscapes label + instance maps, written as PNGs in their own
    folders, and the reference input built from it (one-hot of the 35 ids, then get_edges)."""
    stem = "frankfurt_000000_000576"
    lab = np.asarray(Image.open(EXAMPLES / f"{stem}_gtFine_labelIds.png"))[480:544, 900:1028]
    inst = np.asarray(Image.open(EXAMPLES / f"{stem}_gtFine_instanceIds.png"))[480:544, 900:1028]
    (tmp_path / "label").mkdir()
    (tmp_path / "inst").mkdir()
    Image.fromarray(lab.astype(np.uint8)).save(tmp_path / "label" / "crop_gtFine_labelIds.png")
    Image.fromarray(inst.astype(np.uint16)).save(tmp_path / "inst" / "crop_gtFine_instanceIds.png")
    x = torch.zeros(1, 35, 64, 128).scatter_(1, torch.from_numpy(lab.astype(np.int64))[None, None], 1.0)
    return torch.cat([x, ref_edges(torch.from_numpy(inst.astype(np.int64))[None, None])], 1)


@pytest.mark.parametrize("source", ["spade", "pix2pixhd"])
def test_cli_translate_runs_converted_spade_and_pix2pixhd(tmp_path, source):
    """``asapnet convert`` then ``asapnet translate --instance-dir`` for the other two references
    (small widths): the PNG is the reference forward's to one 8-bit level."""
    x = _real_crop(tmp_path)
    if source == "spade":
        sd = spade_ref_state_dict(36, 2, "more", seed=22)
        spade_ref_forward(sd, x, 2, "more", calibrate=True)
        args = ["--ngf", "2"]
    else:
        layers = p2p_global_layers(0, 36, 4, 2, 2)
        sd = {}
        p2p_rand(sd, layers, torch.Generator().manual_seed(23))
        args = ["--ngf", "4", "--n-downsample-global", "2", "--n-blocks-global", "2"]
    torch.save(sd, tmp_path / "latest_net_G.pth")
    out = tmp_path / "g.safetensors"
    assert main(["convert", str(tmp_path / "latest_net_G.pth"), "-o", str(out), "--from", source,
                 "--dataset", "cityscapes", *args]) == 0
    assert main(["translate", str(tmp_path / "label" / "crop_gtFine_labelIds.png"), "--instance-dir",
                 str(tmp_path / "inst"), "-o", str(tmp_path / "out"), "--checkpoint", str(out)]) == 0
    y = np.asarray(Image.open(tmp_path / "out" / "crop.png")).astype(np.int64)
    with torch.no_grad():
        ref = spade_ref_forward(sd, x, 2, "more")[0] if source == "spade" else p2p_run(sd, layers, x)[0]
    ref8 = ((ref.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy().astype(np.int64)
    assert y.shape == (64, 128, 3) and np.abs(y - ref8).max() <= 1
