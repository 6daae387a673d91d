"""How much the S1 downsampling filter changes a converted ASAP-Net (docs/compatibility.md).

    python scripts/convert_s1_filter.py [--seeds 3]

For S1 > 1 the converted model downsamples the LR stream's input with PyTorch's anti-aliased
bilinear filter, the reference with the same tent taps and reflection padding. This builds
reference-format Cityscapes checkpoints (35 labels + instance edges, small widths, random weights:
no released weights are needed) for S1 = 2 (S = 32, the 512x1024 setting) and S1 = 4 (S = 64,
1024x2048), converts them, and runs both on the shipped Cityscapes label map resized (nearest) to
512x1024 / 1024x2048: once with the reference forward using PyTorch's filter (the conversion
itself: float rounding only) and once with the reference's own filter. The reference forward is
the independent functional one of tests/test_convert.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_convert as ref  # noqa: E402  (reference semantics written independently of asapnet)

from asapnet.convert import convert_state_dict, reference_options  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="random reference checkpoints per setting")
    args = ap.parse_args()
    stem = ref.EXAMPLES / "frankfurt_000000_000576"
    lab = torch.from_numpy(np.asarray(Image.open(f"{stem}_gtFine_labelIds.png")).astype(np.int64))[None, None]
    inst = torch.from_numpy(np.asarray(Image.open(f"{stem}_gtFine_instanceIds.png")).astype(np.int64))[None, None]
    print("| S1 | input | conversion max abs diff | S1 filter: max abs diff | mean abs diff | pixels > 1 level |")
    print("|---|---|---|---|---|---|")
    for h, w, crop in [(512, 1024, 1024), (1024, 2048, 2048)]:
        L = F.interpolate(lab.float(), size=(h, w), mode="nearest").long()
        inst_map = F.interpolate(inst.float(), size=(h, w), mode="nearest").long()
        x = torch.cat([torch.zeros(1, 35, h, w).scatter_(1, L, 1.0), ref.ref_edges(inst_map)], 1)
        S = crop // 32  # crop_size // (16 * aspect_ratio 2)
        conv, dmax, dmean, frac = [], [], [], []
        for seed in range(args.seeds):
            sd = ref.asap_ref_state_dict(36, 35, S, **ref.SMALL, seed=seed)
            opts = reference_options("asapnet", "cityscapes", crop_size=crop, **ref.SMALL)
            model, _, cfg = convert_state_dict(sd, opts)
            with torch.no_grad():
                y = model(x)
                y_conv = ref.asap_ref_forward(sd, x, S, downsample="antialias", **ref.SMALL)
                conv.append((y - y_conv).abs().max().item())
                d = (y - ref.asap_ref_forward(sd, x, S, downsample="tent", **ref.SMALL)).abs()
            dmax.append(d.max().item())
            dmean.append(d.mean().item())
            frac.append((d.amax(1) > 2 / 255).float().mean().item())  # one 8-bit level is 2/255 on [-1, 1]
        print(f"| {cfg['s1']} | {h}x{w} | {max(conv):.1e} | {max(dmax):.3f} | {np.mean(dmean):.1e} | "
              f"{100 * np.mean(frac):.1f} % |")


if __name__ == "__main__":
    main()
