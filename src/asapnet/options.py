"""Choices, defaults and small helpers shared by the command line and the library.

This module imports neither torch nor any other part of the package, so that the argument
parsers (:mod:`asapnet.cli.parsers`, ``asapnet --help``) and the task modules name one definition
of each choice list and default. Helpers: text parsers of sizes and noise levels, the precision
check, the path of a shipped weights file (:func:`shipped_weights`) and the options dataclass of a
command from its parsed arguments (:func:`from_args`).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from importlib import resources
from pathlib import Path
from typing import Any, List, Optional, Tuple, Type, TypeVar

Size = Tuple[int, int]
T = TypeVar("T")

#: ``--precision`` of ``translate`` and ``train``.
PRECISION_CHOICES = ("fp32", "bf16", "fp16")
#: ``--on-error`` of ``translate``, ``denoise`` and ``deblur``: a bad input file stops the command
#: (exit 2) or is skipped with a warning (exit 1 when any was skipped).
ON_ERROR_CHOICES = ("stop", "skip")
#: ``asapnet bench --variants``: optional ASAP inference variants, timed as extra rows
#: ``asap+<variant>`` with their max. abs. difference from the plain fp32 output.
BENCH_VARIANTS = ("channels_last", "winograd", "bf16", "fp16", "int8", "compile", "onnx")
#: Shipped denoisers in ``asapnet/weights`` (``asapnet denoise --checkpoint asap|dncnn|sadnet``).
DNCNN_CHECKPOINT = "dncnn-s-sigma25.safetensors"
ASAP_DENOISE_CHECKPOINT = "asap-denoise-blind.safetensors"
SADNET_CHECKPOINT = "sadnet-sigma25.safetensors"
#: ``asapnet evaluate --task translate --metrics``: every metric; the defaults of the per-metric
#: list (``--dataset cityscapes``) and of the comparison table (``cityscapes-pix2pix`` / ``facades``).
ALL_METRICS = ("fid", "segscore", "psnr", "ssim", "lpips", "tile_contrast", "seam_ratio", "block_std")
DEFAULT_METRICS = ("fid", "segscore", "psnr", "ssim")
TABLE_METRICS = ("psnr", "ssim", "tile_contrast", "seam_ratio", "block_std", "segscore")
#: ``asapnet evaluate --task translate --dataset``.
EVALUATE_DATASETS = ("cityscapes-pix2pix", "facades", "cityscapes")
#: ``asapnet export``: ONNX opsets of the TorchScript and the torch.export (``--dynamo``) exporters.
ONNX_DEFAULT_OPSET = 17
ONNX_DEFAULT_OPSET_DYNAMO = 18
#: ``asapnet convert --from`` / ``--dataset`` (see :data:`asapnet.convert.options.DATASET_DEFAULTS`).
CONVERT_SOURCES = ("asapnet", "spade", "pix2pixhd")
CONVERT_DATASETS = ("ade20k", "cityscapes", "coco", "facades")
#: ``asapnet train --task segment --seg-arch``.
SEGMENT_ARCHITECTURES = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50")


def parse_size(s: str) -> Optional[Tuple[int, int]]:
    """'256x512' -> (256, 512) as (height, width); 'none' -> None."""
    if s.lower() in ("none", "full"):
        return None
    try:
        h, w = s.lower().split("x")
        return int(h), int(w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HEIGHTxWIDTH (e.g. 256x512), got {s!r}") from None


def parse_sizes(text: str) -> List[Size]:
    """'256x512,512x1024' -> [(256, 512), (512, 1024)] as (height, width) pairs.

    Raises:
        ValueError: an item is not HEIGHTxWIDTH with positive integers.
    """
    sizes = []
    for item in text.split(","):
        try:
            h, w = (int(v) for v in item.strip().lower().split("x"))
        except ValueError:
            raise ValueError(f"size must look like HEIGHTxWIDTH (e.g. 256x512), got {item!r}") from None
        if h <= 0 or w <= 0:
            raise ValueError(f"size must be positive, got {item!r}")
        sizes.append((h, w))
    return sizes


def parse_sigmas(s: str) -> List[float]:
    """'15,25,50' -> [15.0, 25.0, 50.0] (0-255 scale)."""
    try:
        vals = [float(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sigma list must look like 15,25,50, got {s!r}") from None
    if not vals or any(not math.isfinite(v) or v < 0 for v in vals):
        raise argparse.ArgumentTypeError(f"sigma list must hold finite values >= 0, got {s!r}")
    return vals


def check_precision(precision: str, device: str, training: bool = False) -> None:
    """Refuse a ``--precision`` the device cannot run, with one clear message.

    fp32 and bf16 run everywhere (bf16: autocast when training, a bf16 model for inference);
    fp16 needs a GPU: on the CPU it is refused (slow, and training would need gradient scaling,
    which PyTorch's GradScaler only does on CUDA), and fp16 *training* needs CUDA (MPS has no
    GradScaler either).

    Raises:
        ValueError: an unknown precision, or fp16 on a device that cannot run it.
    """
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    kind = str(device).split(":")[0]
    if precision != "fp16" or kind == "cuda" or (kind == "mps" and not training):
        return
    if kind == "cpu":
        raise ValueError("--precision fp16 needs --device cuda" + ("" if training else " or mps")
                         + "; on the CPU use --precision bf16 (or fp32)")
    raise ValueError(f"--precision fp16 training needs --device cuda (gradient scaling), not {device}; "
                     "use --precision bf16")


def shipped_weights(name: str) -> Path:
    """Path of a file shipped inside the package, ``asapnet/weights/<name>`` (it may be absent)."""
    return Path(str(resources.files("asapnet") / "weights" / name))


def from_args(cls: Type[T], args: Any) -> T:
    """The options dataclass ``cls`` filled from parsed arguments: each field takes the attribute of the
    same name when ``args`` has one (an option the parser left out when not given has none), else
    the field's default; attributes that are not fields are ignored."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})
