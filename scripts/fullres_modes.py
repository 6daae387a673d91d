"""How a model trained at 256x512 should translate a 1024x2048 Cityscapes label map: measured.

    python scripts/fullres_modes.py [--checkpoint src/asapnet/weights/cityscapes.safetensors] \
        [--data ../shared/data/cityscapes_samples] [--out docs/translation_fullres.json] [--picture docs/fullres_modes.jpg]

For every full-resolution pair of ``cityscapes_samples/train_{label,img}`` (8 frames, 2048x1024)
and every mode of :func:`asapnet.tasks.translate.run.run_generator`:

* ``pixelwise``: LR stream at the training scale, per-pixel MLPs at full resolution;
* ``bilinear``: translate at 256x512, upsample the output bilinearly;
* ``native``: the model run on the full-resolution map as it is;

it reports PSNR (dB) against the real photo, the within-tile class contrast (gray levels, in
64-px tiles: do the colours change where the full-resolution labels change?), the tile seam
ratio (64-px tiles), the label-edge contrast (mean colour jump across label boundaries over the
mean jump elsewhere) and the forward time (ms), with the real photos' figures as reference.
The picture (model outputs only) shows one crop of each mode, with the label map.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from asapnet.checkpoint import load_generator
from asapnet.data.cityscapes import ids_to_colors
from asapnet.data.datasets import cityscapes_pairs, data_root
from asapnet.data.io import read_image
from asapnet.metrics import psnr_ssim
from asapnet.metrics.tiles import tile_seam_ratio, within_tile_contrast
from asapnet.inference.optimize import prepare_for_inference
from asapnet.tasks.translate.run import default_checkpoint, label_to_input, model_train_size, run_generator

MODES = ("pixelwise", "bilinear", "native")


def edge_contrast(img: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean absolute colour jump (0-255 scale) between horizontally/vertically adjacent pixels of
    different labels, over the mean jump between pixels of the same label. img (1, 3, H, W) in
    [-1, 1], labels (1, H, W)."""
    x = (img.float() + 1) * 127.5
    dx = (x[..., 1:] - x[..., :-1]).abs().mean(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(1)
    bx = labels[..., 1:] != labels[..., :-1]
    by = labels[..., 1:, :] != labels[..., :-1, :]
    border = torch.cat([dx[bx], dy[by]])
    inner = torch.cat([dx[~bx], dy[~by]])
    return float(border.mean() / inner.mean())


def to_uint8(y: torch.Tensor) -> np.ndarray:
    return ((y[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default="docs/translation_fullres.json")
    ap.add_argument("--picture", default="docs/fullres_modes.jpg")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ckpt = Path(a.checkpoint) if a.checkpoint else default_checkpoint()
    model, meta = load_generator(ckpt)
    prepare_for_inference(model)
    pairs = cityscapes_pairs(a.data or data_root() / "cityscapes_samples", "train")
    rows = {m: [] for m in MODES + ("real",)}
    crops = []
    for i, p in enumerate(pairs):
        x = label_to_input(p.label, int(meta["num_classes"]), bool(meta.get("use_instance")), None,
                           merge=meta.get("label_ids"), log=lambda s: None)
        labels = x[:, :int(meta["num_classes"])].argmax(1)
        real = torch.from_numpy(np.array(read_image(p.image))).permute(2, 0, 1)[None].float() / 127.5 - 1
        outs = {}
        for m in MODES:
            t = time.perf_counter()
            with torch.inference_mode():
                y = run_generator(model, x, model_train_size(meta), m)
            ms = (time.perf_counter() - t) * 1000
            outs[m] = y
            rows[m].append({"psnr": psnr_ssim(y, real)[0], "tile_contrast": within_tile_contrast(y, labels, 64),
                            "seam_ratio": tile_seam_ratio(y, 64), "edge_contrast": edge_contrast(y, labels), "ms": ms})
        rows["real"].append({"tile_contrast": within_tile_contrast(real, labels, 64),
                             "seam_ratio": tile_seam_ratio(real, 64), "edge_contrast": edge_contrast(real, labels)})
        if i == 0:  # a 256x512 crop around the image centre, every mode (model outputs only)
            t0, l0 = 400, 768
            crop = [ids_to_colors(labels[0, t0:t0 + 256, l0:l0 + 512].numpy())]
            crop += [to_uint8(outs[m])[t0:t0 + 256, l0:l0 + 512] for m in MODES]
            crops = crop
    summary = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in rows.items()}
    result = {"checkpoint": str(ckpt), "train_size": model_train_size(meta), "images": [p.name for p in pairs],
              "statistic": "median over the images", "modes": summary, "per_image": rows}
    Path(a.out).write_text(json.dumps(result, indent=2))
    for m, s in summary.items():
        print(m.ljust(10), "  ".join(f"{k} {v:.2f}" for k, v in s.items()))
    if crops:
        Image.fromarray(np.concatenate(crops, 0)).save(a.picture, quality=90)
        print(f"wrote {a.out} and {a.picture} (rows: labels, {', '.join(MODES)})")


if __name__ == "__main__":
    main()
