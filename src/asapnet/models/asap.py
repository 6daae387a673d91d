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

The parts live in their own modules: :mod:`.positional` (§3.3), :mod:`.lr_stream` (§3.2),
:mod:`.hr_stream` (§3.1); this module assembles them.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ASAPConfig, asap_preset
from .hr_stream import HRStream, neighborhood, tent_downsample
from .lr_stream import LRStream
from .positional import positional_encoding
from .registry import register_model

__all__ = ["ASAPGenerator", "HRStream", "LRStream", "asap", "init_asap_hypernetwork", "neighborhood",
           "positional_encoding", "rescale_hr_weights", "tent_downsample"]


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
