"""Inference preparation shared by every model (translate, bench, export), and the optional
faster/lower-precision variants that ``asapnet bench --variants`` measures.

:func:`prepare_for_inference` never changes what a model computes (beyond fp32 rounding).
:func:`optimize_for_inference` may: bf16 / fp16 / int8 trade accuracy for speed where the
hardware supports it; ``asapnet bench --variants`` reports each variant's time *and* its
maximum absolute difference from the plain fp32 output, and ``tests/test_inference.py`` bounds it.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from .winograd import convert_winograd

#: Variants accepted by :func:`optimize_for_inference` (``precision`` values and switches).
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


def synchronize(device: torch.device | str) -> None:
    """Wait for the work queued on ``device`` (CUDA, MPS) to finish, so that wall-clock times
    around a forward pass measure the pass; nothing on the CPU."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":  # pragma: no cover - Apple only
        torch.mps.synchronize()


def model_device(model: nn.Module) -> torch.device:
    """Device of ``model``'s first parameter or buffer (the CPU for a model without any); sees
    through :class:`CastInference`."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def prepare_for_inference(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode and fold spectral normalisation into plain weights.

    In eval mode a spectrally normalised conv divides its weight by a fixed sigma on every call;
    folding W / sigma once computes the same outputs without that per-call division (about a
    tenth of the ASAP LR stream's time on CPU). The model can no longer be trained with
    spectral norm afterwards. Returns ``model`` (modified in place).
    """
    model.eval()
    for m in list(model.modules()):
        if parametrize.is_parametrized(m):
            for name in list(m.parametrizations.keys()):
                parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    return model


class CastInference(nn.Module):
    """Run ``model`` in a low-precision float ``dtype``: (N, C, H, W) float32 in -> the model's
    output cast back to float32. The wrapped model's weights are converted in place."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model = model.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


def quantize_asap_head_int8(model: nn.Module) -> nn.Module:
    """Replace the ASAP LR stream's 1x1 head (the largest single matrix product of the model:
    ``lr_max_width`` x num_params per LR cell, ~17 GFLOP for the Cityscapes presets) by a
    dynamically quantised int8 ``nn.Linear`` (weights int8 per tensor, activations quantised
    per call; ``torch.ao.quantization.quantize_dynamic``, fbgemm/x86 kernels, CPU only).

    Everything else stays fp32. Returns ``model`` (modified in place).

    Raises:
        TypeError: ``model`` is not an :class:`~asapnet.models.asap.ASAPGenerator`.
        RuntimeError: this PyTorch build has no dynamic quantisation.
    """
    from ..models.asap import ASAPGenerator

    if not isinstance(model, ASAPGenerator):
        raise TypeError(f"int8 inference is implemented for the ASAP generator only, got {type(model).__name__}")
    head = model.lr.head
    lin = nn.Linear(head.in_channels, head.out_channels)
    with torch.no_grad():
        lin.weight.copy_(head.weight.view(head.out_channels, head.in_channels))
        lin.bias.copy_(head.bias)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao deprecation notices
            q = torch.ao.quantization.quantize_dynamic(nn.Sequential(lin), {nn.Linear}, dtype=torch.qint8)[0]
    except (AttributeError, RuntimeError) as e:  # pragma: no cover - depends on the torch build
        raise RuntimeError(f"int8 dynamic quantisation is unavailable in this PyTorch build: {e}") from e
    model.lr.head_int8 = q
    return model


def optimize_for_inference(model: nn.Module, precision: str = "fp32", channels_last: bool = False,
                           compile: bool = False, winograd: bool = False) -> nn.Module:
    """:func:`prepare_for_inference` plus optional speed variants.

    Args:
        model: any registered generator (int8: the ASAP generator only).
        precision: "fp32" (exact), "bf16" / "fp16" (whole model in that dtype, via
            :class:`CastInference`; fp16 needs a GPU in practice), "int8" (the ASAP LR head in
            dynamic int8, :func:`quantize_asap_head_int8`; CPU).
        channels_last: convert conv weights to channels-last (NHWC) memory format, the layout
            oneDNN / cuDNN tensor-core kernels prefer.
        compile: ``torch.compile`` the convolutional part (ASAP: the LR stream; the HR stream's
            fast path is a loop over reused buffers that compilation does not improve; other
            models: the whole forward). The first call compiles (tens of seconds on CPU).
        winograd: replace every wide (>= 256 channels) 3x3 stride-1 convolution by Winograd
            F(2x2, 3x3) (:func:`asapnet.inference.winograd.convert_winograd`): 2.25x fewer
            multiply-adds in those layers, same outputs up to float32 rounding. Any model (ASAP:
            the 1024-wide LR blocks; pix2pixHD: the residual blocks; SPADE: the wide blocks).

    Returns:
        The model to call: ``model`` itself, or a :class:`CastInference` wrapper around it.

    Raises:
        ValueError: unknown ``precision``. TypeError: int8 on a non-ASAP model.
    """
    from ..models.asap import ASAPGenerator

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    model = prepare_for_inference(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if winograd:
        convert_winograd(model)
    if precision == "int8":
        quantize_asap_head_int8(model)
    if compile:
        if isinstance(model, ASAPGenerator):
            model.lr = torch.compile(model.lr)
        else:
            model = torch.compile(model)
    if precision in ("bf16", "fp16"):
        return CastInference(model, torch.bfloat16 if precision == "bf16" else torch.float16)
    return model
