"""How much the S1 downsampling filter changes a converted ASAP-Net (docs/compatibility.md).

    python scripts/convert_s1_filter.py [--seeds 3]

For S1 > 1 the reference downsamples the LR stream's input with a separable tent filter on the
reflection-padded input; converted checkpoints do the same (``ASAPConfig.s1_filter="tent"``).
Checkpoints converted before that option existed keep PyTorch's anti-aliased bilinear filter
(``s1_filter="antialias"``: the same taps, renormalised at the border instead of reflected). This
builds reference-format Cityscapes checkpoints (35 labels + instance edges, small widths, random
weights: no released weights are needed) for S1 = 2 (S = 32, the 512x1024 setting) and S1 = 4
(S = 64, 1024x2048), converts them, and runs them on the shipped Cityscapes label map resized
(nearest) to 512x1024 / 1024x2048 against the reference forward (the independent functional one
of tests/test_convert.py): once as converted (tent: float rounding only) and once with the
anti-aliased filter instead.
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

from asapnet.convert.reference import convert_state_dict  # noqa: E402
from asapnet.convert.options import reference_options


def main() -> None:
    """Print a markdown table: S1, input size, conversion error, effect of the antialias filter."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="random reference checkpoints per setting")
    args = ap.parse_args()
    stem = ref.EXAMPLES / "frankfurt_000000_000576"
    lab = torch.from_numpy(np.asarray(Image.open(f"{stem}_gtFine_labelIds.png")).astype(np.int64))[None, None]
    inst = torch.from_numpy(np.asarray(Image.open(f"{stem}_gtFine_instanceIds.png")).astype(np.int64))[None, None]
    print("| S1 | input | converted (tent): max abs diff | antialias instead: max abs diff | mean abs diff | "
          "pixels > 1 level |")
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
                y_ref = ref.asap_ref_forward(sd, x, S, downsample="tent", **ref.SMALL)
                conv.append((model(x) - y_ref).abs().max().item())
                model.cfg.s1_filter = "antialias"
                d = (model(x) - y_ref).abs()
            dmax.append(d.max().item())
            dmean.append(d.mean().item())
            frac.append((d.amax(1) > 2 / 255).float().mean().item())  # one 8-bit level is 2/255 on [-1, 1]
        print(f"| {cfg['s1']} | {h}x{w} | {max(conv):.1e} | {max(dmax):.3f} | {np.mean(dmean):.1e} | "
              f"{100 * np.mean(frac):.1f} % |")


if __name__ == "__main__":
    main()
