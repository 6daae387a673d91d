"""Time the shipped Cityscapes model at 2048x1024 with one MLP per tile against bilinear
parameter upsampling, side by side in one run (same weights, alternating, median of N).

    python scripts/bench_param_upsampling.py [--checkpoint cityscapes] [--repeats 3] [--threads 1]

Prints the median seconds of ``forward_upscaled`` (LR stream at 256x512, per-pixel MLPs at
2048x1024) for ``param_upsampling`` nearest and bilinear, and their ratio. The nearest output of a
model trained with bilinear parameters is not a usable picture: this measures cost only.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import asapnet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="cityscapes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, meta = asapnet.load_model(a.checkpoint)
    x = torch.zeros(1, model.cfg.in_channels, 1024, 2048)
    x[:, 7] = 1  # road everywhere: the cost does not depend on the labels
    times = {"nearest": [], "bilinear": []}
    with torch.inference_mode():
        for _ in range(a.repeats):
            for mode in times:
                model.hr.upsampling = mode
                t = time.perf_counter()
                model.forward_upscaled(x, 4)
                times[mode].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"2048x1024, {a.threads} thread(s), median of {a.repeats}: nearest {med['nearest']:.2f} s, "
          f"bilinear {med['bilinear']:.2f} s ({med['bilinear'] / med['nearest']:.1f}x)")


if __name__ == "__main__":
    main()
