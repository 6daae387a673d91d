"""Figures and speed table of docs/denoising.md (Gaussian denoising, DnCNN-S vs ASAP).

    python scripts/denoising_figures.py grid  --out docs/denoising_grid.png
    python scripts/denoising_figures.py speed --sizes 512,1024 --repeats 5 --threads 1
    python scripts/denoising_figures.py curve --out docs/dncnn_curve.png

``grid``: for two test images at σ = 25 (deterministic noise, seed 0), a picture grid
noisy | DnCNN | ASAP | clean with the PSNR (dB) of each panel, written as an 8-bit gray PNG.

``speed``: median wall time (ms) of one forward pass on a random (1, 1, S, S) image for each
model, measured side by side in one process (the models alternate within every repeat, so they
share the same machine load), after one warm-up pass; prints a Markdown table and JSON lines.

``curve``: the measured DnCNN-S σ = 25 training curve (``docs/dncnn_curve.json``: BSD68 PSNR
after each run of the shipped checkpoint chain) against steps on a log axis, with the
least-squares fit PSNR = a + b·log2(steps) over the points from ``--fit-from`` steps on, and
the steps (of batch 16) at which that fit reaches the 28.9 dB threshold and the published 29.23 dB.
An extrapolation, printed and drawn as such, not a measurement.

Checkpoints default to the shipped ones in ``src/asapnet/weights``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from PIL import Image, ImageDraw

from asapnet.checkpoint import load_generator
from asapnet.data.datasets import data_root
from asapnet.data.denoise import deterministic_noisy, read_gray
from asapnet.tasks.denoise.build import (ASAP_CHECKPOINT, DNCNN_CHECKPOINT, run_denoiser, shipped_checkpoint,
                                         to_uint8_scale)
from asapnet.tasks.denoise.evaluate import measure

LABEL_H = 22  # pixels of caption above every panel


def _panel(img: torch.Tensor, caption: str) -> Image.Image:
    """(1, H, W) [0, 1] image -> 8-bit gray PIL image with ``caption`` on a white strip above it."""
    arr = to_uint8_scale(img)[0].numpy().astype(np.uint8)
    h, w = arr.shape
    out = Image.new("L", (w, h + LABEL_H), 255)
    out.paste(Image.fromarray(arr), (0, LABEL_H))
    ImageDraw.Draw(out).text((4, 5), caption, fill=0)
    return out


def grid(models: Dict[str, torch.nn.Module], images: List[Path], sigma: float, out: Path, seed: int = 0) -> None:
    """Write the noisy | <models...> | clean grid, one row per image, PSNR in every caption."""
    rows = []
    for f in images:
        clean = read_gray(f)
        noisy = deterministic_noisy(clean, f.stem, sigma, seed)
        panels = [_panel(noisy, f"{f.parent.name}/{f.stem} noisy sigma={sigma:g}: {measure(noisy, clean)[0]:.2f} dB")]
        for name, m in models.items():
            y = run_denoiser(m, noisy[None])[0]
            panels.append(_panel(y, f"{name}: {measure(y, clean)[0]:.2f} dB"))
        panels.append(_panel(clean, "clean"))
        rows.append(panels)
    gap = 4
    w = max(sum(p.width for p in r) + gap * (len(r) - 1) for r in rows)
    h = sum(max(p.height for p in r) for r in rows) + gap * (len(rows) - 1)
    canvas = Image.new("L", (w, h), 255)
    y = 0
    for r in rows:
        x = 0
        for p in r:
            canvas.paste(p, (x, y))
            x += p.width + gap
        y += max(p.height for p in r) + gap
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    print(f"wrote {out} ({w}x{h})")


@torch.no_grad()
def speed(models: Dict[str, torch.nn.Module], sizes: List[int], repeats: int) -> List[Dict]:
    """Median forward time (ms) of every model at every size, models alternating per repeat."""
    rows = []
    for s in sizes:
        x = torch.rand(1, 1, s, s, generator=torch.Generator().manual_seed(0))
        times: Dict[str, List[float]] = {n: [] for n in models}
        for m in models.values():  # warm-up (allocator, oneDNN primitive cache)
            run_denoiser(m, x)
        for _ in range(repeats):
            for n, m in models.items():
                t0 = time.perf_counter()
                run_denoiser(m, x)
                times[n].append((time.perf_counter() - t0) * 1000.0)
        for n, t in times.items():
            rows.append({"model": n, "size": s, "ms_median": statistics.median(t), "ms_min": min(t),
                         "ms_max": max(t), "repeats": repeats, "threads": torch.get_num_threads()})
    return rows


def curve(data: Dict, out: Path, fit_from: int = 3000) -> Dict[str, float]:
    """Plot BSD68 PSNR (dB) against training steps (log2 axis) with the log-linear fit; returns the
    fit (``a``, ``b`` in dB per doubling) and the extrapolated steps for the threshold and the paper.

    Raises:
        ValueError: fewer than two points at or after ``fit_from`` steps.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in data["points"] if p.get("bsd68") is not None]
    fit = [p for p in pts if p["steps"] >= fit_from]
    if len(fit) < 2:
        raise ValueError(f"need at least two measured points at >= {fit_from} steps to fit, got {len(fit)}")
    b, a = np.polyfit(np.log2([p["steps"] for p in fit]), [p["bsd68"] for p in fit], 1)
    steps_for = {name: float(2 ** ((db - a) / b)) for name, db in
                 (("threshold", data["threshold_bsd68"]), ("published", data["published_bsd68"]))}
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot([p["steps"] for p in pts], [p["bsd68"] for p in pts], "o-", label="measured (asapnet evaluate)")
    for i, p in enumerate(pts):  # alternate below / above the curve so neighbouring labels do not overlap
        ax.annotate(f"{p['bsd68']:.2f}\n{p['minutes']} min", (p["steps"], p["bsd68"]), textcoords="offset points",
                    xytext=(4, -24) if i % 2 == 0 else (-34, 6), fontsize=7)
    xs = np.geomspace(fit[0]["steps"], steps_for["published"] * 1.2, 50)
    ax.plot(xs, a + b * np.log2(xs), "--", color="gray",
            label=f"fit from {fit_from} steps: {b:+.3f} dB per doubling (extrapolation)")
    ax.axhline(data["threshold_bsd68"], color="tab:red", lw=0.8, label=f"threshold {data['threshold_bsd68']} dB")
    paper_steps, paper_batch = data["published_steps_x_batch"]
    ax.axhline(data["published_bsd68"], color="tab:green", lw=0.8,
               label=f"published DnCNN-S {data['published_bsd68']} dB ({paper_steps // 1000} k steps x {paper_batch})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training steps (batch 16 of 40x40 patches)")
    ax.set_ylabel("BSD68 PSNR at sigma 25 (dB)")
    ax.set_title("DnCNN-S sigma=25 trained on this 2-core CPU")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    print(f"wrote {out}")
    return {"a": float(a), "b_db_per_doubling": float(b), "steps_for_threshold": steps_for["threshold"],
            "steps_for_published": steps_for["published"], "fit_points": len(fit)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["grid", "speed", "curve"])
    ap.add_argument("--dncnn", default=str(shipped_checkpoint(DNCNN_CHECKPOINT)))
    ap.add_argument("--asap", default=str(shipped_checkpoint(ASAP_CHECKPOINT)))
    ap.add_argument("--sadnet", default=None, help="also time this SADNet checkpoint (speed only)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--images", default="Set12/05.png,BSD68/test003.png",
                    help="comma-separated image paths relative to <data-root>/denoise")
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--out", default=None, help="output image (default docs/denoising_grid.png for grid, "
                    "docs/dncnn_curve.png for curve)")
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--curve-data", default="docs/dncnn_curve.json", help="measured points (curve only)")
    ap.add_argument("--fit-from", type=int, default=3000, help="fit the points from this many steps on (curve only)")
    a = ap.parse_args()
    if a.what == "curve":
        print(json.dumps(curve(json.loads(Path(a.curve_data).read_text()), Path(a.out or "docs/dncnn_curve.png"),
                               a.fit_from)))
        return
    torch.set_num_threads(a.threads)
    models = {"DnCNN-S (sigma=25)": load_generator(a.dncnn)[0], "ASAP (blind)": load_generator(a.asap)[0]}
    if a.what == "grid":
        base = data_root(a.data_root) / "denoise"
        grid(models, [base / p for p in a.images.split(",")], a.sigma, Path(a.out or "docs/denoising_grid.png"))
        return
    if a.sadnet:
        models["SADNet (sigma=25)"] = load_generator(a.sadnet)[0]
    rows = speed(models, [int(s) for s in a.sizes.split(",")], a.repeats)
    print("| model | size | median ms | min ms | max ms |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['size']}x{r['size']} | {r['ms_median']:.0f} | {r['ms_min']:.0f} | {r['ms_max']:.0f} |")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
