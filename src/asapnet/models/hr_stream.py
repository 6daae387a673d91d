"""HR stream of ASAP-Net (paper §3.1): per-pixel MLPs with spatially varying, input-adaptive parameters,
evaluated at full resolution; plus the input helpers the generator uses around it (pixel neighbourhoods,
the tent-filter downsampling of the LR stream's input)."""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ASAPConfig
from .lr_stream import _tracing
from .positional import positional_encoding

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
# The LR stream's input: downsampled by S1 (used by the generator, not by the HR stream)
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
