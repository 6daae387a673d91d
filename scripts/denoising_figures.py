"""Figures and speed table of docs/denoising.md (issue 4).

    python scripts/denoising_figures.py grid  --out docs/denoising_grid.png
    python scripts/denoising_figures.py speed --sizes 512,1024 --repeats 5 --threads 1

``grid``: for two test images at σ = 25 (deterministic noise, seed 0), a picture grid
noisy | DnCNN | ASAP | clean with the PSNR (dB) of each panel, written as an 8-bit gray PNG.

``speed``: median wall time (ms) of one forward pass on a random (1, 1, S, S) image for each
model, measured side by side in one process (the models alternate within every repeat, so they
share the same machine load), after one warm-up pass; prints a Markdown table and JSON lines.

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
from asapnet.denoise import ASAP_CHECKPOINT, DNCNN_CHECKPOINT, measure, run_denoiser, shipped_checkpoint, to_uint8_scale

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["grid", "speed"])
    ap.add_argument("--dncnn", default=str(shipped_checkpoint(DNCNN_CHECKPOINT)))
    ap.add_argument("--asap", default=str(shipped_checkpoint(ASAP_CHECKPOINT)))
    ap.add_argument("--sadnet", default=None, help="also time this SADNet checkpoint (speed only)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--images", default="Set12/05.png,BSD68/test003.png",
                    help="comma-separated image paths relative to <data-root>/denoise")
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--out", default="docs/denoising_grid.png")
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    models = {"DnCNN-S (sigma=25)": load_generator(a.dncnn)[0], "ASAP (blind)": load_generator(a.asap)[0]}
    if a.what == "grid":
        base = data_root(a.data_root) / "denoise"
        grid(models, [base / p for p in a.images.split(",")], a.sigma, Path(a.out))
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
