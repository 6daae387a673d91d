"""Typed configuration dataclasses and the named presets of the ASAP-Net paper.

Configs are plain data: they are built by the caller (CLI, notebook, test) and passed
explicitly to constructors. Presets are a dict of named configs, not subclasses.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from .validation import check_config

# Cityscapes: 35 label ids (0..33 used, plus 'license plate' -1 mapped out) + 1 instance-edge channel,
# the input of the released reference model (label_nc=35, no dontcare channel, with instance edges).
CITYSCAPES_NUM_CLASSES = 35

#: LR-stream normalisations of :class:`ASAPConfig`.
NORMS = ("instance_affine", "instance", "batch", "none")
#: Padding modes of the LR-stream 3x3 convolutions (:attr:`ASAPConfig.lr_padding`).
LR_PADDINGS = ("zeros", "reflect", "replicate")
#: Filters that downsample the LR stream's input by S1 (:attr:`ASAPConfig.s1_filter`).
S1_FILTERS = ("antialias", "tent")
#: How the LR stream's parameter grid is upsampled to full resolution (:attr:`ASAPConfig.param_upsampling`).
PARAM_UPSAMPLINGS = ("nearest", "bilinear", "blend")
#: How the predicted MLP weights are scaled before use (:attr:`ASAPConfig.hr_weight_scale`).
HR_WEIGHT_SCALES = ("fan_in", "none")

#: Values of the :class:`ASAPConfig` fields added with the reference-faithful architecture, for
#: checkpoints whose metadata predates them (their first LR conv was not normalised, the HR leaky
#: ReLU slope was 0.2, the HR stream read every input channel, the LR stream padded with zeros
#: and downsampled by S1 with PyTorch's anti-aliased bilinear filter).
LEGACY_DEFAULTS: Dict[str, Any] = {"first_norm": False, "hr_slope": 0.2, "lr_only_channels": 0,
                                   "lr_padding": "zeros", "s1_filter": "antialias"}


@dataclass
class ASAPConfig:
    """Configuration of :class:`asapnet.models.asap.ASAPGenerator` (paper §3, supplement).

    Attributes:
        in_channels: channels C of the input (N, C, H, W); one-hot classes (+1 for the instance
            edge map) for label maps, 1 or 3 for images.
        out_channels: channels of the output image (3 for RGB, 1 for gray).
        s1: downsampling factor before the LR stream (§3.2), with the filter ``s1_filter``.
        s2: downsampling factor of the strided convolutions of the LR stream; a power of two (§3.2).
        lr_width: width of the first LR-stream convolutions.
        lr_max_width: width of the deep LR-stream blocks (1024 in the paper).
        lr_depth: number of 3x3 conv + norm + ReLU blocks at ``lr_max_width`` (7 in the paper).
        hr_width: hidden width of the per-pixel MLPs (64 in the paper).
        hr_depth: number of linear layers of the per-pixel MLPs (5 in the paper).
        positional_encoding: feed sin/cos of 2*pi*x/2^k, k=1..log2(S) to the MLPs (§3.3).
            ``False`` is the paper's Fig. 9b ablation.
        spatially_uniform: predict one MLP per image instead of one per S x S tile
            (the paper's Fig. 9c ablation).
        norm: normalisation of the LR stream: ``"instance_affine"`` (instance norm with a learned
            per-channel scale and shift: the reference implementation's ``instanceaffine``),
            ``"instance"`` (no scale/shift), ``"batch"`` or ``"none"``. A normalised convolution has
            no bias.
        first_norm: normalise the first LR-stream convolution too (the reference does; the
            project's first models did not: ``False``).
        spectral_norm: spectral normalisation of the LR-stream 3x3 convolutions (the reference
            ASAP-Net uses none; SPADE-style ``spectralinstance`` is ``True``).
        hr_slope: negative slope of the leaky ReLU between the per-pixel MLP layers (reference:
            0.01; the project's first models used 0.2).
        lr_only_channels: number of trailing input channels the LR stream reads and the HR stream
            does not. 1 for a label map with an instance-edge channel in the reference setting
            (``lr_instance``: edges go to the LR stream only); 0 otherwise.
        output_activation: ``"tanh"`` (output in [-1, 1]) or ``"none"``.
        residual: add the input image to the output (image-to-image tasks with
            ``in_channels == out_channels``, e.g. denoising).
        hr_window: side k (odd) of the input neighbourhood each per-pixel MLP reads. 1 (the
            paper, §3.1): the pixel's own value. k > 1 (an extension for restoration tasks,
            documented in docs/denoising.md): the k x k replicate-padded neighbourhood, so the
            MLP input has ``in_channels * k * k`` image channels plus the encoding.
        lr_padding: padding of every LR-stream 3x3 convolution: ``"zeros"`` (the default),
            ``"reflect"`` (the reference's ``--reflection_pad``, used by its released Facades
            models) or ``"replicate"`` (``--replicate_pad``). Reflection needs every LR feature
            map to be at least 2 pixels on each side: the generator refuses (ValueError) an input
            whose padded height or width is S or less.
        s1_filter: how the input is downsampled by ``s1`` (ignored when ``s1 == 1``):
            ``"antialias"`` (PyTorch's anti-aliased bilinear interpolation, renormalised where the
            filter overhangs the border; the default) or ``"tent"`` (the reference's separable
            tent filter, taps 1, 3, ..., 2 s1 - 1, 2 s1 - 1, ..., 1, on the input reflection-padded
            by s1 / 2: :func:`asapnet.models.asap.tent_downsample`). The two differ only in the
            first and last row and column of the downsampled input; converted reference
            checkpoints use ``"tent"``.
        param_upsampling: how the MLP parameters predicted on the H/S x W/S grid are upsampled to
            every pixel (paper §3, Fig. 1: "upscaled back to full-resolution"). ``"nearest"`` (the
            paper's and the reference's choice): one MLP per S x S tile, piecewise-constant
            parameters. ``"bilinear"``: every pixel's MLP parameters are the bilinear blend
            (``align_corners=False``, borders clamped) of the four nearest tiles' parameters, so
            they vary continuously and the output has no tile seams; it costs four MLP products
            per layer and pixel instead of one. ``"blend"``: every pixel is run through the MLPs
            of the four nearest tiles and their outputs are blended bilinearly (weights as
            above): continuous like ``"bilinear"``, but each MLP stays one trained network, so
            a pixel's label changes its colour as sharply as with ``"nearest"``; also four
            products per layer and pixel. docs/translation.md measures the three.
        hr_weight_scale: ``"fan_in"``: the MLP weights the LR stream predicts are multiplied by
            1/sqrt(c_in) of their layer before use (biases are not). ``"none"``: used as
            predicted, as in the reference implementation. Both start from the same function
            (:func:`asapnet.models.asap.init_asap_hypernetwork` scales the head to match) but
            train differently: with ``"fan_in"`` Adam moves every MLP weight sqrt(c_in) (7-8)
            times slower than every MLP bias, and a label->photo model learns to paint each tile
            through its biases while its per-pixel label input is nearly ignored
            (docs/translation.md). A trained model can be rescaled from one to the other without
            changing its output (:func:`asapnet.models.asap.rescale_hr_weights`).
    """

    in_channels: int = CITYSCAPES_NUM_CLASSES + 1
    out_channels: int = 3
    s1: int = 1
    s2: int = 16
    lr_width: int = 64
    lr_max_width: int = 1024
    lr_depth: int = 7
    hr_width: int = 64
    hr_depth: int = 5
    positional_encoding: bool = True
    spatially_uniform: bool = False
    norm: str = "instance_affine"
    first_norm: bool = True
    spectral_norm: bool = False
    hr_slope: float = 0.01
    lr_only_channels: int = 0
    output_activation: str = "tanh"
    residual: bool = False
    hr_window: int = 1
    lr_padding: str = "zeros"
    s1_filter: str = "antialias"
    param_upsampling: str = "nearest"
    hr_weight_scale: str = "fan_in"

    def __post_init__(self) -> None:
        for name in ("s1", "s2"):
            v = getattr(self, name)
            if v < 1 or (v & (v - 1)) != 0:
                raise ValueError(f"ASAPConfig.{name} must be a power of two >= 1, got {v}")
        if self.hr_depth < 2:
            raise ValueError(f"ASAPConfig.hr_depth must be >= 2, got {self.hr_depth}")
        if self.norm not in NORMS:
            raise ValueError(f"ASAPConfig.norm must be one of {'|'.join(NORMS)}, got {self.norm!r}")
        if not 0 <= self.lr_only_channels < self.in_channels:
            raise ValueError(f"ASAPConfig.lr_only_channels must be in [0, in_channels), got {self.lr_only_channels}")
        if self.residual and self.lr_only_channels:
            raise ValueError("ASAPConfig.residual needs lr_only_channels == 0")
        if self.output_activation not in ("tanh", "none"):
            raise ValueError(f"ASAPConfig.output_activation must be tanh|none, got {self.output_activation!r}")
        if self.residual and self.in_channels != self.out_channels:
            raise ValueError("ASAPConfig.residual needs in_channels == out_channels")
        if self.hr_window < 1 or self.hr_window % 2 == 0:
            raise ValueError(f"ASAPConfig.hr_window must be an odd number >= 1, got {self.hr_window}")
        if self.lr_padding not in LR_PADDINGS:
            raise ValueError(f"ASAPConfig.lr_padding must be one of {'|'.join(LR_PADDINGS)}, got {self.lr_padding!r}")
        if self.s1_filter not in S1_FILTERS:
            raise ValueError(f"ASAPConfig.s1_filter must be one of {'|'.join(S1_FILTERS)}, got {self.s1_filter!r}")
        if self.hr_weight_scale not in HR_WEIGHT_SCALES:
            raise ValueError(f"ASAPConfig.hr_weight_scale must be one of {'|'.join(HR_WEIGHT_SCALES)}, "
                             f"got {self.hr_weight_scale!r}")
        if self.param_upsampling not in PARAM_UPSAMPLINGS:
            raise ValueError(f"ASAPConfig.param_upsampling must be one of {'|'.join(PARAM_UPSAMPLINGS)}, "
                             f"got {self.param_upsampling!r}")

    @property
    def S(self) -> int:
        """Total downsampling factor S = S1 * S2: the side of the tile sharing one MLP."""
        return self.s1 * self.s2

    @property
    def num_frequencies(self) -> int:
        """log2(S): number of positional-encoding frequencies per axis."""
        return int(math.log2(self.S))

    @property
    def hr_in_channels(self) -> int:
        """Image channels of the per-pixel MLP input: (in_channels - lr_only_channels) * hr_window^2."""
        return (self.in_channels - self.lr_only_channels) * self.hr_window ** 2

    @property
    def pe_channels(self) -> int:
        """Positional-encoding channels: 2 (sin, cos) x 2 (x, y) x log2(S) (§3.3)."""
        return 4 * self.num_frequencies if self.positional_encoding else 0

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ASAPConfig":
        """Config from a checkpoint's metadata. Keys added after a checkpoint was written take
        the values of the architecture it was trained with (:data:`LEGACY_DEFAULTS`), not
        today's defaults, so old checkpoints keep computing what they computed.

        Every value is type- and range-checked (:func:`check_config`: integers are integers, channel
        counts in [1, 10000), other integers below 100000, floats finite) before the config is
        built.

        Raises:
            ValueError: not a dict, unknown keys, or invalid values (one line).
        """
        hints = typing.get_type_hints(cls)
        d = check_config("ASAPConfig", d, {f.name: hints[f.name] for f in dataclasses.fields(cls)})
        return cls(**{**LEGACY_DEFAULTS, **d})


#: Presets named after the paper's settings. S = s1 * s2; the paper sets S1 so that the LR stream
#: sees at most 256 pixels on the short side (§3.2). The ``cityscapes-*`` and ``facades-*`` presets
#: are the reference implementation's architecture (tamarott/ASAPNet, ``ASAPNetsGenerator``):
#: instance norm with learned scale/shift on every LR conv (the first included), no spectral norm,
#: leaky ReLU 0.01 in the per-pixel MLPs, and for Cityscapes the instance-edge channel read by the
#: LR stream only (``lr_only_channels=1``). ``cityscapes-256x512`` has 83,201,411 parameters, as
#: the reference.
ASAP_PRESETS: Dict[str, Dict[str, Any]] = {
    # Cityscapes 256x512: S = 16, 35 labels + instance edges (LR stream only).
    "cityscapes-256x512": dict(s1=1, s2=16, lr_only_channels=1),
    # Cityscapes 512x1024: S = 32.
    "cityscapes-512x1024": dict(s1=2, s2=16, lr_only_channels=1),
    # Cityscapes full resolution 1024x2048: S = 64.
    "cityscapes-1024x2048": dict(s1=4, s2=16, lr_only_channels=1),
    # CMP Facades 512x512: 12 labels, no instance maps, S = 32.
    "facades-512": dict(in_channels=12, s1=2, s2=16),
    # CMP Facades 1024x1024: S = 64.
    "facades-1024": dict(in_channels=12, s1=4, s2=16),
    # Small reference-architecture models for CPU training on the pix2pix Cityscapes set at 256x512
    # and on CMP Facades at 256x256 (the shipped models): S = 16, LR stream 32 -> 256 wide, 4
    # blocks; the paper's per-pixel MLPs (5 layers, 64 wide).
    "cityscapes-256x512-cpu": dict(s1=1, s2=16, lr_width=32, lr_max_width=256, lr_depth=4, lr_only_channels=1),
    "facades-256-cpu": dict(in_channels=12, s1=1, s2=16, lr_width=32, lr_max_width=256, lr_depth=4),
    # Small model for CPU training on full-resolution Cityscapes (the first shipped model's
    # architecture: spectral norm, no affine, 0.2 slope, HR stream reading the edges).
    "cityscapes-cpu": dict(s1=4, s2=16, lr_width=32, lr_max_width=192, lr_depth=4, hr_width=64, norm="instance",
                           first_norm=False, spectral_norm=True, hr_slope=0.2),
    # Gray Gaussian denoiser (docs/denoising.md): S = 4, small LR stream without
    # normalisation or spectral norm, per-pixel MLPs reading the 5 x 5 neighbourhood
    # (hr_window=5), residual output (input + MLP output), no tanh; ~5 MB of weights.
    "denoise-gray": dict(in_channels=1, out_channels=1, s1=1, s2=4, lr_width=32, lr_max_width=128, lr_depth=6,
                         hr_width=32, hr_depth=4, norm="none", spectral_norm=False, output_activation="none",
                         residual=True, hr_window=5, hr_slope=0.2),
    # Tiny model for tests.
    "tiny": dict(s1=1, s2=4, lr_width=8, lr_max_width=16, lr_depth=1, hr_width=8, hr_depth=3),
}


def asap_preset(name: str, **overrides: Any) -> ASAPConfig:
    """Return the :class:`ASAPConfig` of preset ``name`` with ``overrides`` applied.

    Raises:
        KeyError: unknown preset name (the message lists the known ones).
    """
    if name not in ASAP_PRESETS:
        raise KeyError(f"unknown ASAP preset {name!r}; known: {sorted(ASAP_PRESETS)}")
    return ASAPConfig(**{**ASAP_PRESETS[name], **overrides})


@dataclass
class DiscriminatorConfig:
    """Multi-scale PatchGAN discriminator (pix2pixHD / SPADE, 'n_layers_D=4', 'num_D=2')."""

    in_channels: int = CITYSCAPES_NUM_CLASSES + 1 + 3
    ndf: int = 64
    n_layers: int = 4
    num_scales: int = 2
    spectral_norm: bool = True


@dataclass
class TrainConfig:
    """Options of :func:`asapnet.training.loop.train` (SPADE optimisation procedure, paper §3.4).

    Attributes:
        steps: total generator steps to run (a resumed run stops at the same total).
        batch_size: images per step.
        crop: (height, width) of the full-resolution region on which the HR stream, the
            discriminator and the losses are evaluated; ``None`` = whole image. With label maps,
            the LR stream always sees the whole (downsampled) image.
        load_size: resize inputs to (height, width) before anything else; ``None`` = keep size.
        lr_g, lr_d: Adam learning rates (TTUR: 1e-4 for G, 4e-4 for D).
        beta1, beta2: Adam betas ((0, 0.9) as in SPADE).
        lambda_feat: weight of the discriminator feature-matching loss (10).
        lambda_vgg: weight of the VGG19 perceptual loss (10); 0 disables it.
        lambda_l1: optional L1 reconstruction weight (0 in the paper).
        lambda_l2: optional L2 (MSE) reconstruction weight (denoising).
        gan: use the adversarial hinge loss (``False`` = pure reconstruction training).
        flip: random horizontal flips.
        shuffle: shuffle the training set every epoch.
        seed: RNG seed.
        num_threads: torch CPU threads (``None`` = torch default).
        device: where the models train (``cpu``, ``cuda``, ``cuda:N``, ``mps``).
        precision: ``fp32``; ``bf16`` (``torch.autocast`` around the forward passes and losses,
            any device); ``fp16`` (autocast plus gradient scaling, CUDA only). Weights and
            optimiser states stay float32 (:class:`asapnet.training.trainer.Trainer`).
    """

    steps: int = 1000
    batch_size: int = 1
    crop: Optional[Tuple[int, int]] = (256, 512)
    load_size: Optional[Tuple[int, int]] = None
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.9
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    lambda_l1: float = 0.0
    lambda_l2: float = 0.0
    gan: bool = True
    flip: bool = True
    shuffle: bool = True
    seed: int = 0
    num_threads: Optional[int] = None
    sample_every: int = 100
    checkpoint_every: int = 100
    log_every: int = 10
    device: str = "cpu"
    precision: str = "fp32"

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
