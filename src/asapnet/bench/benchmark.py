"""``asapnet bench``: inference speed of ASAP-Net against its baselines (paper §4.1, Fig. 4).

    asapnet bench --models asap,pix2pixhd,spade,pix2pix --sizes 256x512,512x1024 --repeats 5

For every (size, model): batch 1, ``eval()`` + ``torch.inference_mode()``, warm-up pass(es),
then ``repeats`` timed forward passes (median, min, max in milliseconds), parameter count,
GFLOPs (one pass under :class:`torch.utils.flop_counter.FlopCounterMode`), peak memory, and the
ratio of the model's median time to ASAP's at the same size in the same run.

The library entry point is :func:`benchmark`; ``asapnet bench`` runs it
(:func:`asapnet.bench.report.cmd_bench`, options in :func:`asapnet.cli.parsers.add_bench_parser`).
"""
from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..config import CITYSCAPES_NUM_CLASSES
from ..console import progress as _progress
from ..models import create_model
from ..inference.optimize import optimize_for_inference
from ..inference.winograd import convert_winograd
# choices shared with the command line (asapnet.options, no torch)
from ..options import BENCH_VARIANTS as VARIANTS, parse_sizes  # noqa: F401
from .inputs import PeakMemory, asap_preset_for, build_model, count_gflops, random_label_input

logger = logging.getLogger(__name__)

Size = Tuple[int, int]


# ---------------------------------------------------------------------------------------------
# peak memory
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _variant_model(model: torch.nn.Module, variant: str, device: torch.device, x: torch.Tensor) -> Callable:
    """Build the callable of ASAP ``variant`` (see :data:`VARIANTS`) from a fresh ``model``."""
    if variant == "onnx":
        import tempfile

        from ..inference.onnx import export_onnx, onnxruntime_runner
        if device.type != "cpu":
            raise ValueError("the onnx variant runs on onnxruntime's CPU provider; use --device cpu")
        path = Path(tempfile.mkdtemp(prefix="asapnet-bench-")) / "asap.onnx"
        export_onnx(model, path)
        return onnxruntime_runner(path)
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {list(VARIANTS)}")
    precision = variant if variant in ("bf16", "fp16", "int8") else "fp32"
    return optimize_for_inference(model, precision=precision, channels_last=variant == "channels_last",
                                  compile=variant == "compile", winograd=variant == "winograd")


def _bench_one(name: str, size: Size, repeats: int, warmup: int, device: torch.device, num_classes: int,
               preset: Optional[str], kwargs: Dict, variant: Optional[str] = None,
               reference: Optional[torch.Tensor] = None, channels_last: bool = False,
               winograd: bool = False, tick: Optional[Callable[[], object]] = None) -> Tuple[Dict, torch.Tensor]:
    h, w = size
    x = random_label_input(num_classes, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    mem = PeakMemory(device)
    mem.start()  # window: model construction + first (warm-up) pass
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same weights for a model and its variants
        model, used_preset = build_model(name, h, w, num_classes + 1, preset, kwargs)
    # same for every model: eval + folded spectral norm (+ NHWC weights with channels_last)
    model = optimize_for_inference(model.to(device), channels_last=channels_last)
    params = sum(p.numel() for p in model.parameters())
    # nominal FLOPs of the model as defined (counted before any Winograd conversion)
    gflops = count_gflops(model, x) if not variant else None
    if winograd:  # same for every model: wide 3x3 convolutions by Winograd F(2x2, 3x3)
        convert_winograd(model)
    run = _variant_model(model, variant, device, x) if variant else model
    with torch.inference_mode():
        y = run(x)
        _sync(device)
        peak_mb = mem.stop()
    if y.shape[-2:] != (h, w):
        raise ValueError(f"model {name!r} returned shape {tuple(y.shape)} for a {h}x{w} input")
    err = None if reference is None else float((y.float().cpu() - reference.float().cpu()).abs().max())
    with torch.inference_mode():
        for _ in range(warmup - 1):
            run(x)
        times = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            run(x)
            _sync(device)
            times.append((time.perf_counter() - t0) * 1e3)
            if tick is not None:  # the progress bar, outside the timed window
                tick()
    r = {"model": f"{name}+{variant}" if variant else name, "size": f"{h}x{w}", "height": h, "width": w,
         "preset": used_preset, "ms": statistics.median(times), "ms_min": min(times), "ms_max": max(times),
         "repeats": repeats, "params": params, "gflops": gflops, "peak_mb": peak_mb, "device": str(device),
         "threads": torch.get_num_threads()}
    if variant:
        r["max_abs_err"] = err
    return r, y


def benchmark(models: Sequence[str], sizes: Sequence[Size], repeats: int = 5, device: str = "cpu",
              warmup: int = 1, num_classes: int = CITYSCAPES_NUM_CLASSES, preset: Optional[str] = None,
              model_kwargs: Optional[Dict[str, Dict]] = None,
              on_result: Optional[Callable[[Dict], None]] = None, variants: Sequence[str] = (),
              channels_last: bool = False, winograd: bool = False) -> List[Dict]:
    """Time registered generators on random label maps; one result dict per (size, model).

    Args:
        models: registered model names (see :func:`asapnet.list_models`).
        sizes: (height, width) input sizes in pixels.
        repeats: timed passes per (model, size), >= 1.
        device: "cpu" or "cuda" (or "cuda:N").
        warmup: untimed passes before timing, >= 1 (the pass under the FLOP counter comes on top).
        num_classes: label classes; inputs have ``num_classes + 1`` channels (the last is an edge
            map), see :func:`random_label_input`.
        preset: ASAP preset for every size (default: :func:`asap_preset_for` each size).
        model_kwargs: extra constructor kwargs per model name, e.g. smaller widths in tests.
        on_result: called with each result dict as soon as it is measured (progress).
        variants: optional ASAP inference variants (:data:`VARIANTS`; needs "asap" in
            ``models``), each an extra row "asap+<variant>" at every size, with ``max_abs_err``:
            the largest absolute difference of its output from the fp32 ASAP output on the same
            input ([-1, 1] scale). Their ``gflops`` is None (same model).
        channels_last: convert every model's weights to channels-last memory format (so the
            layout choice is the same for ASAP and the baselines).
        winograd: run every model's wide 3x3 convolutions by Winograd F(2x2, 3x3)
            (:func:`asapnet.inference.winograd.convert_winograd`), ASAP and baselines alike.

    Returns:
        Dicts with keys model, size ("HxW"), height, width, preset (ASAP only, else None),
        ms (median wall-clock milliseconds of one batch-1 forward pass), ms_min, ms_max, repeats,
        params, gflops (convolutions and matrix products, 2 FLOPs per multiply-add), peak_mb
        (see :class:`PeakMemory`; covers model construction and the first pass), device, threads,
        ratio_to_asap (ms / ASAP's ms at the same size; None when "asap" is not benchmarked).

    Raises:
        ValueError: bad repeats/warmup, CUDA requested but unavailable, or no ASAP preset fits.
        KeyError: unknown model name.
    """
    if repeats < 1 or warmup < 1:
        raise ValueError(f"repeats and warmup must be >= 1, got {repeats} and {warmup}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    model_kwargs = model_kwargs or {}
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    if variants and "asap" not in models:
        raise ValueError("variants are ASAP variants: include 'asap' in the models")
    results = []
    bar = _progress(total=len(sizes) * (len(models) + len(variants)) * repeats, desc="bench", unit="pass")
    tick = lambda: bar.update(1)  # noqa: E731
    for size in sizes:
        ref = None
        for name in models:
            bar.set_description(f"{name} {size[0]}x{size[1]}")
            r, y = _bench_one(name, tuple(size), repeats, warmup, dev, num_classes, preset, model_kwargs.get(name, {}),
                              channels_last=channels_last, winograd=winograd, tick=tick)
            if name == "asap":
                ref = y
            del y
            results.append(r)
            if on_result:
                on_result(r)
        for v in variants:
            bar.set_description(f"asap+{v} {size[0]}x{size[1]}")
            r, _ = _bench_one("asap", tuple(size), repeats, warmup, dev, num_classes, preset,
                              model_kwargs.get("asap", {}), variant=v, reference=ref, tick=tick)
            results.append(r)
            if on_result:
                on_result(r)
    bar.close()
    asap_ms = {r["size"]: r["ms"] for r in results if r["model"] == "asap"}
    for r in results:
        r["ratio_to_asap"] = r["ms"] / asap_ms[r["size"]] if r["size"] in asap_ms else None
    return results


def _median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def matmul_gflops(repeats: int = 5, n: int = 2048, device: str = "cpu") -> float:
    """The machine's measured fp32 matrix-multiply throughput: median GFLOP/s of an n x n x n
    product (2 n^3 FLOPs) with the current torch thread count."""
    dev = torch.device(device)
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    with torch.inference_mode():
        ms = _median_ms(lambda: a @ b, repeats, dev)
    return 2 * n ** 3 / (ms * 1e-3) / 1e9


def asap_stages(size: Size, preset: Optional[str] = None, repeats: int = 5, device: str = "cpu",
                num_classes: int = CITYSCAPES_NUM_CLASSES, winograd: bool = False) -> Dict:
    """Where ASAP-Net's inference time goes at ``size``: median ms of the S1 downsampling, the
    LR-stream convolutions and the HR stream (paper Fig. 4 splits runtime the same way), the HR
    stream's GFLOP/s, and the machine's fp32 matmul GFLOP/s measured in the same call. With
    ``winograd`` the LR stream's wide convolutions run by Winograd F(2x2, 3x3).

    Returns:
        dict with keys size, preset, downsample_ms, lr_ms, hr_ms, total_ms, hr_gflop, hr_gflops,
        matmul_gflops, hr_efficiency (hr_gflops / matmul_gflops).
    """
    import torch.nn.functional as F

    h, w = size
    dev = torch.device(device)
    preset = preset or asap_preset_for(h, w)
    model = optimize_for_inference(create_model("asap", preset=preset, in_channels=num_classes + 1).to(dev),
                                   winograd=winograd)
    x = random_label_input(num_classes, h, w, generator=torch.Generator().manual_seed(0)).to(dev)
    mm = matmul_gflops(repeats, device=device)
    with torch.inference_mode():
        xp = model.pad(x)
        s1 = model.cfg.s1
        H, W = xp.shape[-2:]
        down = (lambda: F.interpolate(xp, size=(H // s1, W // s1), mode="bilinear", align_corners=False,
                                      antialias=True)) if s1 > 1 else (lambda: xp)
        xl = down()
        params = model.lr(xl)
        r = {"size": f"{h}x{w}", "preset": preset,
             "downsample_ms": _median_ms(down, repeats, dev),
             "lr_ms": _median_ms(lambda: model.lr(xl), repeats, dev),
             "hr_ms": _median_ms(lambda: model.hr(xp, params), repeats, dev),
             "total_ms": _median_ms(lambda: model(x), repeats, dev)}
    flop = 2 * sum(ci * co for ci, co in model.hr.dims) * H * W
    r["hr_gflop"] = flop / 1e9
    r["hr_gflops"] = flop / (r["hr_ms"] * 1e-3) / 1e9
    r["matmul_gflops"] = (mm + matmul_gflops(repeats, device=device)) / 2  # before and after, noisy machines
    r["hr_efficiency"] = r["hr_gflops"] / r["matmul_gflops"]
    return r


# ---------------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
