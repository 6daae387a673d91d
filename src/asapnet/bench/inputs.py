"""What the benchmark runs: the ASAP preset for a size, random label maps, the models, their GFLOPs, and the
peak memory a run takes (:class:`PeakMemory`)."""
from __future__ import annotations

import ctypes
import gc
import resource
import sys
from typing import Dict, Optional, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..models import create_model

#: ASAP preset per S1: the paper sets S1 so that the LR stream sees at most 256 pixels on the
#: short side (§3.2, §4); S2 = 16 throughout.
_ASAP_PRESET_BY_S1 = {1: "cityscapes-256x512", 2: "cityscapes-512x1024", 4: "cityscapes-1024x2048"}


def asap_preset_for(height: int, width: int) -> str:
    """Name of the Cityscapes ASAP preset for an input of ``height`` x ``width`` pixels.

    S1 is the smallest power of two with min(height, width) / S1 <= 256 (paper §3.2):
    256x512 -> cityscapes-256x512, 512x1024 -> cityscapes-512x1024,
    1024x2048 -> cityscapes-1024x2048.

    Raises:
        ValueError: the short side exceeds 1024 (no preset; pass one explicitly).
    """
    s1 = 1
    while min(height, width) / s1 > 256:
        s1 *= 2
    if s1 not in _ASAP_PRESET_BY_S1:
        raise ValueError(f"no ASAP preset for {height}x{width} (would need S1={s1}); pass a preset explicitly")
    return _ASAP_PRESET_BY_S1[s1]


def random_label_input(num_classes: int, height: int, width: int, block: int = 16,
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Random semantic-map-like input: (1, num_classes + 1, height, width) float in {0, 1}.

    Channels 0..num_classes-1 are the one-hot encoding of class ids drawn uniformly on a grid of
    ``block`` x ``block`` pixel cells; the last channel is the edge map (1 where a pixel's class
    differs from its right or lower neighbour), standing in for instance boundaries.
    """
    gh, gw = -(-height // block), -(-width // block)
    coarse = torch.randint(0, num_classes, (1, 1, gh, gw), generator=generator)
    ids = coarse.repeat_interleave(block, 2).repeat_interleave(block, 3)[..., :height, :width]
    onehot = torch.zeros(1, num_classes, height, width).scatter_(1, ids, 1.0)
    edge = torch.zeros(1, 1, height, width, dtype=torch.bool)
    edge[..., :, :-1] |= ids[..., :, 1:] != ids[..., :, :-1]
    edge[..., :-1, :] |= ids[..., 1:, :] != ids[..., :-1, :]
    return torch.cat([onehot, edge.float()], dim=1)


class PeakMemory:
    """Peak memory of a code region, in MiB, measured from :meth:`start` to :meth:`stop`.

    CUDA: ``torch.cuda.max_memory_allocated`` growth over the region (tensors only, not the
    caching allocator's reserve or the CUDA context).

    CPU (Linux): growth of the process's peak resident set size (``VmHWM`` in
    /proc/self/status, reset by writing 5 to /proc/self/clear_refs) over the resident size at
    :meth:`start`, after returning free heap memory to the OS (``malloc_trim``). It counts
    everything the region touches: weights, activations, oneDNN scratch buffers and allocator
    slack, so it is an upper bound on tensor memory. Elsewhere (no /proc), it falls back to the
    growth of ``getrusage`` max RSS, a lower bound (0 if the process peaked higher before).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._base = 0.0
        self._proc = False

    @staticmethod
    def _proc_status(key: str) -> Optional[float]:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return float(line.split()[1]) / 1024  # kB -> MiB
        except OSError:
            return None
        return None

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    @staticmethod
    def _maxrss_mb() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / 2 ** 20 if sys.platform == "darwin" else r / 1024  # bytes on macOS, kB on Linux

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device) / 2 ** 20
            return
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        rss = self._proc_status("VmRSS")
        self._proc = rss is not None and self._reset_hwm()
        self._base = rss if self._proc else self._maxrss_mb()

    def stop(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2 ** 20 - self._base
        peak = self._proc_status("VmHWM") if self._proc else self._maxrss_mb()
        return max(0.0, peak - self._base)


def build_model(name: str, height: int, width: int, in_channels: int, preset: Optional[str] = None,
                kwargs: Optional[Dict] = None) -> Tuple[torch.nn.Module, Optional[str]]:
    """Create registered model ``name`` for ``height`` x ``width`` inputs with ``in_channels``.

    ASAP takes its preset from ``preset``, else ``kwargs["preset"]``, else
    :func:`asap_preset_for` (no preset when ``kwargs`` holds a ``cfg``). ``kwargs`` go to the
    model factory. Returns (model, ASAP preset name or None).
    """
    kwargs = dict(kwargs or {})
    if name != "asap":
        return create_model(name, in_channels=in_channels, **kwargs), None
    if "cfg" in kwargs:
        return create_model("asap", **kwargs), None
    preset = preset or kwargs.pop("preset", None) or asap_preset_for(height, width)
    return create_model("asap", preset=preset, in_channels=in_channels, **kwargs), preset


def count_gflops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """GFLOPs of one ``model(x)`` pass: convolutions and matrix products, 2 FLOPs per
    multiply-add, as counted by :class:`torch.utils.flop_counter.FlopCounterMode`.

    Runs under ``torch.no_grad()``: the counter's module tracker fails on spectrally normalised
    layers inside ``torch.inference_mode()`` (torch 2.x).
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops() / 1e9
