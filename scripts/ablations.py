"""Ablations of ASAP-Net's design choices (paper §3.1-3.3, Fig. 9) with one small, equal budget.

    python scripts/ablations.py --out runs/ablations --steps 300 [--segmenter runs/segmenter/segmenter.safetensors]
    python scripts/ablations.py --out runs/ablations --report-only --segmenter runs/segmenter/segmenter.safetensors  # re-score, rebuild the table

Every variant is trained by :class:`asapnet.training.trainer.Trainer` on the real Cityscapes sample pairs
(7 training pairs, the last pair held out) resized to ``--size`` (128x256 by default), with the
same steps, seed, losses (hinge GAN + feature matching + L1 x 10; no VGG, whose ImageNet weights
cannot be downloaded here) and discriminator. Then each is scored on the held-out pair (PSNR /
SSIM on the 0-255 scale, segmentation score) and, for the segmentation score only, on the 15 test
label maps that have no photo.

Variants (one :class:`asapnet.config.ASAPConfig` switch each, relative to ``full``):

* ``full``            S = 16 (s1=1, s2=16), positional encoding, spatially varying MLPs.
* ``no_posenc``       ``positional_encoding=False`` — §3.3, Fig. 9b.
* ``uniform``         ``spatially_uniform=True``, one MLP per image — §3.1, Fig. 9c.
* ``S8`` / ``S32``    s2 = 8 / 32 — the downsampling factor, §3.2, Fig. 9d-e.
* ``lr_depth1``       1 deep LR-stream block instead of 3 — §3.2 (supplement: 7 blocks at 1024).

Writes ``OUT/<variant>/`` (run folders; ``train.json`` marks a finished variant, which a rerun
skips, so an interrupted run keeps its finished variants), ``OUT/results.json`` (the scores) and
``docs/ablations.md`` (the table). Scoring is separate from training: ``--report-only`` re-scores
the finished runs, e.g. once a segmenter exists.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from asapnet.bench.inputs import count_gflops
from asapnet.config import ASAPConfig, DiscriminatorConfig, TrainConfig
from asapnet.data import LabelPhotoDataset, cityscapes_pairs, data_root
from asapnet.metrics import psnr_ssim
from asapnet.models import create_model
from asapnet.inference.optimize import prepare_for_inference
from asapnet.training.trainer import Trainer
from asapnet.training.loop import train

#: The base model of the ablations: a narrow LR stream that trains in minutes on one CPU thread.
BASE = dict(s1=1, s2=16, lr_width=32, lr_max_width=128, lr_depth=3, hr_width=64, hr_depth=5)

#: variant name -> (config overrides, paper section, what the row tests)
VARIANTS: Dict[str, tuple] = {
    "full": ({}, "§3", "the reference: S = 16, positional encoding, per-tile MLPs"),
    "no_posenc": ({"positional_encoding": False}, "§3.3, Fig. 9b", "MLPs see only the label one-hot, no position"),
    "uniform": ({"spatially_uniform": True}, "§3.1, Fig. 9c", "one MLP for the whole image (mean of the tile parameters)"),
    "S8": ({"s2": 8}, "§3.2, Fig. 9d", "smaller tiles (LR grid 16x32): more LR compute"),
    "S32": ({"s2": 32}, "§3.2, Fig. 9e", "larger tiles (LR grid 4x8): less LR compute"),
    "lr_depth1": ({"lr_depth": 1}, "§3.2", "shallower LR stream (1 deep block instead of 3)"),
}


def variant_config(name: str, in_channels: int) -> ASAPConfig:
    """ASAPConfig of ablation ``name`` (see :data:`VARIANTS`)."""
    return ASAPConfig(in_channels=in_channels, **{**BASE, **VARIANTS[name][0]})


@torch.no_grad()
def _generate(G, ds) -> tuple:
    """(fakes (N,3,H,W) in [-1,1], reals or None, label ids (N,H,W)) over a dataset."""
    G.eval()
    items = [ds[i] for i in range(len(ds))]
    fakes = torch.cat([G(it["input"][None]) for it in items])
    reals = torch.stack([it["target"] for it in items]) if "target" in items[0] else None
    return fakes, reals, torch.stack([it["label"] for it in items])


def _ms_per_image(G, x: torch.Tensor, repeats: int = 5) -> float:
    """Fastest of ``repeats`` forward passes (ms), 1 thread: the minimum is the least disturbed
    by other processes on a shared machine."""
    G.eval()
    with torch.inference_mode():
        G(x)
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            G(x)
            ts.append((time.perf_counter() - t) * 1000)
    return min(ts)


def train_variant(name: str, a: argparse.Namespace, pairs) -> Path:
    """Train variant ``name`` (skipped when OUT/name already holds a finished run); returns its folder."""
    run = Path(a.out) / name
    info = run / "train.json"
    if info.exists() and json.loads(info.read_text())["steps"] == a.steps:
        print(f"{name}: already trained in {run}, skipped", flush=True)
        return run
    size = tuple(a.size)
    train_set = LabelPhotoDataset(pairs[:-1], 35, True, size, flip=True)
    val_set = LabelPhotoDataset(pairs[-1:], 35, True, size, flip=False)
    gcfg = variant_config(name, train_set.in_channels)
    G = create_model("asap", cfg=gcfg)
    tcfg = TrainConfig(steps=a.steps, crop=None, load_size=size, lambda_vgg=0.0, lambda_l1=10.0, seed=a.seed,
                       num_threads=1, sample_every=a.steps, checkpoint_every=a.steps, log_every=50)
    dcfg = DiscriminatorConfig(in_channels=train_set.in_channels + 3, ndf=32, n_layers=3, num_scales=2)
    extra = {"num_classes": 35, "use_instance": True, "train_pairs": [p.name for p in pairs[:-1]],
             "ablation": name, "load_size": list(size)}
    trainer = Trainer(G, "asap", gcfg.to_dict(), dcfg, tcfg, run, num_classes=35, extra_meta=extra)
    t0 = time.time()
    train(trainer, train_set, val_set, progress=False)
    info.write_text(json.dumps({"steps": a.steps, "train_s": round(time.time() - t0, 1), "size": list(size)}))
    print(f"{name}: trained {a.steps} steps in {time.time() - t0:.0f} s", flush=True)
    return run


def score_variant(name: str, run: Path, pairs, test_pairs, segmenter) -> Dict[str, Any]:
    """Scores of the trained variant in ``run`` on the held-out pair (and the test label maps)."""
    from asapnet.checkpoint import load_generator

    info = json.loads((run / "train.json").read_text())
    size = tuple(info["size"])
    G, _ = load_generator(run / "generator.safetensors")
    prepare_for_inference(G)
    val_set = LabelPhotoDataset(pairs[-1:], 35, True, size, flip=False)
    fake, real, lab = _generate(G, val_set)
    psnr, ssim = psnr_ssim(fake, real)
    row: Dict[str, Any] = {"variant": name, "section": VARIANTS[name][1], "what": VARIANTS[name][2],
                           "S": G.cfg.S, "params_M": sum(p.numel() for p in G.parameters()) / 1e6,
                           "steps": info["steps"], "train_s": info["train_s"], "size": list(size),
                           "psnr": psnr, "ssim": ssim, "ms_per_image": _ms_per_image(G, val_set[0]["input"][None]),
                           "gflops": count_gflops(G, val_set[0]["input"][None])}
    if segmenter is not None:
        from asapnet.tasks.segment.evaluate import segscore
        s = segscore(fake, lab, segmenter)
        row.update(heldout_miou=s.miou, heldout_pixel_accuracy=s.pixel_accuracy)
        if test_pairs:
            tf, _, tl = _generate(G, LabelPhotoDataset(test_pairs, 35, True, size))
            s = segscore(tf, tl, segmenter)
            row.update(test_miou=s.miou, test_pixel_accuracy=s.pixel_accuracy, test_images=len(test_pairs))
    return row


def write_table(rows: List[Dict[str, Any]], path: Path, ceiling: Optional[Dict[str, float]], meta: Dict[str, Any]) -> None:
    """Markdown table of the ablation rows (``docs/ablations.md``)."""
    seg = any("test_miou" in r for r in rows)
    head = "| variant | paper | S | params (M) | PSNR (dB) ↑ | SSIM ↑ |"
    sep = "|---|---|---|---|---|---|"
    if seg:
        head += " segscore held-out mIoU / acc ↑ | segscore 15 test maps mIoU / acc ↑ |"
        sep += "---|---|"
    head += " GFLOPs / image | ms / image (1 thread, min of 5) | train s |"
    sep += "---|---|---|"
    lines = [head, sep]
    for r in rows:
        line = (f"| {r['variant']} | {r['section']} | {r['S']} | {r['params_M']:.2f} | {r['psnr']:.2f} | "
                f"{r['ssim']:.3f} |")
        if seg:
            line += (f" {r.get('heldout_miou', float('nan')):.3f} / {r.get('heldout_pixel_accuracy', float('nan')):.3f} |"
                     f" {r.get('test_miou', float('nan')):.3f} / {r.get('test_pixel_accuracy', float('nan')):.3f} |")
        line += f" {r.get('gflops', float('nan')):.2f} | {r['ms_per_image']:.1f} | {r['train_s']:.0f} |"
        lines.append(line)
    notes = []
    if ceiling:
        notes = [f"Real held-out photo through the same segmenter (the ceiling): mIoU {ceiling['miou']:.3f}, "
                 f"pixel accuracy {ceiling['pixel_accuracy']:.3f}.", ""]
    text = ["<!-- generated by scripts/ablations.py; do not edit by hand -->", "",
            f"Budget per variant: {meta['steps']} generator steps, batch 1, whole {meta['size'][0]}x{meta['size'][1]} "
            f"images, seed {meta['seed']}, 7 training pairs; scores on the held-out pair "
            f"`{meta['heldout']}` at {meta['size'][0]}x{meta['size'][1]}.", "", *lines, "", *notes]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text))


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/ablations")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--size", type=int, nargs=2, default=[128, 256], metavar=("H", "W"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--segmenter", default=None, help="segmenter .safetensors for the segmentation score")
    ap.add_argument("--table", default="docs/ablations.md")
    ap.add_argument("--report-only", action="store_true", help="do not train; score the finished runs and rebuild the table")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    root = data_root(a.data_root) / "cityscapes_samples"
    pairs = cityscapes_pairs(root, "train")
    test_pairs = cityscapes_pairs(root, "test")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    segmenter, ceiling = None, None
    if a.segmenter:
        from asapnet.tasks.segment.train import load_pairs
        from asapnet.tasks.segment.evaluate import score_predictions
        from asapnet.tasks.segment.build import load_segmenter
        segmenter = load_segmenter(a.segmenter)
        img, ids = load_pairs(pairs[-1:], segmenter.cfg.size)
        s = score_predictions(segmenter.predict(img), ids)
        ceiling = {"miou": s.miou, "pixel_accuracy": s.pixel_accuracy}
    names = [n for n in a.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    if not a.report_only:
        for name in names:
            train_variant(name, a, pairs)
    rows = []
    for name in names:
        run = out / name
        if (run / "train.json").exists():
            rows.append(score_variant(name, run, pairs, test_pairs, segmenter))
            print(json.dumps(rows[-1]), flush=True)
    (out / "results.json").write_text(json.dumps({"rows": rows, "ceiling": ceiling}, indent=2))
    order = list(VARIANTS)
    rows.sort(key=lambda r: order.index(r["variant"]) if r["variant"] in order else len(order))
    write_table(rows, Path(a.table), ceiling, {"steps": rows[0]["steps"] if rows else a.steps, "size": a.size,
                                               "seed": a.seed, "heldout": pairs[-1].name})
    print(f"wrote {a.table}")


if __name__ == "__main__":
    main()
