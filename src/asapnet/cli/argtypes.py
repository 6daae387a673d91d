"""argparse ``type=`` helpers: numeric and device options are checked when the command line is
parsed, so a bad value is one ``asapnet <command>: error: argument --x: ...`` line and exit status
2 before anything is loaded or allocated."""
from __future__ import annotations

import argparse
import math
import re

from ..options import ON_ERROR_CHOICES, PRECISION_CHOICES


def _int(s: str, what: str) -> int:
    try:
        return int(str(s).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {s!r}") from None


def positive_int(s: str) -> int:
    """An integer >= 1 (steps, batch size, threads, classes, widths)."""
    v = _int(s, "a positive integer")
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s!r}")
    return v


def non_negative_int(s: str) -> int:
    """An integer >= 0 (hold-out counts, seeds, warm-up passes)."""
    v = _int(s, "an integer >= 0")
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {s!r}")
    return v


def port(s: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    v = _int(s, "a port number (0-65535)")
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (0-65535), got {s!r}")
    return v


def finite_float(s: str) -> float:
    """A finite number (no nan, inf)."""
    try:
        v = float(str(s).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {s!r}")
    return v


def non_negative_float(s: str) -> float:
    """A finite number >= 0 (loss weights, noise sigma, modulation)."""
    v = finite_float(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {s!r}")
    return v


def positive_float(s: str) -> float:
    """A finite number > 0 (learning rates, scales, time budgets)."""
    v = finite_float(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {s!r}")
    return v


#: Device strings the commands accept: cpu, cuda, cuda:N, mps.
DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def device(s: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps``; CUDA / MPS must be available on this machine."""
    d = str(s).strip().lower()
    if not DEVICE_PATTERN.match(d):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda, cuda:N or mps, got {s!r}")
    if d == "cpu":  # without importing torch (parsing stays fast)
        return d
    import torch

    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{s!r}: CUDA is not available on this machine (use --device cpu)")
        if ":" in d and int(d.split(":")[1]) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{s!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if d == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError(f"{s!r}: MPS is not available on this machine (use --device cpu)")
    return d


def add_device_arg(p: argparse.ArgumentParser, note: str = "") -> None:
    """``--device cpu|cuda|cuda:N|mps`` (default cpu), checked when parsed (:func:`asapnet.cli.argtypes.device`)."""
    p.add_argument("--device", type=device, default="cpu",
                   help="cpu (default), cuda, cuda:N or mps" + (f"; {note}" if note else ""))


def add_precision_arg(p: argparse.ArgumentParser, note: str) -> None:
    """``--precision fp32|bf16|fp16`` (default fp32)."""
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32", help=f"fp32 (default), bf16 or fp16; {note}")


def add_on_error_arg(p: argparse.ArgumentParser) -> None:
    """``--on-error stop|skip`` (default stop) of the commands that turn input files into output files."""
    p.add_argument("--on-error", choices=ON_ERROR_CHOICES, default="stop",
                   help="a bad input file: stop (exit 2, the outputs already written are kept) or skip it with a "
                        "warning and go on (exit 1 when any was skipped; the good inputs are written)")


def preset_name(s: str) -> str:
    """The name of an ASAP-Net config preset (:data:`asapnet.config.ASAP_PRESETS`)."""
    from ..config import ASAP_PRESETS  # no torch

    name = str(s).strip()
    if name not in ASAP_PRESETS:
        raise argparse.ArgumentTypeError(f"unknown ASAP preset {s!r}; known: {', '.join(sorted(ASAP_PRESETS))}")
    return name
