"""How much does a translator's output at a pixel depend on that pixel's own label?

    python scripts/label_sensitivity.py asap=src/asapnet/weights/cityscapes.safetensors \
        pix2pixhd=runs/cityscapes-pix2pixhd/generator.safetensors [--dataset cityscapes-pix2pix] \
        [--limit 50] [--tile 16] [--threads 1] [--json out.json]

For every scored label map, each pixel whose label differs from the majority label of its
``tile`` x ``tile`` cell (a person inside a road tile, a pole inside a building tile) is given the
majority label; the figure is the mean absolute change of the output at those pixels, in gray
levels (0-255, mean over RGB). A translator that draws small objects from the label map changes a
lot (the real photos differ by the within-tile class contrast of ``asapnet evaluate``).

Two figures per ASAP generator:

* ``whole``: the whole model sees the changed label map (LR and HR stream);
* ``hr``: the LR stream keeps the parameters it predicts from the true label map and only the HR
  stream's per-pixel input changes: how much the per-pixel MLPs read their label input (paper §3.1:
  the MLP's input is the pixel's value plus the positional encoding). An HR stream whose MLPs
  ignore the label (the LR stream painting every tile through the MLP biases and the positional
  encoding instead) scores near 0 here.

Other generators get ``whole`` only.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from asapnet.checkpoint import load_generator
from asapnet.data import data_root
from asapnet.metrics.translation import label_sensitivity
from asapnet.models.asap import ASAPGenerator


def sensitivity(G: torch.nn.Module, items, tile: int) -> dict:
    """Mean over the images of :func:`asapnet.metrics.translation.label_sensitivity`."""
    tot, n = {"whole": 0.0, "hr": 0.0}, 0
    for item in items:
        s = label_sensitivity(G, item["input"][None], tile)
        if s["whole"] is None:
            continue
        tot["whole"] += s["whole"]
        tot["hr"] += s["hr"] or 0.0
        n += 1
    out = {k: v / max(n, 1) for k, v in tot.items()}
    if not isinstance(G, ASAPGenerator):
        out["hr"] = None
    out["images"] = n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="NAME=PATH generator checkpoints")
    ap.add_argument("--dataset", choices=["cityscapes-pix2pix", "facades"], default="cityscapes-pix2pix")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--limit", type=int, default=50, help="first N images of the val / test split")
    ap.add_argument("--tile", type=int, default=16, help="cell size of the majority label (pixels)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the figures here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    root = data_root(a.data_root)
    if a.dataset == "facades":
        from asapnet.data.facades import FacadesCMP
        items = FacadesCMP(root / "facades_cmp" / "test", limit=a.limit)
    else:
        from asapnet.data.cityscapes import Pix2PixCityscapes
        items = Pix2PixCityscapes(root / "cityscapes_pix2pix" / "val", limit=a.limit)
    items = [items[i] for i in range(len(items))]
    rows = {}
    print("| generator | whole model (gray levels) | HR stream only |\n|---|---|---|")
    for spec in a.checkpoints:
        name, _, path = spec.partition("=")
        G, _ = load_generator(path)
        r = rows[name] = {"path": path, **sensitivity(G.eval(), items, a.tile)}
        hr = "—" if r["hr"] is None else f"{r['hr']:.1f}"
        print(f"| {name} | {r['whole']:.1f} | {hr} |", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"dataset": a.dataset, "limit": a.limit, "tile": a.tile, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
