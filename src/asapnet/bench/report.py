"""Benchmark results as a table or a runtime-vs-resolution plot, and ``asapnet bench`` (:func:`cmd_bench`)."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, Sequence

import torch

from ..models import list_models
from ..options import parse_sizes
from .benchmark import asap_stages, benchmark

logger = logging.getLogger(__name__)


def format_table(results: Sequence[Dict]) -> str:
    """Plain-text table of :func:`benchmark` results, one row per (size, model); variant rows
    show their max. abs. error against fp32 ASAP in the last column."""
    variants = any("max_abs_err" in r for r in results)
    head = f"{'model':<18} {'size':>10} {'params':>9} {'GFLOPs':>9} {'ms (median)':>12} {'min..max ms':>20} " \
           f"{'peak MB':>9} {'x ASAP':>7}" + (f" {'max|err|':>9}" if variants else "")
    lines = [head, "-" * len(head)]
    for r in results:
        ratio = "-" if r.get("ratio_to_asap") is None else f"{r['ratio_to_asap']:.2f}"
        spread = f"{r['ms_min']:.1f}..{r['ms_max']:.1f}"
        gf = "-" if r.get("gflops") is None else f"{r['gflops']:.1f}"
        err = "" if not variants else (f" {'-':>9}" if r.get("max_abs_err") is None else f" {r['max_abs_err']:>9.2e}")
        lines.append(f"{r['model']:<18} {r['size']:>10} {r['params'] / 1e6:>8.1f}M {gf:>9} "
                     f"{r['ms']:>12.1f} {spread:>20} {r['peak_mb']:>9.0f} {ratio:>7}{err}")
    return "\n".join(lines)


def plot(results: Sequence[Dict], path: str | Path, title: str = "") -> None:
    """Save runtime vs resolution (log-scale y, one line per model; like the paper's Fig. 4).

    x: megapixels of the input (tick labels HxW), y: median ms with min..max error bars.
    Uses a :class:`matplotlib.figure.Figure` with the Agg canvas: no display needed.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.add_subplot()
    for name in dict.fromkeys(r["model"] for r in results):
        rows = sorted((r for r in results if r["model"] == name), key=lambda r: r["height"] * r["width"])
        xs = [r["height"] * r["width"] / 1e6 for r in rows]
        ms = [r["ms"] for r in rows]
        err = [[m - r["ms_min"] for m, r in zip(ms, rows)], [r["ms_max"] - m for m, r in zip(ms, rows)]]
        ax.errorbar(xs, ms, yerr=err, marker="o", capsize=3, label=name)
    ticks = sorted({(r["height"] * r["width"] / 1e6, r["size"]) for r in results})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([t for t, _ in ticks], [s for _, s in ticks])
    ax.minorticks_off()
    ax.set_xlabel("input resolution (H x W)")
    ax.set_ylabel("runtime per image [ms]")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def cmd_bench(a: argparse.Namespace) -> int:
    """Run :func:`benchmark` from parsed CLI arguments; print a table or JSON lines."""
    if a.threads:
        torch.set_num_threads(a.threads)
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(list_models()))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; registered: {list_models()}")
    sizes = parse_sizes(a.sizes)
    if a.stages:
        for size in sizes:
            r = asap_stages(size, a.preset, a.repeats, a.device, a.num_classes, winograd=a.winograd)
            print(json.dumps(r) if a.json else
                  f"asap {r['size']} ({r['preset']}): downsample {r['downsample_ms']:.0f} ms, LR stream "
                  f"{r['lr_ms']:.0f} ms, HR stream {r['hr_ms']:.0f} ms ({r['hr_gflops']:.1f} GFLOP/s = "
                  f"{100 * r['hr_efficiency']:.0f}% of matmul {r['matmul_gflops']:.1f} GFLOP/s), total {r['total_ms']:.0f} ms")
        return 0

    def progress(r: Dict) -> None:
        logger.info(f"bench: {r['model']} {r['size']}: {r['ms']:.1f} ms")

    results = benchmark(models, sizes, a.repeats, a.device, warmup=a.warmup, num_classes=a.num_classes,
                        preset=a.preset, on_result=progress,
                        variants=[v.strip() for v in a.variants.split(",") if v.strip()],
                        channels_last=a.channels_last, winograd=a.winograd)
    if a.json:
        for r in results:
            print(json.dumps(r))
    else:
        print(f"device {a.device}, {torch.get_num_threads()} thread(s), batch 1, {a.repeats} repeats, "
              f"torch {torch.__version__}")
        print(format_table(results))
    if a.plot:
        plot(results, a.plot, title=f"{a.device}, {torch.get_num_threads()} thread(s), batch 1")
        logger.info(f"bench: wrote {a.plot}")
    return 0
