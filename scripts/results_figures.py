"""Build docs/results.md's tables and figures from checkpoints (nothing is typed in by hand).

    python scripts/results_figures.py [--checkpoint PATH] [--segmenter runs/segmenter/segmenter.safetensors] \
        [--baseline pix2pixhd=PATH --baseline spade=PATH] [--ablations runs/ablations/results.json]

For every generator (ASAP = ``--checkpoint``, default the shipped model, else
``runs/cityscapes-asap/generator.safetensors``; baselines given with ``--baseline NAME=PATH``):

* held-out pair(s) of ``cityscapes_samples/train_*`` (pairs not in the checkpoint's training list):
  PSNR, SSIM, segmentation score, with the real photo through the same segmenter as the ceiling;
* the 15 label maps of ``cityscapes_samples/test_*`` (no photos): segmentation score only;
* runtime: fastest of 5 forward passes at the evaluation size on 1 CPU thread.

Writes ``docs/results_scatter.png`` (runtime vs quality, like the paper's Fig. 6, from the
ablation runs and the models above), ``docs/results_per_class_iou.png`` (like Fig. 11),
``docs/results_grid.jpg`` (label | ASAP | pix2pixHD | SPADE | real; an empty tile where a method
has no checkpoint or a label map has no photo), ``docs/results.json`` (every number) and fills the
``<!-- BEGIN generated:NAME -->`` ... ``<!-- END generated:NAME -->`` blocks of docs/results.md
(text outside the blocks is kept).
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from PIL import Image, ImageDraw

from asapnet.checkpoint import load_generator
from asapnet.data import cityscapes_pairs, data_root
from asapnet.tasks.translate.scoring import checkpoint_load_size, generate, select_pairs
from asapnet.tasks.translate.evaluate import evaluate_translation
from asapnet.metrics.segmentation import CITYSCAPES_TRAIN_CLASSES
from asapnet.inference.optimize import prepare_for_inference
from asapnet.training.batches import label_colors
from asapnet.tasks.translate.run import default_checkpoint

GRID_COLUMNS = ("label", "asap", "pix2pixhd", "spade", "real")
TILE = (128, 256)  # (H, W) of one grid tile


def asap_checkpoint(arg: Optional[str]) -> Optional[Path]:
    for cand in (arg, default_checkpoint(), "runs/cityscapes-asap/generator.safetensors"):
        if cand and Path(cand).is_file():
            p = Path(cand).resolve()
            return p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p
    return None


@torch.no_grad()
def runtime_ms(ckpt: Path, pairs, size) -> float:
    """Fastest of 5 timed forward passes (after one warm-up) on the first pair, 1 thread (the minimum
    is the least disturbed by other processes on a shared machine)."""
    model, meta = load_generator(ckpt)
    prepare_for_inference(model)
    from asapnet.data import LabelPhotoDataset
    ds = LabelPhotoDataset(pairs[:1], int(meta.get("num_classes", 35)), bool(meta.get("use_instance", False)),
                           load_size=size, cache=False)
    inp = ds[0]["input"][None]
    model(inp)
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        model(inp)
        ts.append((time.perf_counter() - t) * 1000)
    return min(ts)


def evaluate_model(name: str, ckpt: Path, data: Path, segmenter: Optional[Path]) -> Dict[str, Any]:
    metrics = ["psnr", "ssim"] + (["segscore"] if segmenter else [])
    held = {r["metric"]: r for r in evaluate_translation(ckpt, data, metrics, segmenter=segmenter)}
    test = evaluate_translation(ckpt, data, ["segscore"], split="test", which="all", segmenter=segmenter)[0] \
        if segmenter else None
    _, meta = load_generator(ckpt)
    pairs, _ = select_pairs(cityscapes_pairs(data, "train"), meta)
    size = checkpoint_load_size(ckpt, meta)
    return {"name": name, "checkpoint": str(ckpt), "step": meta.get("step"), "heldout": held, "test": test,
            "runtime_ms": runtime_ms(ckpt, pairs, size), "size": held["psnr"]["size"]}


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------


def scatter(models: List[Dict[str, Any]], ablations: Optional[Dict[str, Any]], path: Path) -> None:
    """Runtime (log x) vs PSNR and vs segscore mIoU, like the paper's Fig. 6."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (ablations or {}).get("rows", [])
    has_seg = any("test_miou" in r for r in rows)
    fig, axes = plt.subplots(1, 2 if has_seg else 1, figsize=(10 if has_seg else 5.5, 4), squeeze=False)
    panels = [("psnr", "PSNR on the held-out pair (dB) ↑")] + ([("test_miou", "segscore mIoU, 15 test maps ↑")]
                                                               if has_seg else [])
    for ax, (key, label) in zip(axes[0], panels):
        for r in rows:
            if key in r:
                ax.scatter(r["ms_per_image"], r[key], s=40)
                ax.annotate(r["variant"], (r["ms_per_image"], r[key]), textcoords="offset points", xytext=(4, 4),
                            fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(f"runtime per {rows[0]['size'][0]}x{rows[0]['size'][1]} image, 1 CPU thread (ms)"
                      if rows else "runtime (ms)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("ASAP ablation variants, equal training budget (runs/ablations)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def per_class_bars(model: Dict[str, Any], path: Path) -> None:
    """Per-class IoU of the generated photos (held-out pair and test maps) and of the real photo."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seg = model["heldout"].get("segscore", {})
    series = [("generated, held-out pair", seg.get("per_class_iou")),
              ("real photo, held-out pair (ceiling)", seg.get("real_per_class_iou")),
              ("generated, 15 test label maps", (model.get("test") or {}).get("per_class_iou"))]
    series = [(n, s) for n, s in series if s]
    x = np.arange(len(CITYSCAPES_TRAIN_CLASSES))
    w = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(11, 3.8))
    for i, (n, s) in enumerate(series):
        vals = np.array([np.nan if s.get(c) is None else s[c] for c in CITYSCAPES_TRAIN_CLASSES])
        xs = x + (i - (len(series) - 1) / 2) * w
        bars = ax.bar(xs, vals, w, label=n)
        absent = np.isnan(vals)  # class neither in the labels nor predicted: no IoU
        ax.scatter(xs[absent], np.full(absent.sum(), 0.03), marker="x", s=14, color=bars.patches[0].get_facecolor())
    ax.set_xticks(x, CITYSCAPES_TRAIN_CLASSES, rotation=45, ha="right")
    ax.set_ylabel("IoU")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"Per-class IoU ({model['name']}, step {model['step']}); x = class absent from labels and "
                 "predictions, no bar = IoU 0", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _tile(arr: Optional[np.ndarray], text: str = "") -> np.ndarray:
    if arr is None:
        img = Image.new("RGB", (TILE[1], TILE[0]), (235, 235, 235))
        ImageDraw.Draw(img).text((8, TILE[0] // 2 - 6), text, fill=(90, 90, 90))
        return np.asarray(img)
    return np.asarray(Image.fromarray(arr).resize((TILE[1], TILE[0]), Image.BILINEAR))


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def image_grid(ckpts: Dict[str, Optional[Path]], data: Path, path: Path, n_test: int = 3) -> List[str]:
    """label | asap | pix2pixhd | spade | real for the held-out pair(s) and ``n_test`` test maps."""
    from asapnet.data import read_label
    colors = ((label_colors(35) + 1) * 127.5).byte().numpy()
    asap_meta = load_generator(ckpts["asap"])[1] if ckpts.get("asap") else {}
    held, _ = select_pairs(cityscapes_pairs(data, "train"), asap_meta)
    rows_pairs = held + cityscapes_pairs(data, "test")[:n_test]
    outputs: Dict[str, Dict[str, np.ndarray]] = {}
    for name in ("asap", "pix2pixhd", "spade"):
        if ckpts.get(name) is None:
            continue
        model, meta = load_generator(ckpts[name])
        prepare_for_inference(model)
        out = generate(model, meta, rows_pairs, checkpoint_load_size(ckpts[name], meta))
        outputs[name] = {n: _to_uint8(f) for n, f in zip(out["names"], out["fake"])}
    rows = []
    for p in rows_pairs:
        tiles = [_tile(colors[read_label(p.label)])]
        for name in ("asap", "pix2pixhd", "spade"):
            tiles.append(_tile(outputs.get(name, {}).get(p.name), f"{name}: no trained checkpoint"))
        tiles.append(_tile(np.asarray(Image.open(p.image).convert("RGB")) if p.image else None,
                           "no photo (test label map)"))
        rows.append(np.concatenate(tiles, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path, quality=88)
    return [p.name for p in rows_pairs]


# ---------------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------------


def _f(v, fmt=".3f") -> str:
    return "—" if v is None else format(v, fmt)


def quality_table(models: List[Dict[str, Any]]) -> str:
    lines = ["| model | step | eval size | PSNR (dB) ↑ | SSIM ↑ | segscore mIoU ↑ | segscore pixel acc ↑ | "
             "segscore 15 test maps mIoU / acc ↑ | ms / image (1 thread, min of 5) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        h, t = m["heldout"], m.get("test") or {}
        seg = h.get("segscore", {})
        lines.append(f"| {m['name']} | {m['step']} | {m['size'][0]}x{m['size'][1]} | {_f(h['psnr']['value'], '.2f')} | "
                     f"{_f(h['ssim']['value'])} | {_f(seg.get('miou'))} | {_f(seg.get('pixel_accuracy'))} | "
                     f"{_f(t.get('miou'))} / {_f(t.get('pixel_accuracy'))} | {m['runtime_ms']:.0f} |")
        if "real_miou" in seg:
            lines.append(f"| real photo (ceiling) | | | ∞ | 1 | {_f(seg['real_miou'])} | "
                         f"{_f(seg['real_pixel_accuracy'])} | — | |")
    return "\n".join(lines)


def fill_blocks(md: str, blocks: Dict[str, str]) -> str:
    """Replace the body of every ``<!-- BEGIN generated:NAME -->...<!-- END generated:NAME -->``."""
    for name, body in blocks.items():
        pat = re.compile(rf"(<!-- BEGIN generated:{name} -->\n).*?(<!-- END generated:{name} -->)", re.S)
        if not pat.search(md):
            md += f"\n<!-- BEGIN generated:{name} -->\n<!-- END generated:{name} -->\n"
        md = pat.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), md)
    return md


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="ASAP generator (default: shipped, else runs/cityscapes-asap)")
    ap.add_argument("--baseline", action="append", default=[], help="NAME=PATH (pix2pixhd, spade)")
    ap.add_argument("--segmenter", default="runs/segmenter/segmenter.safetensors")
    ap.add_argument("--ablations", default="runs/ablations/results.json")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--docs", default="docs")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = data_root(a.data_root) / "cityscapes_samples"
    docs = Path(a.docs)
    docs.mkdir(parents=True, exist_ok=True)
    segmenter = Path(a.segmenter) if a.segmenter and Path(a.segmenter).is_file() else None
    ckpts: Dict[str, Optional[Path]] = {"asap": asap_checkpoint(a.checkpoint), "pix2pixhd": None, "spade": None}
    for item in a.baseline:
        name, _, p = item.partition("=")
        if Path(p).is_file():
            ckpts[name.lower()] = Path(p)
    models = [evaluate_model(n, p, data, segmenter) for n, p in ckpts.items() if p is not None]
    ablations = json.loads(Path(a.ablations).read_text()) if Path(a.ablations).is_file() else None
    scatter(models, ablations, docs / "results_scatter.png")
    if models and segmenter:
        per_class_bars(models[0], docs / "results_per_class_iou.png")
    grid_rows = image_grid(ckpts, data, docs / "results_grid.jpg")
    (docs / "results.json").write_text(json.dumps({"models": models, "ablations": ablations,
                                                   "grid_rows": grid_rows,
                                                   "segmenter": str(segmenter) if segmenter else None,
                                                   "missing": [n for n, p in ckpts.items() if p is None]},
                                                  indent=1, default=str))
    md_path = docs / "results.md"
    md = md_path.read_text() if md_path.exists() else "# Results\n"
    blocks = {"quality": quality_table(models),
              "missing": ("No trained checkpoint for: " + ", ".join(n for n, p in ckpts.items() if p is None)
                          + ". Their grid columns are left empty.") if any(p is None for p in ckpts.values())
              else "All grid columns come from trained checkpoints.",
              "grid_rows": "Grid rows: " + ", ".join(f"`{n}`" for n in grid_rows) + "."}
    abl_md = Path(a.docs) / "ablations.md"
    if abl_md.is_file():
        blocks["ablations"] = "\n".join(line for line in abl_md.read_text().splitlines()
                                        if not line.startswith("<!--"))
    md_path.write_text(fill_blocks(md, blocks))
    print(f"wrote {md_path}, results_scatter.png, results_per_class_iou.png, results_grid.jpg, results.json")


if __name__ == "__main__":
    main()
