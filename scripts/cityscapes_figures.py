"""Translate every Cityscapes test label map with a checkpoint and build the docs grid.

    python scripts/cityscapes_figures.py [--checkpoint PATH] [--data-root DIR] [--out out/cityscapes_test]

Writes the 2048x1024 translations to --out, and docs/cityscapes_grid.jpg (label | translation,
downscaled) for the first --grid images, plus the per-image timings to docs/cityscapes_translate.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from asapnet.checkpoint import load_generator
from asapnet.data import data_root, read_label
from asapnet.training.batches import label_colors
from asapnet.tasks.translate.run import default_checkpoint, translate_files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default="out/cityscapes_test")
    ap.add_argument("--grid", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    ckpt = Path(a.checkpoint) if a.checkpoint else default_checkpoint()
    model, meta = load_generator(ckpt)
    labels = sorted((data_root(a.data_root) / "cityscapes_samples" / "test_label").glob("*_labelIds.png"))
    done = translate_files(model, meta, labels, Path(a.out))
    ms = [t for _, t in done]
    Path("docs").mkdir(exist_ok=True)
    Path("docs/cityscapes_translate.json").write_text(json.dumps({
        "checkpoint": str(ckpt.name), "images": len(done), "size": list(Image.open(done[0][0]).size),
        "ms_median": statistics.median(ms), "ms_min": min(ms), "ms_max": max(ms),
        "threads": torch.get_num_threads()}, indent=2))
    colors = ((label_colors(meta["num_classes"]) + 1) * 127.5).byte().numpy()
    rows = []
    for lab_path, (out_path, _) in list(zip(labels, done))[: a.grid]:
        lab = colors[read_label(lab_path)]
        row = np.concatenate([lab, np.asarray(Image.open(out_path).convert("RGB"))], axis=1)
        rows.append(np.asarray(Image.fromarray(row).resize((1024, 256), Image.BILINEAR)))
    Image.fromarray(np.concatenate(rows, axis=0)).save("docs/cityscapes_grid.jpg", quality=88)
    print(f"{len(done)} images, median {statistics.median(ms):.0f} ms; wrote docs/cityscapes_grid.jpg")


if __name__ == "__main__":
    main()
