"""LR stream of ASAP-Net (paper §3.2): a convolutional network on the downsampled input that predicts
the per-pixel MLP parameters on a grid S = S1 * S2 times coarser than the input."""
from __future__ import annotations

import math
from typing import List, Optional

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from ..config import ASAPConfig


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
