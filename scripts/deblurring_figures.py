"""Numbers and figure of docs/deblurring.md: PSNR/SSIM of the blurred input, DeblurGAN and ASAP-Net
on the held-out synthetic set, runtimes at 720x1280, and an image grid.

    python scripts/deblurring_figures.py --deblurgan runs/deblur-deblurgan/generator.safetensors \\
        --asap runs/deblur-asap/generator.safetensors --out docs --threads 1

Writes ``<out>/deblurring_results.json`` and ``<out>/deblurring_grid.jpg`` (rows: held-out images;
columns: blurred input | DeblurGAN | ASAP-Net | sharp, centre crops of ``--crop`` pixels).
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from asapnet.checkpoint import load_generator
from asapnet.data.blur import BlurTestDataset, to_uint8_image
from asapnet.tasks.deblur.config import default_split
from asapnet.tasks.deblur.evaluate import evaluate_deblur, run_model, time_models


def grid(rows, labels, path: Path, crop: int) -> None:
    """Save a grid of uint8 (H, W, 3) tiles with column labels."""
    pad, head = 4, 18
    h, w = rows[0][0].shape[:2]
    canvas = Image.new("RGB", (len(labels) * (w + pad) + pad, len(rows) * (h + pad) + pad + head), "white")
    draw = ImageDraw.Draw(canvas)
    for j, lab in enumerate(labels):
        draw.text((pad + j * (w + pad) + 4, 3), lab, fill="black")
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            canvas.paste(Image.fromarray(tile), (pad + j * (w + pad), head + pad + i * (h + pad)))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, quality=90)  # JPEG: a PNG of photo crops is ~1 MB


def centre(x: np.ndarray, crop: int) -> np.ndarray:
    H, W = x.shape[:2]
    t, l = max(0, (H - crop) // 2), max(0, (W - crop) // 2)
    return x[t:t + crop, l:l + crop]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deblurgan", required=True), ap.add_argument("--asap", required=True)
    ap.add_argument("--data-root", default=None), ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs"), ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5), ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--grid-images", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    models, metas = {}, {}
    for name, path in (("DeblurGAN", a.deblurgan), ("ASAP-Net", a.asap)):
        models[name], metas[name] = load_generator(path)
    split = default_split(a.data_root)
    ds = BlurTestDataset(split.test, a.seed, scale=split.test_scales)
    rows = evaluate_deblur(models, ds)
    for r in rows:
        print(f"{r['model']:<14} PSNR {r['psnr']:.2f} dB  SSIM {r['ssim']:.4f}  {r['ms']:.0f} ms/img")
    timing = time_models(models, (720, 1280), repeats=a.repeats)
    for n, t in timing.items():
        print(f"{n:<14} 720x1280: {t['ms']:.0f} ms (min {t['ms_min']:.0f}, max {t['ms_max']:.0f})")
    tiles = []
    for i in range(min(a.grid_images, len(ds))):
        it = ds[i]
        outs = [run_model(m, it["input"][None])[0] for m in models.values()]
        tiles.append([centre(to_uint8_image(x), a.crop) for x in (it["input"], *outs, it["target"])])
    out = Path(a.out)
    grid(tiles, ["blurred input", *models, "sharp"], out / "deblurring_grid.jpg", a.crop)
    res = {"rows": rows, "timing_720x1280": timing, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "cpu": platform.processor() or platform.machine(),
           "test_images": [f"{f.name}@{s:g}" for f, s in zip(ds.files, ds.scales)],
           "checkpoints": {n: {"step": m.get("step"), "train_seconds": m.get("train_seconds_last_call", m.get("train_seconds")),
                               "params": sum(p.numel() for p in models[n].parameters())} for n, m in metas.items()}}
    (out / "deblurring_results.json").write_text(json.dumps(res, indent=2))
    print(f"wrote {out / 'deblurring_grid.jpg'} and {out / 'deblurring_results.json'}")


if __name__ == "__main__":
    main()
