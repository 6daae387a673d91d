"""ASAP-Net: Spatially-Adaptive Pixelwise Networks (Shaham et al., CVPR 2021, §3).

A low-resolution convolutional *LR stream* looks at the input downsampled by S = S1 * S2 and
predicts, for every cell of a coarse grid, the weights and biases of a small MLP. The
full-resolution *HR stream* evaluates, for every pixel, the MLP of the S x S tile it lies in on
the pixel's input value concatenated with a sinusoidal positional encoding. The paper upsamples the
parameter grid to full resolution and uses nearest-neighbour upsampling (one MLP per tile);
``ASAPConfig.param_upsampling="bilinear"`` blends the four surrounding tiles' parameters instead,
``"blend"`` the four tiles' MLP outputs (:meth:`HRStream.forward_bilinear`); both remove the seams
between tiles.

Reading order: ``positional_encoding`` (§3.3) -> ``LRStream`` (§3.2) -> ``HRStream`` (§3.1)
-> ``ASAPGenerator``.
"""
from __future__ import annotations

import functools
import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from ..config import ASAPConfig, asap_preset
from .registry import register_model

# ---------------------------------------------------------------------------------------------
# §3.3 positional encoding
# ---------------------------------------------------------------------------------------------


def _axis_encoding(n: int, k: int, scale: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """sin and cos of 2 pi x / 2^k at the n pixel centres of one axis (float64): the integer
    positions x = j for scale 1; for scale r > 1 the values at the training-scale pixels around
    each fine pixel centre u = (j + 0.5) / r - 0.5, interpolated linearly in u."""
    if scale == 1:
        f = 2 * math.pi * torch.arange(n, dtype=torch.float64) / 2 ** k
        return torch.sin(f), torch.cos(f)
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / scale - 0.5
    lo = torch.floor(u)
    w = u - lo
    f0, f1 = 2 * math.pi * lo / 2 ** k, 2 * math.pi * (lo + 1) / 2 ** k
    return (1 - w) * torch.sin(f0) + w * torch.sin(f1), (1 - w) * torch.cos(f0) + w * torch.cos(f1)


@functools.lru_cache(maxsize=32)
def _positional_encoding_cached(height: int, width: int, num_frequencies: int, device: str,
                                dtype: torch.dtype, scale: int = 1) -> torch.Tensor:
    chans = []
    for k in range(1, num_frequencies + 1):
        sx, cx = _axis_encoding(width, k, scale)
        sy, cy = _axis_encoding(height, k, scale)
        chans += [sx[None, :].expand(height, width), cx[None, :].expand(height, width),
                  sy[:, None].expand(height, width), cy[:, None].expand(height, width)]
    if not chans:
        return torch.zeros(1, 0, height, width, dtype=dtype, device=device)
    pe = torch.stack(chans)[None]  # (1, 4K, H, W)
    return pe.to(device=device, dtype=dtype).contiguous()


def positional_encoding(height: int, width: int, num_frequencies: int,
                        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                        scale: int = 1) -> torch.Tensor:
    """Sinusoidal encoding of pixel positions (paper §3.3).

    For k = 1..``num_frequencies`` the channels are, in this order,
    sin(2*pi*x/2^k), cos(2*pi*x/2^k), sin(2*pi*y/2^k), cos(2*pi*y/2^k),
    with x the column and y the row index of the pixel (0-based, in pixels).

    With ``scale`` r > 1 the grid is r times finer than the one the model was trained on (a
    model trained at 256x512 translating 1024x2048): every fine pixel gets the encoding of the
    training-scale pixels around its centre u = (j + 0.5) / r - 0.5, interpolated linearly
    between floor(u) and floor(u) + 1 (r = 1 gives x = j). The per-pixel MLPs only ever saw the
    encoding at integer positions: evaluating the sinusoids at u itself gives the k = 1
    channels (period 2 pixels) values they never took in training (sin(pi u) = +-1 between
    pixels where it was always 0), which paints a dotted pattern of period 2r pixels; the
    interpolated encoding does not (docs/translation.md, full resolution).

    Returns:
        Tensor of shape (1, 4 * num_frequencies, height, width), values in [-1, 1]. It is cached
        per (height, width, num_frequencies, device, dtype, scale); treat it as read-only.
    """
    return _positional_encoding_cached(int(height), int(width), int(num_frequencies), str(torch.device(device)), dtype,
                                       int(scale))


# ---------------------------------------------------------------------------------------------
# §3.2 LR stream: predicts the MLP parameters on a grid S times coarser than the input
# ---------------------------------------------------------------------------------------------


class _InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` that also takes a 1x1 map. ``F.instance_norm`` refuses one spatial
    element; the LR grid of an input of at most S x S pixels is 1x1, and normalising a single
    value gives 0 (as ONNX InstanceNormalization does), then the affine shift if any."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] * x.shape[-1] == 1:
            y = torch.zeros_like(x)
            return y + self.bias.view(1, -1, 1, 1).to(x.dtype) if self.affine else y
        return super().forward(x)


def _conv_norm_relu(cin: int, cout: int, stride: int, norm: str, sn: bool,
                    padding_mode: str = "zeros") -> nn.Sequential:
    # padding_mode "reflect" / "replicate" pads inside the conv (F.pad, then a conv without padding):
    # the same values as the reference's ReflectionPad2d(1) / ReplicationPad2d(1) + conv(padding=0),
    # with the conv keeping its state-dict key (lr.body.i.0)
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=(norm == "none"), padding_mode=padding_mode)
    if sn:
        conv = _spectral_norm(conv)
    layers: List[nn.Module] = [conv]
    if norm in ("instance", "instance_affine"):
        layers.append(_InstanceNorm2d(cout, affine=norm == "instance_affine"))
    elif norm == "batch":
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _tracing() -> bool:
    """True under ``torch.jit`` tracing, the ONNX exporters or ``torch.compile`` / ``torch.export``."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or getattr(torch.compiler, "is_compiling", lambda: False)()


class LRStream(nn.Module):
    """Convolutional network G of §3.2, run on the input downsampled by S1.

    3x3 conv (``lr_width``) -> log2(S2) stride-2 3x3 convs (the last widens to ``lr_max_width``)
    -> ``lr_depth`` x [3x3 conv + norm + ReLU] at ``lr_max_width`` -> 1x1 conv to
    ``num_params`` channels. Every 3x3 conv is followed by ``cfg.norm`` (the first one only with
    ``cfg.first_norm``; before that option existed, the first conv was normalised only with
    batch norm) and a ReLU. Every 3x3 conv pads its input by one pixel as ``cfg.lr_padding``
    says (zeros, reflection or replication).

    Input (N, C, H/S1, W/S1) with H/S1, W/S1 multiples of S2; output (N, num_params, H/S, W/S).
    """

    def __init__(self, cfg: ASAPConfig, num_params: int):
        super().__init__()
        num_ds = int(math.log2(cfg.s2))
        width = cfg.lr_width
        first = cfg.norm if (cfg.first_norm or cfg.norm == "batch") else "none"
        pad = cfg.lr_padding
        layers: List[nn.Module] = [_conv_norm_relu(cfg.in_channels, width, 1, first, cfg.spectral_norm, pad)]
        for i in range(num_ds):
            out = cfg.lr_max_width if i == num_ds - 1 else width
            layers.append(_conv_norm_relu(width, out, 2, cfg.norm, cfg.spectral_norm, pad))
            width = out
        for _ in range(cfg.lr_depth):
            layers.append(_conv_norm_relu(width, cfg.lr_max_width, 1, cfg.norm, cfg.spectral_norm, pad))
            width = cfg.lr_max_width
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, num_params, 1)
        self.head_int8: Optional[nn.Module] = None  # set by models.inference.quantize_asap_head_int8
        self.spatially_uniform = cfg.spatially_uniform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)  # (N, C, H/S, W/S)
        N, C, gh, gw = h.shape
        # The 1x1 head as one matrix product per image, weight-major: (P, C) @ (C, gh*gw) gives
        # the (N, P, gh, gw) layout directly. CPU conv kernels handle a 1x1 conv with ~16k
        # output channels poorly, and (P, C) @ (C, cells) ran 1.6x faster than the cell-major
        # (cells, C) @ (C, P) product on this project's CPU (docs/benchmarks.md, session 5).
        if self.head_int8 is not None:
            hf = h.flatten(2).transpose(1, 2)
            p = self.head_int8(hf.float().contiguous()).to(h.dtype).transpose(1, 2).view(N, -1, gh, gw)
        else:
            w = self.head.weight.view(self.head.out_channels, C)
            b = self.head.bias.unsqueeze(1)
            if N == 1 and not _tracing():  # a traced graph must not bake in the batch size
                p = torch.addmm(b, w, h.reshape(C, gh * gw)).view(1, -1, gh, gw)
            else:
                p = (torch.matmul(w, h.flatten(2)) + b).view(N, -1, gh, gw)
        if self.spatially_uniform:
            # Fig. 9c ablation: one MLP for the whole image.
            p = p.mean(dim=(2, 3), keepdim=True).expand_as(p)
        return p


# ---------------------------------------------------------------------------------------------
# §3.1 HR stream: per-pixel MLPs with spatially varying, input-adaptive parameters
# ---------------------------------------------------------------------------------------------


class HRStream(nn.Module):
    """Per-pixel MLPs f_p evaluated at full resolution (paper §3.1, Eq. (1)-(2)).

    The MLP of every S x S tile has ``hr_depth`` linear layers of width ``hr_width`` with
    leaky-ReLU (slope ``cfg.hr_slope``, 0.01 in the reference) hidden activations. Its input is
    the pixel value (C - ``lr_only_channels`` channels) concatenated with the positional encoding
    (4 log2 S channels). The parameters of a tile are one column of
    the LR-stream output, laid out layer by layer as [W_l (c_in x c_out, row major), b_l (c_out)];
    W_l is scaled by 1/sqrt(c_in) (``cfg.hr_weight_scale="fan_in"``) or used as predicted
    (``"none"``, the reference).

    With ``cfg.param_upsampling == "bilinear"`` every pixel's parameters are instead blended
    from the four tiles around it, with ``"blend"`` the outputs of the four tiles' MLPs
    (:meth:`forward_bilinear`).

    This module has no parameters of its own: it is a function of (x, params).
    """

    def __init__(self, cfg: ASAPConfig):
        super().__init__()
        self.S = cfg.S
        self.slope = float(cfg.hr_slope)
        self.num_frequencies = cfg.num_frequencies if cfg.positional_encoding else 0
        c_in = cfg.hr_in_channels + cfg.pe_channels
        widths = [c_in] + [cfg.hr_width] * (cfg.hr_depth - 1) + [cfg.out_channels]
        self.dims: List[Tuple[int, int]] = list(zip(widths[:-1], widths[1:]))
        self.num_params = sum(ci * co + co for ci, co in self.dims)
        self.fast_pixels = 4096  # pixels per batched product in forward_fast (cache-sized buffers)
        self.fast = True  # False: always the reference path (e.g. for tracing / ONNX export)
        self.workers: Optional[int] = None  # CPU tile-worker threads in forward_fast (None: torch's count)
        self.upsampling = cfg.param_upsampling  # "nearest" (paper) | "bilinear" | "blend"
        self.weight_scale = cfg.hr_weight_scale  # "fan_in" | "none" (reference)

    def weight_gain(self, c_in: int) -> float:
        """Factor applied to a predicted weight of a layer with ``c_in`` inputs before use."""
        return 1.0 / math.sqrt(c_in) if self.weight_scale == "fan_in" else 1.0

    def param_slices(self) -> List[Tuple[int, int, slice, slice]]:
        """Layout of one tile's P parameters: per layer (c_in, c_out, slice of W_l, slice of b_l),
        W_l stored (c_in x c_out) row major, followed by b_l (c_out)."""
        out, off = [], 0
        for ci, co in self.dims:
            out.append((ci, co, slice(off, off + ci * co), slice(off + ci * co, off + ci * co + co)))
            off += ci * co + co
        return out

    def split_params(self, p: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Split per-tile parameters (B, P) into [(W_l (B, c_in, c_out), b_l (B, 1, c_out))]."""
        return [(p[:, ws].reshape(-1, ci, co) * self.weight_gain(ci), p[:, bs].reshape(-1, 1, co))
                for ci, co, ws, bs in self.param_slices()]

    def mlp(self, h: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Run the tile MLPs: features (B, T, c_in) with params (B, P) -> (B, T, c_out)."""
        layers = self.split_params(p)
        for i, (w, b) in enumerate(layers):
            h = torch.baddbmm(b, h, w)
            if i < len(layers) - 1:
                h = F.leaky_relu(h, self.slope)
        return h

    def forward(self, x: torch.Tensor, params: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """Evaluate the HR stream.

        Args:
            x: (N, C, H, W) full-resolution input, H and W multiples of S * scale, float.
            params: (N, P, H/(S*scale), W/(S*scale)) MLP parameters from the LR stream.
            scale: r >= 1: the input is r times finer than the grid the model was trained on;
                every MLP covers an (r S) x (r S) tile and reads the positional encoding at
                sub-pixel positions, interpolated between the training-scale pixels
                (:func:`positional_encoding` with ``scale=r``). 1: the paper.

        Returns:
            (N, out_channels, H, W) pre-activation output. On a CPU without autograd
            (inference) and with ``self.fast`` set (the default) it takes :meth:`forward_fast`,
            which computes the same values tile row by tile row in reused buffers; with autograd
            or on another device (a GPU: all tiles in one batched product per layer, no Python
            loop over tiles; unmeasured on a GPU), :meth:`forward_reference`.
        """
        N, C, H, W = x.shape
        T = self.S * scale
        if params.shape[-2:] != (H // T, W // T) or H % T or W % T:
            raise ValueError(f"parameter grid {tuple(params.shape[-2:])} does not match input {H}x{W} with tiles of {T}")
        if self.upsampling != "nearest":  # (its own row-by-row inference path)
            return self.forward_reference(x, params, scale)
        if (not self.fast or x.device.type != "cpu"
                or (torch.is_grad_enabled() and (x.requires_grad or params.requires_grad))):
            # (on a GPU every tile at once: one batched product per layer, no Python loop over tiles)
            return self.forward_reference(x, params, scale)
        return self.forward_fast(x, params, scale)

    def forward_reference(self, x: torch.Tensor, params: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """All tiles at once as batched matrix products (differentiable; used for training)."""
        if self.upsampling != "nearest":
            return self.forward_bilinear(x, F.pad(params, (1, 1, 1, 1), mode="replicate"), scale)
        N, C, H, W = x.shape
        S = self.S * scale
        gh, gw = H // S, W // S
        feats = x
        if self.num_frequencies:
            # Periods 2^k divide S, so the encoding of a tile is the same for every tile.
            pe = positional_encoding(S, S, self.num_frequencies, x.device, x.dtype, scale)
            feats = torch.cat([x, pe.repeat(1, 1, gh, gw).expand(N, -1, H, W)], dim=1)
        cin = feats.shape[1]
        # (N, Cin, gh, S, gw, S) -> (N*gh*gw, S*S, Cin): one row of pixels per tile
        tiles = feats.reshape(N, cin, gh, S, gw, S).permute(0, 2, 4, 3, 5, 1).reshape(N * gh * gw, S * S, cin)
        p = params.permute(0, 2, 3, 1).reshape(N * gh * gw, -1)  # (B, P)
        out = self.mlp(tiles, p)
        co = out.shape[-1]
        # (N*gh*gw, S*S, Cout) -> (N, Cout, H, W)
        return out.reshape(N, gh, gw, S, S, co).permute(0, 5, 1, 3, 2, 4).reshape(N, co, H, W)

    def forward_bilinear(self, x: torch.Tensor, params: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """HR stream with bilinearly upsampled MLP parameters (``param_upsampling="bilinear"``).

        Every pixel's parameters are the bilinear blend (``align_corners=False``) of the four
        tiles whose centres surround it: phi_p = sum_k a_k(p) phi_k. The MLP is linear in its
        weights for a given layer input, so each layer is computed as sum_k a_k (h W_k + b_k):
        four tile products per layer, never a per-pixel weight tensor. The pixels between the
        same four tile centres form a "dual tile" of T x T pixels (T = S * scale) offset by T/2,
        with fixed blend weights; the image is processed as (H/T + 1) x (W/T + 1) dual tiles.
        Same values as upsampling the parameters with ``F.interpolate(mode="bilinear")`` and
        running one MLP per pixel (tests/test_param_upsampling.py), at 4x the nearest path's
        products. With ``param_upsampling="blend"`` the same dual tiles run the four corner
        tiles' whole MLPs and blend their outputs with the same weights: sum_k a_k f_k(h).

        Args:
            x: (N, C, H, W) HR-stream input, H and W multiples of T.
            params: (N, P, H/T + 2, W/T + 2): the LR-stream grid with a one-cell border (the
                replicated edge cells for a whole image, the neighbouring cells for a region).
            scale: as in :meth:`forward`.

        Returns:
            (N, out_channels, H, W). Differentiable; without autograd it runs one row of dual
            tiles at a time to bound memory.
        """
        N, C, H, W = x.shape
        T = self.S * scale
        gh, gw = H // T, W // T
        if params.shape[-2:] != (gh + 2, gw + 2):
            raise ValueError(f"bilinear HR stream: parameter grid {tuple(params.shape[-2:])} must be "
                             f"{(gh + 2, gw + 2)} (the {gh}x{gw} grid with a one-cell border)")
        h2 = T // 2
        xpad = F.pad(x, (h2, h2, h2, h2))  # output pixels depend on their own input only: cropped below
        pe = None
        if self.num_frequencies:
            # the encoding has period T, so a dual tile's encoding is the tile's rolled by T/2
            pe = positional_encoding(T, T, self.num_frequencies, x.device, x.dtype, scale)
            pe = torch.roll(pe, shifts=(h2, h2), dims=(-2, -1))
        # blend weights of the four corners (top-left, top-right, bottom-left, bottom-right) per dual-tile pixel
        f = (torch.arange(T, device=x.device, dtype=x.dtype) + 0.5) / T
        fy, fx = f[:, None], f[None, :]
        alpha = torch.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], -1).reshape(T * T, 4)
        P = params.shape[1]
        corners = torch.stack([params[:, :, :-1, :-1], params[:, :, :-1, 1:], params[:, :, 1:, :-1],
                               params[:, :, 1:, 1:]], 2)  # (N, P, 4, gh+1, gw+1)
        grad = torch.is_grad_enabled() and (x.requires_grad or params.requires_grad)
        # (ONNX export: one graph for every size; a GPU: every dual tile at once)
        whole = grad or not self.fast or _tracing() or x.device.type != "cpu"
        rows = [(0, gh + 1)] if whole else [(r, r + 1) for r in range(gh + 1)]
        outs, buf = [], {}
        for r0, r1 in rows:
            nr = r1 - r0
            ft = xpad[:, :, r0 * T:r1 * T]
            if pe is not None:
                ft = torch.cat([ft, pe.repeat(1, 1, nr, gw + 1).expand(N, -1, -1, -1)], 1)
            cin = ft.shape[1]
            tiles = ft.reshape(N, cin, nr, T, gw + 1, T).permute(0, 2, 4, 3, 5, 1).reshape(-1, T * T, cin)
            p = corners[:, :, :, r0:r1].permute(0, 3, 4, 2, 1).reshape(-1, 4, P)  # (B, 4, P)
            h = tiles
            nb = h.shape[0]
            if self.upsampling == "blend":
                # sum_k a_k f_k(h): the four corner tiles' whole MLPs on every dual-tile pixel
                y4 = self.mlp(h[:, None].expand(-1, 4, -1, -1).reshape(nb * 4, T * T, cin), p.reshape(nb * 4, P))
                h = torch.einsum("bkpc,pk->bpc", y4.view(nb, 4, T * T, -1), alpha)
            for i, (ci, co, ws, bs) in enumerate([] if self.upsampling == "blend" else self.param_slices()):
                # sum_k a_k (h W_k + b_k) = [a_1 h, .., a_4 h, a_1, .., a_4] @ [W_1; ..; W_4; b_1; ..; b_4]:
                # one (T*T, 4 ci + 4) @ (4 ci + 4, co) product per dual tile
                w = torch.cat([p[:, :, ws].reshape(nb, 4 * ci, co) * self.weight_gain(ci), p[:, :, bs]], 1)
                if whole:
                    ha = torch.cat([(h[:, :, None, :] * alpha[None, :, :, None]).reshape(nb, T * T, 4 * ci),
                                    alpha.expand(nb, -1, -1)], 2)
                else:  # inference: the blended input written into a reused buffer
                    ha = buf.get((nb, ci))
                    if ha is None:
                        ha = buf[(nb, ci)] = torch.empty(nb, T * T, 4 * ci + 4, dtype=x.dtype, device=x.device)
                        ha[:, :, 4 * ci:] = alpha
                    torch.mul(h[:, :, None, :], alpha[None, :, :, None], out=ha[:, :, :4 * ci].view(nb, T * T, 4, ci))
                h = torch.bmm(ha, w)
                if i < len(self.dims) - 1:
                    h = F.leaky_relu(h, self.slope) if whole else F.leaky_relu_(h, self.slope)
            co = h.shape[-1]
            outs.append(h.reshape(N, nr, gw + 1, T, T, co).permute(0, 5, 1, 3, 2, 4).reshape(N, co, nr * T, (gw + 1) * T))
        y = outs[0] if len(outs) == 1 else torch.cat(outs, 2)
        return y[:, :, h2:h2 + H, h2:h2 + W]

    def forward_fast(self, x: torch.Tensor, params: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """Inference path, same values as :meth:`forward_reference` (up to fp32 rounding): tile groups as
        batched products in reused buffers, shared among CPU tile-worker threads (:attr:`workers`), computed by
        :func:`asapnet.inference.tiles.hr_forward_fast`."""
        from ..inference.tiles import hr_forward_fast

        return hr_forward_fast(self, x, params, scale)


def neighborhood(x: torch.Tensor, k: int, region: Optional[Tuple[int, int, int, int]] = None) -> torch.Tensor:
    """The k x k neighbourhood of every pixel as channels (input of an HR stream with
    ``hr_window = k``).

    Args:
        x: (N, C, H, W) float.
        k: odd window side; 1 returns ``x`` itself (cropped to ``region``).
        region: optional (top, left, height, width): only that part of the result is computed
            (neighbours outside the region still come from ``x``).

    Returns:
        (N, C * k * k, H, W) (or the region's height and width): channel ``c * k * k + i * k + j``
        holds ``x[:, c, y + i - k // 2, x + j - k // 2]``, with replicate padding at the borders.
    """
    top, left, H, W = region if region is not None else (0, 0, *x.shape[-2:])
    if k == 1:
        return x[..., top:top + H, left:left + W]
    r = k // 2
    xp = F.pad(x, (r, r, r, r), mode="replicate")
    return torch.stack([xp[:, :, top + i:top + i + H, left + j:left + j + W] for i in range(k) for j in range(k)],
                       dim=2).flatten(1, 2)


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------


def tent_downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Downsample by ``factor`` with a separable tent filter, as the reference ASAP-Net
    (tamarott/ASAPNet) downsamples the LR stream's input by S1 (``ASAPConfig.s1_filter="tent"``).

    The 1-D filter has the 2s taps 1, 3, ..., 2s - 1, 2s - 1, ..., 3, 1 (s = ``factor``),
    normalised to sum 1 in float64 and then cast to ``x``'s dtype; the input is reflection-padded
    by s / 2 on every side and filtered with stride s, first along the width, then along the
    height. The taps and their alignment are those of PyTorch's anti-aliased bilinear
    interpolation; only the border handling differs (reflection here, a renormalised filter
    there), so the two agree except in the first and last row and column of the result.

    Args:
        x: (N, C, H, W) float, H and W multiples of ``factor``.
        factor: an even integer >= 2.

    Returns:
        (N, C, H / factor, W / factor), same dtype and device.

    Raises:
        ValueError: an odd factor or one below 2.
    """
    if factor < 2 or factor % 2:
        raise ValueError(f"factor must be an even integer >= 2, got {factor}")
    ramp = torch.arange(1, 2 * factor, 2, dtype=torch.float64)
    taps = torch.cat([ramp, ramp.flip(0)])
    taps = (taps / taps.sum()).to(device=x.device, dtype=x.dtype)
    C, p = x.shape[1], factor // 2
    h = F.pad(x, (p, p, p, p), mode="reflect")
    h = F.conv2d(h, taps.view(1, 1, 1, -1).repeat(C, 1, 1, 1), stride=(1, factor), groups=C)
    return F.conv2d(h, taps.view(1, 1, -1, 1).repeat(C, 1, 1, 1), stride=(factor, 1), groups=C)


class ASAPGenerator(nn.Module):
    """ASAP-Net generator (paper §3, Fig. 3).

    Input: (N, in_channels, H, W) float: one-hot label maps (+ instance edge map) in {0, 1}, or
    images in [-1, 1]. Any H, W: the input is replicate-padded to a multiple of S and the output
    cropped back. Output: (N, out_channels, H, W) in [-1, 1] (``output_activation="tanh"``).

    Raises:
        ValueError: wrong number of input channels or a non-4D input.
    """

    def __init__(self, cfg: ASAPConfig):
        super().__init__()
        self.cfg = cfg
        self.hr = HRStream(cfg)
        self.lr = LRStream(cfg, self.hr.num_params)

    @property
    def S(self) -> int:
        return self.cfg.S

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Replicate-pad (N, C, H, W) on the bottom/right to multiples of S."""
        H, W = x.shape[-2:]
        ph, pw = (-H) % self.S, (-W) % self.S
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x

    def predict_params(self, xp: torch.Tensor) -> torch.Tensor:
        """LR stream on padded input (N, C, H, W) -> MLP parameters (N, P, H/S, W/S) (§3.2).

        With S1 > 1 the input is first downsampled by S1 with ``cfg.s1_filter``: PyTorch's
        anti-aliased bilinear interpolation, or the reference's tent filter
        (:func:`tent_downsample`).

        Raises:
            ValueError: ``cfg.lr_padding == "reflect"`` and an LR-stream convolution would read a
                feature map of one pixel in height or width (an input of S pixels or less on a
                side), which cannot be reflection-padded.
        """
        H, W = xp.shape[-2:]
        cfg = self.cfg
        if cfg.lr_padding == "reflect":
            # the smallest map a 3x3 conv reads: the H/S x W/S grid (the deep blocks, or the first
            # conv when S2 = 1), else the input of the last strided conv (2H/S x 2W/S)
            k = 1 if (cfg.lr_depth > 0 or cfg.s2 == 1) else 2
            gh, gw = k * (H // self.S), k * (W // self.S)
            if min(gh, gw) < 2:
                raise ValueError(f"ASAPGenerator with lr_padding='reflect': the input, padded to {H}x{W}, gives "
                                 f"LR-stream feature maps of {gh}x{gw}, and reflection padding needs at least 2 "
                                 f"pixels per side; give an input larger than S = {self.S} pixels in height and width")
        s1 = cfg.s1
        if s1 == 1:
            return self.lr(xp)
        # (the anti-aliased kernel has no bf16/fp16 CPU implementation: run it in fp32 then)
        xf = xp if xp.dtype in (torch.float32, torch.float64) else xp.float()
        if cfg.s1_filter == "tent":
            xl = tent_downsample(xf, s1).to(xp.dtype)
        else:
            xl = F.interpolate(xf, size=(H // s1, W // s1), mode="bilinear", align_corners=False,
                               antialias=True).to(xp.dtype)
        return self.lr(xl)

    def hr_input(self, xp: torch.Tensor, region: Optional[Tuple[int, int, int, int]] = None) -> torch.Tensor:
        """The HR stream's per-pixel input: padded input (N, C, H, W) without its last
        ``lr_only_channels`` channels, as ``hr_window`` neighbourhoods (N, cfg.hr_in_channels, H, W)
        (or the ``region``'s height and width)."""
        k = self.cfg.lr_only_channels
        return neighborhood(xp[:, :xp.shape[1] - k] if k else xp, self.cfg.hr_window, region)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"ASAPGenerator expects (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"ASAPGenerator expects {self.cfg.in_channels} input channels, got {x.shape[1]}")

    def _finish(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.residual:
            y = x + y
        if self.cfg.output_activation == "tanh":
            y = torch.tanh(y)
        return y

    def forward(self, x: torch.Tensor, region: Optional[Tuple[int, int, int, int]] = None) -> torch.Tensor:
        """Translate ``x`` (N, C, H, W) -> (N, out_channels, H, W).

        Args:
            region: optional (top, left, height, width), all multiples of S, inside the padded
                input: the LR stream sees the whole image but the HR stream is evaluated only on
                that region, and the region's output (N, out_channels, height, width) is returned.
                Used for training at full resolution on crops.
        """
        self._check(x)
        H, W = x.shape[-2:]
        xp = self.pad(x)
        params = self.predict_params(xp)
        if region is None:
            y = self.hr(self.hr_input(xp), params)[..., :H, :W]
            return self._finish(y, x)
        top, left, h, w = region
        S = self.S
        if any(v % S for v in region) or top + h > xp.shape[-2] or left + w > xp.shape[-1] or h <= 0 or w <= 0:
            raise ValueError(f"region {region} must be multiples of S={S} inside the padded input {tuple(xp.shape[-2:])}")
        xc = xp[..., top:top + h, left:left + w]
        if self.cfg.param_upsampling != "nearest":  # the region's grid with its neighbouring cells
            pp = F.pad(params, (1, 1, 1, 1), mode="replicate")
            pc = pp[..., top // S:(top + h) // S + 2, left // S:(left + w) // S + 2]
            return self._finish(self.hr.forward_bilinear(self.hr_input(xp, region), pc), xc)
        pc = params[..., top // S:(top + h) // S, left // S:(left + w) // S]
        return self._finish(self.hr(self.hr_input(xp, region), pc), xc)

    def forward_upscaled(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """Translate an input ``scale`` times finer than the model's training resolution.

        The LR stream sees the input at the training scale (nearest-neighbour downsampling by
        ``scale``, which keeps one-hot label maps one-hot), so its receptive fields cover what they
        covered in training; the HR stream runs at the input's full resolution, each MLP on an
        (S * scale)-pixel tile, reading the positional encoding interpolated at sub-pixel positions
        (:func:`positional_encoding` with ``scale``). Edges follow the full-resolution input.

        Args:
            x: (N, in_channels, H, W) float, any H, W (replicate-padded to multiples of
                S * scale, output cropped back).
            scale: r >= 1 (1 is :meth:`forward`).

        Returns:
            (N, out_channels, H, W), in [-1, 1] with ``output_activation="tanh"``.

        Raises:
            ValueError: a non-4D input, a wrong channel count or ``scale < 1``.
        """
        self._check(x)
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        H, W = x.shape[-2:]
        T = self.S * scale
        ph, pw = (-H) % T, (-W) % T
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        xl = xp if scale == 1 else F.interpolate(xp, scale_factor=1 / scale, mode="nearest-exact")
        params = self.predict_params(xl)
        return self._finish(self.hr(self.hr_input(xp), params, scale)[..., :H, :W], x)


@torch.no_grad()
def init_asap_hypernetwork(model: ASAPGenerator, modulation: float = 0.3, last_layer: float = 0.01) -> None:
    """Re-initialise the LR-stream head (the 1x1 conv that predicts the MLP parameters) so that
    every per-pixel MLP starts as a well-scaled network of its input.

    With PyTorch's default init the predicted MLP weights have a standard deviation of about
    0.4 / sqrt(c_in) (after the 1/sqrt(c_in) scaling of :class:`HRStream`), so each MLP layer
    shrinks its input ~3x and the output is dominated by the predicted last bias: one constant
    per tile. The gradient reaching a weight is scaled by the (small) weights of the layers after
    it, so training stays in that state: the collapse into flat S x S squares measured on
    label->photo training (docs/translation.md). Here the head's *bias* holds a shared
    He-initialised MLP (weights N(0, 2) before the 1/sqrt(c_in) scaling, biases 0), the head's
    *weights* add per-tile modulations of standard deviation ~``modulation`` (for LR features of
    unit scale), and the last MLP layer is scaled by ``last_layer`` (0.01: a residual model starts
    near the identity; 1: a translator starts with outputs of unit scale).
    """
    head = model.lr.head
    c_feat = head.in_channels
    nn.init.normal_(head.weight, std=modulation / math.sqrt(c_feat * 0.5))  # ReLU features: E[f^2] ~ 0.5
    nn.init.zeros_(head.bias)
    slices = model.hr.param_slices()
    for ci, _, ws, _ in slices:
        head.bias[ws].normal_(std=math.sqrt(2.0))
        g = model.hr.weight_gain(ci) * math.sqrt(ci)  # 1 for "fan_in"; the same MLP for "none"
        head.weight[ws] /= g
        head.bias[ws] /= g
    _, _, ws, bs = slices[-1]
    head.weight[ws.start:bs.stop] *= last_layer
    head.bias[ws] *= last_layer


@torch.no_grad()
def rescale_hr_weights(model: ASAPGenerator, scale: str) -> None:
    """Switch a (trained) model's :attr:`ASAPConfig.hr_weight_scale` to ``scale`` without changing
    its output: the LR-stream head rows that predict MLP weights are multiplied by the ratio of
    the two gains (sqrt(c_in) per layer) and the model's config is updated in place.

    Raises:
        ValueError: ``scale`` not in ``("fan_in", "none")``.
    """
    import dataclasses

    new = dataclasses.replace(model.cfg, hr_weight_scale=scale)  # validates
    head, hr = model.lr.head, model.hr
    if hr.weight_scale == scale:
        return
    old = hr.weight_scale
    for ci, _, ws, _ in hr.param_slices():
        hr.weight_scale = old
        g_old = hr.weight_gain(ci)
        hr.weight_scale = scale
        f = g_old / hr.weight_gain(ci)
        head.weight[ws] *= f
        head.bias[ws] *= f
    hr.weight_scale = scale
    model.cfg = new


@register_model("asap")
def asap(preset: Optional[str] = None, cfg: Optional[ASAPConfig] = None, **overrides) -> ASAPGenerator:
    """Create an :class:`ASAPGenerator` from a preset name, a config, or keyword overrides.

    ``create_model("asap", preset="cityscapes-256x512")``; ``create_model("asap", in_channels=3)``.
    """
    if cfg is not None and (preset or overrides):
        raise ValueError("pass either cfg or preset/overrides, not both")
    if cfg is None:
        cfg = asap_preset(preset, **overrides) if preset else ASAPConfig(**overrides)
    return ASAPGenerator(cfg)
