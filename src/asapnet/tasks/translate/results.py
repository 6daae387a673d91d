"""Results of ``asapnet evaluate --task translate``: the comparison table as text and Markdown, the
per-metric list, and the command itself (:func:`cmd_evaluate_translate`)."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from ...checkpoint import load_generator
from ...options import ALL_METRICS, DEFAULT_METRICS, TABLE_METRICS
from .scoring import resolve_dataset
from .compare import compare_translations, parse_checkpoint_specs
from .evaluate import evaluate_translation
from .config import TranslateEvaluateOptions

logger = logging.getLogger(__name__)


def _fmt(v: Any, nd: int = 2) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def _columns(res: Dict[str, Any]) -> List[Tuple[str, Callable[[Dict[str, Any]], str]]]:
    m = set(res["metrics"])
    cols: List[Tuple[str, Callable[[Dict[str, Any]], str]]] = []
    if "psnr" in m:
        cols.append(("PSNR dB", lambda r: _fmt(r.get("psnr"))))
    if "ssim" in m:
        cols.append(("SSIM", lambda r: _fmt(r.get("ssim"), 3)))
    if "tile_contrast" in m:
        cols.append((f"tile contrast (S={res['tile']})", lambda r: _fmt(r.get("tile_contrast"), 1)))
    if "seam_ratio" in m:
        cols.append(("seam ratio", lambda r: _fmt(r.get("seam_ratio"))))
    if "block_std" in m:
        for c in res["block_classes"]:
            cols.append((f"std {c}", lambda r, c=c: _fmt((r.get("block_std") or {}).get(c), 1)))
    if "segscore" in m and "segscore" not in res["unavailable"]:
        cols.append(("mIoU", lambda r: _fmt(r.get("miou"), 3)))
        cols.append(("pixel acc.", lambda r: _fmt(r.get("pixel_accuracy"), 3)))
    for k, label, nd in (("fid", "FID", 1), ("lpips", "LPIPS", 3)):
        if k in m and k not in res["unavailable"]:
            cols.append((label, lambda r, k=k, nd=nd: _fmt(r.get(k), nd)))
    return cols


def comparison_notes(res: Dict[str, Any]) -> List[str]:
    """The lines that say what a :func:`compare_translations` table measured."""
    h, w = res["size"]
    lines = [f"{res['dataset']}: {res['selection']}, at {h}x{w}; mean over images. "
             f"Tile metrics with S = {res['tile']} for every row; block std = std inside {res['block']}x{res['block']} "
             "blocks covered by one class (gray levels, 0-255)."]
    if res.get("trivial"):
        lines.append(res["trivial"].capitalize() + ".")
    if res.get("segmenter"):
        lines.append(f"segscore: segmenter {res['segmenter']}; the real photos' row is its ceiling.")
    for k, why in res["unavailable"].items():
        lines.append(f"{k} unavailable: {why}")
    return lines


def format_comparison(res: Dict[str, Any]) -> str:
    """Plain-text table of a :func:`compare_translations` result (one line per row)."""
    cols = _columns(res)
    width = max([len(r["name"]) for r in res["rows"]] + [6])
    head = f"{'method':<{width}}  " + "  ".join(f"{c:>{max(7, len(c))}}" for c, _ in cols)
    lines = [head]
    for r in res["rows"]:
        lines.append(f"{r['name']:<{width}}  " + "  ".join(f"{f(r):>{max(7, len(c))}}" for c, f in cols))
    return "\n".join(lines + comparison_notes(res))


def comparison_markdown(res: Dict[str, Any]) -> str:
    """Markdown table of a :func:`compare_translations` result, with its notes below."""
    cols = _columns(res)
    lines = ["| method | " + " | ".join(c for c, _ in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for r in res["rows"]:
        name = r["name"] if r["kind"] == "model" else f"*{r['name']}*"
        lines.append(f"| {name} | " + " | ".join(f(r) for _, f in cols) + " |")
    return "\n".join(lines) + "\n\n" + "\n".join(comparison_notes(res)) + "\n"


def format_table(results: List[Dict[str, Any]]) -> str:
    """Human-readable table of :func:`evaluate_translation` results (one line per number)."""
    lines = [f"{'metric':<24} {'value':>10}  notes"]
    for r in results:
        if not r.get("available", True):
            lines.append(f"{r['metric']:<24} {'n/a':>10}  unavailable: {r['reason']}")
        elif r["metric"] == "segscore":
            lines.append(f"{'segscore mIoU':<24} {r['miou']:>10.4f}  generated photos vs input labels")
            lines.append(f"{'segscore pixel accuracy':<24} {r['pixel_accuracy']:>10.4f}")
            if "real_miou" in r:
                lines.append(f"{'  real-photo mIoU':<24} {r['real_miou']:>10.4f}  ceiling (same segmenter)")
                lines.append(f"{'  real-photo pixel acc.':<24} {r['real_pixel_accuracy']:>10.4f}")
        else:
            unit = f" {r['unit']}" if r.get("unit") else ""
            values = r["value"] if isinstance(r["value"], dict) else {"": r["value"]}
            for cls, v in values.items():
                name = f"{r['metric']} {cls}".strip()
                real = r.get("real_value")
                real = real.get(cls) if isinstance(real, dict) else real
                note = f"  (tile {r['tile']})" if "tile" in r and r["metric"] != "block_std" else ""
                note += f"  real photos: {real:.4f}" if real is not None else ""
                lines.append(f"{name:<24} {'n/a' if v is None else format(v, '.4f'):>10}{unit}{note}")
    if results:
        r = results[0]
        lines.append(f"{r['images']} image(s) at {r['size'][0]}x{r['size'][1]} ({r['selection']}): "
                     + ", ".join(r["pairs"][:4]) + (" ..." if len(r["pairs"]) > 4 else ""))
    return "\n".join(lines)


def parse_metrics(text: str) -> List[str]:
    """'fid,psnr' -> ['fid', 'psnr'] (raises argparse.ArgumentTypeError on unknown names)."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in ALL_METRICS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown metric(s) {bad}; choose from {','.join(ALL_METRICS)}")
    return names


def _as_list(v: Any) -> List[str]:
    return [] if v is None else [str(v)] if isinstance(v, (str, Path)) else [str(x) for x in v]


def cmd_evaluate_translate(opts: TranslateEvaluateOptions) -> int:
    """Run :func:`compare_translations` (``--dataset cityscapes-pix2pix`` / ``facades``, any number
    of ``--checkpoint [NAME=]PATH``) or :func:`evaluate_translation` (``--dataset cityscapes``, one
    checkpoint) from parsed arguments; print a table or JSON (one object for the comparison, one per
    metric otherwise).

    Exit code 0, or 1 when a metric named in ``--metrics`` (other than lpips) could not be
    computed; with the default metric list, unavailable metrics are only reported.

    Raises:
        ValueError: several checkpoints with ``--dataset cityscapes``, or see the functions above.
    """
    from ...data.datasets import data_root
    from ...options import parse_size
    from .run import default_checkpoint

    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = opts.device or "cpu"
    specs = _as_list(opts.checkpoint) or [str(default_checkpoint())]
    named = parse_checkpoint_specs(specs)
    loaded = {name: (*load_generator(path), path) for name, path in named.items()}
    dataset = resolve_dataset(opts.dataset, [v[1] for v in loaded.values()])
    size = parse_size(opts.size) if opts.size else None
    data = _as_list(opts.data)
    if len(data) > 1:
        raise ValueError("evaluate --task translate takes one --data folder")
    data_dir = Path(data[0]) if data else None
    if dataset == "cityscapes":
        if len(loaded) > 1:
            raise ValueError("--dataset cityscapes scores one checkpoint; compare several on --dataset "
                             "cityscapes-pix2pix or facades")
        return _cmd_evaluate_one(opts, next(iter(named.values())), data_dir or data_root(opts.data_root)
                                 / "cityscapes_samples", size, device)
    metrics = parse_metrics(opts.metrics) if opts.metrics else list(TABLE_METRICS)
    res = compare_translations(loaded, dataset, data_dir, train_dir=opts.train_data,
                               trivial_sample=opts.trivial_sample,
                               data_root=opts.data_root, limit=opts.limit, size=size,
                               metrics=metrics, segmenter=opts.segmenter, tile=opts.tile,
                               fid_weights=opts.fid_weights, log=logger.info, device=device)
    print(json.dumps(res) if opts.json else format_comparison(res))
    missing = {k: v for k, v in res["unavailable"].items() if k != "lpips"}
    for k, v in missing.items():
        logger.warning(f"asapnet evaluate: {k} unavailable: {v}")
    return 1 if (missing and opts.metrics) else 0


def _cmd_evaluate_one(opts: TranslateEvaluateOptions, ckpt: Path, data: Path, size: Optional[Tuple[int, int]],
                      device: str = "cpu") -> int:
    metrics = parse_metrics(opts.metrics) if opts.metrics else list(DEFAULT_METRICS)
    results = evaluate_translation(ckpt, data, metrics, split=opts.split,
                                   which=opts.pairs, holdout=opts.holdout,
                                   size=size, segmenter=opts.segmenter,
                                   fid_weights=opts.fid_weights, dataset="cityscapes",
                                   tile=opts.tile, log=logger.debug, device=device)
    if opts.json:
        for r in results:
            print(json.dumps(r))
    else:
        print(f"checkpoint: {ckpt}")  # the table's heading
        print(format_table(results))
    missing = [r for r in results if not r.get("available", True) and r["metric"] != "lpips"]
    for r in missing:
        logger.warning(f"asapnet evaluate: {r['metric']} unavailable: {r['reason']}")
    return 1 if (missing and opts.metrics) else 0
